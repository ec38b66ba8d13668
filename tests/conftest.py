"""Shared test set-up: offline, seeded, caches inside the test's tmp dir."""

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture
def r1lab_cache(tmp_path, monkeypatch):
    """An empty r1lab cache for tests that must not see (or pollute) the user's."""
    path = tmp_path / "r1lab-cache"
    monkeypatch.setenv("R1LAB_CACHE", str(path))
    return path
