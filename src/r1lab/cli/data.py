"""``r1lab data preview|make-synthetic|pass-rate``: look at a data source as training sees it; write the
built-in task; measure each problem's pass rate with a model."""

from __future__ import annotations

import argparse
import statistics

from r1lab.errors import UserError

PREVIEW_EXAMPLES = """examples:
  r1lab data preview builtin --n 3                         # the built-in task (train split)
  r1lab data preview builtin:level=3 --split test --kind eval
  r1lab data preview data/gsm8k_train.jsonl                # question / answer with "#### n"
  r1lab data preview data/math.jsonl --kind sft            # problem / solution with \\boxed{}
  r1lab data preview my.csv --question-col prompt --answer-col target --on-bad-row skip
  r1lab data preview openai/gsm8k --split test             # a hub dataset (needs the hub or its cache)
  r1lab data preview ./gsm8k-snapshot --split test --verify  # a downloaded folder; check references parse

Sources: builtin[:level=1|1-3|mix,n=N,seed=S,split=...], a hub name (AI-MO/NuminaMath-TIR, openai/gsm8k,
HuggingFaceH4/MATH-500, bespokelabs/Bespoke-Stratos-17k, HuggingFaceH4/Bespoke-Stratos-17k,
open-r1/OpenR1-Math-220k, or any org/name), a .jsonl/.json/.csv/.parquet file, or a folder holding
split files (a hub snapshot with data/train-*.parquet, a save_to_disk folder, train.jsonl/test.jsonl).
"""

MAKE_EXAMPLES = """examples:
  r1lab data make-synthetic --n 1000 --level 1 --out data/easy.jsonl
  r1lab data make-synthetic --n 200 --level 1-3 --split test --out data/test.jsonl --seed 1

Each line: {"id", "problem", "answer", "solution", "level", "split"}; `solution` is the worked trace
"<think>\\nsteps\\n</think>\\n<answer>\\nN\\n</answer>". The file loads back with any r1lab --data flag.
"""


def add_column_flags(parser: argparse.ArgumentParser) -> None:
    """``--question-col`` and friends: explicit column names that override layout detection."""
    group = parser.add_argument_group("columns (override the detected layout)")
    for name, what in (
        ("question", "the question / problem text"),
        ("answer", "the reference answer (bare, '#### n' or \\boxed{})"),
        ("solution", "a worked solution / reasoning trace"),
        ("messages", "a chat list (role/content or ShareGPT from/value)"),
        ("system", "a per-row system prompt"),
    ):
        group.add_argument(f"--{name}-col", default=None, metavar="COL", help=f"column holding {what}")


