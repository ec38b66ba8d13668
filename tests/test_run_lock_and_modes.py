"""A second run of the same name is refused before any heavy import, a refused run leaves nothing behind,
checkpoints get the same file modes as final models, and nothing r1lab writes lands outside the run folder
(issue #23, items 1 and 6)."""

from __future__ import annotations

import os
import stat
import types

import pytest

from r1lab.config import RunConfig, StageConfig
from r1lab.errors import UserError
from r1lab.pipeline import clear_run, run_lock, run_path
from r1lab.train.callbacks import CompleteCheckpoints


def test_checkpoint_weights_get_the_final_models_mode(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir(mode=0o700)
    for name in ("model.safetensors", "trainer_state.json", "optimizer.pt"):
        fd = os.open(ckpt / name, os.O_CREAT | os.O_WRONLY, 0o600)  # what the Trainer leaves: 0600
        os.close(fd)
    args = types.SimpleNamespace(output_dir=str(tmp_path))
    state = types.SimpleNamespace(is_world_process_zero=True, global_step=2)
    old = os.umask(0o022)
    try:
        CompleteCheckpoints().on_save(args, state, control=None)
    finally:
        os.umask(old)
    for name in ("model.safetensors", "trainer_state.json", "optimizer.pt"):
        assert stat.S_IMODE((ckpt / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755
    assert (ckpt / "COMPLETE").is_file()


def test_a_refused_run_leaves_no_folder_or_lock(tmp_path):
    run = RunConfig(name="r", output_dir=str(tmp_path / "runs"))
    with pytest.raises(UserError), run_lock(run):
        assert (tmp_path / "runs" / "r" / ".lock").is_file()
        raise UserError("bad recipe")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_an_existing_run_folder_keeps_it(tmp_path):
    run = RunConfig(name="r", output_dir=str(tmp_path))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "summary.json").write_text("{}")
    with pytest.raises(UserError), run_lock(run):
        raise UserError("bad recipe")
    assert (tmp_path / "r" / "summary.json").is_file()


def test_the_lock_refuses_a_second_holder(tmp_path):
    run = RunConfig(name="r", output_dir=str(tmp_path))
    with run_lock(run), pytest.raises(UserError, match="in use"), run_lock(run):
        pass


@pytest.mark.parametrize("parts", [("..",), ("..", "model"), ("evals", "..", ".."), ("/etc",), ()])
def test_run_path_refuses_paths_outside_the_run(tmp_path, parts):
    run = RunConfig(name="r", output_dir=str(tmp_path))
    with pytest.raises(UserError, match="outside the run folder"):
        run_path(run, *parts) if parts else run_path(run, ".")


def test_run_path_inside(tmp_path):
    run = RunConfig(name="r", output_dir=str(tmp_path))
    assert run_path(run, "grpo", "model") == tmp_path / "r" / "grpo" / "model"


def test_restart_never_deletes_outside_the_run_from_an_old_record(tmp_path):
    """An old config.yaml naming a stage ".." must not make --restart delete the runs folder."""
    run = RunConfig(name="r", output_dir=str(tmp_path), stages=[StageConfig(name="s", kind="sft")])
    (tmp_path / "r" / "s").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("stages:\n- {name: '..', kind: sft}\n")
    clear_run(run)
    assert (tmp_path / "other").is_dir() and not (tmp_path / "r" / "s").exists()
