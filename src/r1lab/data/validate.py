"""Row checks before any model loads, the ``on_bad_row`` policy, and the contamination check.

Every row is checked: a non-empty question of sane length; for GRPO and evaluation a parseable
reference answer; for SFT an assistant turn (the trace). ``on_bad_row="error"`` stops at the first
bad row with a message naming the file, row/line, field and reason; ``"skip"`` drops bad rows and
logs how many per reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from r1lab.data.answers import looks_parseable
from r1lab.data.layouts import Record
from r1lab.data.normalize import normalize_text
from r1lab.errors import UserError

log = logging.getLogger(__name__)

ON_BAD_ROW = ("error", "skip")
MAX_QUESTION_CHARS = 20_000
MAX_TRACE_CHARS = 200_000


NO_SOLUTION = "no assistant turn / worked solution"
# Question/answer rows are GRPO data: SFT imitates a worked solution, so it needs one per row.
SFT_NEEDS = (
    "SFT learns to imitate worked solutions: give the column holding them (--solution-col COL, or a "
    "messages column with an assistant turn), make them with `r1lab rs` (its rs/data.jsonl), or train on "
    "question/answer data with `r1lab grpo`"
)


def check_record(rec: Record, kind: str) -> tuple[str, str] | None:
    """``(field, reason)`` when ``rec`` cannot be used for ``kind`` (grpo, sft, eval), else ``None``.

    >>> check_record(Record(problem="2+2?", answer="4"), "grpo") is None
    True
    >>> check_record(Record(problem="  ", answer="4"), "grpo")
    ('question', 'empty question')
    >>> check_record(Record(problem="2+2?", answer="4"), "sft")
    ('assistant', 'no assistant turn / worked solution')
    """
    if rec.error:
        return "row", rec.error
    if rec.problem is None or not rec.problem.strip():
        return "question", "empty question"
    if len(rec.problem) > MAX_QUESTION_CHARS:
        return "question", f"question longer than {MAX_QUESTION_CHARS} characters"
    if kind in ("grpo", "eval"):
        reason = looks_parseable(rec.answer)
        if reason:
            return "answer", reason
    elif kind == "sft":
        if rec.trace is None or not rec.trace.strip():
            return "assistant", NO_SOLUTION
        if len(rec.trace) > MAX_TRACE_CHARS:
            return "assistant", f"assistant turn longer than {MAX_TRACE_CHARS} characters"
    return None


@dataclass
class BadRowReport:
    """What was dropped under ``on_bad_row="skip"``: counts per reason and one example of each."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def filter_records(
    items: Iterable[tuple[str, Record]],
    kind: str,
    *,
    on_bad_row: str = "error",
    report: BadRowReport | None = None,
) -> Iterator[Record]:
    """Yield the usable records of ``(where, record)`` pairs; ``where`` reads like
    ``"data.jsonl line 7"`` and goes into the error message.

    With ``on_bad_row="skip"`` bad rows are counted into ``report`` (per reason) instead.
    """
    if on_bad_row not in ON_BAD_ROW:
        raise UserError(f"on_bad_row must be one of {', '.join(ON_BAD_ROW)}, got {on_bad_row!r}")
    for where, rec in items:
        bad = check_record(rec, kind)
        if bad is None:
            yield rec
            continue
        field_name, reason = bad
        if on_bad_row == "error":
            raise UserError(
                f"bad row in {where}, field {field_name}: {reason}",
                hint=SFT_NEEDS
                if reason == NO_SOLUTION
                else "fix that row, or drop bad rows with --on-bad-row skip (a recipe stage: on_bad_row: skip)",
            )
        if report is not None:
            report.counts[reason] += 1
            report.examples.setdefault(reason, where)


def log_skipped(report: BadRowReport, source: str) -> None:
    """One warning listing how many rows were skipped for each reason (with an example location)."""
    if report.total:
        parts = "; ".join(
            f"{n} x {reason} (e.g. {report.examples[reason]})" for reason, n in report.counts.most_common()
        )
        log.warning("skipped %d bad row(s) of %s: %s", report.total, source, parts)


def _problem_texts(ds) -> list[str]:
    """Question texts of a dataset made by this package (``problem`` column, else the user turn)."""
    cols = ds.column_names
    if "problem" in cols:
        return list(ds["problem"])
    for col in ("prompt", "messages"):
        if col in cols:
            return [next((m["content"] for m in msgs if m["role"] == "user"), "") for msgs in ds[col]]
    raise UserError(f"cannot find question texts in a dataset with columns {cols}")


def contamination(train_ds, eval_ds) -> list[str]:
    """Evaluation questions that also appear in the training set (normalized text match).

    >>> from datasets import Dataset
    >>> contamination(Dataset.from_dict({"problem": ["What is 2+2?"]}),
    ...               Dataset.from_dict({"problem": ["what is 2 + 2", "What is 2-2?"]}))
    ['what is 2 + 2']
    """
    train = {normalize_text(t) for t in _problem_texts(train_ds)}
    return [t for t in _problem_texts(eval_ds) if normalize_text(t) in train]


def warn_contamination(train_ds, eval_ds) -> int:
    """Count evaluation problems found in the training set and log a warning if any.

    Matching is on :func:`r1lab.data.normalize.normalize_text` (case, spacing and sentence
    punctuation ignored; see :func:`contamination`). Works on datasets from
    ``load_grpo_dataset``/``load_sft_dataset``/``load_eval_dataset``.

    >>> from r1lab.data import load_eval_dataset, load_grpo_dataset
    >>> warn_contamination(load_grpo_dataset("builtin", n=100), load_eval_dataset("builtin", n=100))
    0
    """
    overlap = contamination(train_ds, eval_ds)
    if overlap:
        log.warning(
            "%d of %d evaluation problems also appear in the training data (e.g. %r): "
            "evaluation scores on them measure memorization",
            len(overlap),
            len(eval_ds),
            overlap[0][:80],
        )
    return len(overlap)
