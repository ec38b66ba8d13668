"""The run report: one self-contained HTML page showing what training did.

``write_report(run_dir)`` reads the run directory (``metrics.jsonl``, ``samples.jsonl``,
``summary.json``, ``config.yaml``; any of them may be missing or cut short) and writes
``run_dir/report.html`` with PNG plots embedded as base64, so the file can be mailed or opened
offline. It shows, per training stage: the total reward and each reward function's mean, mean
completion length, the fraction of zero-variance groups (groups that teach GRPO nothing), the
clipped-completion ratio, KL and entropy when logged, loss and learning rate; evaluation before and
after each stage; how often reflection words ("wait", "let me check", ...) appear in sampled
completions over training (R1's "aha" signal); and sample completions at several steps.

Plots use matplotlib's object API (``Figure``), not pyplot, so no GUI backend or global state is
involved.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from r1lab.data.formatting import question_of
from r1lab.errors import UserError
from r1lab.io import atomic_write_text, jsonl_lines
from r1lab.rewards.extract import completion_text
from r1lab.summary import METRIC_KEYS, METRIC_LABELS, RATE_KEYS

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"

# Phrases whose rise over training R1 reports as the "aha moment"; matched case-insensitively on
# word boundaries, so "wait" does not count "waiter".
REFLECTION_PHRASES = (
    "wait",
    "let me check",
    "verify",
    "re-check",
    "recheck",
    "double-check",
    "hmm",
    "actually",
    "mistake",
    "let me re",
)

# --------------------------------------------------------------------------------------------
# Reading the run directory (tolerant: a report of a half-finished run is still useful)
# --------------------------------------------------------------------------------------------


def read_rows(path: Path, problems: list[str]) -> list[dict]:
    """Rows of a JSONL file; unreadable lines are skipped and noted in ``problems``."""
    if not path.is_file():
        return []
    lines = list(jsonl_lines(path.read_text(encoding="utf-8", errors="replace")))
    rows = [line.value for line in lines if isinstance(line.value, dict)]
    bad = len(lines) - len(rows)
    if bad:
        problems.append(f"{path.name}: skipped {bad} unreadable line(s)")
    return rows


def read_summary(path: Path, problems: list[str]) -> dict:
    """``summary.json`` as a dict (empty when missing or unreadable)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problems.append(f"{path.name}: unreadable ({err})")
        return {}
    return data if isinstance(data, dict) else {}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def series_by_stage(rows: Iterable[dict]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{stage: {metric: [(step, value), ...]}}`` from metrics rows; non-numbers are dropped.

    >>> series_by_stage([{"stage": "grpo", "step": 1, "reward": 0.5, "note": "x"}])
    {'grpo': {'reward': [(1.0, 0.5)]}}
    """
    out: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        stage = str(row.get("stage") or "train")
        step = _number(row.get("step"))
        step = float(i) if step is None else step
        for key, value in row.items():
            if key in ("stage", "step", "time", "epoch"):
                continue
            v = _number(value)
            if v is not None:
                out[stage][key].append((step, v))
    return {s: dict(m) for s, m in out.items()}


def _phrase_regex(phrase: str) -> re.Pattern:
    return re.compile(r"(?<![A-Za-z])" + re.escape(phrase) + r"(?![A-Za-z])", re.IGNORECASE)


_PHRASE_RES = {p: _phrase_regex(p) for p in REFLECTION_PHRASES}


def reflection_frequency(
    samples: Iterable[dict], phrases: Sequence[str] = REFLECTION_PHRASES
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{stage: {phrase: [(step, fraction of that step's completions containing it), ...]}}``.

    >>> freq = reflection_frequency([
    ...     {"stage": "grpo", "step": 1, "completion": "4"},
    ...     {"stage": "grpo", "step": 2, "completion": "Wait, let me check: 4"},
    ... ], phrases=("wait", "let me check"))
    >>> freq["grpo"]["wait"]
    [(1.0, 0.0), (2.0, 1.0)]
    """
    regexes = {p: _PHRASE_RES.get(p) or _phrase_regex(p) for p in phrases}
    groups: dict[str, dict[float, list[str]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(samples):
        step = _number(s.get("step"))
        groups[str(s.get("stage") or "train")][float(i) if step is None else step].append(
            completion_text(s.get("completion"))
        )
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for stage, by_step in groups.items():
        out[stage] = {
            p: [
                (step, sum(bool(rx.search(t)) for t in texts) / len(texts))
                for step, texts in sorted(by_step.items())
            ]
            for p, rx in regexes.items()
        }
    return out


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _smooth(values: list[float]) -> list[float]:
    """Trailing moving average over ~1/20 of the points (raw noise stays visible underneath)."""
    w = max(1, len(values) // 20)
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= w:
            acc -= values[i - w]
        out.append(acc / min(i + 1, w))
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def line_plot(
    title: str, series: dict[str, list[tuple[float, float]]], ylabel: str = "", *, bold: str | None = None
) -> str | None:
    """A PNG (base64) line plot of named ``(x, y)`` series; ``None`` when there is nothing to draw."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    for name, points in series.items():
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        width = 2.2 if name == bold else 1.3
        if len(points) >= 20:
            (line,) = ax.plot(xs, ys, alpha=0.25, linewidth=0.8)
            ax.plot(xs, _smooth(ys), color=line.get_color(), linewidth=width, label=name)
        else:
            ax.plot(
                xs, ys, marker="o" if len(points) < 12 else None, markersize=3, linewidth=width, label=name
            )
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1 or bold:
        ax.legend(fontsize=8)
    return _png(fig)


def eval_bar_plot(stages: list[dict], key: str = "accuracy") -> str | None:
    """Grouped bars of ``key`` before and after each stage that recorded evaluation metrics, labelled with their
    values; rates on a 0-100% axis (so all-zero bars still have a sensible one)."""
    rows = [
        (
            s.get("name", "?"),
            _number(_metric(s.get("metrics_before"), key)),
            _number(_metric(s.get("metrics_after"), key)),
        )
        for s in stages
    ]
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    if not rows:
        return None
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    rate = key in RATE_KEYS
    fig = Figure(figsize=(4.6, 3.2))
    ax = fig.add_subplot()
    xs = range(len(rows))
    for offset, label, values in (
        (-0.2, "before", [r[1] for r in rows]),
        (0.2, "after", [r[2] for r in rows]),
    ):
        bars = ax.bar([x + offset for x in xs], [v or 0.0 for v in values], width=0.4, label=label)
        ax.bar_label(bars, labels=[_fmt_value(v, rate) for v in values], fontsize=7)
        # a measured 0 is a result, not a missing bar: draw it as a thick line on the axis in the bar's colour
        for bar, v in zip(bars, values, strict=True):
            if v == 0:
                ax.hlines(
                    0, bar.get_x(), bar.get_x() + bar.get_width(), colors=bar.get_facecolor(), linewidth=4
                )
    ax.set_xticks(list(xs), [r[0] for r in rows])
    top = max((v or 0.0) for r in rows for v in r[1:])
    if rate:
        ax.set_ylim(0, 1.08)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    else:
        ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    label = METRIC_LABELS.get(key, key)
    ax.set_ylabel(label)
    ax.set_title(f"{label} before / after each stage", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _fmt_value(v: float | None, rate: bool) -> str:
    """One number format for the report: rates in percent, the rest with 3 significant digits.

    >>> _fmt_value(0.1875, True), _fmt_value(41.25, False), _fmt_value(None, True)
    ('18.8%', '41.2', '-')
    """
    if v is None:
        return "-"
    return f"{v:.1%}" if rate else f"{v:.3g}"


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666} .grid{display:flex;flex-wrap:wrap;gap:12px} .grid figure{margin:0}
img{max-width:100%;border:1px solid #eee} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f6f6f6} td.l,th.l{text-align:left}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.6em;border-radius:4px;max-height:22em;overflow:auto;font-size:12px}
.note{color:#8a6d00;background:#fff8e1;padding:.4em .7em;border-radius:4px} .empty{color:#888;font-style:italic}
.sample{border:1px solid #e3e3e3;border-radius:6px;padding:.5em .8em;margin:.6em 0}
.ok{color:#1a7f37;font-weight:600} .bad{color:#c62828;font-weight:600} td.q{text-align:left;max-width:28em}
table.mini td,table.mini th{font-size:12px;padding:1px 6px}
"""


def _e(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def _img(b64: str | None, alt: str) -> str:
    if b64 is None:
        return ""
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{b64}"></figure>'


def _fmt(v: Any) -> str:
    n = _number(v)
    if n is None:
        return _e(v) if v is not None else "-"
    return f"{n:.4g}"


_LEFT = ' class="l"'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th{_LEFT if i == 0 else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(f"<td{_LEFT if i == 0 else ''}>{_fmt(c) if i else _e(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _stage_plots(stage: str, metrics: dict[str, list[tuple[float, float]]]) -> list[str]:
    rewards = {
        k.split("/")[1]: v for k, v in metrics.items() if k.startswith("rewards/") and k.endswith("/mean")
    }
    if "reward" in metrics:
        rewards["total"] = metrics["reward"]
    plots = [
        line_plot(f"{stage}: rewards", rewards, "mean reward", bold="total"),
        line_plot(
            f"{stage}: format rate of sampled completions",
            {"format": metrics.get("rewards/format/mean", [])},
            "fraction in the R1 format",
        ),
        line_plot(
            f"{stage}: mean completion length",
            {"length": metrics.get("completions/mean_length", [])},
            "tokens",
        ),
        line_plot(
            f"{stage}: zero-variance groups",
            {"frac_reward_zero_std": metrics.get("frac_reward_zero_std", [])},
            "fraction of groups",
        ),
        line_plot(
            f"{stage}: clipped completions",
            {"clipped_ratio": metrics.get("completions/clipped_ratio", [])},
            "fraction hitting max length",
        ),
        line_plot(f"{stage}: KL to reference", {"kl": metrics.get("kl", [])}, "KL"),
        line_plot(f"{stage}: entropy", {"entropy": metrics.get("entropy", [])}, "nats"),
        line_plot(f"{stage}: loss", {"loss": metrics.get("loss", [])}, "loss"),
        line_plot(f"{stage}: learning rate", {"learning_rate": metrics.get("learning_rate", [])}),
    ]
    return [p for p in plots if p is not None]


def _pick_steps(steps: Sequence[float], n: int = 4) -> list[float]:
    """Up to ``n`` steps spread from first to last.

    >>> _pick_steps([1, 2, 3, 4, 5, 6, 7, 8, 9], 3)
    [1, 5, 9]
    """
    steps = sorted(set(steps))
    if len(steps) <= n:
        return steps
    return sorted({steps[round(i * (len(steps) - 1) / (n - 1))] for i in range(n)})


def _samples_html(samples: list[dict], per_step: int = 2) -> str:
    by_stage: dict[str, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(samples):
        step = _number(s.get("step"))
        by_stage[str(s.get("stage") or "train")][float(i) if step is None else step].append(s)
    parts = []
    for stage, by_step in by_stage.items():
        for step in _pick_steps(list(by_step)):
            for s in by_step[step][:per_step]:
                rewards = s.get("rewards") if isinstance(s.get("rewards"), dict) else {}
                reward_txt = ", ".join(f"{_e(k)}={_fmt(v)}" for k, v in rewards.items()) or "-"
                parts.append(
                    f'<div class="sample"><b>{_e(stage)}</b> step {_fmt(step)} &middot; reference '
                    f"<code>{_e(s.get('solution'))}</code> &middot; rewards: {reward_txt}"
                    f"<div><i>question:</i> {_e(question_of(s.get('prompt')))}</div>"
                    f"<pre>{_e(completion_text(s.get('completion')))}</pre></div>"
                )
    return "".join(parts)


def _eval_table(stages: list[dict], base: dict | None = None) -> str:
    """Each stage's held-out metrics before and after it (rates in percent), led by the base model's when the
    summary has them (an interrupted run then still shows what was measured)."""
    rows = []
    if isinstance(base, dict) and base and not any(s.get("metrics_before") for s in stages):
        rows.append(["base model", *(_cell(_metric(base, k), k) for k in METRIC_KEYS)])
    for s in stages:
        for when in ("metrics_before", "metrics_after"):
            m = s.get(when)
            if isinstance(m, dict) and m:
                rows.append(
                    [
                        f"{s.get('name', '?')} ({when.removeprefix('metrics_')})",
                        *(_cell(_metric(m, k), k) for k in METRIC_KEYS),
                    ]
                )
    return _table(["stage", *(METRIC_LABELS.get(k, k) for k in METRIC_KEYS)], rows) if rows else ""


def _metric(metrics: Any, key: str) -> Any:
    return metrics.get(key) if isinstance(metrics, dict) else None


def _cell(v: Any, key: str) -> Any:
    n = _number(v)
    return _fmt_value(n, key in RATE_KEYS) if n is not None and key in RATE_KEYS else v


def _significance_table(stages: list[dict]) -> str:
    """Each evaluated stage against the base model on the same problems (McNemar's exact test)."""
    rows = []
    for s in stages:
        for metric, t in (s.get("vs_base") or {}).items():
            rows.append(
                [
                    s.get("name", "?"),
                    metric,
                    _fmt_value(_number(t.get("before")), True),
                    _fmt_value(_number(t.get("after")), True),
                    t.get("gained"),
                    t.get("lost"),
                    f"{t.get('p', 1.0):.3g}",
                ]
            )
    if not rows:
        return ""
    return "<h3>Paired test against the base model</h3>" + _table(
        ["stage", "metric", "base", "after stage", "problems gained", "problems lost", "p (McNemar exact)"],
        rows,
    )


def _achieved(stage: dict) -> str:
    """What a stage reported about itself: its ``achieved`` line, or its stats (rejection sampling)."""
    if stage.get("achieved"):
        return str(stage["achieved"])
    stats = stage.get("stats")
    if isinstance(stats, dict):
        return ", ".join(f"{k}={v}" for k, v in stats.items())
    return ""


def _answers_html(stages: list[dict]) -> str:
    """The inference stage's questions with the base and final model's answers."""
    parts = []
    for s in stages:
        for row in s.get("answers") or []:
            if not isinstance(row, dict):
                continue
            cells = []
            for label in ("base", "final"):
                a = row.get(label) if isinstance(row.get(label), dict) else {}
                cells.append(
                    f"<div><b>{label}</b> answer: <code>{_e(a.get('answer'))}</code>"
                    f"<details><summary>full reply</summary><pre>{_e(a.get('text'))}</pre></details></div>"
                )
            parts.append(
                f'<div class="sample"><i>question:</i> {_e(row.get("question"))}{"".join(cells)}</div>'
            )
    return "".join(parts)


def render_report(run_dir: str | Path) -> str:
    """The report's HTML text for ``run_dir`` (see the module docstring): read what the run wrote, tolerating
    a half-written run, then one section after another."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(
            f"run directory not found: {run}",
            hint="pass a directory under runs/, e.g. r1lab report runs/demo",
        )
    problems: list[str] = []
    metrics_rows = read_rows(run / "metrics.jsonl", problems)
    samples = read_rows(run / "samples.jsonl", problems)
    summary = read_summary(run / "summary.json", problems)
    stages = [s for s in summary.get("stages") or [] if isinstance(s, dict)]
    name = summary.get("name") or run.name

    body = [
        f"<h1>r1lab run: {_e(name)}</h1>",
        f'<p class="meta">{_e(run.resolve())} &middot; report written {datetime.now(UTC):%Y-%m-%d %H:%M UTC}</p>',
        "".join(f'<p class="note">{_e(p)}</p>' for p in problems),
    ]
    missing = [f for f in ("summary.json", "metrics.jsonl", "samples.jsonl") if not (run / f).is_file()]
    if missing:
        body.append(f'<p class="note">not found in this run: {_e(", ".join(missing))}</p>')
    series = series_by_stage(metrics_rows)
    body += [
        _stages_section(stages, run, series),
        _evaluation_section(stages, summary.get("base_metrics")),
        _heldout_answers_section(run, stages),
        _curves_section(series),
        _reflection_section(samples),
    ]
    answers = _answers_html(stages)
    if answers:
        body.append("<h2>Inference test: base vs final model</h2>" + answers)
    body.append("<h2>Sample completions</h2>")
    body.append(_samples_html(samples) or '<p class="empty">no samples logged</p>')
    config = run / "config.yaml"
    if config.is_file():
        body.append(
            f"<h2>Config</h2><details><summary>config.yaml</summary><pre>{_e(config.read_text(encoding='utf-8', errors='replace'))}</pre></details>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request (a console error when opened from disk)
        f"<title>r1lab report: {_e(name)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def _stages_section(stages: list[dict], run: Path, series: dict) -> str:
    if not stages:
        return '<h2>Stages</h2><p class="empty">no stages recorded in summary.json</p>'
    head = "".join(
        f"<th{_LEFT if i in (0, 4, 5) else ''}>{h}</th>"
        for i, h in enumerate(("stage", "kind", "status", "seconds", "model", "achieved"))
    )
    rows = "".join(
        f"<tr><td{_LEFT}>{_e(s.get('name'))}</td><td>{_e(s.get('kind'))}</td><td>{_e(s.get('status'))}</td>"
        f"<td>{_fmt(s.get('seconds'))}</td><td{_LEFT}>{_path_html(s.get('model'), run)}</td>"
        f"<td{_LEFT}>{_achieved_html(s, series.get(str(s.get('name')), {}))}</td></tr>"
        for s in stages
    )
    return f"<h2>Stages</h2><table><tr>{head}</tr>{rows}</table>" + _tensorboard_html(run)


def relative_to_run(path: Any, run: Path) -> str:
    """``path`` relative to the run folder when it lies inside it (``grpo/model``), else as given (a hub
    id, ``tiny``, a model elsewhere).

    >>> relative_to_run("/x/runs/demo/grpo/model", Path("/x/runs/demo")), relative_to_run("tiny", Path("r"))
    ('grpo/model', 'tiny')
    """
    text = "" if path is None else str(path)
    try:
        return Path(text).resolve().relative_to(run.resolve()).as_posix() if text else text
    except ValueError:
        return text


def _path_html(path: Any, run: Path) -> str:
    rel = relative_to_run(path, run)
    if rel and rel != str(path) and (run / rel).exists():
        return f'<a href="{_e(rel)}/"><code>{_e(rel)}</code></a>'
    return f"<code>{_e(rel)}</code>" if rel else "-"


def _tensorboard_html(run: Path) -> str:
    if not (run / "tb").is_dir():
        return ""
    return (
        '<p>TensorBoard logs: <a href="tb/"><code>tb/</code></a> '
        "(<code>tensorboard --logdir tb</code> in this folder)</p>"
    )


def _achieved_html(stage: dict, metrics: dict) -> str:
    """What a stage achieved as a verdict and a small table (measure, before, after, paired test), instead of
    the summary's one-sentence form; stats for a rejection-sampling stage."""
    achieved = str(stage.get("achieved") or "")
    verdict = achieved.split(":", 1)[0] if achieved.startswith(("improved", "learned nothing")) else ""
    rows = []
    rewards = [v for _, v in metrics.get("reward", [])]
    if len(rewards) >= 2:
        q = max(1, len(rewards) // 4)
        rows.append(
            [
                "reward (first / last quarter of steps)",
                f"{sum(rewards[:q]) / q:.2f}",
                f"{sum(rewards[-q:]) / q:.2f}",
                "",
            ]
        )
    before, after = stage.get("metrics_before") or {}, stage.get("metrics_after") or {}
    # before -> after is the stage's input model -> the stage: the paired test of that same pair (summaries
    # written before vs_input existed have only the test against the base model)
    tests = stage.get("vs_input") or stage.get("vs_base") or {}
    for key, label in (("accuracy", "held-out accuracy"), ("format_rate", "held-out format")):
        if _number(_metric(after, key)) is None:
            continue
        t = tests.get(key) or {}
        test = f"+{t['gained']}/-{t['lost']}, p={t['p']:.3g}" if "p" in t else ""
        rows.append(
            [
                label,
                _fmt_value(_number(_metric(before, key)), True),
                _fmt_value(_number(after[key]), True),
                test,
            ]
        )
    if not rows:
        return _e(_achieved(stage))
    cells = "".join(
        f"<tr><td{_LEFT}>{_e(r[0])}</td><td>{_e(r[1])}</td><td>{_e(r[2])}</td><td>{_e(r[3])}</td></tr>"
        for r in rows
    )
    table = f'<table class="mini"><tr><th{_LEFT}>measure</th><th>before</th><th>after</th><th>vs base</th></tr>{cells}</table>'
    return (f"<b>{_e(verdict)}</b>" if verdict else "") + table


def _heldout_answers_section(run: Path, stages: list[dict], limit: int = 8) -> str:
    """The base and the final model's answers to the same held-out problems side by side (``evals/*/
    items.jsonl``), right and wrong marked; problems one model solved and the other did not come first."""
    final = next(
        (
            str(s.get("name"))
            for s in reversed(stages)
            if s.get("metrics_after") and (run / "evals" / str(s.get("name"))).is_dir()
        ),
        None,
    )
    base_path = run / "evals" / "base" / "items.jsonl"
    if final is None or not base_path.is_file():
        return ""
    ignored: list[str] = []
    base = {r.get("key"): r for r in read_rows(base_path, ignored)}
    pairs = [
        (base[r.get("key")], r)
        for r in read_rows(run / "evals" / final / "items.jsonl", ignored)
        if r.get("key") in base
    ]
    if not pairs:
        return ""
    pairs.sort(key=lambda p: _first_correct(p[0]) == _first_correct(p[1]))  # stable: changed ones first
    rows = "".join(
        f'<tr><td class="q">{_e(b.get("problem"))}</td><td><code>{_e(b.get("reference"))}</code></td>'
        f"<td{_LEFT}>{_answer_cell(b)}</td><td{_LEFT}>{_answer_cell(f)}</td></tr>"
        for b, f in pairs[:limit]
    )
    changed = sum(_first_correct(b) != _first_correct(f) for b, f in pairs)
    return (
        f"<h2>Held-out answers: base vs {_e(final)}</h2>"
        f"<p>{min(limit, len(pairs))} of the {len(pairs)} held-out problems both models answered "
        f"({changed} answered right by one and wrong by the other, shown first); "
        f"from <code>evals/base/items.jsonl</code> and <code>evals/{_e(final)}/items.jsonl</code>.</p>"
        f"<table><tr><th{_LEFT}>problem</th><th>reference</th><th{_LEFT}>base</th><th{_LEFT}>{_e(final)}</th></tr>"
        f"{rows}</table>"
    )


def _first_correct(item: dict) -> bool:
    correct = item.get("correct")
    return bool(correct[0]) if isinstance(correct, list) and correct else False


def _answer_cell(item: dict) -> str:
    answers, completions = item.get("answers") or [None], item.get("completions") or [""]
    ok = _first_correct(item)
    mark = '<span class="ok">&#10003; right</span>' if ok else '<span class="bad">&#10007; wrong</span>'
    return (
        f"{mark} <code>{_e(answers[0] if answers[0] is not None else 'no answer')}</code>"
        f"<details><summary>reply</summary><pre>{_e(completion_text(completions[0]))}</pre></details>"
    )


def _evaluation_section(stages: list[dict], base: dict | None) -> str:
    head = "<h2>Evaluation before / after each stage</h2>"
    table = _eval_table(stages, base)
    if not table:
        return head + '<p class="empty">no evaluation metrics recorded</p>'
    plots = [
        _img(eval_bar_plot(stages, key), f"{METRIC_LABELS[key]} before and after each stage")
        for key in ("accuracy", "format_rate", "mean_completion_tokens")
    ]
    return head + '<div class="grid">' + "".join(plots) + "</div>" + table + _significance_table(stages)


def _curves_section(series: dict) -> str:
    out = ["<h2>Training curves</h2>"]
    if not series:
        out.append('<p class="empty">no training metrics logged (metrics.jsonl missing or empty)</p>')
    for stage, metrics in series.items():
        plots = _stage_plots(stage, metrics)
        out.append(f"<h3>{_e(stage)}</h3>")
        out.append(
            '<div class="grid">' + "".join(_img(p, f"{stage} plot") for p in plots) + "</div>"
            if plots
            else '<p class="empty">no plottable metrics</p>'
        )
    return "\n".join(out)


def _reflection_section(samples: list[dict]) -> str:
    out = [
        "<h2>Reflection words in sampled completions</h2>",
        "<p>Fraction of each step's sampled completions that contain the phrase. R1 reports these rising during RL "
        "as the model learns to re-check its work.</p>",
    ]
    freq = reflection_frequency(samples)
    if not freq:
        out.append('<p class="empty">no samples logged (samples.jsonl missing or empty)</p>')
    for stage, by_phrase in freq.items():
        seen = {p: pts for p, pts in by_phrase.items() if any(v > 0 for _, v in pts)}
        totals = [[p, sum(v for _, v in pts) / len(pts)] for p, pts in by_phrase.items() if pts]
        plot = line_plot(f"{stage}: reflection words", seen, "fraction of completions")
        out.append(
            f"<h3>{_e(stage)}</h3>"
            + (
                _img(plot, f"{stage} reflection words")
                if plot
                else '<p class="empty">none of the phrases appear</p>'
            )
        )
        out.append(_table(["phrase", "mean fraction over steps"], totals))
    return "\n".join(out)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``run_dir/report.html`` (or ``out``) atomically and return its path.

    Works on partial runs: missing or empty ``metrics.jsonl``/``samples.jsonl``/``summary.json``
    give sections that say so instead of errors.

    Example::

        path = write_report("runs/demo")   # runs/demo/report.html
    """
    text = render_report(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    atomic_write_text(path, text)
    logger.info("report written to %s", path)
    return path
