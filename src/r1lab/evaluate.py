"""Evaluation: pass@1, pass@k, maj@k, format rate, lengths; per-item results that survive a kill.

Correctness comes from ``r1lab.rewards.judge`` only, the same definition of "correct" that the
training rewards and rejection-sampling filters use.

Metrics for an item with ``n`` completions of which ``c`` are correct:

- pass@1 = c / n (mean over samples);
- pass@k = 1 - C(n-c, k) / C(n, k), the unbiased estimator of Chen et al. (2021), ``k <= n``;
- maj@k = is the most common extracted answer among the first ``k`` samples correct? Ties go to
  the answer seen first, so the vote is deterministic.

Per-item rows are appended to ``items.jsonl`` as each batch finishes; a rerun with the same
``out_dir`` and settings skips the items already there, so a killed evaluation continues.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from r1lab import distributed
from r1lab.answers import plain_number
from r1lab.errors import UserError
from r1lab.io import append_jsonl, atomic_write_json, read_jsonl
from r1lab.rewards.verify import STATS as VERIFY_STATS

logger = logging.getLogger(__name__)

ITEMS_FILE = "items.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "eval_config.json"
BACKENDS = ("auto", "hf", "vllm")


# --------------------------------------------------------------------------------------------
# Pure metric functions
# --------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``c`` correct out of ``n`` samples (Chen et al. 2021).

    >>> pass_at_k(4, 1, 1)
    0.25
    >>> pass_at_k(4, 1, 4)
    1.0
    >>> round(pass_at_k(10, 3, 5), 4)
    0.9167
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n} c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n} k={k}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the stable form of 1 - C(n-c,k)/C(n,k).
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def normalize_answer(answer: str) -> str:
    """A voting key for an extracted answer: a plain number by its value (so ``"1,000."``, ``"1000"`` and
    ``"$1000.00"`` vote together, as the verifier would judge them), anything else with spaces, ``$`` and a
    trailing period trimmed.

    >>> normalize_answer(" $1,000$. "), normalize_answer("18 dollars"), normalize_answer("0.50")
    ('1000', '18', '1/2')
    >>> normalize_answer("\\\\frac{1}{2} .")
    '\\\\frac{1}{2}'
    """
    value = plain_number(answer)
    if value is not None:
        return str(value)
    s = answer.strip().rstrip(".").strip().strip("$").strip().rstrip(".").strip()
    return re.sub(r"\s+", "", s)


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool | None]) -> tuple[str | None, bool]:
    """Majority answer among ``answers`` (``None`` = no answer, which never wins) and whether it
    is correct (the verdict of its first occurrence). Ties go to the answer seen first.

    >>> majority_vote(["4", "5", "5", None], [True, False, False, None])
    ('5', False)
    >>> majority_vote(["4", "5"], [True, False])
    ('4', True)
    >>> majority_vote([None, None], [None, None])
    (None, False)
    """
    keys = [normalize_answer(a) if a is not None else None for a in answers]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None, False
    best = max(counts.values())
    winner = next(k for k in keys if k is not None and counts[k] == best)
    first = keys.index(winner)
    return answers[first], bool(correct[first])


def score_item(
    answers: Sequence[str | None],
    correct: Sequence[bool | None],
    formatted: Sequence[bool],
    n_tokens: Sequence[int],
    truncated: Sequence[bool],
    k: int,
) -> dict[str, Any]:
    """Per-item metrics from per-sample verdicts. ``correct`` holding ``None`` (the reference
    could not be parsed) makes the item unscorable: its accuracy metrics are ``None``."""
    n = len(answers)
    scorable = all(c is not None for c in correct)
    c = sum(bool(x) for x in correct)
    maj_answer, maj_correct = majority_vote(list(answers[:k]), list(correct[:k]))
    return {
        "n": n,
        "n_correct": c if scorable else None,
        "pass@1": c / n if scorable else None,
        f"pass@{k}": pass_at_k(n, c, k) if scorable else None,
        f"maj@{k}": float(maj_correct) if scorable else None,
        "maj_answer": maj_answer,
        "format_rate": sum(map(bool, formatted)) / n,
        "mean_tokens": sum(n_tokens) / n,
        "truncation_rate": sum(map(bool, truncated)) / n,
    }


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def aggregate(rows: Sequence[dict], k: int) -> dict[str, Any]:
    """Dataset-level metrics: the mean of each per-item metric (unscorable items left out of the
    accuracy metrics and counted in ``n_unscorable``)."""
    metrics = [r["metrics"] for r in rows]
    out: dict[str, Any] = {
        "n_items": len(rows),
        "n_unscorable": sum(m["pass@1"] is None for m in metrics),
        "pass@1": _mean(m["pass@1"] for m in metrics),
        f"pass@{k}": _mean(m[f"pass@{k}"] for m in metrics),
        f"maj@{k}": _mean(m[f"maj@{k}"] for m in metrics),
        "format_rate": _mean(m["format_rate"] for m in metrics),
        "mean_completion_tokens": _mean(m["mean_tokens"] for m in metrics),
        "truncation_rate": _mean(m["truncation_rate"] for m in metrics),
    }
    return out


def breakdown(rows: Sequence[dict], k: int, fields: Sequence[str] = ("subject", "level")) -> dict[str, dict]:
    """Metrics per value of each field present in the items (MATH-style subject/level)."""
    out: dict[str, dict] = {}
    for name in fields:
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            value = r.get(name)
            if value not in (None, ""):
                groups[str(value)].append(r)
        if groups:
            out[name] = {v: aggregate(g, k) for v, g in sorted(groups.items())}
    return out


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _as_rows(dataset, limit: int | None) -> list[dict]:
    if isinstance(dataset, str):
        from r1lab.data import load_eval_dataset

        dataset = load_eval_dataset(dataset, split="test", n=limit)
    rows = [dict(r) for r in dataset]
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise UserError("the evaluation dataset is empty", hint="check the data source, split and --limit")
    for i, r in enumerate(rows):
        for col in ("prompt", "solution"):
            if col not in r:
                raise UserError(
                    f"evaluation row {i} has no '{col}' column (columns: {sorted(r)})",
                    hint="load data with r1lab.data.load_eval_dataset, which adds prompt/solution",
                )
    return rows


def _item_key(row: dict) -> str:
    """Stable identity of an item, so resume matches items and not positions."""
    blob = json.dumps([row["prompt"], row["solution"]], sort_keys=True, ensure_ascii=False)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def choose_backend(backend: str) -> str:
    """``"hf"`` or ``"vllm"``: ``auto`` picks vLLM when it is installed and a CUDA GPU is present."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
    has_vllm = distributed.vllm_available() and distributed.cuda_available()
    if backend == "vllm" and not has_vllm:
        missing = "vllm is not installed" if not distributed.vllm_available() else "no CUDA GPU is available"
        raise UserError(
            f"backend 'vllm' requested but {missing}",
            hint="pip install 'r1lab[vllm]' on a CUDA machine, or use --backend hf",
        )
    if backend == "auto":
        return "vllm" if has_vllm else "hf"
    return backend


