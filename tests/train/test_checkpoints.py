"""Only complete checkpoints are resumed from; half-written ones are removed."""

from r1lab.train.callbacks import COMPLETE, find_resume_checkpoint


def _ckpt(root, step, *, complete=True, state=True):
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"x")
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
