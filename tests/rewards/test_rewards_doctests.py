"""The runnable examples in the rewards docstrings stay true."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["extract", "verify", "functions", "registry", "audit"],
)
def test_docstring_examples(module):
    mod = importlib.import_module(f"r1lab.rewards.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0
    assert result.failed == 0
