"""Shared fixtures for the reward tests: one verifier pool per session, checked for leaks at the end."""

import json
import os
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
    me = str(os.getpid())
    leaked = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{me}\n" in text and b"r1lab.rewards._worker" in cmdline and "zombie" not in text:
            leaked.append(status.parent.name)
    assert not leaked, f"verifier workers still alive: {leaked}"
