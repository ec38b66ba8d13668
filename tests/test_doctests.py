"""The runnable examples in every module's docstrings stay true (``>>>`` lines; ``Example::`` blocks that
need a real model or the hub are shown, not run)."""

import doctest
import importlib
import pkgutil

import pytest

import r1lab

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(r1lab.__path__, "r1lab.") if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
