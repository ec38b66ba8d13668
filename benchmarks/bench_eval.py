"""Evaluation speed: the seed's approach (one ``generate`` per question) against ``r1lab.evaluate``.

Same model, same problems, same token budget, greedy decoding, in one process run:

- **seed**: the model loaded as the seed did (default fp32), each question rendered with the chat template
  and passed alone to ``model.generate`` (batch 1), then judged;
- **r1lab, fp32**: ``evaluate`` on the same fp32 model (batched, length-sorted, shared-prefix KV cache), to
  separate what batching gives from what the dtype gives;
- **r1lab**: ``evaluate`` as ``r1lab eval`` runs it (``load_model`` picks bf16 on CPUs with native bf16).

Wall time covers generation and judging, not model loading. Writes ``benchmarks/results/eval.json`` and
``eval.md`` with the machine description.

Environment knobs: ``R1LAB_BENCH_EVAL_MODEL`` (default ``smollm2-135m``), ``R1LAB_BENCH_EVAL_N`` (problems,
default 64), ``R1LAB_BENCH_EVAL_TOKENS`` (max new tokens, default 128), ``R1LAB_BENCH_EVAL_BATCH`` (r1lab batch
sizes to time, comma-separated, default ``16,64``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.machine import describe_machine_now

RESULTS = Path(__file__).parent / "results"


def seed_style_eval(model, tokenizer, dataset, max_new_tokens: int) -> dict:
    """One ``generate`` call per question, batch 1, as the seed's inference test did."""
    import torch

    from r1lab.rewards import judge

    texts, n_tokens = [], 0
    t0 = time.perf_counter()
    for row in dataset:
        prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        n_tokens += int(new.shape[0])
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    verdicts = judge(texts, [str(r["solution"]) for r in dataset])
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "new_tokens": n_tokens,
        "n_correct": sum(bool(v.correct) for v in verdicts),
    }


def ours(pair, dataset, max_new_tokens: int, batch_size: int) -> dict:
    from r1lab.evaluate import evaluate

    t0 = time.perf_counter()
    s = evaluate(pair, dataset, max_new_tokens=max_new_tokens, batch_size=batch_size, backend="hf")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "new_tokens": s["new_tokens"], "n_correct": round(s["pass@1"] * len(dataset))}


def main() -> dict:
    """Run the comparison, print a table, write the results."""
    import torch

    from r1lab.data import load_eval_dataset
    from r1lab.inference import generate
    from r1lab.io import atomic_write_json, atomic_write_text
    from r1lab.models import load_model
    from r1lab.rewards import judge

    spec = os.environ.get("R1LAB_BENCH_EVAL_MODEL", "smollm2-135m")
    n = int(os.environ.get("R1LAB_BENCH_EVAL_N", "64"))
    max_new = int(os.environ.get("R1LAB_BENCH_EVAL_TOKENS", "128"))
    batches = [int(b) for b in os.environ.get("R1LAB_BENCH_EVAL_BATCH", "16,64").split(",")]
    batch = max(batches)
    dataset = load_eval_dataset("builtin", split="test", n=n)

    fp32 = load_model(spec, dtype="float32")
    auto = load_model(spec)
    # Warm-ups outside the timed region: the verifier's worker processes start on first use, and the
    # first forward pass of a model pays one-off allocation costs. Neither belongs to either approach.
    judge(["<answer>1</answer>"], ["1"])
    for model, tok in (fp32, auto):
        generate(model, tok, [dataset[0]["prompt"]], max_new_tokens=2)
    approaches = {"seed (batch 1, fp32)": lambda chunk: seed_style_eval(*fp32, chunk, max_new)}
    for b in batches:
        approaches[f"r1lab (batch {b}, fp32)"] = lambda chunk, b=b: ours(fp32, chunk, max_new, b)
    if auto[0].dtype != torch.float32:  # what `r1lab eval` loads by default (bf16 on bf16-capable CPUs)
        label = f"r1lab (batch {batch}, {str(auto[0].dtype).removeprefix('torch.')})"
        approaches[label] = lambda chunk: ours(auto, chunk, max_new, batch)
    # The machine is shared: run the approaches interleaved, one batch-sized chunk of problems at a time, in
    # alternating order, so a change in background load hits every approach alike.
    rows = {name: {"seconds": 0.0, "new_tokens": 0, "n_correct": 0} for name in approaches}
    names = list(approaches)
    for c, start in enumerate(range(0, n, batch)):
        chunk = dataset.select(range(start, min(start + batch, n)))
        for name in names if c % 2 == 0 else names[::-1]:
            r = approaches[name](chunk)
            for key in rows[name]:
                rows[name][key] += r[key]
    for r in rows.values():
        r["pass@1"] = r["n_correct"] / n
    base = rows["seed (batch 1, fp32)"]["seconds"]
    for r in rows.values():
        r["speedup"] = base / r["seconds"]
        r["tokens_per_second"] = r["new_tokens"] / r["seconds"]
        r["seconds_per_problem"] = r["seconds"] / n

    header = f"{'approach':28} {'seconds':>8} {'s/problem':>9} {'new tok':>8} {'tok/s':>7} {'pass@1':>7} {'speedup':>8}"
    lines = [header, "-" * len(header)]
    for name, r in rows.items():
        lines.append(
            f"{name:28} {r['seconds']:8.1f} {r['seconds_per_problem']:9.2f} {r['new_tokens']:8d} "
            f"{r['tokens_per_second']:7.1f} {r['pass@1']:7.3f} {r['speedup']:7.1f}x"
        )
    table = "\n".join(lines)
    print(table)

    machine = describe_machine_now()
    result = {
        "benchmark": "eval",
        "model": spec,
        "problems": n,
        "max_new_tokens": max_new,
        "batch_sizes": batches,
        "decoding": "greedy",
        "machine": machine,
        "results": rows,
        "speedup": max(r["speedup"] for r in rows.values()),
        "goal": ">= 8x the seed's one-generate-per-question approach",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / "eval.json", result)
    md = (
        f"# Evaluation speed: seed approach vs r1lab.evaluate\n\n"
        f"Model `{spec}`, {n} built-in test problems, greedy, max {max_new} new tokens. "
        "Wall time of generation + judging (model loading excluded).\n\n"
        f"```\n{table}\n```\n\n"
        f"Machine: {machine}\n\n"
        "The machine is shared with other jobs; the load average at the end is recorded above. All rows ran in "
        "the same process, one after another. r1lab's decoder shares the prompts' common prefix (system prompt "
        "and chat header) across the batch and drops finished rows from it; a CPU decoding step costs about "
        "the same for 1 row as for 4 (it is bound by reading the weights), so larger batches gain most. Token "
        "counts can differ between rows only where batched fp32 arithmetic flips a near-tie, or where bf16 "
        "greedy decoding picks other tokens than fp32.\n"
    )
    atomic_write_text(RESULTS / "eval.md", md)
    return result


if __name__ == "__main__":
    main()
