"""Run a recipe's stages in order, skipping finished ones and resuming an interrupted one.

Run directory (``runs/<name>/``)::

    config.yaml          the resolved recipe
    <stage>/model/       a training stage's final model (HF format; written atomically = the "done" marker)
    <stage>/checkpoints/ checkpoint-N/ with a COMPLETE marker once fully written
    <stage>/data.jsonl   a rejection-sampling stage's SFT data (+ stats.json)
    metrics.jsonl        one row per trainer log event (stage, step, time, TRL's keys unchanged)
    samples.jsonl        sampled completions during GRPO, with their rewards and reference answer
    tb/<stage>/          TensorBoard logs
    evals/<label>/       held-out evaluations behind metrics_before/after (resumable)
    summary.json         per stage: status, seconds, model, metrics_before, metrics_after, what it achieved
    report.html          written by r1lab.report at the end, when available

>>> from r1lab.config import load_config
>>> summary = run_pipeline(load_config("recipes/r1-zero.yaml", {"model": "tiny"}))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from r1lab import distributed
from r1lab.config import STAGE_NAME_RE, RunConfig, StageConfig, check_names, validate
from r1lab.data import check_source, load_eval_dataset
from r1lab.distributed import check_vllm, main_process_first, wait_for_everyone
from r1lab.errors import UserError
from r1lab.evaluate import evaluate
from r1lab.inference import ask, load_pair, progress
from r1lab.io import atomic_write_json, atomic_write_text, exclusive_lock, read_jsonl, remove_stale_temps
from r1lab.models import resolve_model
from r1lab.report import write_report
from r1lab.rewards import get_reward_funcs
from r1lab.stats import describe_test, paired_tests
from r1lab.summary import Metrics, StageEntry, Summary, metrics_of, read_summary, stage_entry

log = logging.getLogger(__name__)

is_main_process = distributed.is_main_process  # the process that writes run files


def check(run: RunConfig) -> RunConfig:
    """Validate the whole run before any model loads: each training stage's TRL config, reward parameters,
    and every data source a stage (or the held-out measurement) will read, with its size."""
    from r1lab.train.common import build_trl_args

    validate(run)
    for stage in run.stages:
        if stage.trains:
            build_trl_args(stage, run, run.run_dir / stage.name / "checkpoints")
            check_vllm(stage.args, where=f"{run.source or 'recipe'}: stage {stage.name!r}")
        if stage.kind == "grpo":  # reward parameters fail here, not after the base evaluation
            get_reward_funcs(stage.rewards, **stage.reward_params)
    for read in _data_reads(run):
        _check_data_source(*read)
    return run


def _data_reads(run: RunConfig) -> list[tuple]:
    """``(who, source, kind, split, n, columns, on_bad_row)`` for every dataset the run will read (rs reads
    like grpo)."""
    reads = []
    if run.eval_n > 0 and any(s.trains and s.evaluate for s in run.stages):
        where = "held-out measurement (eval_data, eval_n)"
        reads.append((where, run.eval_data, "eval", "test", run.eval_n, *heldout_read_options(run)))
    for stage in run.stages:
        if stage.kind in ("grpo", "sft", "rs"):
            source, kind, split = (
                stage.data or run.data,
                "sft" if stage.kind == "sft" else "grpo",
                stage.split,
            )
        elif stage.kind == "eval":
            source, kind, split = (
                stage.data or run.eval_data,
                "eval",
                stage.split if stage.split != "train" else "test",
            )
        else:
            continue
        if not source.startswith("stage:"):  # written by an earlier stage of this run
            where = f"stage {stage.name!r}"
            reads.append((where, source, kind, split, stage.n, stage.columns or None, stage.on_bad_row))
    return reads


def heldout_read_options(run: RunConfig) -> tuple[dict | None, str]:
    """``(columns, on_bad_row)`` for the held-out problems: those of the training stage whose file they are
    carved from (held-out rows follow the training data, so they share its layout and its bad-row policy)."""
    target = run.eval_data.rpartition(":rows=")[0] or run.eval_data
    for stage in run.stages:
        source = stage.data or run.data
        if stage.trains and (source.rpartition(":rows=")[0] or source) == target:
            return stage.columns or None, stage.on_bad_row
    return None, "error"


def _check_data_source(
    where: str, source: str, kind: str, split: str, n: int | None, columns: dict | None, on_bad_row: str
) -> None:
    """Load-check one source (cheap: files are read, the built-in task generated, nothing downloaded);
    fewer rows than ``n`` is said now, not after the stages before it have run."""
    available = check_source(source, kind=kind, split=split, n=n, columns=columns, on_bad_row=on_bad_row)
    if n and available is not None and available < n:
        log.warning(
            "%s: n=%d, but %s holds %d usable rows: it uses those %d", where, n, source, available, available
        )


# ------------------------------------------------------------------------------------- summary


def load_summary(run: RunConfig) -> Summary:
    return read_summary(run.run_dir / "summary.json", run.name, run.model)


def _entry(summary: Summary, stage: StageConfig) -> StageEntry:
    return stage_entry(summary, stage.name, stage.kind)


def _save_summary(run: RunConfig, summary: Summary) -> None:
    if is_main_process():
        order = {s.name: i for i, s in enumerate(run.stages)}
        summary["stages"].sort(key=lambda e: order.get(e.get("name"), len(order)))
        atomic_write_json(run.run_dir / "summary.json", summary)


# ------------------------------------------------------------------------------------ evaluation


def heldout_metrics(model: str, run: RunConfig, label: str) -> Metrics | None:
    """Accuracy, format rate, mean completion tokens on ``run.eval_n`` held-out problems (greedy)."""
    if run.eval_n <= 0:
        return None
    log.info(
        "measuring %s on %d held-out problems of %s (eval_n; --eval_n 0 skips these checks)",
        label,
        run.eval_n,
        run.eval_data,
    )
    result = _measure(
        model,
        run,
        source=run.eval_data,
        split="test",
        n=run.eval_n,
        out_dir=run_path(run, "evals", label),
        max_new_tokens=run.eval_max_new_tokens,
        batch_size=run.eval_batch_size,
        read_options=heldout_read_options(run),
    )
    return metrics_of(result)


def _measure(
    model: str,
    run: RunConfig,
    *,
    source: str,
    split: str,
    n: int | None,
    out_dir: Path,
    max_new_tokens: int,
    batch_size: int,
    temperature: float = 0.0,
    n_samples: int = 1,
    read_options: tuple[dict | None, str] = (None, "error"),
) -> dict:
    """Evaluate ``model`` on problems of ``source``, asked the run's way (system prompt, reply prefix),
    resumable in ``out_dir``, split over the processes under ``accelerate launch``."""
    with main_process_first():  # rank 0 fills the datasets cache, the others read it
        ds = load_eval_dataset(
            source,
            split=split,
            n=n,
            system_prompt=run.system_prompt,
            seed=run.seed,
            reply_prefix=run.reply_prefix,
            columns=read_options[0],
            on_bad_row=read_options[1],
        )
    # a bar with the time left in a terminal, a line every 30 s elsewhere; one process tells the story
    with progress(f"measuring {out_dir.name}", len(ds), disable=not is_main_process()) as on_progress:
        return evaluate(
            model,
            ds,
            n_samples=n_samples,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            out_dir=out_dir,
            seed=run.seed,
            across_processes=True,
            on_progress=on_progress,
        )


def stage_rewards(run: RunConfig, stage: str) -> list[float]:
    """The logged mean reward of each GRPO step of a stage, in order (from metrics.jsonl)."""
    path = run.run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    by_step: dict[int, float] = {}
    for row in read_jsonl(path):
        if row.get("stage") == stage and isinstance(row.get("reward"), int | float):
            by_step[int(row.get("step", 0))] = float(row["reward"])  # a resumed step's last value wins
    return [by_step[k] for k in sorted(by_step)]


def describe_progress(
    before: dict | None,
    after: dict | None,
    rewards: list[float],
    vs_base: dict | None = None,
    vs_input: dict | None = None,
) -> str:
    """What a training stage changed, judged against its own input model: one honest verdict line
    (\"learned nothing\" when nothing moved), then, when the input was not the base model, a second line
    comparing with the base model.

    The reward trend compares the mean of the first and last quarter of logged steps. A held-out change
    counts when a paired test of the stage against its input model on the same problems (``vs_input``, from
    :func:`r1lab.stats.paired_tests`) finds it significant (p < 0.05, more problems gained than lost);
    without paired results, when it exceeds one standard error of the accuracy estimate (sqrt(p(1-p)/n)).
    ``vs_base`` never decides the verdict: an SFT -> GRPO run whose GRPO stage lost to the SFT model did
    not improve, however far above the base model it still is.

    >>> describe_progress({"accuracy": 0.1, "format_rate": 0.0, "n_items": 50},
    ...                   {"accuracy": 0.1, "format_rate": 0.0, "n_items": 50}, [0.2, 0.2, 0.21, 0.2])
    'learned nothing measurable: reward 0.20 -> 0.20; held-out accuracy 10.0% -> 10.0%, format 0.0% -> 0.0%'
    """
    parts, moved = [], False
    if len(rewards) >= 2:
        q = max(1, len(rewards) // 4)
        first, last = sum(rewards[:q]) / q, sum(rewards[-q:]) / q
        parts.append(f"reward {first:.2f} -> {last:.2f}")
        moved |= last - first > 0.05
    if before and after and before.get("accuracy") is not None and after.get("accuracy") is not None:
        n = max(1, int(after.get("n_items") or 1))
        a0, a1 = float(before["accuracy"]), float(after["accuracy"])
        f0, f1 = float(before.get("format_rate") or 0), float(after.get("format_rate") or 0)
        se = max(((a0 * (1 - a0)) / n) ** 0.5, 1.0 / n)
        fse = max(((f0 * (1 - f0)) / n) ** 0.5, 1.0 / n)
        parts.append(f"held-out accuracy {a0:.1%} -> {a1:.1%}, format {f0:.1%} -> {f1:.1%}")
        if vs_input is None:
            moved |= (a1 - a0) > se or (f1 - f0) > fse
    if vs_input:
        which = "vs base (its input model)" if vs_input is vs_base else "vs its input model"
        parts.append(f"{which}: " + _describe_tests(vs_input))
        significant = [t for t in vs_input.values() if t["p"] < 0.05]
        gained = any(t["gained"] > t["lost"] for t in significant)
        lost = any(t["lost"] > t["gained"] for t in significant)
        # a significant loss is no improvement, whatever the reward did
        moved = (moved or gained) and not lost
    if not parts:
        return "no measurements"
    verdict = ("improved: " if moved else "learned nothing measurable: ") + "; ".join(parts)
    if vs_base and vs_base is not vs_input:
        verdict += "\nvs base: " + _describe_tests(vs_base)
    return verdict


def _describe_tests(tests: dict) -> str:
    return ", ".join(
        describe_test(name, tests[key]) for key, name in (("accuracy", "accuracy"), ("format_rate", "format"))
    )


def input_label(run: RunConfig, model_in: str | None) -> str | None:
    """The ``evals/`` label of the held-out measurement of a stage's input model: ``base`` for the run's
    model, a training stage's name for that stage's output; None when it was not measured in this run."""
    if model_in is None:
        return None
    if model_in == run.model:
        return "base"
    for stage in run.stages:
        if stage.trains and model_in == str(run.run_dir / stage.name / "model"):
            return stage.name
    return None


def stage_verdict(
    run: RunConfig, stage: StageConfig, model_in: str | None, before: Metrics | None, after: Metrics | None
) -> tuple[str, dict | None, dict | None]:
    """``(achieved, vs_base, vs_input)`` of a trained stage: paired tests on the held-out problems against
    the base model and against its own input model (the same problems, matched by key), and the verdict
    :func:`describe_progress` draws from them."""
    evals = run.run_dir / "evals"
    vs_base = paired_tests(evals / "base", evals / stage.name) if after else None
    label = input_label(run, model_in)
    vs_input = None
    if after and label is not None:
        vs_input = vs_base if label == "base" else paired_tests(evals / label, evals / stage.name)
    achieved = describe_progress(before, after, stage_rewards(run, stage.name), vs_base, vs_input)
    return achieved, vs_base, vs_input


# -------------------------------------------------------------------------------------- stages


def _run_training(stage: StageConfig, run: RunConfig, model: str, stage_dir: Path) -> Path:
    if stage.kind == "grpo":
        from r1lab.train.grpo import run_grpo

        return run_grpo(stage, run, model_spec=model, stage_dir=stage_dir)
    from r1lab.train.sft import run_sft

    return run_sft(stage, run, model_spec=model, stage_dir=stage_dir)


def _run_eval(stage: StageConfig, run: RunConfig, model: str, stage_dir: Path) -> dict:
    temperature = 0.0 if stage.temperature is None else stage.temperature
    return _measure(
        model,
        run,
        source=stage.data or run.eval_data,
        split=stage.split if stage.split != "train" else "test",
        n=stage.n,
        out_dir=stage_dir,
        max_new_tokens=stage.max_new_tokens,
        batch_size=stage.batch_size,
        temperature=temperature,
        n_samples=stage.num_samples if temperature > 0 else 1,
    )


def _run_inference(stage: StageConfig, run: RunConfig, model: str, base: str) -> list[dict]:

    out = []
    temperature = 0.0 if stage.temperature is None else stage.temperature
    # Each model loads once for all the questions (a GGUF-converted model takes seconds to load).
    models = {
        label: load_pair(spec, dtype=run.dtype, device=run.device)
        for label, spec in (("base", base), ("final", model))
    }
    for q in stage.questions:
        row = {"question": q}
        for label, pair in models.items():
            a = ask(
                pair,
                q,
                system_prompt=run.system_prompt,
                temperature=temperature,
                max_new_tokens=stage.max_new_tokens,
                seed=run.seed,
                reply_prefix=run.reply_prefix,
            )
            row[label] = {
                "text": a.text,
                "answer": a.answer,
                "n_tokens": a.n_tokens,
                "truncated": a.truncated,
            }
        out.append(row)
    return out


def run_pipeline(run: RunConfig, *, only: list[str] | None = None, restart: bool = False) -> Summary:
    """Run (or resume) every stage of ``run``; returns the summary (also in ``runs/<name>/summary.json``).

    ``only`` restricts the run to the named stages (earlier finished stages still provide the model).
    A run folder made with other settings is refused (:func:`check_rerun`) unless ``restart``, which
    deletes its outputs first.
    """
    check_names(run)  # cheap, and the lock's path is made of the names
    if not is_main_process():  # rank 0 holds the run's lock for all processes
        _check_before_work(run, only, restart)
        if restart:
            wait_for_everyone()  # rank 0 clears the folder first
        return _run_stages(run, only)
    # The lock comes first: a second `r1lab run` of the same name is refused at once, before checking the
    # recipe against TRL imports torch (~30 s), and a refused run leaves no folder behind (run_lock).
    with run_lock(run):
        _check_before_work(run, only, restart)
        if restart:
            clear_run(run)
            wait_for_everyone()
        for path in remove_stale_temps(run.run_dir):
            log.info("removed %s (left by an interrupted write)", path)
        return _run_stages(run, only)


def _check_before_work(run: RunConfig, only: list[str] | None, restart: bool) -> None:
    check(run)
    if restart and only is not None:
        raise UserError(
            "--restart deletes every stage's outputs, so --only would have nothing to start from",
            hint="run --restart without --only",
        )
    check_only(run, only)
    check_rerun(run, restart=restart)
    _prepare_models(run)  # a model that cannot load fails here, before anything is written


@contextmanager
def run_lock(run: RunConfig):
    """Hold the run's lock (``runs/<name>/.lock``) for the block. If the block fails (a bad recipe found
    under the lock), the folders and lock file this call created are removed again: a refused run writes
    nothing."""
    created = [p for p in (run.run_dir, *run.run_dir.parents) if not p.exists()]
    lock = run.run_dir / ".lock"
    with exclusive_lock(lock, f"run {run.name!r} ({run.run_dir})"):
        try:
            yield
        except BaseException:
            if created:
                lock.unlink(missing_ok=True)
                for folder in created:  # innermost first; a folder something else wrote into stays
                    with suppress(OSError):
                        folder.rmdir()
            raise


def run_path(run: RunConfig, *parts: str) -> Path:
    """``run.run_dir / parts``, checked to lie inside the run folder (names are checked when the recipe is,
    this is the second line: nothing r1lab writes may land outside ``output_dir/name``)."""
    root = run.run_dir.resolve()
    path = run.run_dir.joinpath(*parts)
    if not path.resolve().is_relative_to(root) or path.resolve() == root and parts:
        raise UserError(
            f"{'/'.join(parts)!r} would write outside the run folder {run.run_dir}",
            hint="use plain names (letters, digits, _ and -) for stages",
        )
    return path


def check_only(run: RunConfig, only: list[str] | None) -> None:
    """Refuse an ``--only`` request that cannot run, before any model loads: an unknown stage name, or a
    named stage whose input (the model of the training stage before it, or an ``rs`` stage's data) comes
    from a stage that has not finished and is not named too."""
    if only is None:
        return
    import difflib

    names = [s.name for s in run.stages]
    for name in only:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            raise UserError(
                f"--only {name!r}: the recipe has no such stage",
                hint=f"did you mean {close[0]}?" if close else f"its stages are {', '.join(names)}",
            )
    provider = None  # the training stage whose model the next stage starts from
    for stage in run.stages:
        if stage.name in only:
            needs = [] if stage.model is not None or provider is None else [(provider, "model")]
            if stage.kind != "inference" and (stage.data or "").startswith("stage:"):
                needs.append((run.stage(stage.data.split(":", 1)[1]), "data"))
            for needed, what in needs:
                if needed.name not in only and not _finished(needed, run):
                    raise UserError(
                        f"--only {','.join(only)}: stage {stage.name!r} starts from the {what} of stage "
                        f"{needed.name!r}, which has not run yet",
                        hint=f"include it: --only {','.join(n for n in names if n in only or n == needed.name)}",
                    )
        if stage.trains:
            provider = stage


def _finished(stage: StageConfig, run: RunConfig) -> bool:
    """Whether ``stage``'s output (a trained model, an rs stage's data) is already in the run folder."""
    stage_dir = run_path(run, stage.name)
    if stage.trains:
        return (stage_dir / "model" / "config.json").is_file()
    return stage.kind == "rs" and _outputs_present(stage, stage_dir)


@dataclass
class _Progress:
    """Where a run stands between stages: its summary, the model the next stage starts from (the last
    trained one), and that model's held-out metrics."""

    summary: Summary
    model: str
    metrics: Metrics | None