# --------------------------------------------------------------------------------------------
# Generation back-ends: each yields (indices, completions) batch by batch
# --------------------------------------------------------------------------------------------


def _hf_batches(
    model_or_pair, prompts, *, n_samples, temperature, max_new_tokens, batch_size, seed, on_progress=None
):
    from r1lab.inference import iter_generate, load_pair

    model, tokenizer = load_pair(model_or_pair)
    yield from iter_generate(
        model,
        tokenizer,
        prompts,
        n_samples=n_samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        on_progress=on_progress,
    )


def _vllm_batches(
    model_or_pair, prompts, *, n_samples, temperature, max_new_tokens, batch_size, seed, on_progress=None
):
    """vLLM path (GPU only). vLLM schedules its own batches; we hand it ``batch_size``-sized
    chunks of prompts only so progress is saved as it goes."""
    from vllm import LLM, SamplingParams

    from r1lab.data.formatting import reply_prefix_of
    from r1lab.inference import Completion
    from r1lab.models import resolve_model

    if not isinstance(model_or_pair, str):
        raise UserError(
            "the vllm backend needs a model spec or path, not a loaded model", hint="use --backend hf"
        )
    llm = LLM(model=resolve_model(model_or_pair), seed=seed)
    params = SamplingParams(n=n_samples, temperature=temperature, max_tokens=max_new_tokens, seed=seed)
    chunk = max(1, batch_size) * 8
    for start in range(0, len(prompts), chunk):
        idx = list(range(start, min(start + chunk, len(prompts))))
        prefixes = [reply_prefix_of(prompts[i]) for i in idx]
        # a prompt holding the start of the reply (reply_prefix) is continued, not closed and reopened
        cont = {"add_generation_prompt": False, "continue_final_message": True} if any(prefixes) else {}
        outputs = llm.chat([prompts[i] for i in idx], params, use_tqdm=False, **cont)
        comps = [
            [
                Completion(
                    text=pre + o.text, n_tokens=len(o.token_ids), truncated=o.finish_reason == "length"
                )
                for o in out.outputs
            ]
            for pre, out in zip(prefixes, outputs, strict=True)
        ]
        yield idx, comps


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------


