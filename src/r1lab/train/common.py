"""What the GRPO and SFT stages share: turning a stage's fields into TRL's config, the callbacks, and
writing the final model atomically."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from r1lab.compat import load_checkpoint_weights
from r1lab.config import RunConfig, StageConfig, trl_config_class
from r1lab.distributed import cuda_available
from r1lab.errors import UserError
from r1lab.io import atomic_dir, hub_offline
from r1lab.models import cpu_has_fast_bf16
from r1lab.prompts import write_model_prompt
from r1lab.train.callbacks import CompleteCheckpoints, RunLog, quiet_console

log = logging.getLogger(__name__)


def trl_defaults(stage: StageConfig, run: RunConfig, output_dir: Path) -> dict[str, Any]:
    """r1lab's defaults for a TRL config; the recipe's own TRL fields override every one of them."""
    cuda = cuda_available() and run.device != "cpu"
    d: dict[str, Any] = {
        "output_dir": str(output_dir),
        "seed": run.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 10,
        "save_total_limit": 2,
        "report_to": ["tensorboard"],
        # bf16 autocast where the hardware runs bf16 matmuls natively: on CUDA, and on CPUs with
        # avx512_bf16/amx (~2.2x fp32 there; without them bf16 is emulated and ~150x slower).
        "bf16": bool(_cuda_bf16()) if cuda else cpu_has_fast_bf16(),
        "use_cpu": not cuda,
        "gradient_checkpointing": run.gradient_checkpointing,
        "max_steps": 20,
        # r1lab prints a line per logged step; the Trainer's bar only helps where it can redraw itself
        "disable_tqdm": not sys.stderr.isatty(),
    }
    if stage.kind == "grpo":
        d.update(
            {
                "num_generations": 4,
                "per_device_train_batch_size": 4,
                "max_completion_length": 128,
                "remove_unused_columns": False,
                "log_completions": False,
            }
        )
    return d


def _cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def build_trl_args(stage: StageConfig, run: RunConfig, output_dir: str | Path, **extra):
    """``GRPOConfig`` / ``SFTConfig`` for a stage; TRL's own errors become :class:`UserError`."""
    cls = trl_config_class(stage.kind)
    kwargs = trl_defaults(stage, run, Path(output_dir))
    if "num_train_epochs" in stage.args and "max_steps" not in stage.args:
        kwargs["max_steps"] = -1  # the user asked for epochs: r1lab's step budget must not cut them short
    kwargs.update(stage.args)
    kwargs.update(extra)
    # TensorBoard goes to runs/<name>/tb/<stage> through our own callback (see tensorboard_callback).
    kwargs["report_to"] = [r for r in _as_list(kwargs.get("report_to")) if r != "tensorboard"]
    _check_trackers(stage, kwargs["report_to"])
    if kwargs.get("push_to_hub"):
        # The Trainer would push its output_dir (checkpoints/); r1lab pushes the final model instead.
        kwargs["push_to_hub"] = False
        if hub_offline():
            raise UserError(
                f"stage {stage.name!r}: push_to_hub is on but HF_HUB_OFFLINE is set",
                hint="unset HF_HUB_OFFLINE (and log in with `hf auth login`), or drop push_to_hub",
            )
    if stage.kind == "grpo" and kwargs.get("remove_unused_columns"):
        raise UserError(
            f"stage {stage.name!r}: remove_unused_columns: true would drop the `solution` column before the "
            "rewards see it (the seed project r1lab grew from trained on a constant reward that way)",
            hint="remove the field or set it to false",
        )
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise UserError(
            f"stage {stage.name!r}: TRL rejects the settings: {err}",
            hint="fix the field it names in the recipe or the override",
        ) from err


# report_to names whose package is not an r1lab dependency: the module to look for, and its pip name.
TRACKER_PACKAGES = {
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "clearml": ("clearml", "clearml"),
    "neptune": ("neptune", "neptune"),
    "dvclive": ("dvclive", "dvclive"),
}


