"""The runnable examples in the docstrings of the modules this release added or changed stay true
(the rewards package has its own: tests/rewards/test_rewards_doctests.py)."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["answers", "stats", "decoding", "config", "data.load", "data.formatting", "train.shared_prompt", "io"],
)
def test_docstring_examples(module):
    mod = importlib.import_module(f"r1lab.{module}")
    result = doctest.testmod(mod)
    assert result.failed == 0
    assert result.attempted > 0 or module == "io"
