"""The GRPO stage: TRL's ``GRPOTrainer`` with r1lab's rewards, data and run logs.

Straight-line wiring: dataset -> rewards -> model -> trainer -> train (resuming from the last complete
checkpoint) -> save. The dataset's ``solution`` column reaches every reward function as a keyword argument
(``remove_unused_columns`` stays False).
"""

from __future__ import annotations

import logging
from pathlib import Path

from r1lab.config import RunConfig, StageConfig
from r1lab.distributed import main_process_first
from r1lab.train.callbacks import SolutionLogger, find_resume_checkpoint
from r1lab.train.common import (
    attach_trainer,
    build_trl_args,
    cuda_available,
    load_for_training,
    numerics_line,
    push_final_model,
    save_final_model,
    stage_callbacks,
    stage_data_options,
    train_from,
)

log = logging.getLogger(__name__)


def grpo_dataset(stage: StageConfig, run: RunConfig):
    """The stage's prompts (``prompt``, ``solution``, ``problem`` columns), kept to ``pass_rate_band`` and
    ordered by ``curriculum`` when the stage asks."""
    from r1lab.data import load_grpo_dataset

    dataset = load_grpo_dataset(
        stage.data or run.data, reply_prefix=run.reply_prefix, **stage_data_options(stage, run)
    )
    return curate_dataset(dataset, stage, run)


def curate_dataset(dataset, stage: StageConfig, run: RunConfig):
    """``dataset`` kept to the stage's pass-rate band and ordered easy to hard (its ``curriculum``), by the
    pass rates in ``pass_rate_file`` or, without one, the data's levels (the built-in task's among them)."""
    if stage.pass_rate_band is None and stage.curriculum == "none":
        return dataset
    from r1lab.data.pass_rates import curate, read_pass_rates

    rates = read_pass_rates(stage.pass_rate_file) if stage.pass_rate_file else None
    levels = None
    if stage.curriculum != "none" and rates is None:
        levels = _levels(stage, run)
        if len(levels) != len(dataset):  # the same loader and options: this cannot differ
            raise RuntimeError(f"{len(levels)} levels for {len(dataset)} rows")
    dataset, notes = curate(
        dataset,
        rates=rates,
        band=stage.pass_rate_band,
        curriculum=stage.curriculum,
        levels=levels,
        seed=run.seed,
    )
    for note in notes:
        log.info("%s: %s", stage.name, note)
    return dataset


def _levels(stage: StageConfig, run: RunConfig) -> list[str | None]:
    """Each training row's difficulty level as the source gives it (the built-in task's ``level``)."""
    from r1lab.data.load import load_records

    opts = stage_data_options(stage, run)
    records, _ = load_records(
        stage.data or run.data,
        kind="grpo",
        split=opts["split"],
        n=opts["n"],
        seed=opts["seed"],
        columns=opts["columns"],
        on_bad_row=opts["on_bad_row"],
    )
    return [r.level for r in records]


def grpo_rewards(stage: StageConfig) -> list:
    """The stage's reward functions, from the rewards registry."""
    from r1lab.rewards import WholeReply, get_reward_funcs

    return [WholeReply(f) for f in get_reward_funcs(stage.rewards, **stage.reward_params)]


def build_grpo_trainer(
    stage: StageConfig, run: RunConfig, *, model_spec: str, stage_dir: Path, reward_funcs=None, dataset=None
):
    """A ready ``GRPOTrainer`` for the stage (with r1lab's callbacks) and its tokenizer.

    ``reward_funcs`` / ``dataset`` replace the stage's own (for tests and library use).
    """
    from r1lab.train.rollouts import R1labGRPOTrainer

    stage_dir = Path(stage_dir)
    if dataset is None:
        with main_process_first():  # rank 0 fills the datasets cache, the others read it
            dataset = grpo_dataset(stage, run)
    reward_funcs = list(grpo_rewards(stage) if reward_funcs is None else reward_funcs)
    if not isinstance(reward_funcs[0], SolutionLogger):
        reward_funcs[0] = SolutionLogger(reward_funcs[0])
    # a curriculum is an order: TRL's sampler must not shuffle it
    ordered = {"shuffle_dataset": False} if stage.curriculum != "none" else {}
    args = build_trl_args(stage, run, stage_dir / "checkpoints", **ordered)
    model, tokenizer = load_for_training(model_spec, run)
    engine, rollout_dtype, why = rollout_choice(stage, run, args, model)
    trainer_class, dynamic = R1labGRPOTrainer, {}
    if stage.dynamic_sampling:
        from r1lab.train.dynamic_sampling import DynamicSampling, DynamicSamplingGRPOTrainer

        trainer_class = DynamicSamplingGRPOTrainer
        dynamic["dynamic_sampling"] = DynamicSampling(
            metric=_reward_index(stage, reward_funcs), max_rounds=stage.dynamic_sampling_max_rounds
        )
        log.info(
            "%s: dynamic sampling: groups whose %s reward has zero spread are dropped, up to %d generation "
            "rounds per batch",
            stage.name,
            stage.dynamic_sampling_metric,
            stage.dynamic_sampling_max_rounds,
        )
    trainer = trainer_class(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=stage_callbacks(run, stage),
        rollout_engine=engine,
        rollout_dtype=rollout_dtype,
        share_prompt_forward=stage.share_prompt_forward,
        **dynamic,
    )
    attach_trainer(trainer, stage)
    correction = trainer.correction()
    if correction is not None:
        why += f", importance-sampling corrected ({correction.describe()})"
    log.info(
        "%s: rollouts with %s's decoder%s; %s",
        stage.name,
        trainer.rollout_engine,
        why,
        numerics_line(args, cuda=cuda_available() and run.device != "cpu"),
    )
    return trainer, tokenizer


