"""r1lab's CPU LM head (r1lab.train.lm_head): log-probs, entropies and their gradients, against an exact
computation and against TRL's fused head, and its place inside TRL's head."""

from __future__ import annotations

import pytest
import torch

from r1lab.train import lm_head
from r1lab.train.lm_head import LogProbHead, cpu_log_prob_head

N, H, V = 37, 16, 300  # tokens, hidden width, vocabulary


def inputs(seed=0, bias=False):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(N, H, generator=g) * 2).requires_grad_()
    weight = torch.nn.Parameter(torch.randn(V, H, generator=g))
    b = torch.nn.Parameter(torch.randn(V, generator=g)) if bias else None
    targets = torch.randint(0, V, (N,), generator=g)
    g_logp, g_ent = torch.randn(N, generator=g), torch.randn(N, generator=g)
    return hidden, weight, b, targets, g_logp, g_ent


def run(fn, hidden, weight, bias, g_logp, g_ent, autocast: bool):
    """Values and gradients of ``sum(g_logp * logp) + sum(g_ent * entropy)`` (``g_ent`` None: the entropy
    is only looked at)."""
    for t in (hidden, weight, bias):
        if t is not None:
            t.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logp, ent = fn()
    loss = (g_logp * logp).sum() + ((g_ent * ent).sum() if g_ent is not None else 0)
    loss.backward()
    grads = [t.grad.clone() for t in (hidden, weight, bias) if t is not None]
    return logp.detach(), ent.detach(), grads


def exact(hidden, weight, bias, targets, temperature, scale, g_logp, g_ent, autocast: bool):
    """The same quantities in float64, from the operands rounded as the head rounds them (to bf16 under
    autocast, logits included), differentiated without rounding."""
    dtype = torch.bfloat16 if autocast else torch.float32
    h = hidden.detach().to(dtype).double().requires_grad_()
    w = weight.detach().to(dtype).double().requires_grad_()
    b = None if bias is None else bias.detach().to(dtype).double().requires_grad_()

    def rounded(
        x,
    ):  # rounded to the compute dtype, as the head's tensors are; differentiated straight through
        return x + (x.to(dtype).double() - x).detach()

    logits = rounded(h @ w.t())
    if b is not None:  # added to the rounded product, as TRL's tiles do
        logits = rounded(logits + b)
    logp = torch.log_softmax(logits * scale / temperature, dim=-1)
    target = logp.gather(1, targets[:, None]).squeeze(1)
    ent = -(logp.exp() * logp).sum(-1)
    loss = (g_logp.double() * target).sum() + ((g_ent.double() * ent).sum() if g_ent is not None else 0)
    loss.backward()
    return target.detach(), ent.detach(), [t.grad for t in (h, w, b) if t is not None]


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize(
    "temperature, scale, bias, entropy_grad",
    [(1.0, 1.0, False, False), (0.7, 1.0, True, True), (1.3, 0.5, False, True), (0.9, 2.0, True, False)],
)
def test_values_and_gradients_equal_an_exact_computation(autocast, temperature, scale, bias, entropy_grad):
    hidden, weight, b, targets, g_logp, g_ent = inputs(bias=bias)
    g_ent = g_ent if entropy_grad else None
    ours = run(
        lambda: LogProbHead.apply(hidden, weight, b, targets, temperature, scale, True),
        hidden, weight, b, g_logp, g_ent, autocast,
    )  # fmt: skip
    ref = exact(hidden, weight, b, targets, temperature, scale, g_logp, g_ent, autocast)
    torch.testing.assert_close(ours[0].double(), ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1].double(), ref[1], rtol=1e-5, atol=1e-5)
    assert len(ours[2]) == len(ref[2]) == (3 if bias else 2)
    for a, r in zip(ours[2], ref[2], strict=True):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))


