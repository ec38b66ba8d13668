"""Every use r1lab makes of a private TRL / transformers API, in one place.

Private names change without notice between releases. Keeping them here means an upgrade breaks in one
module, and ``tests/test_compat.py`` checks each of them against the installed versions (names, signatures),
so ``make upgrade`` fails loudly at the line that changed instead of deep inside a training run.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

# GRPOTrainer methods r1lab overrides (r1lab.train.rollouts), with the parameters it relies on, in order.
GRPO_OVERRIDES = {
    "_generate_single_turn": ["self", "prompt_ids", "images", "multimodal_fields", "num_generations"],
    "_get_per_token_logps_and_entropies": [
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
        "compute_entropy",
        "compute_aux_loss",
    ],
    # r1lab.train.dynamic_sampling: filters groups on the scored batch, reads the gathered rewards
    "_generate_and_score_completions": ["self", "inputs"],
    "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
}
# GRPOTrainer attributes r1lab reads (set in GRPOTrainer.__init__).
GRPO_ATTRIBUTES = (
    "_dist",
    "_tokenizer",
    "eos_token_ids",
    "generation_config",
    "max_completion_length",
    # r1lab.train.dynamic_sampling
    "_metrics",
    "_step",
    "num_generations",
    "num_iterations",
    "reward_func_names",
    "reward_weights",
)


def grpo_override_problems() -> list[str]:
    """What no longer matches in the installed TRL (empty when r1lab's overrides still fit)."""
    from trl import GRPOTrainer

    problems = []
    for name, expected in GRPO_OVERRIDES.items():
        method = getattr(GRPOTrainer, name, None)
        if method is None:
            problems.append(f"GRPOTrainer.{name} is gone")
            continue
        params = list(inspect.signature(method).parameters)
        if params[: len(expected)] != expected:
            problems.append(f"GRPOTrainer.{name}{tuple(params)} no longer starts with {tuple(expected)}")
    return problems


def cache_argument(model) -> str:
    """The name a model's ``forward`` takes its KV cache under: ``cache`` since transformers 5.24
    (``past_key_values`` is deprecated there and goes in 5.40), ``past_key_values`` before."""
    return _cache_argument(type(unwrap(model)))


def unwrap(model):
    """The transformers model inside DDP (``.module``) and PEFT (``get_base_model``) wrappers."""
    while not hasattr(model, "config") and hasattr(model, "module"):  # DDP wraps the model
        model = model.module
    base = getattr(model, "get_base_model", None)  # PEFT
    return base() if callable(base) else model


@functools.cache
def _cache_argument(cls) -> str:
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def summon_full_params(trainer):
    """TRL's FSDP full-parameter context for generation (a no-op without FSDP)."""
    dist = getattr(trainer, "_dist", None)
    if dist is None:
        return contextlib.nullcontext()
    return dist.summon_full_params(trainer.model_wrapped, recurse=False)


def trainer_tokenizer(trainer):
    """The text tokenizer of a GRPOTrainer (its processing class, or the processor's tokenizer)."""
    return getattr(trainer, "_tokenizer", None) or trainer.processing_class


def load_checkpoint_weights(trainer, checkpoint: str) -> None:
    """Load a checkpoint's weights into the trainer's model with the Trainer's own loader (safetensors,
    sharded, PEFT), without training."""
    trainer._load_from_checkpoint(checkpoint)


def recorded_logs(trainer):
    """The Trainer's in-flight log buffer when it keeps one (else None)."""
    return getattr(trainer, "_logs", None)