def _reward_index(stage: StageConfig, reward_funcs: list) -> str | int:
    """``dynamic_sampling_metric`` as the trainer takes it: ``"total"``, or the reward's column (the
    stage's rewards are the trainer's reward functions, in order)."""
    metric = stage.dynamic_sampling_metric
    if metric == "total":
        return metric
    if len(reward_funcs) == len(stage.rewards) and metric in stage.rewards:
        return stage.rewards.index(metric)
    return metric  # reward functions given by the caller: matched by name in the trainer


def rollout_choice(stage: StageConfig, run: RunConfig, args, model) -> tuple[str, object, str]:
    """``(engine, dtype or None, why)`` for the stage's rollouts from ``rollout_engine`` / ``rollout_dtype``.

    ``auto``: r1lab's decoder unless vLLM generates, decoding the learner's own weights in its own precision
    (under its bf16 autocast where it has one), except for a learner in plain fp32 on a CPU with native bf16:
    there a bf16 copy of the weights, made once per generation batch, decodes faster. Under bf16 autocast the
    decoder multiplies with bf16 weights packed once per call (``r1lab.prepacked``) and measured faster than
    the bf16 copy (8.8-8.9 against 9.7-10.1 s a step, docs/grpo-speed.md). Either way the loss corrects for
    what differs from the learner's forward (``rollout_mismatch``).
    ``int8``: a copy with int8 linear layers, made once per generation batch (``torch.int8`` stands for it).
    """
    import torch

    from r1lab.models import cpu_has_fast_bf16, pick_dtype

    engine = stage.rollout_engine
    if engine == "auto":
        engine = "trl" if args.use_vllm else "r1lab"
    weights = next(model.parameters()).dtype
    if stage.rollout_dtype != "auto":
        dtype = torch.int8 if stage.rollout_dtype == "int8" else pick_dtype("cpu", stage.rollout_dtype)
        if dtype == torch.int8:  # measured on SmolLM2-135M: mean |log p/q| ~0.7 (docs/grpo-speed.md)
            return engine, dtype, " in int8 (rollout_dtype; it samples far from the learner, see |log p/q|)"
        why = f" in {str(dtype).removeprefix('torch.')} (rollout_dtype)"
        return engine, dtype, why + _attention_note(engine, model, dtype == torch.bfloat16)
    on_cpu = next(model.parameters()).device.type == "cpu"
    if engine == "r1lab" and on_cpu and weights == torch.float32 and cpu_has_fast_bf16():
        if args.bf16:
            why = " in the learner's precision (its fp32 weights under its bf16 autocast)"
            return engine, None, why + _attention_note(engine, model, True)
        why = " in bfloat16 (this CPU has native bf16; the learner is fp32)"
        return engine, torch.bfloat16, why + _attention_note(engine, model, True)
    return engine, None, f" in {str(weights).removeprefix('torch.')}"


def _attention_note(engine: str, model, bf16: bool) -> str:
    """Where r1lab's decoder will run bf16 attention in fp32 on this CPU (``decode_step.attention_in_fp32``),
    a note saying so for the run log."""
    from r1lab.decode_step import ATTENTION_ENV, attention_in_fp32

    on_cpu = next(model.parameters()).device.type == "cpu"
    if engine != "r1lab" or not on_cpu or not bf16 or not attention_in_fp32():
        return ""
    return (
        f", attention in fp32 (bf16 attention is slow on a CPU without AMX; {ATTENTION_ENV}=model for bf16)"
    )


def run_grpo(
    stage: StageConfig, run: RunConfig, *, model_spec: str, stage_dir: Path, reward_funcs=None, dataset=None
) -> Path:
    """Train ``model_spec`` with GRPO, resuming from the last complete checkpoint; returns
    ``stage_dir/model`` (written atomically at the end)."""
    stage_dir = Path(stage_dir)
    trainer, tokenizer = build_grpo_trainer(
        stage, run, model_spec=model_spec, stage_dir=stage_dir, reward_funcs=reward_funcs, dataset=dataset
    )
    resume = find_resume_checkpoint(stage_dir / "checkpoints")
    args = trainer.args
    log.info(
        "%s: GRPO on %d prompts, %s steps, %d generations each",
        stage.name,
        len(trainer.train_dataset),
        args.max_steps,
        args.num_generations,
    )
    train_from(trainer, resume, stage.name)
    model_dir = save_final_model(trainer, tokenizer, stage_dir / "model", run)
    push_final_model(stage, run, model_dir)
    return model_dir
