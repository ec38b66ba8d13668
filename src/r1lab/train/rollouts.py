"""GRPO rollouts with r1lab's decoder: a ``GRPOTrainer`` whose single-turn generation uses
:func:`r1lab.decoding.decode_shared_prefix` instead of ``model.generate`` on a padded batch.

TRL's generation batch repeats each prompt ``num_generations`` times in a row. ``generate`` runs all those
copies through the prompt and keeps every row in the batch until the longest completion ends; r1lab's
decoder prefills the shared system-prompt prefix once, each prompt once for its completions, and drops
rows as they finish. On a 2-core CPU that is most of a GRPO step's generation time.

The hook is the narrowest TRL offers: ``_generate_single_turn`` (one call per generation batch, token ids
in, completion token ids out). Everything around it (reward scoring, advantages, the loss, logging,
checkpoints) is TRL's. The model is unwrapped for generation exactly as TRL's own path does
(``unwrap_model_for_generation``: DDP, DeepSpeed ZeRO-3 gathering, FSDP full parameters), so multi-process
runs generate with the same engine. TRL's path is used instead, with one log line saying why, for vLLM,
transformers' continuous batching, multimodal prompts, tool calls, and generation settings the decoder does
not reproduce (beam search, ``no_repeat_ngram_size``, ...).

Rollouts may decode with a lower-precision copy of the policy (``rollout_dtype``: a bf16 copy, or an int8
one quantized with torch's dynamic quantization), made anew for every generation batch. Then the tokens
come from another distribution than the learner's, and the loss applies TRL's importance-sampling
correction (:mod:`r1lab.train.rollout_correction`): the decoder records each sampled token's log-probability
under the distribution it was drawn from, TRL turns them into ``sampling_per_token_logps``, and the ratio
multiplies TRL's per-token loss.
"""

from __future__ import annotations

import contextlib
import copy
import logging

from trl import GRPOTrainer

from r1lab.compat import (
    GRPO_HOOK_SIGNATURES,
    grpo_hook_problems,
    parameters_freed_after_forward,
    profiling_context,
    summon_full_params,
    trainer_tokenizer,
    unwrap_for_generation,
)
from r1lab.decoding import (
    decode_shared_prefix,
    eval_mode,
    fast_decode_supported,
    group_repeats,
    sampling_from_generation_config,
)
from r1lab.train.lm_head import cpu_log_prob_head
from r1lab.train.rollout_correction import Correction, importance_ratio, mismatch_stats, precision_mismatch

log = logging.getLogger(__name__)

ROLLOUT_ENGINES = ("r1lab", "trl")


def shared_prompt_forward_applies(
    wanted: bool, *, gradient_checkpointing: bool, device_type: str, resharded: str | None
) -> tuple[bool, str | None]:
    """Whether the loss runs each prompt once for all its completions (:mod:`r1lab.train.shared_prompt`),
    and why not when it was wanted but does not apply."""
    if not wanted:
        return False, None
    if gradient_checkpointing:  # recomputation runs without a KV cache
        return False, "gradient checkpointing recomputes without the prompt's KV cache"
    if resharded:
        # The completion forward's backward reaches the prompt forward's K/V projections through the cache
        # after the layer's own backward has freed its gathered weights again (on an H200 under FSDP2:
        # "setStorage ... out of bounds for storage of size 0"; tests/train/test_sharded_loss.py shows it on the CPU).
        return False, f"{resharded} frees each layer's gathered weights after its forward"
    if device_type != "cpu":
        # Measured on an H200 (benchmarks/results/gpu-halves.md): the per-row loss took 2.4 s against the
        # shared one's 5.8 s per step, whose bucketed, cache-indexed forwards are launch- and sync-bound.
        return False, f"on {device_type} TRL's per-row loss measured faster"
    return True, None