def _check_trackers(stage: StageConfig, report_to: list[str]) -> None:
    """A tracker whose package is missing is a one-line error now, not a traceback at the first log."""
    import importlib.util

    for name in report_to:
        module, pip_name = TRACKER_PACKAGES.get(name, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise UserError(
                f"stage {stage.name!r}: report_to {name} needs the {pip_name} package, which is not installed",
                hint=f"pip install {pip_name} (and log in), or drop {name} from report_to "
                "(runs/<name>/metrics.jsonl is always written)",
            )


def numerics_line(args, *, cuda: bool) -> str:
    """One log line saying which numerics a training stage runs with, and why."""
    if cuda:
        why = "CUDA"
    elif cpu_has_fast_bf16():
        why = "this CPU has native bf16"
    else:
        why = "this CPU has no native bf16 (avx512_bf16/amx): bf16 would be emulated"
    precision = "bf16 autocast" if args.bf16 else "fp16" if args.fp16 else "fp32"
    checkpointing = "on" if args.gradient_checkpointing else "off"
    return f"update in {precision} ({why}); gradient checkpointing {checkpointing}"


def wants_tensorboard(stage: StageConfig) -> bool:
    return "tensorboard" in _as_list(stage.args.get("report_to", ["tensorboard"]))


def _as_list(v) -> list[str]:
    if v is None or v == "none":
        return []
    if isinstance(v, str):
        return ["tensorboard", "wandb", "trackio"] if v == "all" else [v]
    return list(v)


def push_final_model(stage: StageConfig, run: RunConfig, model_dir: Path) -> None:
    """With the stage's ``push_to_hub``, upload its final model (not its checkpoints) to the hub repo
    ``hub_model_id`` (default ``<run name>-<stage name>``). Main process only."""
    from r1lab.distributed import is_main_process

    if not stage.args.get("push_to_hub") or not is_main_process():
        return
    from huggingface_hub import HfApi

    repo = stage.args.get("hub_model_id") or f"{run.name}-{stage.name}"
    api = HfApi(token=stage.args.get("hub_token"))
    try:
        repo = api.create_repo(repo, exist_ok=True, private=stage.args.get("hub_private_repo")).repo_id
        api.upload_folder(
            repo_id=repo, folder_path=str(model_dir), commit_message=f"r1lab {run.name}: {stage.name}"
        )
    except Exception as err:  # network, auth, permissions: the model itself is safe on disk
        raise UserError(
            f"stage {stage.name!r}: pushing {model_dir} to the hub as {repo} failed: {err}",
            hint=f"log in (`hf auth login`) and retry with: hf upload {repo} {model_dir}",
        ) from err
    log.info("%s: pushed %s to the hub as %s", stage.name, model_dir, repo)


def stage_data_options(stage: StageConfig, run: RunConfig) -> dict[str, Any]:
    """How a training stage reads its data source: the keyword arguments every ``load_*_dataset`` takes."""
    return {
        "split": stage.split,
        "n": stage.n,
        "system_prompt": run.system_prompt,
        "seed": run.seed,
        "columns": stage.columns or None,
        "on_bad_row": stage.on_bad_row,
    }


def stage_callbacks(run: RunConfig, stage: StageConfig) -> list:
    """r1lab's callbacks for a training stage: the metrics/samples log, complete-checkpoint markers, and
    TensorBoard when the stage reports to it."""
    callbacks = [RunLog(run.run_dir, stage.name), CompleteCheckpoints()]
    tb = tensorboard_callback(run.run_dir, stage)
    return callbacks + ([tb] if tb is not None else [])


def attach_trainer(trainer, stage: StageConfig):
    """Finish wiring a built trainer: the run log reads its samples from it, and the console shows one
    compact line per log event instead of TRL's metrics dict. Returns the trainer."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, RunLog):
            callback.trainer = trainer
    quiet_console(trainer, stage.name)
    return trainer


def tensorboard_callback(run_dir: Path, stage: StageConfig):
    """A TensorBoard callback writing to ``runs/<name>/tb/<stage>`` (None if tensorboard is missing)."""
    from r1lab.distributed import is_main_process

    if not wants_tensorboard(stage) or not is_main_process():  # one writer: rank 0 (its logs are global)
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback
    except ImportError:  # pragma: no cover - tensorboard is a dependency
        log.warning("tensorboard is not installed; no TensorBoard logs")
        return None
    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(Path(run_dir) / "tb" / stage.name)))


def load_for_training(spec: str, run: RunConfig):
    """(model, tokenizer) to train from ``spec`` with the run's dtype/device/LoRA settings."""
    from r1lab.models import load_model

    return load_model(
        spec,
        dtype=run.dtype,
        device=run.device,
        trust_remote_code=run.trust_remote_code,
        lora=run.lora,
        gradient_checkpointing=run.gradient_checkpointing,
        for_training=True,
    )


def train_from(trainer, resume: str | None, stage_name: str) -> None:
    """``trainer.train``, resuming from ``resume`` (a complete checkpoint or None).

    A checkpoint that already reached ``max_steps`` (the run was killed after its last save, before the
    stage's model was written) is loaded as is: the HF Trainer would train one step more than asked.
    Under DeepSpeed / FSDP the weights only load into the engine that ``train`` builds, so there the
    Trainer's own resume (and its extra step) is kept.
    """
    import json

    sharded = sharded_engine(trainer)
    if resume:
        state = json.loads((Path(resume) / "trainer_state.json").read_text())
        done = trainer.args.max_steps > 0 and state.get("global_step", 0) >= trainer.args.max_steps
        if done and not sharded:
            log.info(
                "%s: %s already reached max_steps=%d; using it", stage_name, resume, trainer.args.max_steps
            )
            load_checkpoint_weights(trainer, resume)
            return
        log.info("%s: resuming from %s", stage_name, resume)
    trainer.train(resume_from_checkpoint=resume)


def sharded_engine(trainer) -> bool:
    """Whether the trainer's model lives in DeepSpeed's or FSDP's engine (weights load into it and gather out
    of it through the engine, not the module)."""
    return bool(getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False))


