"""Only complete checkpoints are resumed from; half-written ones are removed."""

import logging

import torch
from safetensors.torch import save_file

from r1lab.io import damaged_weights
from r1lab.train.callbacks import COMPLETE, find_resume_checkpoint


def _ckpt(root, step, *, complete=True, state=True):
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(d / "model.safetensors"))
    if state:
        (d / "trainer_state.json").write_text("{}")
    if complete:
        (d / COMPLETE).write_text(str(step))
    return d


def test_newest_complete_checkpoint_wins_and_partial_ones_go(tmp_path):
    _ckpt(tmp_path, 5)
    good = _ckpt(tmp_path, 10)
    torn = _ckpt(tmp_path, 15, complete=False)  # killed while the trainer was writing it
    no_state = _ckpt(tmp_path, 20, state=False)
    (tmp_path / "README.md").write_text("model card")
    assert find_resume_checkpoint(tmp_path) == str(good)
    assert not torn.exists() and not no_state.exists()


def test_nothing_to_resume(tmp_path):
    assert find_resume_checkpoint(tmp_path / "missing") is None
    _ckpt(tmp_path, 3, complete=False)
    assert find_resume_checkpoint(tmp_path) is None


def test_d2_a_truncated_weights_file_sends_resume_to_the_previous_checkpoint(tmp_path, caplog):
    good = _ckpt(tmp_path, 10)
    bad = _ckpt(tmp_path, 20)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-40])  # cut short (a full disk, a broken copy)
    assert "truncated" in damaged_weights(bad)
    with caplog.at_level(logging.WARNING, logger="r1lab"):
        assert find_resume_checkpoint(tmp_path) == str(good)
    assert "is damaged" in caplog.text and not bad.exists()
    (good / "model.safetensors").write_bytes(b"garbage!")  # nothing whole left: start fresh
    assert find_resume_checkpoint(tmp_path) is None