class R1labGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with r1lab's rollout engine. ``rollout_engine="trl"`` keeps TRL's generation;
    ``rollout_dtype`` (a torch dtype or None; ``torch.int8`` for an int8 quantized copy) decodes with a copy
    of the weights in that dtype while training keeps its own; the loss then corrects for the difference."""

    # TRL computes and applies its importance-sampling correction only under ``self.use_vllm``. r1lab opens
    # that gate inside the loss alone (``_correcting``, see ``_compute_loss``), where the only ``use_vllm``
    # branch is the correction's (compat.vllm_gate_problems checks that), so nothing of vLLM's ever runs.
    _use_vllm = False
    _correcting = False
    _pending_correction = None

    @property
    def use_vllm(self) -> bool:
        return self._use_vllm or self._correcting

    @use_vllm.setter
    def use_vllm(self, value: bool) -> None:
        self._use_vllm = value

    def __init__(
        self,
        *args,
        rollout_engine: str = "r1lab",
        rollout_dtype=None,
        share_prompt_forward: bool = True,
        **kwargs,
    ):
        if rollout_engine not in ROLLOUT_ENGINES:
            raise ValueError(f"rollout_engine must be one of {ROLLOUT_ENGINES}, got {rollout_engine!r}")
        super().__init__(*args, **kwargs)
        self.rollout_engine = rollout_engine
        self.rollout_dtype = rollout_dtype
        self.share_prompt_forward, why_not = shared_prompt_forward_applies(
            share_prompt_forward,
            gradient_checkpointing=self.args.gradient_checkpointing,
            device_type=self.accelerator.device.type,
            resharded=parameters_freed_after_forward(self),
        )
        if why_not:
            log.info("GRPO loss: one forward per row (%s)", why_not)
        self._fallback_logged = False
        self._uncorrected_warned = False
        self.sampling, why = sampling_from_generation_config(self.generation_config)
        problems = grpo_hook_problems(self)
        if problems:  # a TRL r1lab was not tested with: TRL's own hooks, both, for the whole run
            self._use_trls_hooks(problems)
        elif rollout_engine == "r1lab":
            why = why or self._unsupported_setup()
            if why:
                self.rollout_engine = "trl"
                log.info("GRPO rollouts: TRL's generation (r1lab's decoder does not support %s)", why)

    def rollout_mismatch(self) -> str | None:
        """Why rollouts sample from another distribution than the learner's forward (None: same numerics)."""
        args = self.args
        autocast = "bf16" if args.bf16 else "fp16" if args.fp16 else None
        weights = next(self.accelerator.unwrap_model(self.model).parameters()).dtype
        return precision_mismatch(weights, self.rollout_dtype, autocast=autocast)

    def correction(self) -> Correction | None:
        """TRL's importance-sampling settings when r1lab's rollouts need correcting, else None. A mismatch
        left uncorrected (``vllm_importance_sampling_correction: false``, or TRL's generation, which records
        no sampling log-probabilities) is logged once as a warning, never skipped silently."""
        if self._use_vllm:  # TRL's vLLM path records and corrects its own mismatch
            return None
        why = self.rollout_mismatch()
        if why is None:
            return None
        if self.rollout_engine == "r1lab" and self.args.vllm_importance_sampling_correction:
            return Correction.from_args(self.args)
        if not self._uncorrected_warned:
            self._uncorrected_warned = True
            because = (
                "vllm_importance_sampling_correction is false"
                if self.rollout_engine == "r1lab"
                else "TRL's generation records no sampling log-probabilities"
            )
            log.warning("GRPO rollouts: %s and nothing corrects it (%s)", why, because)
        return None

    def _unsupported_setup(self) -> str | None:
        if self.use_vllm:
            return "vLLM (use_vllm: true keeps TRL's vLLM generation)"
        if self.use_transformers_continuous_batching:
            return "use_transformers_continuous_batching"
        if getattr(self, "tools", None):
            return "tool calls"
        if getattr(self, "rollout_func", None) is not None:
            return "a custom rollout_func"
        if not fast_decode_supported(self.accelerator.unwrap_model(self.model)):
            return "encoder-decoder models"
        return None

    def _use_trls_hooks(self, problems: list[str]) -> None:
        """Generation and log-probs by TRL's own methods (bound on this trainer, so they are called with
        TRL's own signature), with one log line saying why."""
        import types

        import trl

        self.rollout_engine = "trl"
        self.share_prompt_forward = False
        for name in GRPO_HOOK_SIGNATURES:
            setattr(self, name, types.MethodType(getattr(GRPOTrainer, name), self))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        log.warning(
            "GRPO: TRL's own generation and log-probs: r1lab's hooks do not fit TRL %s: %s%s",
            trl.__version__,
            problems[0],
            more,
        )

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        if self.rollout_engine != "r1lab" or images is not None or multimodal_fields:
            if self.rollout_engine == "r1lab" and not self._fallback_logged:
                log.info("GRPO rollouts: TRL's generation for multimodal prompts")
                self._fallback_logged = True
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        import torch

        logprobs = [] if self.correction() is not None else None
        with (
            profiling_context(self, "r1lab.decode"),
            unwrap_for_generation(self) as unwrapped,
            torch.no_grad(),
            summon_full_params(self),
            _decoding_copy(unwrapped, self.rollout_dtype) as model,
            _class_forward(model, self.accelerator.autocast),
        ):
            completion_ids = rollout(
                model,
                prompt_ids,
                sampling=self.sampling,
                max_new_tokens=self.max_completion_length,
                eos=set(self.eos_token_ids),
                pad_id=trainer_tokenizer(self).pad_token_id,
                logprobs=logprobs,
            )
        # TRL turns these into `sampling_per_token_logps` (None: no correction, as on TRL's own path)
        return completion_ids, logprobs

    def _compute_loss(self, model, inputs):
        """TRL's loss; with a correction due and sampling log-probs recorded, TRL's importance-sampling
        branch runs too, with the ratio computed from this very forward (see :meth:`_apply_correction`)."""
        correction = self.correction()
        if correction is None or inputs.get("sampling_per_token_logps") is None:
            return super()._compute_loss(model, inputs)
        inputs = dict(inputs)  # the ratio goes into this micro-batch's copy, not TRL's buffered batch
        self._pending_correction = (inputs, correction)
        self._correcting = True
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._correcting = False
            self._pending_correction = None

    def _apply_correction(self, per_token_logps) -> None:
        """Put the importance ratio into the loss's inputs (TRL multiplies the per-token loss by it) and log
        the mismatch. The learner's log-probs are TRL's ``old_per_token_logps`` when TRL computed them (more
        than one policy iteration per batch), else this forward's own, detached: with one iteration per
        batch they are the same numbers, so the correction needs no forward pass of its own."""
        import torch

        inputs, correction = self._pending_correction
        self._pending_correction = None  # only the loss's policy forward
        learner = inputs.get("old_per_token_logps")
        learner = per_token_logps.detach() if learner is None else learner
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        sampling = inputs["sampling_per_token_logps"]
        ratio, clipped = importance_ratio(learner, sampling, mask, correction)
        inputs["importance_sampling_ratio"] = ratio
        mode = "train" if self.model.training else "eval"
        reduce = {"mean": torch.nanmean, "max": torch.max, "min": torch.min}
        for name, (value, how) in mismatch_stats(learner, sampling, mask, ratio, clipped).items():
            gathered = self.accelerator.gather(value.detach().float().reshape(1))
            self._metrics[mode][name].append(reduce[how](gathered).item())

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **multimodal,
    ):
        """TRL's per-token log-probs, with one prompt forward per distinct prompt (see
        :mod:`r1lab.train.shared_prompt`) for text-only batches, and on a CPU r1lab's LM head
        (:mod:`r1lab.train.lm_head`) in TRL's fused head."""
        head = cpu_log_prob_head() if self.accelerator.device.type == "cpu" else contextlib.nullcontext()
        with head:
            if (
                self.share_prompt_forward
                and not compute_aux_loss
                and all(v is None for v in multimodal.values())
            ):
                from r1lab.train.shared_prompt import shared_prompt_logps

                shared = shared_prompt_logps(
                    model,
                    input_ids,
                    attention_mask,
                    logits_to_keep,
                    autocast=self.accelerator.autocast,
                    batch_size=batch_size,
                )
                if shared is not None:
                    logps, entropies = shared
                    if self._pending_correction is not None:
                        self._apply_correction(logps)
                    return logps, (entropies if compute_entropy else None), None
            logps, entropies, aux = super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **multimodal,
            )
        if self._pending_correction is not None:
            self._apply_correction(logps)
        return logps, entropies, aux


