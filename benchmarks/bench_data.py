"""Data: built-in task generation at 10**6 problems, and local-file loading vs ``datasets``' JSON loader.

* **generation**: ``make_problems(10**6)`` for the train split (levels 1 and mix) and 10**5 for the
  test split (which keeps 1 candidate in 10, so costs ~8x more per row); the target is 10**6 train
  problems "well under a minute".
* **file loading**: a 100,000-row GSM8K-style JSONL file turned into GRPO rows, two ways in the same
  run: r1lab's ``load_grpo_dataset`` (reads, detects the layout, extracts ``#### n``, checks every row,
  formats, builds the ``Dataset``) vs ``datasets.load_dataset("json")`` + a ``map`` doing the same
  formatting without per-row checks (the baseline a TRL script would write).

Writes ``benchmarks/results/data.json`` and ``.md``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe_machine

RESULTS = Path(__file__).parent / "results"
N_GEN, N_TEST, N_FILE = 1_000_000, 100_000, 100_000


def _timed(fn):
    """(wall seconds, result); the CPU seconds of the last call are kept in ``_timed.cpu``.

    CPU time is reported beside wall time because the machine is shared: with other jobs on the
    cores, wall time measures the queue as much as the code."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    _timed.cpu = time.process_time() - cpu
    return time.perf_counter() - start, out


def bench_generation() -> dict:
    from r1lab.data.synthetic import make_problems

    out = {}
    for label, n, kw in (
        ("train_level1", N_GEN, {"level": 1}),
        ("train_mix", N_GEN, {"level": "mix"}),
        ("test_mix", N_TEST, {"level": "mix", "split": "test"}),
    ):
        seconds, rows = _timed(lambda n=n, kw=kw: make_problems(n, **kw))
        assert len(rows) == n
        cpu = _timed.cpu
        out[label] = {
            "n": n,
            "seconds": round(seconds, 2),
            "cpu_seconds": round(cpu, 2),
            "rows_per_second": round(n / seconds),
            "rows_per_cpu_second": round(n / cpu),
        }
        print(
            f"generate {label:13s} n={n:>9,}  {seconds:6.2f}s wall  {cpu:6.2f}s cpu  {n / cpu:>9,.0f} rows/cpu-s",
            flush=True,
        )
        del rows
    return out


def _baseline_load(path: Path):
    import datasets

    from r1lab.prompts import R1_SYSTEM_PROMPT

    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(path.parent / "hf"))

    def fmt(row):
        return {
            "prompt": [
                {"role": "system", "content": R1_SYSTEM_PROMPT},
                {"role": "user", "content": row["question"]},
            ],
            "solution": row["answer"].rsplit("####", 1)[1].strip().replace(",", ""),
        }

    return ds.map(fmt, remove_columns=ds.column_names)


def bench_file_loading() -> dict:
    import datasets

    from r1lab.data import load_grpo_dataset
    from r1lab.data.synthetic import make_problems

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gsm8k_style.jsonl"
        rows = make_problems(N_FILE, level="mix")
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                steps = r["solution"].split("<think>\n", 1)[1].split("\n</think>", 1)[0]
                f.write(
                    json.dumps({"question": r["problem"], "answer": f"{steps}\n#### {r['answer']}"}) + "\n"
                )
        ours_s, ours = _timed(lambda: load_grpo_dataset(str(path)))
        ours_cpu = _timed.cpu
        base_s, base = _timed(lambda: _baseline_load(path))
        base_cpu = _timed.cpu
        assert ours["solution"] == base["solution"], "r1lab and the baseline disagree on reference answers"
    print(
        f"load {N_FILE:,}-row JSONL: r1lab {ours_s:.2f}s  datasets json+map {base_s:.2f}s  "
        f"ratio {ours_s / base_s:.2f}",
        flush=True,
    )
    return {
        "n_rows": N_FILE,
        "r1lab_seconds": round(ours_s, 2),
        "baseline_seconds": round(base_s, 2),
        "r1lab_over_baseline": round(ours_s / base_s, 2),
        "r1lab_cpu_seconds": round(ours_cpu, 2),
        "baseline_cpu_seconds": round(base_cpu, 2),
        "same_references": True,
    }


def main() -> dict:
    # The machine is shared: record its load so a slow run can be read for what it is.
    load_before = os.getloadavg()[0]
    report = {
        "machine": describe_machine(),
        "generation": bench_generation(),
        "file_loading": bench_file_loading(),
        "load_average_1min": {"before": round(load_before, 1), "after": round(os.getloadavg()[0], 1)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "data.json").write_text(json.dumps(report, indent=2) + "\n")
    g, fl, m = report["generation"], report["file_loading"], report["machine"]
    lines = [
        "# Data benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
        f"1-minute load average {report['load_average_1min']['before']} before, "
        f"{report['load_average_1min']['after']} after (other jobs share the cores).",
        "",
        "| workload | rows | wall s | CPU s | rows per CPU s |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| generate {k} | {v['n']:,} | {v['seconds']} | {v['cpu_seconds']} | {v['rows_per_cpu_second']:,} |"
            for k, v in g.items()
        ),
        "",
        f"Loading a {fl['n_rows']:,}-row GSM8K-style JSONL into GRPO rows: r1lab {fl['r1lab_seconds']} s "
        f"wall / {fl['r1lab_cpu_seconds']} s CPU (validates every row) vs `datasets.load_dataset('json')` + `map` "
        f"{fl['baseline_seconds']} s wall / {fl['baseline_cpu_seconds']} s CPU (wall ratio "
        f"{fl['r1lab_over_baseline']}); identical reference answers.",
        "",
    ]
    (RESULTS / "data.md").write_text("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