def _judge(texts: list[str], references: list[str]):
    from r1lab.rewards import judge

    return judge(texts, references)


def _model_identity(model_or_pair) -> str:
    """The model spec, plus a fingerprint of the weight files when it is a local directory, so a
    model retrained in place (same path, new weights) does not resume from the old model's items."""
    if not isinstance(model_or_pair, str):
        model = model_or_pair[0]
        return f"<{type(model).__name__}, {sum(p.numel() for p in model.parameters())} parameters>"
    path = Path(model_or_pair).expanduser()
    if not path.is_dir():
        return model_or_pair
    files = sorted(f for pattern in ("*.safetensors", "*.bin") for f in path.glob(pattern))
    stamp = "|".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return f"{model_or_pair}#{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"


def _check_resume(out: Path, config: dict, fresh: bool) -> None:
    path = out / CONFIG_FILE
    if path.exists() and not fresh:
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != config:
            diff = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise UserError(
                f"{out} holds an evaluation with different settings ({', '.join(diff)})",
                hint="use another --out directory, or --fresh to replace it",
            )
        return
    (out / ITEMS_FILE).unlink(missing_ok=True)
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    atomic_write_json(path, config)


def evaluate(
    model_spec_or_pair,
    dataset,
    *,
    n_samples: int = 1,
    k: int | None = None,
    temperature: float = 0.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    out_dir: str | Path | None = None,
    backend: str = "auto",
    seed: int = 0,
    limit: int | None = None,
    fresh: bool = False,
    on_progress: Callable[[float, int], None] | None = None,
    across_processes: bool = False,
) -> dict[str, Any]:
    """Evaluate a model on a math dataset; returns the summary dict. (Its length is its arguments, the
    public face of ``r1lab eval``; the body is named steps: earlier results, this process's share,
    generate and judge, gather, summarize.)

    Args:
        model_spec_or_pair: a model spec for ``r1lab.models.load_model`` (``"tiny"``,
            ``"smollm2-135m"``, a path) or a ``(model, tokenizer)`` pair.
        dataset: rows with ``prompt`` (chat messages) and ``solution`` (reference answer), e.g.
            from ``r1lab.data.load_eval_dataset``; or a source string passed to it.
        n_samples: completions per problem; ``k`` (default ``n_samples``) for pass@k and maj@k.
        temperature: 0 = greedy. Sampling (> 0) is needed for pass@k with k > 1 to mean anything.
        max_new_tokens, batch_size, seed: generation settings (``batch_size`` counts sequences).
        out_dir: where ``items.jsonl`` and ``summary.json`` go; a rerun here with the same model
            and settings resumes (different ones raise :class:`UserError`).
        fresh: discard results already in ``out_dir`` instead of resuming.
        backend: ``"hf"``, ``"vllm"`` or ``"auto"``.
        limit: evaluate only the first ``limit`` problems.
        on_progress: called with ``(items_done, items_total)`` after each batch, and while a batch decodes
            (then ``items_done`` is fractional: the batch counted by token steps or finished rows).
        across_processes: under ``accelerate launch``, call it on every process with this set: each
            generates its share of the problems (with vLLM, rank 0 generates them all), every process
            returns the same summary, and only rank 0 writes ``out_dir``.

    Returns:
        ``{"pass@1", "pass@k", "maj@k", "format_rate", "mean_completion_tokens",
        "truncation_rate", "n_items", "n_unscorable", "by": {...}, ...}`` (``pass@k`` is keyed
        with the actual k, e.g. ``"pass@4"``).

    Example::

        from r1lab.data import load_eval_dataset
        ds = load_eval_dataset("builtin", split="test", n=20)
        evaluate("tiny", ds, n_samples=4, temperature=0.8, max_new_tokens=32)["pass@4"]
    """
    k = n_samples if k is None else k
    check_counts(n_samples, k, limit)
    chosen = choose_backend(backend)
    rows = _as_rows(dataset, limit)
    keys = [_item_key(r) for r in rows]
    out = Path(out_dir) if out_dir is not None else None
    settings = {
        "n_samples": n_samples,
        "temperature": temperature,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
    }
    done = _earlier_items(
        out, {"model": _model_identity(model_spec_or_pair), **settings}, keys, fresh, across_processes
    )
    n_resumed = len(done)

    todo, split, writer = _my_share(
        [i for i, key in enumerate(keys) if key not in done], chosen, across_processes
    )
    items_file = out / ITEMS_FILE if out is not None and writer else None

    progress = (lambda n_done: on_progress(n_done, len(rows))) if on_progress else (lambda n_done: None)
    t0 = time.perf_counter()
    errors_before = VERIFY_STATS["errors"]
    made, new_tokens = _generate_and_judge(
        model_spec_or_pair,
        rows,
        keys,
        todo,
        done,
        backend=chosen,
        k=k,
        settings={**settings, "batch_size": batch_size},
        items_file=items_file,
        # the bar moves while a batch decodes, not only when it ends
        on_progress=lambda n: progress(n_resumed + n),
        on_batch=lambda: progress(sum(key in done for key in keys)),
    )
    seconds = time.perf_counter() - t0
    if split:  # every process gets every row; rank 0 appends the other processes' rows
        new_tokens = _gather_items(made, new_tokens, done, items_file)

    summary = _summarize([_rescore(done[key], k) for key in keys], k)
    summary.update(
        {k: v for k, v in settings.items() if k != "seed"},
        backend=chosen,
        model=model_spec_or_pair if isinstance(model_spec_or_pair, str) else None,
        seconds=round(seconds, 3),
        new_tokens=new_tokens,
        tokens_per_second=round(new_tokens / seconds, 2) if seconds > 0 and new_tokens else None,
        n_resumed=n_resumed,
        # answers the verifier failed on (not a time-out): scored wrong, so accuracy is a lower bound
        verify_errors=VERIFY_STATS["errors"] - errors_before,
    )
    if summary["verify_errors"]:
        logger.warning(
            "answer verification failed (not a time-out) on %d completion(s), scored wrong: accuracy is a "
            "lower bound; --debug shows why",
            summary["verify_errors"],
        )
    if out is not None and writer:
        atomic_write_json(out / SUMMARY_FILE, summary)
    return summary