def rollout(
    model,
    prompt_ids,
    *,
    sampling,
    max_new_tokens: int,
    eos: set[int],
    pad_id: int,
    logprobs: list[list[float]] | None = None,
) -> list[list[int]]:
    """Completion token ids (cut after the first EOS, which is kept) for each row of ``prompt_ids``, in
    order; identical consecutive rows (a prompt's ``num_generations`` copies) are prefilled once.
    ``logprobs`` (an empty list) receives each token's sampling log-probability, row for row."""
    unique, counts = group_repeats(prompt_ids)
    with eval_mode(model):  # no dropout while sampling, as in generate()
        return decode_shared_prefix(
            model,
            unique,
            per_prompt=counts,
            max_new_tokens=max_new_tokens,
            eos=eos,
            pad_id=pad_id,
            sampling=sampling,
            logprobs=logprobs,
        )


@contextlib.contextmanager
def _decoding_copy(model, dtype):
    """``model`` itself, or (``dtype`` differing from its weights') a copy in ``dtype`` for this
    generation batch (``torch.int8``: linear layers quantized to int8): the weights change every optimizer
    step, so the copy is made anew each time, inside the step's time."""
    import torch

    if dtype is None or next(model.parameters()).dtype == dtype:
        yield model
        return
    clone = int8_copy(model) if dtype == torch.int8 else copy.deepcopy(model).to(dtype)
    # The trainer replaces `forward` on the instance (TRL's fused LM head, accelerate's autocast wrapper) with
    # closures over the *original* model's forward; a deep copy keeps them, and would run the training weights.
    for module in clone.modules():
        module.__dict__.pop("forward", None)
    try:
        yield clone
    finally:
        del clone


