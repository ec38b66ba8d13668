"""``r1lab rewards score|audit``: score completions from a JSONL file, probe a reward stack for hacks."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from r1lab.config import parse_value
from r1lab.errors import UserError

SCORE_EXAMPLES = """examples:
  r1lab rewards score runs/demo/samples.jsonl --rewards accuracy,format
  r1lab rewards score completions.jsonl --rewards accuracy,format,cosine --param cosine.max_len=500 --out scored.jsonl

Each line is a JSON object with a `completion` (a string or a chat list) and, for rewards that need it,
a `solution` (or `answer`) reference: a bare answer ("72", "\\\\frac{3}{4}"), GSM8K text ending in
"#### 72", or a worked solution with \\\\boxed{}. Other fields are passed to the rewards as columns.
"""

AUDIT_EXAMPLES = """examples:
  r1lab rewards audit                                   # accuracy, format, tag_count, weights 1
  r1lab rewards audit --config recipes/r1.yaml          # the first GRPO stage's rewards and weights
  r1lab rewards audit --rewards accuracy,format,reasoning_steps --weights 1,0.5,0.2 --fail-on-higher

Prints each probe's score per reward and its weighted total next to an honest, correct, well-formatted
answer. HIGHER: the probe beats the honest answer (the stack can be gamed). TIE: a probe that should
lose (wrong, padded, spammed) scores the same as the honest answer.
"""


def register(sub) -> None:
    """Add ``rewards score`` and ``rewards audit``."""
    from r1lab.cli import HelpFormatter, add_common_flags

    parser = sub.add_parser(
        "rewards",
        help="score completions with reward functions; audit a reward stack for hacks",
        description="Reward functions: score a JSONL of completions, or audit a reward stack.",
        formatter_class=HelpFormatter,
        epilog=SCORE_EXAMPLES.split("\n\n")[0] + "\n  r1lab rewards audit --config recipes/r1.yaml\n",
    )
    add_common_flags(parser)
    verbs = parser.add_subparsers(dest="rewards_verb", metavar="VERB")
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    _register_score(verbs, add_common_flags, HelpFormatter)
    _register_audit(verbs, add_common_flags, HelpFormatter)


def _register_score(verbs, add_common_flags, HelpFormatter) -> None:
    score = verbs.add_parser(
        "score",
        help="score completions in a JSONL file",
        description="Score each completion of a JSONL file with the chosen rewards.\n\n" + SCORE_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    score.add_argument("file", help="JSONL file with `completion` and `solution` fields")
    score.add_argument("--rewards", default="accuracy,format", help="comma-separated reward names")
    score.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="REWARD.KEY=VALUE",
        help="a reward parameter, e.g. cosine.max_len=500 or accuracy.fallbacks=boxed,answer_is (repeatable)",
    )
    score.add_argument("--completion-field", default="completion", help="field holding the completion")
    score.add_argument(
        "--timeout", type=_seconds, default=None, help="per-item verification time limit in seconds; None: 2"
    )
    score.add_argument(
        "--out",
        default=None,
        help="write the rows with a `scores` field to this JSONL file; None: do not write",
    )
    score.add_argument("--show", type=int, default=20, help="print at most this many per-item rows (0: none)")
    add_common_flags(score)
    score.set_defaults(func=_score)


def _register_audit(verbs, add_common_flags, HelpFormatter) -> None:
    audit = verbs.add_parser(
        "audit",
        help="run reward-hacking probes against a reward stack",
        description="Run a battery of reward-hacking probes against a reward stack.\n\n" + AUDIT_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    audit.add_argument(
        "--config",
        default=None,
        help="recipe YAML whose GRPO stage's rewards, weights and reward_params to audit",
    )
    audit.add_argument("--stage", default=None, help="which GRPO stage of the recipe; None: the first")
    audit.add_argument(
        "--rewards",
        default=None,
        help="comma-separated reward names; None: the recipe's, else accuracy,format,tag_count",
    )
    audit.add_argument(
        "--weights",
        default=None,
        help="comma-separated weights, one per reward; None: the recipe's, else all 1",
    )
    audit.add_argument(
        "--param", action="append", default=[], metavar="REWARD.KEY=VALUE", help="reward parameter"
    )
    audit.add_argument(
        "--fail-on-higher", action="store_true", help="exit 1 if any probe beats the honest answer"
    )
    add_common_flags(audit)
    audit.set_defaults(func=_audit)


def _parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        reward, dot, name = key.partition(".")
        if not eq or not dot or not reward or not name:
            raise UserError(f"bad --param {item!r}", hint="write REWARD.KEY=VALUE, e.g. cosine.max_len=500")
        parsed = parse_value(value)  # as recipes read values: 1e3 is a number
        if name == "fallbacks" and isinstance(parsed, str):
            parsed = [p.strip() for p in parsed.split(",") if p.strip()]
        params.setdefault(reward, {})[name] = parsed
    return params


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"file not found: {path}", hint="give a JSONL file with one completion per line")
    from r1lab.data.files import read_jsonl

    return [row for _, row in read_jsonl(path)]  # the data files' reader: errors name the line


def _columns(rows: list[dict], path: Path, completion_field: str) -> tuple[list, dict[str, list]]:
    completions = []
    for n, row in enumerate(rows, 1):
        if completion_field not in row:
            raise UserError(
                f"{path}: row {n} has no field {completion_field!r} (fields: {', '.join(sorted(row)) or 'none'})",
                hint="use --completion-field to name the field holding the completion",
            )
        completions.append(row[completion_field])
    keys = {k for row in rows for k in row} - {completion_field, "scores", "rewards"}
    columns = {k: [row.get(k) for row in rows] for k in sorted(keys)}
    return completions, columns


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _summary(name: str, values: list[float | None]) -> tuple[str, ...]:
    vals = [v for v in values if v is not None]
    if not vals:
        return (name, str(len(values)), "0", "—", "—", "—", "—")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return (
        name,
        str(len(values)),
        str(len(values) - len(vals)),
        f"{mean:.3f}",
        f"{std:.3f}",
        f"{min(vals):.3f}",
        f"{max(vals):.3f}",
    )


def _score(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from r1lab.io import write_jsonl
    from r1lab.rewards import completion_text, get_reward_funcs
    from r1lab.rewards.verify import STATS

    path = Path(args.file)
    params = _parse_params(args.param)
    if args.timeout is not None:
        for name in ("accuracy", "accuracy_strict", "cosine", "length"):
            if name in args.rewards.split(","):
                params.setdefault(name, {}).setdefault("timeout", args.timeout)
    funcs = get_reward_funcs(args.rewards, **params)
    rows = _read_rows(path)
    completions, columns = _columns(rows, path, args.completion_field)
    scores: dict[str, list] = {}
    errors_before = STATS["errors"]
    for func in funcs:
        scores[func.__name__] = func(completions, **columns)
    verify_errors = STATS["errors"] - errors_before

    console = Console()
    if args.show:
        table = Table(
            title=f"{path.name}: per-item scores (first {min(args.show, len(rows))} of {len(rows)})"
        )
        table.add_column("#", justify="right")
        table.add_column("completion (tail)", overflow="fold", max_width=60)
        for name in scores:
            table.add_column(name, justify="right")
        for i in range(min(args.show, len(rows))):
            tail = completion_text(completions[i])[-60:].replace("\n", "⏎")
            table.add_row(str(i + 1), tail, *(_fmt(scores[n][i]) for n in scores))
        console.print(table)
    summary = Table(title="summary")
    for col in ("reward", "n", "None", "mean", "std", "min", "max"):
        summary.add_column(col, justify="left" if col == "reward" else "right")
    for name, values in scores.items():
        summary.add_row(*_summary(name, values))
    console.print(summary)
    if args.out:
        out_rows = [{**row, "scores": {n: scores[n][i] for n in scores}} for i, row in enumerate(rows)]
        write_jsonl(args.out, out_rows)
        console.print(f"wrote {len(out_rows)} rows to {args.out}")
    if verify_errors:  # not a wrong answer: the verifier itself failed, so these scores are not judgements
        print(
            f"r1lab: {verify_errors} answer verification(s) failed (not a time-out) and were scored 0; "
            "run with --debug to see why",
            file=sys.stderr,
        )
        return 1
    return 0


def _stack_from_config(path: str, stage_name: str | None) -> tuple[list[str], list[float] | None, dict]:
    from r1lab.cli.train import resolve_recipe_path
    from r1lab.config import load_config

    run = load_config(resolve_recipe_path(path))  # a path, or a bundled recipe's name (seed, r1, ...)
    grpo = [s for s in run.stages if s.kind == "grpo" and (stage_name is None or s.name == stage_name)]
    if not grpo:
        which = f"named {stage_name!r}" if stage_name else "of kind grpo"
        raise UserError(f"{path}: no stage {which}", hint="audit needs a GRPO stage with `rewards:`")
    stage = grpo[0]
    weights = stage.args.get("reward_weights")
    return (
        list(stage.rewards),
        (list(weights) if weights is not None else None),
        dict(stage.reward_params or {}),
    )


def _audit(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from r1lab.rewards.audit import audit_rewards
    from r1lab.rewards.registry import parse_names

    names, weights, params = ["accuracy", "format", "tag_count"], None, {}
    source = "default stack"
    if args.config:
        names, weights, params = _stack_from_config(args.config, args.stage)
        source = args.config
    if args.rewards:
        names, weights = parse_names(args.rewards), None
        source = "--rewards"
    if args.weights:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError as exc:
            raise UserError(
                f"bad --weights {args.weights!r}", hint="comma-separated numbers, e.g. 1,0.5"
            ) from exc
    if weights is not None and len(weights) != len(names):
        raise UserError(
            f"{len(weights)} weights for {len(names)} rewards ({', '.join(names)})",
            hint="give one weight per reward, in the same order",
        )
    for reward, kv in _parse_params(args.param).items():
        params.setdefault(reward, {}).update(kv)
    results = audit_rewards(names, weights=weights, params=params)

    w = weights or [1.0] * len(names)
    table = Table(
        title=f"reward-hacking audit: {source} — "
        + ", ".join(f"{n}×{x:g}" for n, x in zip(names, w, strict=True))
    )
    table.add_column("probe")
    for name in results[0].scores:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    table.add_column("vs honest")
    for r in results:
        style = (
            "bold red"
            if r.flag == "HIGHER"
            else ("yellow" if r.flag == "TIE" else ("green" if r.name == "honest" else None))
        )
        table.add_row(
            r.name, *(_fmt(v) for v in r.scores.values()), f"{r.total:.3f}", r.flag or "", style=style
        )
    console = Console()
    console.print(table)
    higher = [r.name for r in results if r.flag == "HIGHER"]
    ties = [r.name for r in results if r.flag == "TIE"]
    console.print(f"probes scoring higher than an honest correct answer: {', '.join(higher) or 'none'}")
    if ties:
        console.print(f"probes that should lose but tie with it: {', '.join(ties)}")
    return 1 if (higher and args.fail_on_higher) else 0


def _seconds(text: str) -> float:
    """argparse type for --timeout: more than 0 and at most 60 seconds. Its UserError passes through
    argparse (which handles only ValueError/TypeError) to the CLI's one-line message."""
    from r1lab.rewards.verify import check_timeout

    return check_timeout(text)
