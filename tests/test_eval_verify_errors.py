"""Evaluation reports answers the verifier failed on (not a time-out) as ``verify_errors``, with a warning:
they are scored wrong, so accuracy is then a lower bound, and a silent 0 would hide it (issue #23, item 3)."""

from __future__ import annotations

import logging

from r1lab import evaluate as ev
from r1lab.rewards import verify
from test_evaluate import Scripted, good, row

QUESTIONS = {"Root of 4?": ("\\sqrt{4}", "2"), "Twice pi?": ("2\\pi", "\\pi + \\pi")}


def test_eval_counts_verifier_failures(monkeypatch, tmp_path, caplog):
    replies = {q: [good(answer)] for q, (answer, _) in QUESTIONS.items()}
    monkeypatch.setattr(ev, "_hf_batches", Scripted(replies))
    # what --timeout 1e308 did: the worker's timer overflows on every item it is sent
    monkeypatch.setattr(verify, "SOFT_TIMEOUT_FRACTION", 1e300)
    verify.clear_caches()
    data = [row(q, ref) for q, (_, ref) in QUESTIONS.items()]
    with caplog.at_level(logging.WARNING, logger="r1lab.evaluate"):
        summary = ev.evaluate("scripted", data, out_dir=tmp_path / "eval")
    verify.clear_caches()
    assert summary["verify_errors"] == 2
    assert summary["pass@1"] == 0.0  # scored wrong, but not silently:
    assert any("verification failed" in r.getMessage() for r in caplog.records)


def test_eval_without_failures_reports_zero(monkeypatch, tmp_path):
    monkeypatch.setattr(ev, "_hf_batches", Scripted({"What is 2+2?": [good("4")]}))
    summary = ev.evaluate("scripted", [row("What is 2+2?", "4")], out_dir=tmp_path / "eval")
    assert summary["verify_errors"] == 0 and summary["pass@1"] == 1.0
