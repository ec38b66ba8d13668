"""Accuracy reward: batch verifier vs a naive per-item math-verify loop, in the same run.

Scores 10,000 mixed completions (6,000 GSM8K-style numbers, 4,000 MATH-style LaTeX answers taken from
the MATH-500 reference answers) two ways:

* **r1lab**: ``verify_answers`` — plain numbers compared exactly in process, everything else in a pool
  of worker processes (one per core) with a per-item deadline, parsed references and repeated
  (answer, reference) pairs cached;
* **naive**: the same extracted answers, each verified in the main process by a fresh math-verify
  ``parse`` of reference and answer and ``verify`` (what TRL / open-r1 do per item).

Two workloads: ``grpo`` (groups of 8 completions per prompt that repeat answers, as GRPO samples do)
and ``unique`` (every completion different, so no cache hits). Also measures, on the 500 MATH-500
reference answers, self-agreement (each answer boxed and judged against itself), cross-rejection
(judged against other problems' answers), and TRL 1.16's ``accuracy_reward`` on the same
self-agreement task. Writes ``benchmarks/results/rewards.json`` and ``.md``.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from benchmarks.machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "rewards" / "fixtures" / "math500_answers.jsonl"
RESULTS = Path(__file__).parent / "results"
N_TOTAL, N_NUMERIC, GROUP = 10_000, 6_000, 8


def _math500() -> list[str]:
    with open(FIXTURE, encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f]


def _numeric_item(rng: random.Random, value: int, form: int) -> tuple[str, str]:
    """A GSM8K-style (completion, reference) pair; about half correct."""
    ref = (
        f"She pays {value // 2} + {value - value // 2} = {value} dollars.\n#### {value:,}"
        if form % 2
        else str(value)
    )
    guess = value if rng.random() < 0.5 else value + rng.choice([-10, -1, 1, 2, 100])
    shapes = [
        f"<think>\nadd them\n</think>\n<answer>\n{guess}\n</answer>",
        f"So the total is \\boxed{{{guess}}}.",
        f"The answer is {guess:,}.",
        f"<think>\nx\n</think>\n<answer>\n${guess}\n</answer>",
        f"<think>\nx\n</think>\n<answer>\n{guess}.00\n</answer>",
        f"We get {guess} apples",
    ]
    return shapes[form % len(shapes)], ref


def _latex_item(rng: random.Random, answers: list[str], i: int, form: int) -> tuple[str, str]:
    ref = answers[i % len(answers)]
    guess = ref if rng.random() < 0.5 else answers[rng.randrange(len(answers))]
    shapes = [
        f"<think>\nwork\n</think>\n<answer>\n{guess}\n</answer>",
        f"Therefore the answer is $\\boxed{{{guess}}}$.",
        f"<think>\nwork\n</think>\n<answer>\n$\\boxed{{{guess}}}$\n</answer>",
    ]
    return shapes[form % len(shapes)], ref


def make_workload(kind: str, seed: int = 0) -> tuple[list[str], list[str]]:
    """``kind="grpo"``: prompts with 8 samples each drawn from 2-3 candidate answers;
    ``kind="unique"``: every completion its own prompt."""
    rng = random.Random(seed)
    answers = _math500()
    completions, references = [], []
    n_groups = N_TOTAL // GROUP
    for g in range(n_groups):
        numeric = g < N_NUMERIC // GROUP
        if kind == "grpo":
            value = rng.randrange(1, 200_000)
            idx = rng.randrange(len(answers))
            candidates = [rng.randrange(6) for _ in range(rng.choice([2, 3]))]
            seeds = [rng.randrange(10**9) for _ in candidates]
            for _ in range(GROUP):
                k = rng.randrange(len(candidates))
                sub = random.Random(seeds[k])  # same candidate -> same completion text
                if numeric:
                    c, r = _numeric_item(sub, value, candidates[k])
                else:
                    c, r = _latex_item(sub, answers, idx, candidates[k])
                completions.append(c)
                references.append(r)
        else:
            for _ in range(GROUP):
                if numeric:
                    c, r = _numeric_item(rng, rng.randrange(1, 200_000), rng.randrange(6))
                else:
                    c, r = _latex_item(rng, answers, rng.randrange(len(answers)), rng.randrange(3))
                completions.append(c)
                references.append(r)
    return completions, references


def naive_verify(answer: str | None, reference: str) -> bool | None:
    """Per-item math-verify with its default extraction configs (LaTeX and plain expressions), no
    caches, no number fast path, no worker: the baseline. Answers and references get the same math
    delimiters r1lab adds, without which bare LaTeX references do not parse at all."""
    from math_verify import parse, verify

    from r1lab.rewards._mv import _delimited

    gold = parse(_delimited(reference), parsing_timeout=None)
    if not any(not isinstance(p, str) for p in gold):
        return None
    if answer is None:
        return False
    pred = parse(_delimited(answer), parsing_timeout=None)
    if not pred:
        return False
    try:
        return bool(verify(gold, pred, timeout_seconds=None))
    except Exception:
        return False


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time_ours(pool, answers, refs) -> tuple[float, list, float]:
    """Wall seconds, verdicts, and CPU seconds (this process + the workers) of one batch."""
    from r1lab.rewards import verify_answers
    from r1lab.rewards.verify import clear_caches

    clear_caches()  # no verdicts or known references carried over from earlier runs
    pool.clear_worker_caches()  # no parsed references either: only warm processes
    pids = pool.pids
    cpu0 = time.process_time() + sum(_proc_cpu_seconds(p) for p in pids)
    t0 = time.perf_counter()
    out = verify_answers(answers, refs, workers=pool)
    wall = time.perf_counter() - t0
    # A worker replaced during the run loses its CPU count; the run reports its restarts.
    cpu = time.process_time() + sum(_proc_cpu_seconds(p) for p in pids) - cpu0
    return wall, out, cpu


def _time_naive(answers, refs) -> tuple[float, list, float]:
    from r1lab.answers import reference_answer

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    out = [naive_verify(a, reference_answer(r)) for a, r in zip(answers, refs, strict=True)]
    return time.perf_counter() - t0, out, time.process_time() - cpu0


def _warm_up(pool, n: int = 2000) -> dict:
    """Both sides see the same 2,000 other completions first: math-verify's ANTLR parser and sympy
    warm their caches per process, and a training run's verifier pool lives for many steps."""
    from r1lab.rewards import verify_answers
    from r1lab.rewards.extract import extract_answer

    completions, refs = make_workload("unique", seed=99)
    completions, refs = completions[-n:], refs[-n:]  # the MATH-style end of the workload
    answers = [extract_answer(c) for c in completions]
    t0 = time.perf_counter()
    pool.map([("1", "1")] * pool.n_workers, timeout=120)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    verify_answers(answers, refs, workers=pool)
    ours = time.perf_counter() - t0
    naive, _, _ = _time_naive(answers, refs)
    return {
        "pool_startup_seconds": round(startup, 2),
        "r1lab_seconds": round(ours, 2),
        "naive_seconds": round(naive, 2),
    }