def check_counts(n_samples: int, k: int, limit: int | None) -> None:
    """The sample, k and limit counts make sense (one check for the CLI and the library)."""
    if n_samples < 1:
        raise UserError(f"--n-samples must be >= 1, got {n_samples}")
    if not 1 <= k <= n_samples:
        raise UserError(
            f"--k {k} must be between 1 and --n-samples ({n_samples})",
            hint=f"pass --n-samples {max(k, 1)} or more, or a smaller --k",
        )
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")


def _my_share(todo: list[int], backend: str, across_processes: bool) -> tuple[list[int], bool, bool]:
    """This process's share of the problems left (under ``accelerate launch`` each process takes a slice;
    with vLLM rank 0 generates them all), whether the work is split over processes, and whether this
    process writes the results (rank 0, or the only process)."""
    split = across_processes and distributed.num_processes() > 1
    writer = distributed.is_main_process() if split else True
    if split:
        todo = distributed.shard(todo) if backend == "hf" else (todo if writer else [])
    return todo, split, writer


def _earlier_items(
    out: Path | None, config: dict, keys: list[str], fresh: bool, across_processes: bool
) -> dict[str, dict]:
    """The items ``out`` already holds for these problems, when it was written with the same model and
    settings (other settings raise :class:`UserError`; ``fresh`` clears them)."""
    if out is None:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    with distributed.main_process_first() if across_processes else nullcontext():
        _check_resume(out, config, fresh)  # rank 0 first: it may clear the folder
    if not (out / ITEMS_FILE).exists():
        return {}
    wanted = set(keys)
    done = {r["key"]: r for r in read_jsonl(out / ITEMS_FILE) if r.get("key") in wanted}
    if done:
        logger.info("resuming: %d of %d items already in %s", len(done), len(keys), out / ITEMS_FILE)
    return done


def _generate_and_judge(
    model_spec_or_pair,
    rows: list[dict],
    keys: list[str],
    todo: list[int],
    done: dict[str, dict],
    *,
    backend: str,
    k: int,
    settings: dict,
    items_file: Path | None,
    on_progress: Callable[[float], None],
    on_batch: Callable[[], None],
) -> tuple[list[dict], int]:
    """Generate for the ``todo`` rows batch by batch, judge each completion, and record each item in ``done``
    (and ``items_file``) as its batch finishes. Returns this process's new items and generated tokens."""
    if not todo:
        return [], 0
    batches = _vllm_batches if backend == "vllm" else _hf_batches
    stream = batches(
        model_spec_or_pair, [rows[i]["prompt"] for i in todo], **settings, on_progress=on_progress
    )
    made, new_tokens = [], 0
    for local_idx, comps in stream:
        items = [todo[j] for j in local_idx]
        texts = [c.text for cs in comps for c in cs]
        refs = [str(rows[i]["solution"]) for i, cs in zip(items, comps, strict=True) for _ in cs]
        verdicts = iter(_judge(texts, refs))
        for i, cs in zip(items, comps, strict=True):
            row = _item_row(rows[i], keys[i], cs, [next(verdicts) for _ in cs], k)
            new_tokens += sum(c.n_tokens for c in cs)
            done[keys[i]] = row
            made.append(row)
            if items_file is not None:
                append_jsonl(items_file, row)
        on_batch()
    return made, new_tokens


