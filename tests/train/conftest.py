"""Helpers for the training tests: tiny runs, small datasets built from the built-in task."""

import pytest

from r1lab.config import RunConfig


@pytest.fixture
def tiny_run(tmp_path, r1lab_cache):
    """A factory for a one-run config on the tiny model, writing under tmp_path."""

    def make(*stages, **run_fields) -> RunConfig:
        data = {
            "name": "t",
            "model": "tiny",
            "output_dir": str(tmp_path / "runs"),
            "system_prompt": None,
            "eval_n": 0,
            "report": False,
            "stages": list(stages),
        }
        data.update(run_fields)
        return RunConfig.from_dict(data)

    return make
