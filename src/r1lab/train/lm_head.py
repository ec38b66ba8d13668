"""The LM head's per-token log-probabilities and entropies on a CPU, for GRPO's loss.

TRL's loss scores completions through a fused LM head (``trl.kernels.ChunkedLogProbFunction``): logits are
projected in vocabulary tiles and folded into log-sum-exp statistics. On CUDA the folding is a Triton
kernel; on a CPU it runs as a dozen torch operations per tile, each a full pass over a ``[tokens, 32768]``
fp32 tile, and its backward another fifteen. On SmolLM2-135M with the seed recipe's 16 rows x 64 tokens
(1040 tokens x 49k vocabulary, bf16 autocast, idle 2-core Xeon) that head took ~175 ms forward and ~710 ms
backward: a fifth of r1lab's whole update.

:class:`LogProbHead` computes the same numbers in fewer passes: one projection per token chunk over the whole
vocabulary (in the same precision as TRL's tiles), ``log_softmax`` (one vectorised kernel), the target's
entry and the entropy from it, and for the backward the kept log-probabilities turned into the logits'
gradient in place. The gradient GEMMs accumulate in fp32, as TRL's do on a CPU (its reason: rounding
sums of vocabulary chunks to bf16 biases training). Values and gradients equal TRL's up to float rounding
(``tests/train/test_lm_head.py``).

:func:`cpu_log_prob_head` puts it in place of TRL's function inside TRL's fused head for the duration of
r1lab's loss forward, for the calls it answers (a CPU tensor, no logit soft-capping, log-probs and
entropy only); every other call goes to TRL's. ``R1LAB_LM_HEAD=0`` keeps TRL's head throughout.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os

import torch

log = logging.getLogger(__name__)

ENV = "R1LAB_LM_HEAD"
# Tokens projected at once: their fp32 log-softmax over SmolLM2's 49k vocabulary is 200 MB at 1024.
TOKENS_PER_CHUNK = 1024
# The forward keeps its log-probabilities for the backward (4 bytes per token x vocabulary entry) up to this
# many entries (256 MiB); above, the backward projects the tokens again, chunk by chunk.
KEPT_ENTRIES = 2**26
# What TRL's function may be asked for that this head computes (the rest it leaves to TRL's).
OUTPUTS = ("log_probs", "entropy")


def _log_softmax(h, w, bias, scale: float, inv_t: float):
    """fp32 log-probabilities of ``h @ w.T (+ bias)``, the projection in ``h``'s dtype as in TRL's tiles."""
    logits = torch.mm(h, w.t())
    if bias is not None:
        logits.add_(bias)
    if scale == 1.0 and inv_t == 1.0:
        return torch.log_softmax(logits, dim=-1, dtype=torch.float32)
    z = logits.float()
    if scale != 1.0:  # the two products in TRL's order, so that they round alike
        z.mul_(scale)
    if inv_t != 1.0:
        z.mul_(inv_t)
    return torch.log_softmax(z, dim=-1)


def _logits_gradient(logp, targets, g_logp, g_entropy, entropy, c: float):
    """The loss's gradient with respect to the logits, computed in place of ``logp`` ([tokens, vocab]).

    ``d log p_t / dz_j = 1[j = t] - p_j`` and ``d H / dz_j = -p_j (log p_j + H)``; the logits are ``z / c``
    (``c = logit_scale / temperature``), so both carry a factor ``c``."""
    if g_entropy is None:
        grad = logp.exp_().mul_((-c * g_logp).unsqueeze(1))
    else:
        p = logp.exp()
        coef = logp.add_(entropy.unsqueeze(1)).mul_((c * g_entropy).unsqueeze(1))
        if g_logp is not None:
            coef.add_((c * g_logp).unsqueeze(1))
        grad = p.mul_(coef).neg_()
    if g_logp is not None:
        grad.scatter_add_(1, targets.unsqueeze(1), (c * g_logp).unsqueeze(1))
    return grad


class LogProbHead(torch.autograd.Function):
    """``(log p(target), entropy or None)`` per token of ``softmax(logit_scale * (hidden @ weight.T + bias) /
    temperature)``, in the autocast dtype where autocast is on (TRL's ``compute_dtype``)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature: float, logit_scale: float, entropy: bool):
        ctx.set_materialize_grads(False)  # an entropy only logged gets no gradient: skip its term
        on = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if on else hidden.dtype
        scale, inv_t = float(logit_scale), 1.0 / float(temperature)
        with torch.autocast("cpu", enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            b = None if bias is None else bias.to(dtype)
            n = h.size(0)
            logps = torch.empty(n, dtype=torch.float32, device=h.device)
            entropies = torch.empty(n, dtype=torch.float32, device=h.device) if entropy else None
            kept = [] if n * w.size(0) <= KEPT_ENTRIES else None
            for start in range(0, n, TOKENS_PER_CHUNK):
                rows = slice(start, min(start + TOKENS_PER_CHUNK, n))
                logp = _log_softmax(h[rows], w, b, scale, inv_t)
                logps[rows] = logp.gather(1, targets[rows].unsqueeze(1)).squeeze(1)
                if entropy:
                    entropies[rows] = logp.exp().mul_(logp).sum(-1).neg_()
                if kept is not None:
                    kept.append(logp)
        ctx.save_for_backward(h, w, b, targets, entropies)
        ctx.kept, ctx.scale, ctx.inv_t = kept, scale, inv_t
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        if entropies is not None:
            return logps, entropies
        return logps, None

    @staticmethod
    def backward(ctx, g_logp, g_entropy):
        h, w, b, targets, entropies = ctx.saved_tensors
        kept, ctx.kept = ctx.kept, None
        needs_h, needs_w, needs_b = ctx.needs_input_grad[:3]
        if g_logp is None and g_entropy is None:
            return (None,) * 7
        g_logp = None if g_logp is None else g_logp.float()
        g_entropy = None if g_entropy is None else g_entropy.float()
        c = ctx.scale * ctx.inv_t
        n = h.size(0)
        grad_h = torch.empty(n, h.size(1), dtype=torch.float32, device=h.device) if needs_h else None
        grad_w = grad_b = None
        with torch.autocast("cpu", enabled=False):
            # fp32 products of the rounded operands the forward used, as TRL's CPU backward computes them
            wf, hf = (w.float() if needs_h else None), (h.float() if needs_w else None)
            for i, start in enumerate(range(0, n, TOKENS_PER_CHUNK)):
                rows = slice(start, min(start + TOKENS_PER_CHUNK, n))
                logp = kept[i] if kept is not None else _log_softmax(h[rows], w, b, ctx.scale, ctx.inv_t)
                grad = _logits_gradient(
                    logp,
                    targets[rows],
                    None if g_logp is None else g_logp[rows],
                    None if g_entropy is None else g_entropy[rows],
                    None if entropies is None else entropies[rows],
                    c,
                )
                if needs_h:
                    torch.mm(grad, wf, out=grad_h[rows])
                if needs_w:
                    grad_w = (
                        torch.mm(grad.t(), hf[rows]) if grad_w is None else grad_w.addmm_(grad.t(), hf[rows])
                    )
                if needs_b:
                    grad_b = grad.sum(0) if grad_b is None else grad_b.add_(grad.sum(0))
        dtype_h, dtype_w, dtype_b = ctx.dtypes
        return (
            None if grad_h is None else grad_h.to(dtype_h),
            None if grad_w is None else grad_w.to(dtype_w),
            None if grad_b is None else grad_b.to(dtype_b),
            None,
            None,
            None,
            None,
        )


def answers(hidden, weight, final_logit_softcapping, outputs) -> bool:
    """Whether :class:`LogProbHead` computes this call of TRL's function: a plain CPU tensor (not a sharded
    DTensor), no soft-capping, no outputs beyond log-probs and entropy."""
    return (
        hidden.device.type == "cpu"
        and type(weight) in (torch.Tensor, torch.nn.Parameter)
        and final_logit_softcapping is None
        and set(outputs) <= set(OUTPUTS)
    )


class _HeadOnCpu:
    """Stands in for ``trl.kernels.ChunkedLogProbFunction`` (same ``apply`` arguments and 5 results): CPU
    calls it answers go to :class:`LogProbHead`, every other call to TRL's own."""

    def __init__(self, original):
        self.original = original

    def apply(
        self,
        hidden,
        weight,
        bias,
        targets,
        temperature,
        chunk_size,
        final_logit_softcapping=None,
        logit_scale=1.0,
        outputs=OUTPUTS,
    ):
        if not answers(hidden, weight, final_logit_softcapping, outputs):
            args = (
                hidden,
                weight,
                bias,
                targets,
                temperature,
                chunk_size,
                final_logit_softcapping,
                logit_scale,
            )
            return self.original.apply(*args, outputs)
        logps, entropies = LogProbHead.apply(
            hidden, weight, bias, targets, temperature, logit_scale, "entropy" in outputs
        )
        return logps, entropies, None, None, None


_warned = False


@contextlib.contextmanager
def cpu_log_prob_head():
    """Within this block, TRL's fused LM head computes with :class:`LogProbHead` where it answers (see the
    module docstring). A no-op when ``R1LAB_LM_HEAD=0`` or when the installed TRL no longer calls its
    function the way r1lab expects (``r1lab.compat.log_prob_head_problems``; logged once)."""
    global _warned
    from r1lab import compat

    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no"):
        yield
        return
    problems = compat.log_prob_head_problems()
    if problems:
        if not _warned:
            _warned = True
            log.warning(
                "TRL's own LM head in the loss (r1lab's CPU head does not fit: %s)", "; ".join(problems)
            )
        yield
        return
    module, name = compat.TRL_LOG_PROB_HEAD
    holder = importlib.import_module(module)
    original = getattr(holder, name)
    if isinstance(original, _HeadOnCpu):  # already in place (a nested call)
        yield
        return
    setattr(holder, name, _HeadOnCpu(original))
    try:
        yield
    finally:
        setattr(holder, name, original)