def _run_stages(run: RunConfig, only: list[str] | None) -> Summary:
    _write_resolved_config(run)
    progress = _Progress(load_summary(run), run.model, None)
    progress.summary["model"] = run.model
    progress.metrics = _base_metrics(run, progress.summary, only)
    for stage in run.stages:
        _run_stage(stage, run, progress, wanted=only is None or stage.name in only)
    progress.summary["final_model"] = progress.model
    progress.summary["final_metrics"] = progress.metrics
    _save_summary(run, progress.summary)
    if run.report and is_main_process():
        _write_report(run.run_dir)
    return progress.summary


def _write_resolved_config(run: RunConfig) -> None:
    import yaml

    if is_main_process():
        run.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.run_dir / "config.yaml", yaml.safe_dump(run.to_dict(), sort_keys=False))


def _base_metrics(run: RunConfig, summary: Summary, only: list[str] | None = None) -> Metrics | None:
    """The starting model's held-out metrics (measured once, when a stage that runs will compare with them;
    a rerun reads them from the summary)."""
    measured_later = [s for s in run.stages if s.trains and s.evaluate and (only is None or s.name in only)]
    if summary.get("base_metrics") is None and measured_later:
        t0 = time.time()
        summary["base_metrics"] = heldout_metrics(run.model, run, "base")
        summary["base_seconds"] = round(time.time() - t0, 1)
        _save_summary(run, summary)
        _heldout_to_tensorboard(run, summary["base_metrics"], step=0)
    return summary.get("base_metrics")


