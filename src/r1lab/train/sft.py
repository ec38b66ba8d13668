"""The SFT stage: TRL's ``SFTTrainer`` on reasoning traces, loss on the assistant's answer only.

Each ``messages`` conversation (system, user, assistant) is split into TRL's conversational
prompt/completion form: ``prompt`` = the turns before the assistant, ``completion`` = the assistant turn.
SFTTrainer then masks the prompt (``completion_only_loss``, on by default for that form). We chose this over
``assistant_only_loss`` because it works with any chat template; ``assistant_only_loss`` needs
``{% generation %}`` markers that a user-supplied model's template may lack.
"""

from __future__ import annotations

import logging
from pathlib import Path

from r1lab.config import RunConfig, StageConfig
from r1lab.distributed import main_process_first
from r1lab.errors import UserError
from r1lab.train.callbacks import find_resume_checkpoint
from r1lab.train.common import (
    attach_trainer,
    build_trl_args,
    load_for_training,
    push_final_model,
    save_final_model,
    stage_callbacks,
    stage_data_options,
    train_from,
)

log = logging.getLogger(__name__)


def to_prompt_completion(example: dict) -> dict:
    """``{"messages": [...]}`` -> ``{"prompt": [...], "completion": [last assistant turn]}``.

    >>> to_prompt_completion({"messages": [{"role": "user", "content": "1+1?"},
    ...                                    {"role": "assistant", "content": "2"}]})["completion"]
    [{'role': 'assistant', 'content': '2'}]
    """
    messages = example["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise UserError(
            "an SFT example does not end with an assistant turn",
            hint="each `messages` list must end with {'role': 'assistant', 'content': ...}",
        )
    return {"prompt": list(messages[:-1]), "completion": [messages[-1]]}


def rows_needed(args) -> int | None:
    """How many examples a step-limited SFT stage reads: ``max_steps`` x the global batch; ``None`` (all)
    when it trains by epochs or packs several examples into one sequence.

    >>> from types import SimpleNamespace as A
    >>> rows_needed(A(max_steps=2, per_device_train_batch_size=8, gradient_accumulation_steps=2,
    ...               world_size=1, packing=False))
    32
    """
    if getattr(args, "packing", False) or args.max_steps is None or args.max_steps <= 0:
        return None
    return (
        args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    )


def sft_dataset(stage: StageConfig, run: RunConfig, *, limit: int | None = None):
    """The stage's conversations, in prompt/completion form. ``stage:<rs>`` reads that stage's data.jsonl.
    Without the stage's own ``n``, at most ``limit`` rows are read (those its steps use, see
    :func:`rows_needed`): a one-step stage does not tokenize 5,000 examples."""
    import datasets

    src = stage.data or run.data
    if src.startswith("stage:"):
        path = run.run_dir / src.split(":", 1)[1] / "data.jsonl"
        from r1lab.io import read_jsonl

        rows = list(read_jsonl(path)) if path.is_file() else []
        if not rows:
            raise UserError(
                f"stage {stage.name!r}: {src} produced no examples ({path})",
                hint="its model solved no prompts; give it more prompts (n), samples "
                "(num_samples) or a better model before it",
            )
        if stage.n:
            rows = rows[: stage.n]
        ds = datasets.Dataset.from_list([{"messages": r["messages"]} for r in rows])
    else:
        from r1lab.data import load_sft_dataset

        options = stage_data_options(stage, run)
        options["n"] = options["n"] or limit
        ds = load_sft_dataset(src, **options)
    return ds.map(to_prompt_completion, remove_columns=ds.column_names)


def build_sft_trainer(stage: StageConfig, run: RunConfig, *, model_spec: str, stage_dir: Path, dataset=None):
    """A ready ``SFTTrainer`` for the stage (with r1lab's callbacks) and its tokenizer."""
    from trl import SFTTrainer

    stage_dir = Path(stage_dir)
    args = build_trl_args(stage, run, stage_dir / "checkpoints")
    if dataset is None:
        with main_process_first():  # rank 0 fills the datasets cache, the others read it
            dataset = sft_dataset(stage, run, limit=rows_needed(args))
    model, tokenizer = load_for_training(model_spec, run)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=stage_callbacks(run, stage),
    )
    attach_trainer(trainer, stage)
    if len(trainer.train_dataset) == 0:  # TRL drops examples whose completion was cut off entirely
        raise UserError(
            f"stage {stage.name!r}: all {len(dataset)} SFT examples lost their whole completion to truncation "
            f"at max_length={args.max_length}",
            hint="raise the stage's max_length (prompts with the system prompt are longer than it), "
            "or shorten the system prompt",
        )
    return trainer, tokenizer


def run_sft(stage: StageConfig, run: RunConfig, *, model_spec: str, stage_dir: Path, dataset=None) -> Path:
    """Fine-tune ``model_spec`` (the previous stage's output) on the stage's traces, resuming from the last
    complete checkpoint; returns ``stage_dir/model``."""
    stage_dir = Path(stage_dir)
    trainer, tokenizer = build_sft_trainer(
        stage, run, model_spec=model_spec, stage_dir=stage_dir, dataset=dataset
    )
    resume = find_resume_checkpoint(stage_dir / "checkpoints")
    log.info(
        "%s: SFT on %d examples, %s steps", stage.name, len(trainer.train_dataset), trainer.args.max_steps
    )
    train_from(trainer, resume, stage.name)
    model_dir = save_final_model(trainer, tokenizer, stage_dir / "model", run)
    push_final_model(stage, run, model_dir)
    return model_dir