def _is_trls_fused_head(forward) -> bool:
    """``forward`` is TRL's fused-LM-head forward (``add_fused_lm_head``), which without ``fused_lm_head=True``
    calls the forward it replaced."""
    code = getattr(getattr(forward, "__func__", forward), "__code__", None)
    return code is not None and code.co_name == "_fused_forward" and "trl" in code.co_filename


@contextlib.contextmanager
def _class_forward(model, autocast):
    """Within this block ``model`` runs its class's own forward under the trainer's ``autocast``, where the
    forward the trainer put on the instance is one computing just that for generation: TRL's fused LM head
    (a pass-through without ``fused_lm_head``) under accelerate's mixed-precision wrapper (the trainer's
    autocast, outputs cast to fp32, which the decoder does anyway). The same numbers reach the decoder,
    and a model without instance patches is one :mod:`r1lab.decode_step` can step through. Any other
    patch, and any model off the CPU (where decode_step does not run), is left as it is."""
    patched = model.__dict__.get("forward")
    inner = model.__dict__.get("_original_forward", patched)  # accelerate keeps what it wrapped here
    on_cpu = next(model.parameters()).device.type == "cpu"  # where decode_step runs; elsewhere as it was
    known = (
        on_cpu
        and patched is not None
        and (_is_trls_fused_head(inner) or getattr(inner, "__func__", None) is type(model).forward)
    )
    if not known:
        yield
        return
    del model.forward
    try:
        with autocast():
            yield
    finally:
        model.forward = patched


def int8_copy(model):
    """A copy of ``model`` whose linear layers (attention, MLP, the vocabulary head) run int8 matmuls:
    torch's dynamic quantization, per-tensor int8 weights and activations quantized per call. A decode step
    reads a quarter of fp32's weight bytes.

    Only the module tree is copied: the copy shares the float tensors it keeps (embeddings, norms, rotary
    buffers) with ``model``, as decoding only reads them and training does not run meanwhile; copying all
    of the fp32 weights every generation batch would cost about half as much again as quantizing them."""
    import itertools
    import warnings

    import torch

    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    skeleton = copy.deepcopy(model, memo=shared)
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao; the API is still there in torch 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(
            skeleton, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )
