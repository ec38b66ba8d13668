"""``summary.json``: what a run did and measured, one entry per stage. The types below are its schema; the
pipeline writes it (resuming from it after a kill), the console tables and ``report.html`` read it.

One metric name throughout: a model's held-out ``accuracy`` is the share of problems whose greedy answer
verifies (``r1lab.evaluate``'s pass@1 with one sample), wherever a run stores it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypedDict

log = logging.getLogger(__name__)


class Metrics(TypedDict):
    """A model's held-out measurement: ``base_metrics``, a stage's ``metrics_before``/``metrics_after``,
    ``final_metrics``."""

    accuracy: float | None
    format_rate: float | None
    mean_completion_tokens: float | None
    truncation_rate: float | None
    n_items: int | None


METRIC_KEYS: tuple[str, ...] = tuple(Metrics.__annotations__)
RATE_KEYS = ("accuracy", "format_rate", "truncation_rate")
METRIC_LABELS = {
    "accuracy": "accuracy",
    "format_rate": "format rate",
    "mean_completion_tokens": "mean length (tokens)",
    "truncation_rate": "truncated",
    "n_items": "n_items",
}


class StageEntry(TypedDict, total=False):
    """One stage's record. Every stage: ``name``, ``kind``, ``status`` (pending, running, done, skipped),
    ``model_in``, ``model`` (its output, or its input for stages that do not train), ``started``,
    ``seconds``. Training stages: ``train_seconds``, ``metrics_before``/``metrics_after``, ``vs_input``
    (paired tests against the stage's own input model, which decide its verdict), ``vs_base`` (against the
    base model), ``achieved`` (the verdict line, then a vs-base line). ``eval``: ``metrics_after`` and
    ``result`` (evaluate's whole summary: pass@k, maj@k, by-field breakdowns). ``rs``: ``stats``.
    ``inference``: ``answers``."""

    name: str
    kind: str
    status: str
    model_in: str
    model: str
    started: float
    seconds: float
    train_seconds: float
    metrics_before: Metrics | None
    metrics_after: Metrics | None
    vs_base: dict[str, Any] | None
    vs_input: dict[str, Any] | None
    achieved: str
    result: dict[str, Any]
    stats: dict[str, Any]
    answers: list[dict[str, Any]]


class Summary(TypedDict, total=False):
    """The whole file: the run's ``name`` and starting ``model``, its ``stages`` in recipe order, the base
    model's and the final model's metrics, and the final model's paired tests against the base."""

    name: str
    model: str
    stages: list[StageEntry]
    base_metrics: Metrics | None
    final_model: str
    final_metrics: Metrics | None
    final_vs_base: dict[str, Any] | None


def metrics_of(result: dict[str, Any]) -> Metrics:
    """The held-out metrics of an evaluation summary (:func:`r1lab.evaluate.evaluate`'s return value).

    >>> metrics_of({"pass@1": 0.25, "format_rate": 1.0, "n_items": 4, "maj@1": 0.25})["accuracy"]
    0.25
    """
    return Metrics(
        accuracy=result.get("pass@1"),
        format_rate=result.get("format_rate"),
        mean_completion_tokens=result.get("mean_completion_tokens"),
        truncation_rate=result.get("truncation_rate"),
        n_items=result.get("n_items"),
    )


def read_summary(path: Path, name: str, model: str) -> Summary:
    """The run's summary so far, or a fresh one (no file, another run's file, or an unreadable one)."""
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("name") == name:
                data.setdefault("stages", [])
                return data
        except ValueError:
            log.warning("ignoring unreadable %s", path)
    return Summary(name=name, model=model, stages=[])


def stage_entry(summary: Summary, name: str, kind: str) -> StageEntry:
    """The entry of stage ``name`` (added as pending when the summary has none yet)."""
    for entry in summary["stages"]:
        if entry.get("name") == name:
            entry["kind"] = kind
            return entry
    entry = StageEntry(name=name, kind=kind, status="pending")
    summary["stages"].append(entry)
    return entry
