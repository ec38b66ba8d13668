"""`r1lab run --only`: exactly the named stages run and the run exits 0; a request whose stages cannot start
(their input stage has not run and is not named) is refused before any model loads."""

import json

import pytest

from r1lab.cli import main

# The seed recipe (grpo -> sft -> inference) on the tiny model, each stage as short as it can be.
SHORT = {
    "grpo": "max_steps=1 n=4 num_generations=2 per_device_train_batch_size=2 max_completion_length=8",
    "sft": "max_steps=1 n=4 per_device_train_batch_size=2",
    "inference": "max_new_tokens=8",
}
SEED_ON_TINY = ["--model", "tiny", "--eval_n", "0", "--system_prompt", "none"]
SEED_ON_TINY += [arg for stage, kvs in SHORT.items() for kv in kvs.split() for arg in (f"--{stage}.{kv}",)]


def _run(tmp_path, name, only, *extra):
    return main(["run", "--name", name, "--output-dir", str(tmp_path), "--only", only, *SEED_ON_TINY, *extra])


def _statuses(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    return {e["name"]: e.get("status") for e in summary["stages"]}


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if the pipeline resolves any model (the refusal must come first)."""
    import r1lab.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_prepare_models", lambda run: pytest.fail("a model was resolved"))


def test_only_the_first_stage_runs_it_alone_and_exits_0(tmp_path, r1lab_cache):
    assert _run(tmp_path, "oq", "grpo") == 0
    run_dir = tmp_path / "oq"
    assert (run_dir / "grpo" / "model" / "config.json").is_file()
    assert not (run_dir / "sft").exists()
    statuses = _statuses(run_dir)
    assert statuses["grpo"] == "done" and statuses.get("sft") != "done"
    assert "inference" not in statuses or statuses["inference"] != "done"

    # the middle stage and the inference stage, continuing from the finished GRPO model
    assert _run(tmp_path, "oq", "sft,inference") == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    by = {e["name"]: e for e in summary["stages"]}
    assert by["sft"]["model_in"] == str(run_dir / "grpo" / "model")
    assert by["inference"]["status"] == "done" and by["inference"]["model"] == str(run_dir / "sft" / "model")


def test_a_middle_stage_whose_input_has_not_run_is_refused_before_any_model_loads(
    tmp_path, capsys, no_model_loads
):
    assert _run(tmp_path, "mid", "sft") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "stage 'sft' starts from the model of stage 'grpo', which has not run yet" in err
    assert "--only grpo,sft" in err
    assert not (tmp_path / "mid").exists()


def test_the_inference_stage_alone_needs_the_stage_before_it(tmp_path, capsys, no_model_loads):
    assert _run(tmp_path, "inf", "inference") == 2
    err = capsys.readouterr().err
    assert "stage 'inference' starts from the model of stage 'sft'" in err and "--only sft,inference" in err
    assert not (tmp_path / "inf").exists()


def test_an_unknown_stage_name_is_refused_with_a_suggestion(tmp_path, capsys, no_model_loads):
    assert _run(tmp_path, "unk", "grop") == 2
    err = capsys.readouterr().err
    assert "--only 'grop': the recipe has no such stage" in err and "did you mean grpo?" in err