def measure_math500() -> dict:
    """Self-agreement and cross-rejection on MATH-500 answers; TRL's accuracy_reward for comparison."""
    from r1lab.rewards import AccuracyReward
    from r1lab.rewards.extract import extract_answer
    from r1lab.rewards.verify import clear_caches

    answers = _math500()
    boxed = [f"The final answer is $\\boxed{{{a}}}$." for a in answers]
    # 1. Our reward as used in training (string shortcut included).
    clear_caches()
    ours = AccuracyReward()(boxed, solution=answers)
    # 2. The parser alone: math-verify on both sides, no exact-string shortcut.
    parser_only = [naive_verify(extract_answer(c), a) for c, a in zip(boxed, answers, strict=True)]
    # 3. Cross-rejection: every answer against 10 other problems' answers (textually different ones).
    rng = random.Random(0)
    pairs = []
    for i, gold in enumerate(answers):
        for j in rng.sample(range(len(answers)), 12):
            if j != i and answers[j].replace(" ", "") != gold.replace(" ", ""):
                pairs.append((answers[j], gold))
    clear_caches()
    from r1lab.rewards import verify_answers

    cross = verify_answers([a for a, _ in pairs], [g for _, g in pairs])
    accepted = [p for p, v in zip(pairs, cross, strict=True) if v]
    # 4. TRL 1.16 accuracy_reward on the same self-agreement task.
    import logging

    from trl.rewards import accuracy_reward

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    trl = accuracy_reward([[{"role": "assistant", "content": c}] for c in boxed], answers)
    return {
        "n": len(answers),
        "self_agreement_reward": sum(v == 1.0 for v in ours),
        "self_agreement_parser_only": sum(v is True for v in parser_only),
        "parser_only_failures": [a for a, v in zip(answers, parser_only, strict=True) if v is not True],
        "cross_pairs": len(pairs),
        "cross_rejected": len(pairs) - len(accepted),
        "cross_accepted_examples": accepted[:10],
        "trl_accuracy_reward": {
            "equal": sum(v == 1.0 for v in trl),
            "skipped": sum(v is None for v in trl),
            "wrong": sum(v == 0.0 for v in trl),
        },
    }