def columns_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The ``columns=`` mapping for the loaders from ``--*-col`` flags."""
    names = ("question", "answer", "solution", "messages", "system")
    return {n: getattr(args, f"{n}_col") for n in names if getattr(args, f"{n}_col", None)}


def register(sub) -> None:
    """Add ``data preview``, ``data make-synthetic`` and ``data pass-rate``."""
    from r1lab.cli import HelpFormatter, add_common_flags

    parser = sub.add_parser(
        "data",
        help="preview a data source; write the built-in task to a file",
        description="Data sources: preview how training and evaluation will see them, or write the built-in task.",
        formatter_class=HelpFormatter,
        epilog=PREVIEW_EXAMPLES.split("\n\n")[0],
    )
    add_common_flags(parser)
    verbs = parser.add_subparsers(dest="data_verb", metavar="VERB")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    _register_preview(verbs, add_common_flags, HelpFormatter)
    _register_make_synthetic(verbs, add_common_flags, HelpFormatter)
    _register_pass_rate(verbs, add_common_flags, HelpFormatter)


def _register_preview(verbs, add_common_flags, HelpFormatter) -> None:
    preview = verbs.add_parser(
        "preview",
        help="show formatted rows and stats of a data source",
        description="Load a source exactly as training/evaluation would (validation included), print a few\n"
        "formatted rows and stats: row count, detected layout, length distributions, skipped rows.\n\n"
        + PREVIEW_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    preview.add_argument("source", metavar="NAME_OR_PATH", help="builtin[:options], a hub name, or a file")
    preview.add_argument("--split", default=None, help="split (default: train; test for --kind eval)")
    preview.add_argument("--n", type=int, default=3, help="how many formatted rows to show")
    preview.add_argument(
        "--kind", choices=("grpo", "sft", "eval"), default="grpo", help="format rows for this stage"
    )
    preview.add_argument(
        "--limit", type=int, default=None, help="read at most this many usable rows (default: all)"
    )
    preview.add_argument("--system-prompt", default="r1", help="'r1', 'none', 'source', or literal text")
    preview.add_argument(
        "--on-bad-row", choices=("error", "skip"), default="error", help="stop at a bad row, or skip it"
    )
    preview.add_argument(
        "--verify",
        action="store_true",
        help="also check each reference answer with the math verifier (r1lab.rewards): it must parse and "
        "equal itself, or no completion can ever be scored correct on that row",
    )
    add_column_flags(preview)
    add_common_flags(preview)
    preview.set_defaults(func=_preview)


def _register_make_synthetic(verbs, add_common_flags, HelpFormatter) -> None:
    make = verbs.add_parser(
        "make-synthetic",
        help="write built-in task problems to a JSONL file",
        description="Write problems of the built-in task (GSM8K-style, exact integer answers, worked\n"
        "R1-format solutions) to a JSONL file, atomically.\n\n" + MAKE_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    make.add_argument("--n", type=int, required=True, help="number of problems")
    make.add_argument(
        "--level", default="1", help="difficulty 0-5 (0: bare arithmetic), a range like 1-3, or mix"
    )
    make.add_argument("--out", required=True, help="output .jsonl file")
    make.add_argument("--split", default="train", choices=("train", "validation", "test"), help="which split")
    make.add_argument("--seed", type=int, default=0, help="random seed")
    add_common_flags(make)
    make.set_defaults(func=_make_synthetic)


PASS_RATE_EXAMPLES = """examples:
  r1lab data pass-rate builtin --model smollm2-135m --n 200 --k 8 --out rates.jsonl
  r1lab data pass-rate builtin:level=1 --model smollm2-135m --config recipes/seed.yaml --n 256 --k 8 \\
      --temperature 0.7 --max-new-tokens 64 --out runs/seed_pass_rates.jsonl   # the recipe's prompt
  r1lab data pass-rate data/gsm8k_train.jsonl --model runs/gsm8k/sft/model --k 8 --max-new-tokens 384 \\
      --out runs/gsm8k/pass_rates.jsonl --work-dir runs/gsm8k/pass_rates   # resumable