def _run_stage(stage: StageConfig, run: RunConfig, progress: _Progress, *, wanted: bool) -> None:
    """Run one stage, or skip it when it is done (finishing a trained model's evaluation if a kill came
    between the two) or not ``wanted`` (``--only``)."""
    stage_dir = run_path(run, stage.name)
    entry = _entry(progress.summary, stage)
    if stage.trains and (stage_dir / "model" / "config.json").is_file():
        _finish_trained_stage(stage, run, progress, entry, stage_dir)
        return
    if entry.get("status") == "done" and not stage.trains and _outputs_present(stage, stage_dir):
        log.info("%s: already done, skipping", stage.name)
        return
    if not wanted:  # check_only made sure no stage that runs needs this one's output
        log.info("%s: not in --only, skipped", stage.name)
        return
    start_model = stage.model or progress.model
    log.info("stage %s (%s) from %s", stage.name, stage.kind, start_model)
    entry.update(status="running", model_in=start_model, started=time.time())
    _save_summary(run, progress.summary)
    t0 = time.time()
    empty = _empty_stage_data(stage, run)
    if empty:
        # Nothing to learn from (the rejection-sampling stage solved no prompts): say so, keep the model.
        log.warning("%s: skipped, %s", stage.name, empty)
        entry.update(status="skipped", achieved=f"skipped: {empty}", model=start_model, seconds=0.0)
        _save_summary(run, progress.summary)
        return
    STAGE_RUNNERS[stage.kind](stage, run, progress, entry, start_model)
    entry.update(status="done", seconds=round(time.time() - t0, 1))
    _save_summary(run, progress.summary)
    _drop_checkpoints(stage, stage_dir)


