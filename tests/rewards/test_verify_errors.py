"""The verifier's time-out is bounded, and a verification that fails for another reason than a time-out is
counted and reported, never a silent 0 (issue #23, item 3)."""

from __future__ import annotations

import pytest

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.io import write_jsonl
from r1lab.rewards import verify

# Pairs math-verify must judge (no fast path): LaTeX answers against LaTeX references.
LATEX = [("\\sqrt{4}", "2"), ("2\\pi", "\\pi + \\pi"), ("x^{2}", "x \\cdot x")]


@pytest.mark.parametrize("value", ["1e308", 61, "inf", 0, -1, "nan", None])
def test_timeout_out_of_range_is_a_user_error(value):
    with pytest.raises(UserError, match="at most 60 seconds"):
        verify.check_timeout(value)


def test_timeout_at_the_bound_is_accepted():
    assert verify.check_timeout(60) == 60.0 and verify.check_timeout("0.5") == 0.5


@pytest.fixture
def overflowing_worker(monkeypatch):
    """Each worker is told a soft time-out of ~1e300 s (the parent keeps its own 2 s deadline), which is
    what --timeout 1e308 did: OverflowError inside the worker on every item. A verifier failure of a kind
    the bound cannot rule out for every cause."""
    monkeypatch.setattr(verify, "SOFT_TIMEOUT_FRACTION", 1e300)
    verify.clear_caches()
    yield
    verify.clear_caches()


def test_a_verifier_failure_that_is_not_a_timeout_is_counted(overflowing_worker):
    pool = verify.VerifierPool(n_workers=1)
    try:
        results = verify.verify_answers([a for a, _ in LATEX], [r for _, r in LATEX], workers=pool)
        assert verify.STATS["math_verify"] == 3  # all three reached the worker
        assert results == [False, False, False]  # scored wrong...
        assert pool.n_errors == 3 and pool.n_timeouts == 0  # ...but counted as errors, not time-outs
        assert verify.STATS["errors"] == 3
    finally:
        pool.close()


def test_rewards_score_reports_verifier_errors_and_exits_nonzero(tmp_path, capsys, overflowing_worker):
    rows = [{"completion": f"<answer>{a}</answer>", "solution": r} for a, r in LATEX]
    data = write_jsonl(tmp_path / "c.jsonl", rows)
    rc = main(["rewards", "score", str(data), "--rewards", "accuracy", "--show", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "3 answer verification(s) failed (not a time-out)" in err


def test_rewards_score_timeout_out_of_range_is_one_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "c.jsonl", [{"completion": "<answer>1</answer>", "solution": "1"}])
    assert main(["rewards", "score", str(data), "--timeout", "1e308"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 60 seconds" in err