def main() -> dict:
    from r1lab.rewards.extract import extract_answer
    from r1lab.rewards.verify import default_workers

    workers = default_workers()
    report: dict = {
        "machine": describe_machine(),
        "workers": workers,
        "n_completions": N_TOTAL,
        # Other jobs share these 2 cores; the load average says how much of them the run really had.
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "workloads": {},
    }
    from r1lab.rewards import VerifierPool
    from r1lab.rewards.verify import STATS

    pool = VerifierPool(n_workers=workers)
    try:
        report["warm_up"] = _warm_up(pool)
        for kind in ("grpo", "unique"):
            completions, refs = make_workload(kind)
            answers = [extract_answer(c) for c in completions]
            restarts0 = pool.n_restarts
            ours_s, ours, ours_cpu = _time_ours(pool, answers, refs)
            naive_s, naive, naive_cpu = _time_naive(answers, refs)
            diffs = [
                (completions[i], refs[i], ours[i], naive[i]) for i in range(len(ours)) if ours[i] != naive[i]
            ]
            report["workloads"][kind] = {
                "unique_pairs": len(set(zip(answers, refs, strict=True))),
                "r1lab_seconds": round(ours_s, 3),
                "naive_seconds": round(naive_s, 3),
                "speedup": round(naive_s / ours_s, 2),
                "r1lab_cpu_seconds": round(ours_cpu, 2),
                "naive_cpu_seconds": round(naive_cpu, 2),
                "cpu_ratio": round(naive_cpu / max(ours_cpu, 1e-9), 2),
                "worker_restarts": pool.n_restarts - restarts0,
                "decided_by": dict(STATS),
                "items_per_second": round(N_TOTAL / ours_s),
                "naive_items_per_second": round(N_TOTAL / naive_s),
                "correct_fraction": round(sum(v is True for v in ours) / N_TOTAL, 3),
                "timeouts": pool.n_timeouts,
                "disagreements": len(diffs),
                "disagreement_examples": diffs[:8],
            }
            print(
                f"{kind:7s} r1lab {ours_s:7.2f}s ({ours_cpu:.1f} cpu-s)  naive {naive_s:7.2f}s ({naive_cpu:.1f} cpu-s)  "
                f"x{naive_s / ours_s:5.1f} wall, x{naive_cpu / max(ours_cpu, 1e-9):5.1f} cpu  "
                f"disagreements {len(diffs)}",
                flush=True,
            )
    finally:
        pool.close()
    report["load_average_after_timing"] = [round(x, 2) for x in os.getloadavg()]
    report["math500"] = measure_math500()
    m = report["math500"]
    print(
        f"MATH-500 self-agreement: reward {m['self_agreement_reward']}/500, parser only "
        f"{m['self_agreement_parser_only']}/500; cross-rejection {m['cross_rejected']}/{m['cross_pairs']}; "
        f"TRL accuracy_reward {m['trl_accuracy_reward']}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    from r1lab.io import atomic_write_json, atomic_write_text

    atomic_write_json(RESULTS / "rewards.json", report)
    atomic_write_text(RESULTS / "rewards.md", _markdown(report))
    return report


def _markdown(r: dict) -> str:
    mach = r["machine"]
    lines = [
        "# Accuracy reward: batch verifier vs naive per-item math-verify",
        "",
        f"Machine: {mach.get('cpu')}, {mach.get('cores')} cores, {mach.get('memory_gib')} GiB, "
        f"Python {mach.get('python')}; {r['workers']} verifier workers. Produced by `python -m benchmarks rewards`. "
        f"Load average (1, 5, 15 min) at start {r['load_average_start']}, after timing "
        f"{r['load_average_after_timing']} (other jobs shared the cores).",
        "",
        f"{r['n_completions']:,} completions: 6,000 GSM8K-style numbers (`#### 1,234` or bare references; tag, "
        "boxed, 'The answer is', `$N`, `N.00`, prose forms) and 4,000 MATH-style LaTeX answers (MATH-500 "
        "reference answers, right or another problem's). `grpo`: 8 samples per prompt drawn from 2-3 "
        "candidate completions (repeats, as in GRPO groups); `unique`: no repeats. Naive = per-item "
        "math-verify parse of reference and answer + verify in the main process (no caches, no number fast "
        "path, no pool). Same extracted answers for both.",
        "",
        f"Both sides were first warmed on the same 2,000 other completions (pool start-up "
        f"{r['warm_up']['pool_startup_seconds']} s, not in the timings; warm-up pass: r1lab "
        f"{r['warm_up']['r1lab_seconds']} s, naive {r['warm_up']['naive_seconds']} s). Before each timed run the "
        "verdict cache, the known-reference set and the workers' parsed-reference caches are emptied.",
        "",
        "Wall-clock time depends on how much of the 2 shared cores the run got (see load average); CPU "
        "seconds (this process + the verifier workers, from /proc) do not, so both are given.",
        "",
        "| workload | unique pairs | r1lab wall s | naive wall s | **speedup (wall)** | r1lab CPU s | naive CPU s | CPU ratio | items/s r1lab | items/s naive | disagreements | worker restarts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, w in r["workloads"].items():
        lines.append(
            f"| {kind} | {w['unique_pairs']:,} | {w['r1lab_seconds']} | {w['naive_seconds']} | **{w['speedup']}×** | "
            f"{w['r1lab_cpu_seconds']} | {w['naive_cpu_seconds']} | {w['cpu_ratio']}× | "
            f"{w['items_per_second']:,} | {w['naive_items_per_second']:,} | {w['disagreements']} | {w['worker_restarts']} |"
        )
    for kind, w in r["workloads"].items():
        if w["disagreement_examples"]:
            lines += ["", f"Disagreements ({kind}), first few — completion, reference, r1lab, naive:", ""]
            lines += [f"- `{c!r}` vs `{ref!r}`: {o} / {n}" for c, ref, o, n in w["disagreement_examples"]]
    lines += ["", "How r1lab decided the items (fast path = exact number/fraction compare in process):", ""]
    for kind, w in r["workloads"].items():
        lines.append(f"- {kind}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(w["decided_by"].items())))
    lines += [
        "",
        "Reading: items that need math-verify (LaTeX on either side) cost about the same CPU on both sides; the "
        "fast paths and caches remove the rest. So the CPU ratio is bounded by naive CPU / CPU of those items, "
        "and on 2 idle cores the 2 workers can at most halve the wall time of that part.",
    ]
    m = r["math500"]
    t = m["trl_accuracy_reward"]
    lines += [
        "",
        "## MATH-500 reference answers",
        "",
        f"- Self-agreement (each answer boxed, judged against itself): accuracy reward "
        f"**{m['self_agreement_reward']}/{m['n']}**; math-verify parse alone (no exact-string shortcut) "
        f"**{m['self_agreement_parser_only']}/{m['n']}**.",
        f"- Cross-rejection (answer vs other problems' textually different answers): "
        f"**{m['cross_rejected']}/{m['cross_pairs']}** rejected "
        f"({100 * m['cross_rejected'] / max(1, m['cross_pairs']):.2f}%).",
        f"- TRL 1.16 `accuracy_reward` on the same self-agreement task: {t['equal']} equal, {t['skipped']} "
        f"skipped (None), {t['wrong']} wrong.",
    ]
    if m["cross_accepted_examples"]:
        lines += ["", "Cross pairs judged equal (answer, reference):", ""]
        lines += [f"- `{a}` vs `{g}`" for a, g in m["cross_accepted_examples"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