def _finish_trained_stage(
    stage: StageConfig, run: RunConfig, progress: _Progress, entry: StageEntry, stage_dir: Path
):
    model_out = str(stage_dir / "model")
    if entry.get("status") != "done" or _evaluation_missing(stage, run, entry):
        # killed after the model landed, before its evaluation or the summary did: finish those
        log.info("%s: model already trained; finishing its evaluation", stage.name)
        progress.metrics = _evaluate_stage(stage, run, progress.summary, entry, model_out, progress.metrics)
        entry["status"] = "done"
        _save_summary(run, progress.summary)
        _drop_checkpoints(stage, stage_dir)
    else:
        log.info("%s: already done, skipping", stage.name)
        progress.metrics = entry.get("metrics_after") or progress.metrics
    progress.model = model_out


def _train(
    stage: StageConfig, run: RunConfig, progress: _Progress, entry: StageEntry, start_model: str
) -> None:
    t0 = time.time()
    model_out = str(_run_training(stage, run, start_model, run_path(run, stage.name)))
    _release_memory()
    entry["train_seconds"] = round(time.time() - t0, 1)
    progress.metrics = _evaluate_stage(stage, run, progress.summary, entry, model_out, progress.metrics)
    progress.model = model_out


def _rejection_sample(
    stage: StageConfig, run: RunConfig, progress: _Progress, entry: StageEntry, start_model: str
):
    from r1lab.train.rejection import run_rejection_sampling  # imports torch/transformers

    entry["stats"] = run_rejection_sampling(
        stage, run, model_spec=start_model, stage_dir=run_path(run, stage.name)
    )
    entry["model"] = start_model


