"""Trainer callbacks shared by the stages: the metrics/samples logs of a run, and checkpoints that are only
trusted once complete.

HF's Trainer writes ``checkpoint-N/`` file by file; a ``kill -9`` in the middle leaves a folder that looks like
a checkpoint but is not one. :class:`CompleteCheckpoints` drops a ``COMPLETE`` marker after the trainer has
finished writing (``on_save`` runs after the save), and :func:`find_resume_checkpoint` only ever returns a
marked checkpoint (and deletes unmarked ones, which the trainer would otherwise write into or rotate wrongly).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from r1lab.compat import recorded_logs
from r1lab.data.formatting import question_of
from r1lab.io import append_jsonl, atomic_write_text, damaged_weights, follow_umask
from r1lab.rewards.extract import completion_text

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


# What the one-line-per-log console shows, in order: (TRL's metric key, short label).
STEP_LINE_KEYS = (
    ("reward", "reward"),
    ("completions/mean_length", "length"),
    ("loss", "loss"),
    ("mean_token_accuracy", "token acc"),
    ("grad_norm", "grad"),
    ("learning_rate", "lr"),
)


def step_line(stage: str, step: int, max_steps: int, logs: dict) -> str | None:
    """The compact console line for one trainer log event (None for events without step metrics).

    >>> step_line("grpo", 3, 16, {"loss": 0.0123, "reward": 0.456, "completions/mean_length": 41.5,
    ...                           "learning_rate": 1e-05, "epoch": 0.1, "rewards/format/mean": 0.2})
    'grpo step 3/16: reward 0.456, length 41.5, loss 0.0123, lr 1e-05'
    >>> step_line("sft", 90, 90, {"train_runtime": 1234.5, "train_loss": 0.8})
    'sft: trained in 1234 s, mean loss 0.8'
    """
    if "train_runtime" in logs:
        loss = logs.get("train_loss")
        return f"{stage}: trained in {logs['train_runtime']:.0f} s" + (
            f", mean loss {loss:.3g}" if isinstance(loss, int | float) else ""
        )
    parts = [
        f"{label} {logs[key]:.3g}" for key, label in STEP_LINE_KEYS if isinstance(logs.get(key), int | float)
    ]
    sampled = _dynamic_sampling_part(logs)
    if sampled:
        parts.insert(1 if parts else 0, sampled)
    mismatch = _rollout_mismatch_part(logs)
    if mismatch:
        parts.append(mismatch)
    return f"{stage} step {step}/{max_steps}: " + ", ".join(parts) if parts else None


def _dynamic_sampling_part(logs: dict) -> str | None:
    """``groups 8/12 kept, 2 rounds, 33% zero-spread`` from dynamic sampling's metrics (None without them).

    >>> _dynamic_sampling_part({"dynamic_sampling/groups_kept": 2.0, "dynamic_sampling/groups_drawn": 6.0,
    ...     "dynamic_sampling/generation_rounds": 3.0, "dynamic_sampling/zero_spread_frac": 0.6667,
    ...     "dynamic_sampling/batch_full": 0.0})
    'groups 2/6 kept, 3 rounds, 67% zero-spread (cap reached)'
    """
    p = "dynamic_sampling/"
    kept, drawn = logs.get(p + "groups_kept"), logs.get(p + "groups_drawn")
    if not isinstance(kept, int | float) or not isinstance(drawn, int | float):
        return None
    text = f"groups {kept:.3g}/{drawn:.3g} kept"
    rounds, zero = logs.get(p + "generation_rounds"), logs.get(p + "zero_spread_frac")
    if isinstance(rounds, int | float):
        text += f", {rounds:.3g} round" + ("" if rounds == 1 else "s")
    if isinstance(zero, int | float):
        text += f", {zero:.0%} zero-spread"
    full = logs.get(p + "batch_full")
    if isinstance(full, int | float) and full < 1:
        text += " (cap reached)"
    return text


def _rollout_mismatch_part(logs: dict) -> str | None:
    """``|log p/q| 0.012 (max 0.45), 0.3% clipped``: how far low-precision rollouts (``q``) were from the
    learner (``p``), and the share of tokens whose importance ratio was truncated or masked (None without
    a correction).

    >>> _rollout_mismatch_part({"sampling/sampling_logp_difference/mean": 0.0123,
    ...     "sampling/sampling_logp_difference/max": 0.4512, "sampling/importance_sampling_ratio/clipped": 0.003})
    '|log p/q| 0.0123 (max 0.451), 0.3% clipped'
    """
    p = "sampling/"
    mean, top = logs.get(p + "sampling_logp_difference/mean"), logs.get(p + "sampling_logp_difference/max")
    if not isinstance(mean, int | float):
        return None
    text = f"|log p/q| {mean:.3g}" + (f" (max {top:.3g})" if isinstance(top, int | float) else "")
    clipped = logs.get(p + "importance_sampling_ratio/clipped")
    if isinstance(clipped, int | float):
        text += f", {clipped:.1%} clipped"
    return text


class StepLine(ProgressCallback):
    """The Trainer's progress bar with one compact line per log event instead of the stringified metrics dict
    (that dict goes to ``metrics.jsonl`` and TensorBoard in full). Without a bar (``disable_tqdm``), the line
    is logged."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_begin(self, args, state, control, **kwargs):
        if not args.disable_tqdm:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = step_line(self.stage, state.global_step, state.max_steps, logs)
        if line is None:
            return
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            log.info(line)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)


