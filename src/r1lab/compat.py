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
    # r1lab.train.rollouts: the importance-sampling correction of low-precision rollouts
    "_compute_loss": ["self", "model", "inputs"],
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
    # r1lab.train.rollouts: a property there, so TRL's assignment must stay an assignment
    "use_vllm",
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


def vllm_gate_problems() -> list[str]:
    """What no longer holds of the importance-sampling branch r1lab borrows from TRL's loss (empty: all).

    r1lab reads ``use_vllm`` as True inside ``GRPOTrainer._compute_loss`` only (r1lab.train.rollouts), to run
    TRL's branch that multiplies the per-token loss by ``inputs["importance_sampling_ratio"]``. That is safe
    while the branch is the loss's only ``use_vllm`` read, nothing the loss calls reads it, and the loss gets
    its log-probs from ``_get_per_token_logps_and_entropies`` (where r1lab computes the ratio) before it reads
    the ratio. The decoder's log-probs reach the loss as ``sampling_per_token_logps`` through
    ``_generate_single_turn``'s second return value.
    """
    from trl import GRPOTrainer

    problems = []
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    gated = [ln.strip() for ln in loss.splitlines() if "use_vllm" in ln and not ln.strip().startswith("#")]
    if len(gated) != 1 or "vllm_importance_sampling_correction" not in gated[0]:
        problems.append(
            f"GRPOTrainer._compute_loss reads use_vllm in {gated}, not once for the IS correction"
        )
    ratio_use = loss.find('* inputs["importance_sampling_ratio"]')
    logps_call = loss.find("self._get_per_token_logps_and_entropies(")
    if ratio_use < 0 or not 0 <= logps_call < ratio_use:
        problems.append("GRPOTrainer._compute_loss no longer reads the ratio after its log-prob forward")
    for name in ("compute_loss", "_get_per_token_logps_and_entropies", "get_off_policy_mask"):
        if "use_vllm" in inspect.getsource(getattr(GRPOTrainer, name)):
            problems.append(f"GRPOTrainer.{name} reads use_vllm (the loss would run it with the gate open)")
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    if 'output["sampling_per_token_logps"]' not in score:
        problems.append("GRPOTrainer no longer passes sampling_per_token_logps to the loss")
    generate = inspect.getsource(GRPOTrainer._generate)
    if "completion_ids, logprobs = self._generate_single_turn(" not in generate:
        problems.append("GRPOTrainer._generate no longer takes logprobs from _generate_single_turn")
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