def _evaluate(
    stage: StageConfig, run: RunConfig, progress: _Progress, entry: StageEntry, start_model: str
) -> None:
    result = _run_eval(stage, run, start_model, run_path(run, stage.name))
    entry.update(model=start_model, metrics_after=metrics_of(result), result=result)


def _ask_questions(
    stage: StageConfig, run: RunConfig, progress: _Progress, entry: StageEntry, start_model: str
):
    entry.update(model=start_model, answers=_main_only(_run_inference, stage, run, start_model, run.model))


# What each stage kind does once the pipeline has decided it must run.
STAGE_RUNNERS = {
    "grpo": _train,
    "sft": _train,
    "rs": _rejection_sample,
    "eval": _evaluate,
    "inference": _ask_questions,
}


def _heldout_to_tensorboard(run: RunConfig, metrics: Metrics | None, *, step: int) -> None:
    """Held-out metrics to TensorBoard (``tb/heldout``), x = position in the pipeline (0: the base model)."""
    if not metrics or not is_main_process():
        return
    from torch.utils.tensorboard import SummaryWriter  # torch is loaded by now (the model was evaluated)

    with SummaryWriter(log_dir=str(run.run_dir / "tb" / "heldout")) as writer:
        for key, value in metrics.items():
            if isinstance(value, int | float) and key != "n_items":
                writer.add_scalar(f"heldout/{key}", value, step)