def save_final_model(trainer, tokenizer, final_dir: str | Path, run: RunConfig | None = None) -> Path:
    """Write the trained model + tokenizer to ``final_dir`` atomically (a plain HF checkpoint: LoRA adapters
    are merged so transformers and vLLM load it directly). Only the main process writes. With ``run``, the
    run's system prompt and reply prefix go beside the weights (:data:`r1lab.prompts.MODEL_PROMPT_FILE`), so
    ``r1lab eval/ask`` ask the model the way it was trained.

    Call it on every process: under DeepSpeed ZeRO-3 / FSDP gathering the full weights is collective, and the
    closing barrier keeps other processes from loading the model (next stage) before it is on disk."""
    from r1lab.distributed import wait_for_everyone

    final_dir = Path(final_dir)
    accelerator = getattr(trainer, "accelerator", None)
    model = accelerator.unwrap_model(trainer.model) if accelerator is not None else trainer.model
    state_dict = None
    # FSDP2 leaves DTensor shards in the module even on one process (save_pretrained of those fails with
    # "invalid python storage", seen on an H200), so a sharded engine always gathers.
    sharded = sharded_engine(trainer)
    if (
        accelerator is not None
        and not hasattr(model, "merge_and_unload")
        and (accelerator.num_processes > 1 or sharded)
    ):
        state_dict = accelerator.get_state_dict(trainer.model)  # collective; full weights on rank 0
    if trainer.is_world_process_zero():
        with atomic_dir(final_dir) as tmp:
            if hasattr(model, "merge_and_unload"):  # a PEFT model (replicated weights: DDP / ZeRO-2)
                if run is not None and run.save_adapter:
                    model.save_pretrained(tmp / "adapter")  # the adapter alone, loadable with peft
                model = model.merge_and_unload()
            model.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
            if run is not None:
                write_model_prompt(tmp, run.system_prompt, run.reply_prefix)
        log.info("saved %s", final_dir)
    wait_for_everyone()
    return final_dir
