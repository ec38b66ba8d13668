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


@pytest.fixture(scope="session")
def redrawn_tiny():
    """A factory for the tiny model (fp32) with weights redrawn large: a fresh tiny model repeats one token
    forever, which would make every "same output" comparison trivially true. fp32 on every CPU: token-for-
    token comparisons between batch shapes hold only in fp32."""

    def make(seed: int = 0, *, for_training: bool = False):
        import torch

        from r1lab.models import load_model

        model, tok = load_model("tiny", dtype="float32", for_training=for_training)
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "norm" not in name:
                    param.normal_(0.0, 0.3)
        return model, tok

    return make


@pytest.fixture
def r1lab_cache(tmp_path, monkeypatch):
    """An empty r1lab cache for tests that must not see (or pollute) the user's."""
    path = tmp_path / "r1lab-cache"
    monkeypatch.setenv("R1LAB_CACHE", str(path))
    return path