def _evaluation_missing(stage: StageConfig, run: RunConfig, entry: StageEntry) -> bool:
    return bool(stage.evaluate and run.eval_n > 0 and not entry.get("metrics_after"))


def _evaluate_stage(
    stage: StageConfig,
    run: RunConfig,
    summary: Summary,
    entry: StageEntry,
    model_out: str,
    before: Metrics | None,
) -> Metrics | None:
    """Measure a trained stage's model on the held-out problems (resumable: evals/<stage>/), test it against
    its input model and the base model, and record all in its summary entry. Returns the metrics later
    stages start from."""
    t0 = time.time()
    after = heldout_metrics(model_out, run, stage.name) if stage.evaluate else None
    if after:
        entry["eval_seconds"] = round(time.time() - t0, 1)
    achieved, vs_base, vs_input = stage_verdict(run, stage, entry.get("model_in"), before, after)
    entry.update(
        model=model_out, metrics_before=before, metrics_after=after, vs_base=vs_base, vs_input=vs_input
    )
    _heldout_to_tensorboard(run, after, step=[s.name for s in run.stages].index(stage.name) + 1)
    entry["achieved"] = achieved
    if vs_base:
        summary["final_vs_base"] = vs_base
    return after or before


def _drop_checkpoints(stage: StageConfig, stage_dir: Path) -> None:
    """A done training stage's checkpoints are dead weight (its model and summary are written); delete
    them unless the stage says ``keep_checkpoints``."""
    ckpts = stage_dir / "checkpoints"
    if stage.trains and not stage.keep_checkpoints and ckpts.is_dir() and is_main_process():
        import shutil

        shutil.rmtree(ckpts, ignore_errors=True)
        log.info("%s: done; removed its checkpoints (keep_checkpoints: true keeps them)", stage.name)


def _empty_stage_data(stage: StageConfig, run: RunConfig) -> str | None:
    src = stage.data or ""
    if stage.kind != "sft" or not src.startswith("stage:"):
        return None
    ref = src.split(":", 1)[1]
    path = run.run_dir / ref / "data.jsonl"
    if path.is_file() and not path.read_text(encoding="utf-8").strip():
        return f"stage {ref!r} kept no examples ({path})"
    return None


def _release_memory() -> None:
    """Give the finished trainer's GPU memory back before the next stage (or vLLM) asks for it."""
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _main_only(fn, *args):
    """Run ``fn`` on the main process only (it writes the stage's files); the others wait and get None."""

    result = fn(*args) if is_main_process() else None
    wait_for_everyone()
    return result


def _prepare_models(run: RunConfig) -> None:
    """Resolve every model spec of the run once, on the main process first: building a cached checkpoint
    (tiny, a converted GGUF) is not safe for several processes at once, and under ``accelerate launch`` only
    rank 0's ``save_pretrained`` writes weights."""

    specs = [run.model] + [s.model for s in run.stages if s.model]
    with main_process_first():
        for spec in dict.fromkeys(specs):
            if not str(spec).startswith(str(run.run_dir)):  # a stage's output: exists once that stage ran
                resolve_model(spec, trust_remote_code=run.trust_remote_code)