Each line: {"problem", "solution", "k", "passes", "pass_rate", "level"?}. A GRPO stage reads it with
`pass_rate_file:` and keeps a band (`pass_rate_band: [0.1, 0.9]`) or orders problems easy to hard
(`curriculum: easy_to_hard`). Prompts are the model's own (system prompt, reply prefix) unless given.
"""


def _register_pass_rate(verbs, add_common_flags, HelpFormatter) -> None:
    rate = verbs.add_parser(
        "pass-rate",
        help="measure each problem's pass rate with a model (k samples each)",
        description="Sample k completions per problem with a model (r1lab's batched decoder, the sampling\n"
        "`r1lab eval` does), judge each as the accuracy reward does, and write each problem's pass rate\n"
        "to a JSONL file, atomically.\n\n" + PASS_RATE_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    rate.add_argument("source", metavar="NAME_OR_PATH", help="builtin[:options], a hub name, or a file")
    rate.add_argument("--model", required=True, help="model spec: tiny, smollm2-135m, a run's model dir, ...")
    rate.add_argument("--out", required=True, help="output .jsonl file")
    rate.add_argument("--split", default="train", help="dataset split")
    rate.add_argument("--n", type=int, default=None, help="first N problems (default: all)")
    rate.add_argument("--k", type=int, default=8, help="samples per problem")
    rate.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0)")
    rate.add_argument("--max-new-tokens", type=int, default=256, help="token budget of each completion")
    rate.add_argument("--batch-size", type=int, default=64, help="sequences decoded together")
    rate.add_argument("--seed", type=int, default=0, help="sampling seed")
    rate.add_argument(
        "--system-prompt",
        default=None,
        help="'r1', 'none', or literal text (default: the model's own, else r1)",
    )
    rate.add_argument(
        "--reply-prefix",
        default=None,
        help="text each reply starts with (default: the model's own, else none)",
    )
    rate.add_argument(
        "--config",
        default=None,
        metavar="RECIPE",
        help="take the system prompt and reply prefix from this recipe (the flags above override it)",
    )
    rate.add_argument(
        "--work-dir", default=None, help="keep the samples here (items.jsonl); a rerun with it resumes"
    )
    rate.add_argument(
        "--on-bad-row", choices=("error", "skip"), default="error", help="stop at a bad row, or skip it"
    )
    add_column_flags(rate)
    add_common_flags(rate)
    rate.set_defaults(func=_pass_rate)


def _pass_rate(args: argparse.Namespace) -> int:
    import time
    from collections import Counter
    from pathlib import Path

    from r1lab.data import load_eval_dataset
    from r1lab.data.pass_rates import write_pass_rates
    from r1lab.evaluate import measure_pass_rates
    from r1lab.inference import progress
    from r1lab.models import resolve_model
    from r1lab.prompts import prompt_for

    if args.k < 1:
        raise UserError(f"--k must be >= 1, got {args.k}")
    if args.temperature <= 0:
        raise UserError(f"--temperature must be > 0, got {args.temperature}", hint="pass rates need sampling")
    if args.n is not None and args.n < 1:
        raise UserError(f"--n must be >= 1, got {args.n}")
    out = Path(args.out)
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UserError(f"--out must be a .jsonl file, got {out}", hint="e.g. --out rates.jsonl")
    resolve_model(args.model)  # a bad model spec fails here, before the data and the weights load
    system_prompt, reply_prefix = args.system_prompt, args.reply_prefix
    if args.config:
        from r1lab.config import load_config

        recipe = load_config(args.config)
        system_prompt = system_prompt or recipe.system_prompt or "none"
        reply_prefix = reply_prefix if reply_prefix is not None else (recipe.reply_prefix or "")
    system_prompt, reply_prefix, _ = prompt_for(args.model, system_prompt, reply_prefix)
    dataset = load_eval_dataset(
        args.source,
        split=args.split,
        n=args.n,
        system_prompt=system_prompt,
        reply_prefix=reply_prefix,
        columns=columns_from_args(args),
        on_bad_row=args.on_bad_row,
    )
    if len(dataset) == 0:
        raise UserError(f"no problems in {args.source} (split {args.split})")
    t0 = time.perf_counter()
    with progress("pass rates", len(dataset)) as on_progress:
        rows, summary = measure_pass_rates(
            args.model,
            dataset,
            k=args.k,
            temperature=args.temperature,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            seed=args.seed,
            work_dir=args.work_dir,
            on_progress=on_progress,
        )
    seconds = time.perf_counter() - t0
    write_pass_rates(out, rows)
    rates = [r["pass_rate"] for r in rows if r["pass_rate"] is not None]
    passes = Counter(r["passes"] for r in rows if r["passes"] is not None)
    print(
        f"wrote {len(rows)} pass rates (k={args.k}) to {out} in {seconds:.0f} s "
        f"({100 * seconds / len(rows):.0f} s per 100 problems)"
    )
    if rates:
        print(
            f"mean pass rate {sum(rates) / len(rates):.3f}; never solved {passes.get(0, 0)}, "
            f"always solved {passes.get(args.k, 0)}, in between {len(rates) - passes.get(0, 0) - passes.get(args.k, 0)}"
        )
        print("solved k times: " + "  ".join(f"{c}:{passes.get(c, 0)}" for c in range(args.k + 1)))
    if len(rates) < len(rows):
        print(
            f"{len(rows) - len(rates)} problems have a reference the verifier cannot parse (pass_rate null)"
        )
    return 0


def _dist(values: list[int]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"min {ordered[0]}  median {statistics.median(ordered):g}  p95 {p95}  max {ordered[-1]}"


def _preview(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from r1lab.data.formatting import eval_row, grpo_row, sft_row
    from r1lab.data.load import load_records
    from r1lab.prompts import resolve_system_prompt

    if args.n < 0:
        raise UserError(f"--n must be >= 0, got {args.n}")
    split = args.split or ("test" if args.kind == "eval" else "train")
    records, info = load_records(
        args.source,
        kind=args.kind,
        split=split,
        n=args.limit,
        columns=columns_from_args(args),
        on_bad_row=args.on_bad_row,
    )
    system = resolve_system_prompt(None if args.system_prompt == "source" else args.system_prompt)
    console = Console()

    stats = Table(title=f"{info.source} ({info.split}, for {args.kind})", show_header=False)
    stats.add_row("rows", str(info.n_kept))
    stats.add_row("layout", info.layout)
    stats.add_row("question chars", _dist([len(r.problem) for r in records]))
    if args.kind == "sft":
        stats.add_row("trace chars", _dist([len(r.trace or "") for r in records]))
    else:
        stats.add_row("answer chars", _dist([len(r.answer or "") for r in records]))
    levels = sorted({r.level for r in records if r.level})
    if levels:
        stats.add_row("levels", ", ".join(levels[:12]) + (" ..." if len(levels) > 12 else ""))
    if args.verify and args.kind != "sft":
        stats.add_row("verifier", _verify_references(records))
    stats.add_row("skipped", str(info.skipped.total))
    for reason, count in info.skipped.counts.most_common():
        stats.add_row(f"  {reason}", f"{count} (e.g. {info.skipped.examples[reason]})")
    console.print(stats)

    for i, rec in enumerate(records[: args.n]):
        own = rec.system if args.system_prompt == "source" else system
        if args.kind == "sft":
            row = sft_row(rec.problem, rec.trace, own)
            body = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in row["messages"])
        else:
            row = (
                eval_row(rec.problem, rec.answer, own, subject=rec.subject, level=rec.level)
                if args.kind == "eval"
                else grpo_row(rec.problem, rec.answer, own)
            )
            body = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in row["prompt"])
            body += f"\n\n[solution] {row['solution']}"
        # Text, not a str: data may contain "[...]" that rich would read as markup.
        console.print(Panel(Text(body), title=f"row {i}", expand=False))
    return 0


def _verify_references(records) -> str:
    """How many references the rewards' verifier parses and judges equal to themselves."""
    from r1lab.rewards import verify_answers

    refs = [r.answer for r in records]
    results = verify_answers(refs, refs)
    ok = sum(v is True for v in results)
    bad = [(refs[i], v) for i, v in enumerate(results) if v is not True]
    text = f"{ok}/{len(refs)} references verify as equal to themselves"
    if bad:
        unparseable = sum(v is None for _, v in bad)
        text += f"; {unparseable} unparseable, {len(bad) - unparseable} not self-equal (e.g. {bad[0][0]!r})"
    return text


def _make_synthetic(args: argparse.Namespace) -> int:
    from pathlib import Path

    from r1lab.data.synthetic import make_problems
    from r1lab.io import write_jsonl

    if args.n <= 0:
        raise UserError(f"--n must be positive, got {args.n}")
    out = Path(args.out)
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UserError(f"--out must be a .jsonl file, got {out}", hint="e.g. --out data/train.jsonl")
    rows = make_problems(args.n, level=args.level, seed=args.seed, split=args.split)
    write_jsonl(out, rows)
    print(f"wrote {len(rows)} {args.split} problems (level {args.level}, seed {args.seed}) to {out}")
    return 0
