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


# The function TRL's fused LM head (``add_fused_lm_head``) calls for per-token log-probs, looked up in its module
# on every call: r1lab.train.lm_head stands in for it on a CPU while r1lab's loss runs.
TRL_LOG_PROB_HEAD = ("trl.trainer.utils", "_ChunkedLogProbFunction")
LOG_PROB_HEAD_PARAMS = [
    "ctx",
    "hidden",
    "weight",
    "bias",
    "targets",
    "temperature",
    "chunk_size",
    "final_logit_softcapping",
    "logit_scale",
    "outputs",
]


@functools.cache
def log_prob_head_problems() -> tuple[str, ...]:
    """What no longer holds of TRL's fused LM head for r1lab's CPU head to stand in (empty: all): the function
    is a module global of ``trl.trainer.utils`` that the head looks up when called, with the same arguments,
    returning log-probs, entropy and three more optional outputs."""
    import importlib

    module, name = TRL_LOG_PROB_HEAD
    try:
        holder = importlib.import_module(module)
        function = getattr(holder, name)
        from trl.kernels import chunked_logprob
    except (ImportError, AttributeError) as e:
        return (f"{module}.{name} is gone ({e})",)
    problems = []
    params = list(inspect.signature(function.forward).parameters)
    if params != LOG_PROB_HEAD_PARAMS:
        problems.append(f"{name}.forward{tuple(params)} is not {tuple(LOG_PROB_HEAD_PARAMS)}")
    if getattr(chunked_logprob, "OPTIONAL_OUTPUTS", None) != (
        "entropy",
        "log_sum_sq_probs",
        "mean_logits",
        "is_top1",
    ):
        problems.append("trl.kernels.chunked_logprob.OPTIONAL_OUTPUTS changed")
    if f"{name}.apply(" not in inspect.getsource(holder.add_fused_lm_head):
        problems.append(f"add_fused_lm_head no longer calls {name}.apply")
    return tuple(problems)


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


def parameters_freed_after_forward(trainer) -> str | None:
    """The sharding that frees each module's gathered weights after its forward (FSDP, DeepSpeed ZeRO-3),
    or None. Their backward hooks gather the weights again for the module's own backward only."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return "FSDP"
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = getattr(getattr(trainer.accelerator, "state", None), "deepspeed_plugin", None)
        if getattr(plugin, "zero_stage", None) == 3:
            return "DeepSpeed ZeRO-3"
    return None


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


# ------------------------------------------------------------------- checked where users run them
# The two GRPOTrainer hooks r1lab replaces outright (r1lab.train.rollouts), with their full signatures
# (names, kinds and defaults; annotations aside) in the tested TRL (constraints.txt). R1labGRPOTrainer checks
# them at construction (:func:`grpo_hook_problems`): on any difference both hooks fall back to TRL's own.
GRPO_HOOK_SIGNATURES = {
    "_generate_single_turn": "(self, prompt_ids, images, multimodal_fields, num_generations, "
    "has_tool_images=False)",
    "_get_per_token_logps_and_entropies": "(self, model, input_ids, attention_mask, logits_to_keep, "
    "batch_size=None, compute_entropy=False, compute_aux_loss=False, pixel_values=None, image_grid_thw=None, "
    "num_images=None, pixel_attention_mask=None, spatial_shapes=None, num_tiles=None, image_sizes=None, "
    "token_type_ids=None, mm_token_type_ids=None, image_position_ids=None)",
}
# What those hooks read of a constructed trainer (several with getattr defaults, which would hide a rename),
# of its args, and import from TRL's private modules.
GRPO_HOOK_ATTRIBUTES = (
    "_dist",
    "_tokenizer",
    "accelerator",
    "eos_token_ids",
    "generation_config",
    "max_completion_length",
    "model_wrapped",
    "processing_class",
    "rollout_func",
    "tools",
    "use_transformers_continuous_batching",
    "use_vllm",
)
GRPO_HOOK_ARGS = ("ds3_gather_for_generation", "gradient_checkpointing", "gradient_checkpointing_kwargs")
GRPO_HOOK_IMPORTS = {
    "trl.extras.profiling": "profiling_context",
    "trl.models": "unwrap_model_for_generation",
    # the fused LM head that answers `model(..., labels=..., fused_lm_head=True)` with .log_probs/.entropy
    "trl.trainer.grpo_trainer": "add_fused_lm_head",
}


def signature_text(fn) -> str:
    """``fn``'s signature without annotations: ``(self, a, b=None)``."""
    sig = inspect.signature(fn)
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def grpo_hook_problems(trainer) -> list[str]:
    """What of r1lab's GRPO hooks does not fit ``trainer`` (a constructed GRPOTrainer) and the installed
    TRL: a hook's full signature, an attribute the hooks read, an import from TRL's private modules.
    Empty when all fit."""
    import importlib

    from trl import GRPOTrainer

    problems = []
    for name, expected in GRPO_HOOK_SIGNATURES.items():
        method = getattr(GRPOTrainer, name, None)
        if method is None:
            problems.append(f"GRPOTrainer.{name} is gone")
        elif signature_text(method) != expected:
            problems.append(f"GRPOTrainer.{name}{signature_text(method)} is not {name}{expected}")
    problems += [
        f"GRPOTrainer has no attribute {a!r}" for a in GRPO_HOOK_ATTRIBUTES if not hasattr(trainer, a)
    ]
    args = getattr(trainer, "args", None)
    problems += [f"GRPOConfig has no field {a!r}" for a in GRPO_HOOK_ARGS if not hasattr(args, a)]
    for module, name in GRPO_HOOK_IMPORTS.items():
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            problems.append(f"{module}.{name} is gone")
    return problems


def profiling_context(trainer, name: str):
    """TRL's profiling context (timings in TRL's logs) for a block of ``trainer``'s work."""
    from trl.extras.profiling import profiling_context as context

    return context(trainer, name)


def unwrap_for_generation(trainer):
    """The trainer's model unwrapped for generation the way TRL's own generation does (DDP, ZeRO-3
    gathering, FSDP)."""
    from trl.models import unwrap_model_for_generation

    return unwrap_model_for_generation(
        trainer.model_wrapped,
        trainer.accelerator,
        gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
    )
