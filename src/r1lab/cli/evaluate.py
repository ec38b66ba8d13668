"""``r1lab eval``: pass@1 / pass@k / maj@k of a model on a math dataset."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

log = logging.getLogger("r1lab.eval")

DESCRIPTION = """Evaluate a model on math problems: pass@1, pass@k (unbiased), maj@k, format rate,
completion length and truncation, by subject/level when the data has them.

Answers are judged by the same verifier the training rewards use. Per-item results go to
OUT/items.jsonl as they finish and the summary to OUT/summary.json; rerunning the same command
continues where a killed run stopped (or reuses the finished results, and says so), while a changed
setting (tokens, temperature, samples, seed, prompt) starts a new result set. A model trained by r1lab is
asked with the system prompt and reply prefix it was trained with (its r1lab_prompt.json) unless
--system-prompt / --reply-prefix say otherwise.

examples:
  r1lab eval --model tiny --data builtin --limit 20
  r1lab eval --model smollm2-135m --data builtin --limit 50 --max-new-tokens 256
  r1lab eval --model runs/demo/sft/model --data gsm8k_test.jsonl --n-samples 8 --temperature 0.7
  r1lab eval --model smollm2-135m --data builtin --json          # summary as JSON on stdout
"""


def register(sub) -> None:
    """Add the ``eval`` verb."""
    from r1lab.cli import HelpFormatter, add_common_flags
    from r1lab.cli.data import add_column_flags

    p = sub.add_parser(
        "eval",
        help="evaluate a model (pass@k, maj@k)",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    _add_problem_flags(p.add_argument_group("what to evaluate"))
    add_column_flags(p)
    _add_generation_flags(p.add_argument_group("how to generate"))
    _add_output_flags(p.add_argument_group("results"))
    add_common_flags(p)
    p.set_defaults(func=run_eval)


def _add_problem_flags(p) -> None:
    p.add_argument(
        "--model", required=True, help="model spec: tiny, smollm2-135m, a run's model dir, a .gguf, a hub id"
    )
    p.add_argument(
        "--data",
        required=True,
        help="data source: builtin[:level=N], a hub name, or a .jsonl/.json/.csv/.parquet file",
    )
    p.add_argument("--split", default="test", help="dataset split")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    p.add_argument(
        "--on-bad-row", choices=("error", "skip"), default="error", help="stop at a bad row, or skip it"
    )


def _add_generation_flags(p) -> None:
    p.add_argument("--n-samples", type=int, default=1, help="completions per problem")
    p.add_argument("--k", type=int, default=None, help="k for pass@k and maj@k (default: --n-samples)")
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="0 = greedy (default: 0 for one sample, 0.7 for several)",
    )
    p.add_argument("--max-new-tokens", type=int, default=256, help="token budget of each completion")
    p.add_argument("--batch-size", type=int, default=64, help="sequences decoded together (default 64)")
    p.add_argument(
        "--backend",
        choices=["auto", "hf", "vllm"],
        default="auto",
        help="generation backend (vllm needs a GPU)",
    )
    p.add_argument(
        "--system-prompt",
        default=None,
        help="'r1', 'none', or literal text (default: the prompt the model was trained with when r1lab "
        "trained it, else 'r1')",
    )
    p.add_argument(
        "--reply-prefix",
        default=None,
        help="text the reply starts with, e.g. '<think>\\n' (default: the model's own, else none)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def _add_output_flags(p) -> None:
    p.add_argument("--out", default=None, help="output directory (default: runs/eval/<model>-<data>)")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run a hub model's own code (only for authors you trust)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard earlier results in --out instead of resuming"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).name or text).strip("_")[:60] or "model"


def default_out_dir(model: str, data: str, settings: dict | None = None) -> Path:
    """``runs/eval/<model>-<data>[-<settings hash>]``, with path-unsafe characters replaced. The hash of the
    generation settings makes a changed setting (tokens, temperature, prompt…) a new result set, while an
    identical rerun finds (and reuses) its earlier results."""
    model_name = (
        _slug(model.rstrip("/").removesuffix("/model"))
        if model.rstrip("/").endswith("/model")
        else _slug(model)
    )
    name = f"{model_name}-{_slug(data)}"
    if settings:
        import hashlib

        name += "-" + hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return Path("runs") / "eval" / name


def summary_table(summary: dict, title: str = "evaluation"):
    """A rich table of the summary (overall row + one row per subject/level value)."""
    from rich.table import Table

    k = summary["k"]
    cols = {"pass@1": "pass@1", f"pass@{k}": f"pass@{k}", f"maj@{k}": f"maj@{k}"}  # dict: no repeat when k=1
    cols.update(
        {
            "format_rate": "format",
            "mean_completion_tokens": "tokens",
            "truncation_rate": "truncated",
            "n_items": "n",
        }
    )
    table = Table(title=title)
    table.add_column("group", overflow="fold")
    for label in cols.values():
        table.add_column(label, justify="right", no_wrap=True)

    def fmt(v, col):  # one number format with the report: rates in percent
        if v is None:
            return "-"
        if col in ("mean_completion_tokens", "n_items") or not isinstance(v, float):
            return f"{v:.1f}" if isinstance(v, float) else str(v)
        return f"{v:.1%}"

    table.add_row("all", *(fmt(summary.get(c), c) for c in cols))
    for field, groups in (summary.get("by") or {}).items():
        for value, m in groups.items():
            table.add_row(f"{field}={value}", *(fmt(m.get(c), c) for c in cols))
    return table


def run_eval(args: argparse.Namespace) -> int:
    """Handler of ``r1lab eval``: check the flags, load the problems (asked the model's way), evaluate with a
    progress bar, print the summary."""
    from r1lab import distributed
    from r1lab.evaluate import evaluate
    from r1lab.inference import load_pair, progress

    temperature, k = _check_flags(args)  # cheap checks first: nothing is loaded or written on bad flags
    dataset, settings, prompt_source = _problems(args, temperature)
    out = Path(args.out) if args.out else default_out_dir(args.model, args.data, settings)
    log.info("prompt: %s; results go to %s", prompt_source, out)
    with progress("eval", len(dataset), disable=args.json) as on_progress:
        summary = evaluate(
            load_pair(args.model, trust_remote_code=True) if args.trust_remote_code else args.model,
            dataset,
            n_samples=args.n_samples,
            k=k,
            temperature=temperature,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            out_dir=out,
            backend=args.backend,
            seed=args.seed,
            fresh=args.fresh,
            on_progress=on_progress,
            across_processes=True,  # under accelerate launch each process takes a share
        )
    if summary.get("n_resumed") and not args.fresh:
        reused = summary["n_resumed"]
        what = "all" if reused == summary["n_items"] else f"{reused} of"
        log.info(
            "reused %s %d results already in %s (same model, data and settings); --fresh recomputes them",
            what,
            summary["n_items"],
            out,
        )
    if distributed.is_main_process():  # rank 0 prints the one summary
        _print_summary(args, summary, out)
    distributed.shutdown()
    return 0


def _check_flags(args: argparse.Namespace) -> tuple[float, int]:
    """``(temperature, k)`` from the flags; a bad flag, backend or model fails here, before anything loads."""
    from r1lab.errors import UserError
    from r1lab.evaluate import check_counts, choose_backend
    from r1lab.models import resolve_model

    temperature = args.temperature if args.temperature is not None else (0.0 if args.n_samples == 1 else 0.7)
    k = args.k if args.k is not None else args.n_samples
    check_counts(args.n_samples, k, args.limit)
    if args.n_samples > 1 and temperature == 0:
        raise UserError(
            "--n-samples > 1 with --temperature 0 gives identical samples", hint="set --temperature > 0"
        )
    choose_backend(args.backend)
    resolve_model(args.model, trust_remote_code=args.trust_remote_code)
    return temperature, k


def _problems(args: argparse.Namespace, temperature: float):
    """The evaluation problems, prompted as the model was trained (or as the flags say), the settings that
    name their result set, and where the prompt came from."""
    from r1lab.cli.data import columns_from_args
    from r1lab.data import load_eval_dataset
    from r1lab.errors import UserError
    from r1lab.prompts import prompt_for

    system_prompt, reply_prefix, prompt_source = prompt_for(args.model, args.system_prompt, args.reply_prefix)
    dataset = load_eval_dataset(
        args.data,
        split=args.split,
        n=args.limit,
        system_prompt=system_prompt,
        reply_prefix=reply_prefix,
        columns=columns_from_args(args),
        on_bad_row=args.on_bad_row,
    )
    if len(dataset) == 0:
        raise UserError(
            f"no problems in {args.data} (split {args.split})", hint="check the source, split and --limit"
        )
    settings = {
        "split": args.split,
        "n_samples": args.n_samples,
        "temperature": temperature,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "system_prompt": system_prompt,
        "reply_prefix": reply_prefix,
    }
    return dataset, settings, prompt_source


def _print_summary(args: argparse.Namespace, summary: dict, out: Path) -> None:
    from rich.console import Console

    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    Console().print(
        summary_table(summary, title=f"{args.model} on {args.data} ({summary['n_items']} problems)")
    )
    print(f"per-item results: {out / 'items.jsonl'}   summary: {out / 'summary.json'}", file=sys.stdout)