def _outputs_present(stage: StageConfig, stage_dir: Path) -> bool:
    if stage.kind == "rs":
        return (stage_dir / "stats.json").is_file() and (stage_dir / "data.jsonl").is_file()
    return True


# Fields that change nothing a run has already made: how it is reported and kept, not what it trains.
_RECORD_ONLY_FIELDS = {
    "report",
    "keep_checkpoints",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "report_to",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
}
# A stage that has not finished may be resumed to a different length: its model is then trained to the
# new length, which is what the record says.
_LENGTH_FIELDS = {"max_steps", "num_train_epochs"}


def changed_settings(run: RunConfig) -> list[str]:
    """What differs between ``run`` and the earlier run recorded in its folder (``config.yaml``), as
    ``"field: old -> new"`` lines, for the settings behind outputs already there: every run-level field
    once anything was made, and the fields of each stage that has started (a stage that has not started
    may change freely, and so may a later stage be added). Empty for a new run folder.

    >>> changed_settings(RunConfig(name="x", output_dir="/nonexistent"))
    []
    """
    path = run.run_dir / "config.yaml"
    if not path.is_file():
        return []
    import yaml

    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        old = {}
    if not isinstance(old, dict):
        return ["config.yaml: unreadable"]
    new = run.to_dict()
    changes = _dict_changes(old, new, skip={"name", "output_dir", "stages"}, prefix="")
    old_stages = [s for s in old.get("stages") or [] if isinstance(s, dict)]
    new_stages = {s["name"]: s for s in new["stages"]}
    new_order = [s["name"] for s in new["stages"]]
    summary = load_summary(run)
    for i, old_stage in enumerate(old_stages):
        name = str(old_stage.get("name"))
        entry = next((e for e in summary.get("stages", []) if e.get("name") == name), None)
        if entry is None and not (run.run_dir / name).exists():
            continue  # never started: nothing made under these settings
        if name not in new_stages:
            changes.append(f"stage {name}: removed")
            continue
        before = [str(s.get("name")) for s in old_stages[:i]]
        if new_order[: new_order.index(name)] != before:
            changes.append(
                f"stages before {name}: {', '.join(before) or '(none)'} -> "
                f"{', '.join(new_order[: new_order.index(name)]) or '(none)'}"
            )
        finished = (entry or {}).get("status") in ("done", "skipped") or any(
            (run.run_dir / name / made).is_file() for made in ("model/config.json", "stats.json")
        )
        skip = {"name"} | (set() if finished else _LENGTH_FIELDS)
        changes += _dict_changes(old_stage, new_stages[name], skip=skip, prefix=f"{name}.")
    return changes


def _field_defaults() -> dict:
    import dataclasses

    out = {}
    for cls in (RunConfig, StageConfig):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
    return out