def test_chunks_recomputed_in_the_backward_equal_kept_ones(monkeypatch):
    hidden, weight, b, targets, g_logp, g_ent = inputs(seed=1, bias=True)

    def once():
        return run(
            lambda: LogProbHead.apply(hidden, weight, b, targets, 0.8, 1.0, True),
            hidden, weight, b, g_logp, g_ent, False,
        )  # fmt: skip

    kept = once()
    monkeypatch.setattr(lm_head, "TOKENS_PER_CHUNK", 8)  # 5 chunks of tokens
    monkeypatch.setattr(lm_head, "KEPT_ENTRIES", 0)  # nothing kept: the backward projects again
    chunked = once()
    for a, c in zip(kept[:2] + tuple(kept[2]), chunked[:2] + tuple(chunked[2]), strict=True):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_equals_trls_fused_head(autocast):
    from trl.kernels import ChunkedLogProbFunction

    hidden, weight, _, targets, g_logp, g_ent = inputs(seed=2)
    outputs = ("log_probs", "entropy")
    trl = run(
        lambda: ChunkedLogProbFunction.apply(hidden, weight, None, targets, 0.7, 128, None, 1.0, outputs)[:2],
        hidden, weight, None, g_logp, g_ent, autocast,
    )  # fmt: skip
    ours = run(
        lambda: LogProbHead.apply(hidden, weight, None, targets, 0.7, 1.0, True),
        hidden, weight, None, g_logp, g_ent, autocast,
    )  # fmt: skip
    torch.testing.assert_close(ours[0], trl[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], trl[1], rtol=1e-5, atol=1e-5)
    # TRL rounds the logits' gradient to the compute dtype before its GEMMs: under bf16 autocast its gradients
    # are off by up to ~2^-8 of their entries (ours are the exact ones, test above)
    rel = 4e-3 if autocast else 1e-5
    for a, t in zip(ours[2], trl[2], strict=True):
        torch.testing.assert_close(a, t, rtol=rel, atol=rel * float(t.abs().max()))


def test_stands_in_for_trls_function_only_inside_the_block_and_only_where_it_answers(monkeypatch):
    import trl.trainer.utils as trl_utils

    original = trl_utils._ChunkedLogProbFunction
    hidden, weight, _, targets, _, _ = inputs(seed=3)
    calls = []
    monkeypatch.setattr(LogProbHead, "apply", lambda *a: calls.append(a) or (torch.zeros(N), torch.zeros(N)))
    with cpu_log_prob_head():
        head = trl_utils._ChunkedLogProbFunction
        assert head is not original
        with cpu_log_prob_head():  # nested: still the one stand-in
            assert trl_utils._ChunkedLogProbFunction is head
        out = head.apply(hidden, weight, None, targets, 1.0, 128, None, 1.0, ("log_probs", "entropy"))
        assert len(out) == 5 and len(calls) == 1
        # soft-capping, or an output this head does not compute: TRL's own function answers
        for softcap, outputs in ((30.0, ("log_probs",)), (None, ("log_probs", "is_top1"))):
            trls = head.apply(hidden, weight, None, targets, 1.0, 128, softcap, 1.0, outputs)
            assert len(trls) == 5 and trls[0].shape == (N,)
        assert len(calls) == 1
    assert trl_utils._ChunkedLogProbFunction is original
    monkeypatch.setenv(lm_head.ENV, "0")
    with cpu_log_prob_head():
        assert trl_utils._ChunkedLogProbFunction is original


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(4, for_training=True)


def test_grpos_loss_on_a_cpu_scores_with_it(lively, tmp_path, monkeypatch):
    from test_rollouts import make_trainer
    from test_shared_prompt import scored_batch

    trainer = make_trainer(lively, tmp_path, "r1lab", max_completion_length=8)
    ids, mask, keep, cm = scored_batch(trainer)
    calls = []
    real = LogProbHead.apply
    monkeypatch.setattr(LogProbHead, "apply", lambda *a: calls.append(1) or real(*a))
    ours = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep, compute_entropy=True)
    n = len(calls)
    assert n
    monkeypatch.setenv(lm_head.ENV, "0")
    trls = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep, compute_entropy=True)
    assert len(calls) == n  # switched off: TRL's own head
    torch.testing.assert_close(ours[0][cm], trls[0][cm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours[1][cm], trls[1][cm], rtol=1e-4, atol=1e-4)
