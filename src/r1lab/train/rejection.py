"""Rejection sampling (DeepSeek-R1's stage 3): sample K completions per prompt with the current model, keep
the ones the shared judge (``r1lab.rewards.judge``) calls correct AND well formatted, drop duplicates, and
write them as an SFT dataset (``messages``: system, user, assistant) for a later stage.

A later stage reads the result as ``data: stage:<this stage's name>`` (or by its path).
"""

from __future__ import annotations

import logging
from pathlib import Path

from r1lab.config import RunConfig, StageConfig
from r1lab.data.formatting import reply_prefix_of
from r1lab.distributed import (
    gather_metrics,
    gather_objects,
    is_main_process,
    main_process_first,
    shard,
    wait_for_everyone,
)
from r1lab.inference import generate, progress_log
from r1lab.io import atomic_write_json, write_jsonl
from r1lab.rewards import judge

log = logging.getLogger(__name__)


def select_accepted(
    prompts: list[list[dict]],
    samples: list[list[str]],
    solutions: list[str],
    verdicts,
    *,
    max_per_prompt: int = 1,
) -> list[dict]:
    """Keep correct, formatted, distinct completions (at most ``max_per_prompt`` per prompt), as SFT rows.

    ``verdicts[i][j]`` judges ``samples[i][j]`` (needs ``.correct`` and ``.formatted``). Duplicates are
    compared after collapsing whitespace, so a model repeating itself does not get counted twice.

    >>> from types import SimpleNamespace as V
    >>> rows = select_accepted([[{"role": "user", "content": "1+1?"}]], [["<answer>2</answer>", "2", "<answer> 2</answer>"]],
    ...     ["2"], [[V(correct=True, formatted=True), V(correct=True, formatted=False), V(correct=True, formatted=True)]],
    ...     max_per_prompt=3)
    >>> [r["messages"][-1]["content"] for r in rows]
    ['<answer>2</answer>', '<answer> 2</answer>']
    """
    rows = []
    for prompt, texts, solution, judged in zip(prompts, samples, solutions, verdicts, strict=True):
        seen: set[str] = set()
        kept = 0
        for text, verdict in zip(texts, judged, strict=True):
            if kept >= max_per_prompt:
                break
            if verdict.correct is not True or not verdict.formatted:
                continue
            key = " ".join(text.split())
            if key in seen:
                continue
            seen.add(key)
            kept += 1
            question = prompt[:-1] if reply_prefix_of(prompt) else prompt  # the reply holds its prefix
            rows.append(
                {"messages": [*question, {"role": "assistant", "content": text}], "solution": solution}
            )
    return rows


def run_rejection_sampling(stage: StageConfig, run: RunConfig, *, model_spec: str, stage_dir: Path) -> dict:
    """Generate, judge, filter and write ``stage_dir/data.jsonl``; returns stats (prompts, samples, kept).

    Under ``accelerate launch`` every process samples its share of the prompts; the main process gathers the
    accepted rows and the counts, and writes the files.
    """
    from r1lab.train.grpo import grpo_dataset  # TRL: loaded when a stage runs

    with main_process_first():
        ds = grpo_dataset(stage, run)  # the same prompts a GRPO stage on this data would see
    prompts = shard([list(p) for p in ds["prompt"]])
    solutions = shard([str(s) for s in ds["solution"]])
    samples = _sample(stage, run, model_spec, prompts)
    verdicts = _judge_samples(samples, solutions)
    rows = select_accepted(prompts, samples, solutions, verdicts, max_per_prompt=stage.max_per_prompt)
    flat = [v for vs in verdicts for v in vs]
    stats = {
        "prompts": len(prompts),
        "samples": len(flat),
        "correct": sum(v.correct is True for v in flat),
        "formatted": sum(bool(v.formatted) for v in flat),
        "accepted": sum(v.correct is True and bool(v.formatted) for v in flat),
        "kept": len(rows),
        "prompts_solved": len({r["messages"][-2]["content"] for r in rows}),
    }
    rows = [r for part in gather_objects(rows) for r in part]  # rank order = the dataset's order
    stats = gather_metrics(stats, reduce="sum")  # counts over every process's share
    if is_main_process():
        write_jsonl(Path(stage_dir) / "data.jsonl", rows)
        atomic_write_json(Path(stage_dir) / "stats.json", stats)
    wait_for_everyone()
    log.info(
        "%s: kept %d of %d samples (%d correct, %d formatted)",
        stage.name,
        stats["kept"],
        stats["samples"],
        stats["correct"],
        stats["formatted"],
    )
    return stats


def _sample(stage: StageConfig, run: RunConfig, model_spec: str, prompts: list) -> list[list[str]]:
    """``stage.num_samples`` completions of each prompt (temperature 1 unless the stage sets one)."""
    from r1lab.models import load_model  # torch: loaded when a stage runs

    model, tokenizer = load_model(
        model_spec, dtype=run.dtype, device=run.device, trust_remote_code=run.trust_remote_code
    )
    log.info("%s: sampling %d x %d completions", stage.name, len(prompts), stage.num_samples)
    if not prompts:
        return []
    outputs = generate(
        model,
        tokenizer,
        prompts,
        n_samples=stage.num_samples,
        temperature=1.0 if stage.temperature is None else stage.temperature,
        max_new_tokens=stage.max_new_tokens,
        batch_size=stage.batch_size,
        seed=run.seed,
        on_progress=progress_log(f"{stage.name}: prompts sampled", len(prompts)),
    )
    return [[c.text for c in comps] for comps in outputs]


def _judge_samples(samples: list[list[str]], solutions: list[str]) -> list[list]:
    """The verdict of each sample, grouped as ``samples`` is (one verifier call for all of them)."""
    flat_texts = [t for texts in samples for t in texts]
    flat_refs = [solutions[i] for i, texts in enumerate(samples) for _ in texts]
    flat = iter(judge(flat_texts, flat_refs) if flat_texts else [])
    return [[next(flat) for _ in texts] for texts in samples]
