"""Trackers and the hub: a missing tracker package is a one-line error before anything runs, and
push_to_hub uploads the stage's final model (never its checkpoints/)."""

import sys

import pytest

from r1lab.cli import main
from r1lab.config import RunConfig
from r1lab.errors import UserError
from r1lab.train.common import build_trl_args


def test_report_to_a_missing_tracker_exits_2_with_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed, whatever this machine has
    argv = ["sft", "--model", "tiny", "--output-dir", str(tmp_path), "--report_to", "wandb", "--eval_n", "0"]
    assert main(argv) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "needs the wandb package" in err and "pip install wandb" in err
    assert not (tmp_path / "sft").exists()


def test_push_to_hub_uploads_the_final_model_not_the_checkpoints(tmp_path, r1lab_cache, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, exist_ok, private):
            calls.append(("create", repo_id))
            return type("Url", (), {"repo_id": f"me/{repo_id}"})()

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, folder_path))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    argv = [
        "sft", "--model", "tiny", "--output-dir", str(tmp_path), "--name", "p", "--max_steps", "1", "--n", "2",
        "--per_device_train_batch_size", "2", "--eval_n", "0", "--push_to_hub", "--hub_model_id", "tiny-r1",
    ]  # fmt: skip
    assert main(argv) == 0
    assert calls == [("create", "tiny-r1"), ("upload", "me/tiny-r1", str(tmp_path / "p" / "sft" / "model"))]


def test_push_to_hub_offline_fails_before_training(monkeypatch):
    run = RunConfig.from_dict(
        {"name": "x", "model": "tiny", "stages": [{"kind": "sft", "push_to_hub": True}]}
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        build_trl_args(run.stages[0], run, "/tmp/unused")
