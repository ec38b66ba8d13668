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
"""

from __future__ import annotations

import contextlib
import copy
import logging

from trl import GRPOTrainer

from r1lab.compat import summon_full_params, trainer_tokenizer
from r1lab.decoding import (
    decode_shared_prefix,
    eval_mode,
    fast_decode_supported,
    group_repeats,
    sampling_from_generation_config,
)

log = logging.getLogger(__name__)

ROLLOUT_ENGINES = ("r1lab", "trl")


class R1labGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with r1lab's rollout engine. ``rollout_engine="trl"`` keeps TRL's generation;
    ``rollout_dtype`` (a torch dtype or None) decodes with a copy of the weights in that dtype (bf16 on
    CPUs with native bf16) while training keeps its own."""

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
        # gradient checkpointing recomputes without a KV cache, so the shared prompt forward cannot apply
        self.share_prompt_forward = share_prompt_forward and not self.args.gradient_checkpointing
        self._fallback_logged = False
        self.sampling, why = sampling_from_generation_config(self.generation_config)
        if rollout_engine == "r1lab":
            why = why or self._unsupported_setup()
            if why:
                self.rollout_engine = "trl"
                log.info("GRPO rollouts: TRL's generation (r1lab's decoder does not support %s)", why)

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
        from trl.extras.profiling import profiling_context
        from trl.models import unwrap_model_for_generation

        with (
            profiling_context(self, "r1lab.decode"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            summon_full_params(self),
            _decoding_copy(unwrapped, self.rollout_dtype) as model,
        ):
            completion_ids = rollout(
                model,
                prompt_ids,
                sampling=self.sampling,
                max_new_tokens=self.max_completion_length,
                eos=set(self.eos_token_ids),
                pad_id=trainer_tokenizer(self).pad_token_id,
            )
        return completion_ids, None

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
        :mod:`r1lab.train.shared_prompt`) for text-only batches."""
        if self.share_prompt_forward and not compute_aux_loss and all(v is None for v in multimodal.values()):
            from r1lab.train.shared_prompt import shared_prompt_logps

            shared = shared_prompt_logps(
                model, input_ids, attention_mask, logits_to_keep, autocast=self.accelerator.autocast
            )
            if shared is not None:
                logps, entropies = shared
                return logps, (entropies if compute_entropy else None), None
        return super()._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=batch_size,
            compute_entropy=compute_entropy,
            compute_aux_loss=compute_aux_loss,
            **multimodal,
        )


def rollout(
    model, prompt_ids, *, sampling, max_new_tokens: int, eos: set[int], pad_id: int
) -> list[list[int]]:
    """Completion token ids (cut after the first EOS, which is kept) for each row of ``prompt_ids``, in
    order; identical consecutive rows (a prompt's ``num_generations`` copies) are prefilled once."""
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
        )


@contextlib.contextmanager
def _decoding_copy(model, dtype):
    """``model`` itself, or (``dtype`` differing from its weights') a copy in ``dtype`` for this
    generation batch: the weights change every optimizer step, so the copy is made anew each time."""
    if dtype is None or next(model.parameters()).dtype == dtype:
        yield model
        return
    clone = copy.deepcopy(model).to(dtype)
    try:
        yield clone
    finally:
        del clone