def _gather_items(made: list[dict], new_tokens: int, done: dict[str, dict], items_file: Path | None) -> int:
    """Share every process's new items with every other (rank 0 appends the others' to ``items_file``);
    returns the generated tokens of all processes."""
    gathered = distributed.gather_objects((made, new_tokens))
    me = distributed.process_index()
    for rank, (rows_of_rank, _) in enumerate(gathered):
        for row in rows_of_rank if rank != me else []:
            done[row["key"]] = row
            if items_file is not None:
                append_jsonl(items_file, row)
    return sum(n for _, n in gathered)


def _summarize(items: list[dict], k: int) -> dict[str, Any]:
    summary = aggregate(items, k)
    summary.update({"k": k, "by": breakdown(items, k)})
    if summary["n_unscorable"]:
        logger.warning(
            "%d item(s) have a reference answer the verifier cannot parse; they are left out of accuracy",
            summary["n_unscorable"],
        )
    return summary


def _rescore(item: dict, k: int) -> dict:
    """Metrics recomputed from a stored item's per-sample fields (a resumed run may ask for a
    different k than the run that wrote the item)."""
    metrics = score_item(
        item["answers"], item["correct"], item["formatted"], item["n_tokens"], item["truncated"], k
    )
    return {**item, "metrics": metrics}


def _item_row(row: dict, key: str, comps, verdicts, k: int) -> dict[str, Any]:
    answers = [v.answer for v in verdicts]
    correct = [v.correct for v in verdicts]
    formatted = [bool(v.formatted) for v in verdicts]
    item = {
        "key": key,
        "problem": row.get("problem")
        or next((m["content"] for m in row["prompt"] if m["role"] == "user"), ""),
        "reference": str(row["solution"]),
        "completions": [c.text for c in comps],
        "answers": answers,
        "correct": correct,
        "formatted": formatted,
        "n_tokens": [c.n_tokens for c in comps],
        "truncated": [c.truncated for c in comps],
        "metrics": score_item(
            answers, correct, formatted, [c.n_tokens for c in comps], [c.truncated for c in comps], k
        ),
    }
    for name in ("subject", "level"):
        if row.get(name) not in (None, ""):
            item[name] = row[name]
    return item


# --------------------------------------------------------------------------------------------
# Pass rates (r1lab data pass-rate)
# --------------------------------------------------------------------------------------------


def measure_pass_rates(
    model_spec_or_pair,
    dataset,
    *,
    k: int = 8,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    work_dir: str | Path | None = None,
    backend: str = "auto",
    on_progress: Callable[[float, int], None] | None = None,
) -> tuple[list[dict], dict[str, Any]]:
    """Each problem's pass rate: ``k`` sampled completions judged as :func:`evaluate` judges them (it does
    the sampling: r1lab's decoder on the HF backend). Returns one
    :func:`r1lab.data.pass_rates.pass_rate_row` per dataset row, in order, and evaluate's summary.

    ``work_dir`` keeps the per-problem samples (``items.jsonl``), so a rerun with the same settings
    resumes; without it they go to a temporary folder.

    Example::

        from r1lab.data import load_eval_dataset
        ds = load_eval_dataset("builtin", split="train", n=20)
        rows, _ = measure_pass_rates("tiny", ds, k=4, max_new_tokens=16)
    """
    import tempfile

    from r1lab.data.pass_rates import pass_rate_row

    if temperature <= 0 and k > 1:
        raise UserError(
            f"k={k} greedy completions are all the same", hint="sample: use a temperature > 0 (e.g. 1.0)"
        )
    rows = _as_rows(dataset, None)
    with nullcontext(Path(work_dir)) if work_dir is not None else tempfile.TemporaryDirectory() as out:
        summary = evaluate(
            model_spec_or_pair,
            rows,
            n_samples=k,
            temperature=temperature,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            out_dir=out,
            backend=backend,
            seed=seed,
            on_progress=on_progress,
        )
        items = {item["key"]: item for item in read_jsonl(Path(out) / ITEMS_FILE)}
    return [
        pass_rate_row(
            row.get("problem") or items[_item_key(row)]["problem"],
            str(row["solution"]),
            items[_item_key(row)]["correct"],
            row.get("level"),
        )
        for row in rows
    ], summary