def quiet_console(trainer, stage: str) -> None:
    """Swap the Trainer's console printers (a dict per step) for :class:`StepLine`."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StepLine(stage))


class CompleteCheckpoints(TrainerCallback):
    """Mark each checkpoint complete once the trainer has written all of it."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if (path / "trainer_state.json").is_file():
                follow_umask(path)  # the Trainer's safetensors are 0600; final models are 0644 (umask 022)
                atomic_write_text(path / COMPLETE, f"{state.global_step}\n")
        return control


def find_resume_checkpoint(checkpoints_dir: str | Path, *, clean: bool = True) -> str | None:
    """The newest checkpoint under ``checkpoints_dir`` that was written completely, or None.

    Incomplete ones (no ``COMPLETE`` marker or no ``trainer_state.json``) are removed when ``clean``.

    >>> find_resume_checkpoint("/nonexistent") is None
    True
    """
    root = Path(checkpoints_dir)
    if not root.is_dir():
        return None
    good: list[tuple[int, Path]] = []
    for child in root.iterdir():
        m = _CKPT.match(child.name)
        if not m or not child.is_dir():
            continue
        if (child / COMPLETE).is_file() and (child / "trainer_state.json").is_file():
            good.append((int(m.group(1)), child))
        elif clean:
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", child)
            shutil.rmtree(child, ignore_errors=True)
    for _, child in sorted(good, reverse=True):  # newest first; a damaged one is passed over, once, loudly
        damaged = damaged_weights(child)
        if damaged is None:
            return str(child)
        log.warning(
            "checkpoint %s is damaged (%s); %s",
            child,
            damaged,
            "removing it and trying the one before" if clean else "trying the one before",
        )
        if clean:
            shutil.rmtree(child, ignore_errors=True)
    return None


class RunLog(TrainerCallback):
    """Append every trainer log event to ``metrics.jsonl`` and a few sampled completions to ``samples.jsonl``.

    Metric keys are TRL's, unchanged, plus ``stage``, ``step`` and ``time``. Samples come from the GRPO
    trainer's own record of the last generation batch (prompt, completion, per-reward values; the
    reference answer is logged there by :class:`SolutionLogger`); set ``trainer`` after constructing it.
    """

    def __init__(self, run_dir: str | Path, stage: str, *, samples_per_log: int = 4):
        self.metrics_path = Path(run_dir) / "metrics.jsonl"
        self.samples_path = Path(run_dir) / "samples.jsonl"
        self.stage = stage
        self.samples_per_log = samples_per_log
        self.trainer = None
        self._last_batch: tuple | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        row = {"stage": self.stage, "step": state.global_step, "time": round(time.time(), 3)}
        row.update({k: v for k, v in logs.items() if k not in row})
        append_jsonl(self.metrics_path, row)
        self._write_samples(state.global_step)
        return control

    def _write_samples(self, step: int) -> None:
        recorded = recorded_logs(self.trainer)
        if not recorded or not recorded.get("completion"):
            return
        prompts, completions = list(recorded["prompt"]), list(recorded["completion"])
        key = (len(completions), completion_text(completions[-1]), completion_text(completions[0]))
        if key == self._last_batch:  # same generation batch as the last log event
            return
        self._last_batch = key
        rewards = {name: list(values) for name, values in recorded["rewards"].items()}
        solutions = list(recorded.get("extra", {}).get("solution", []))
        n = len(completions)
        # Spread the picks over the batch so different prompts show up.
        picks = sorted(
            {round(i * (n - 1) / max(1, self.samples_per_log - 1)) for i in range(self.samples_per_log)}
        )
        for i in picks[:n]:
            append_jsonl(
                self.samples_path,
                {
                    "stage": self.stage,
                    "step": step,
                    "prompt": question_of(prompts[i]),
                    "completion": completion_text(completions[i]),
                    "solution": solutions[i] if i < len(solutions) else None,
                    "rewards": {name: _num(v[i]) for name, v in rewards.items() if i < len(v)},
                },
            )


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f  # NaN (a reward that returned None) -> null


class SolutionLogger:
    """Wraps a reward function so the reference answer is recorded next to each sampled completion.

    Behaves exactly like the wrapped function (same ``__name__``, same return); it only calls TRL's
    ``log_extra`` hook, which GRPOTrainer passes to every reward function.
    """

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, completions, **kwargs):
        log_extra = kwargs.get("log_extra")
        if log_extra is not None and "solution" in kwargs:
            log_extra("solution", [str(s) for s in kwargs["solution"]])
        return self.fn(completions, **kwargs)