def _dict_changes(old: dict, new: dict, *, skip: set[str], prefix: str) -> list[str]:
    out = []
    defaults = _field_defaults()
    for key in dict.fromkeys([*old, *new]):
        if key in skip or key in _RECORD_ONLY_FIELDS or old.get(key) == new.get(key):
            continue
        missing = old if key not in old else new if key not in new else None
        if missing is not None and key in defaults and (old | new).get(key) == defaults[key]:
            continue  # an r1lab field one record predates, at its default: nothing changed
        out.append(f"{prefix}{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    return out


def _short(value) -> str:
    text = " ".join(repr(value).split()) if isinstance(value, str) else " ".join(str(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def check_rerun(run: RunConfig, *, restart: bool = False) -> None:
    """Refuse, before any work, to continue a run folder made with other settings (its outputs would no
    longer match its record); ``restart`` allows it (the outputs are deleted first, see :func:`clear_run`)."""
    changes = [] if restart else changed_settings(run)
    if changes:
        raise UserError(
            f"run {run.name!r} ({run.run_dir}) was made with other settings: {'; '.join(changes)}",
            hint="give this run a new --name to keep both, or add --restart to delete its outputs and "
            "start over",
        )


def clear_run(run: RunConfig) -> None:
    """Delete what earlier runs made in ``run``'s folder (``--restart``): r1lab's own files and the folders
    of the stages named in the old or the new record; anything else in the folder is left alone."""
    import shutil

    import yaml

    root = run.run_dir
    if not root.is_dir():
        return
    names = {s.name for s in run.stages}
    try:
        old = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {}
        names |= {str(s.get("name")) for s in old.get("stages") or [] if isinstance(s, dict)}
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    files = ("config.yaml", "summary.json", "metrics.jsonl", "samples.jsonl", "report.html")
    for name in sorted(names | {"tb", "evals"}):
        # an old record's stage name is not trusted: ".." would delete the folder of every run
        if name and STAGE_NAME_RE.fullmatch(name) and (root / name).is_dir():
            shutil.rmtree(run_path(run, name))
    for name in files:
        (root / name).unlink(missing_ok=True)
    log.info("--restart: removed the earlier outputs in %s", root)


def _write_report(run_dir: Path) -> None:
    try:
        write_report(run_dir)  # it logs where the report went
    except Exception as err:  # a broken report must not fail a finished training run
        log.warning("could not write the report: %s", err)


# ------------------------------------------------------------------------------------ printing


def summary_tables(summary: Summary) -> list:
    """Rich renderables for the end of a run: one row per stage, what each stage achieved (as prose lines, so
    an 80-column terminal does not squeeze them into a column), then base vs final model, then the sample
    questions' answers."""
    tables = [*_stage_table(summary), *_base_vs_final_table(summary)]
    return tables + [_answers_table(row) for e in summary.get("stages", []) for row in e.get("answers") or []]


def _stage_table(summary: Summary) -> list:
    from rich.table import Table
    from rich.text import Text

    stages = Table(title=f"run {summary.get('name')}", show_lines=False)
    for col in ("stage", "kind", "status", "time", "accuracy", "format", "tokens"):
        stages.add_column(col, no_wrap=True)
    notes = Text()
    for e in summary.get("stages", []):
        m = e.get("metrics_after") or {}
        note = e.get("achieved") or ""
        if e.get("kind") == "rs" and e.get("stats"):
            st = e["stats"]
            note = f"kept {st['kept']} of {st['samples']} samples ({st['prompts_solved']}/{st['prompts']} prompts)"
        stages.add_row(
            e.get("name", ""),
            e.get("kind", ""),
            e.get("status", ""),
            _time_cell(e),
            _pct(m.get("accuracy")),
            _pct(m.get("format_rate")),
            _num(m.get("mean_completion_tokens")),
        )
        if note:
            notes.append(f"{e.get('name', '')}: ", style="bold")
            notes.append(note + "\n")
    checks = [e.get("eval_seconds") for e in summary.get("stages", [])] + [summary.get("base_seconds")]
    if any(checks):
        notes.append(
            f"held-out checks: {_secs(sum(c for c in checks if c))} in all"
            + (
                f" (the base model's: {_secs(summary['base_seconds'])})"
                if summary.get("base_seconds")
                else ""
            )
            + "; --eval_n 0 skips them\n"
        )
    return [stages, notes]


def _time_cell(entry: dict) -> str:
    """A stage's time, split into training and its held-out check when it had one: ``3s + 70s check``."""
    train, check = entry.get("train_seconds"), entry.get("eval_seconds")
    if train is not None and check:
        return f"{_secs(train)} + {_secs(check)} check"
    return _secs(entry.get("seconds"))


def _base_vs_final_table(summary: Summary) -> list:
    from rich.table import Table

    base, final = summary.get("base_metrics"), summary.get("final_metrics")
    if not (base and final):
        return []
    tests = summary.get("final_vs_base") or {}
    caption = "; ".join(
        f"{name}: +{t['gained']}/-{t['lost']} problems, p={t['p']:.3g} ({t['test']})"
        for name, t in tests.items()
    )
    models = f"base: {summary.get('model')}; final: {summary.get('final_model')}"
    cmp = Table(
        title=f"base vs final on {base.get('n_items')} held-out problems",
        caption="; ".join(c for c in (caption, models) if c),
    )
    for col in ("model", "accuracy", "format rate", "mean tokens", "truncated"):
        cmp.add_column(col, no_wrap=True)
    for label, m in (("base", base), ("final", final)):
        cmp.add_row(
            label,
            _pct(m.get("accuracy")),
            _pct(m.get("format_rate")),
            _num(m.get("mean_completion_tokens")),
            _pct(m.get("truncation_rate")),
        )
    return [cmp]


def _answers_table(row: dict):
    """An inference stage's sample question: the base and final model's answers side by side."""
    from rich.table import Table

    qa = Table(title=f"sample question: {row['question']}", show_lines=True)
    qa.add_column("model")
    qa.add_column("extracted answer")
    qa.add_column("reply")
    for label in ("base", "final"):
        a = row.get(label) or {}
        qa.add_row(label, str(a.get("answer")), (a.get("text") or "")[:400])
    return qa


def _pct(v) -> str:
    return "-" if v is None else f"{float(v):.1%}"


def _num(v) -> str:
    return "-" if v is None else f"{float(v):.1f}"


def _secs(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.0f}s" if v < 120 else f"{v / 60:.1f}min"
