"""Shared fixtures for the reward tests: one verifier pool per session, checked for leaks at the end."""

import json
import multiprocessing as mp
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def math500_answers() -> list[str]:
    """The 500 MATH-500 reference answers (see fixtures/README.md)."""
    with open(FIXTURES / "math500_answers.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f]


@pytest.fixture(scope="session", autouse=True)
def _stop_pool_and_check_leaks():
    yield
    from r1lab.rewards import shutdown_pool

    shutdown_pool()
    leaked = [p for p in mp.active_children() if p.name == "r1lab-verify"]
    assert not leaked, f"verifier workers still alive: {leaked}"
