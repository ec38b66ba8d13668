"""Reproductions of defects found by probing (reliability issue, part C), one test each."""

from __future__ import annotations

import json
import os
import stat

import pytest

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.io import atomic_dir, atomic_write_text, exclusive_lock, remove_stale_temps


@pytest.mark.parametrize(
    "override, fragment",
    [
        (["--grpo.max_steps", "abc"], "max_steps must be a whole number"),
        (["--grpo.learning_rate", "[1,2]"], "learning_rate must be a number"),
        (["--grpo.learning_rate", "fast"], "learning_rate must be a number"),
        (["--eval_n", "many"], "eval_n must be a whole number"),
        (
            ["--grpo.per_device_train_batch_size", "eight"],
            "per_device_train_batch_size must be a whole number",
        ),
        (["--grpo.rewards", "5"], "rewards must be a list"),
        (["--grpo.max_steps", "-5"], "max_steps must be >= 1"),  # D11: trained 3 epochs silently
        (["--grpo.max_steps", "0"], "max_steps must be >= 1"),  # D11: trained nothing
    ],
)
def test_d3_d11_wrongly_typed_fields_exit_2_in_one_line_writing_nothing(tmp_path, capsys, override, fragment):
    rc = main(
        ["run", "--config", "recipes/seed.yaml", "--model", "tiny", "--output-dir", str(tmp_path), *override]
    )
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_d3_numeric_strings_are_numbers_and_a_list_recipe_is_an_error(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--config",
                "recipes/seed.yaml",
                "--model",
                "tiny",
                "--grpo.learning_rate",
                "1e-5",
                "--dry-run",
            ]
        )
        == 0
    )
    capsys.readouterr()
    recipe = tmp_path / "list.yaml"
    recipe.write_text("- name: grpo\n  kind: grpo\n")
    assert main(["run", "--config", str(recipe), "--output-dir", str(tmp_path / "runs")]) == 2
    assert "a recipe must be a mapping" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_d12_verification_timeout_must_be_positive_and_finite(tmp_path, capsys, value):
    from r1lab.rewards.verify import check_timeout, verify_answers

    with pytest.raises(UserError, match="more than 0 and at most 60 seconds"):
        check_timeout(value)
    with pytest.raises(UserError):
        verify_answers(["1"], ["\\frac{1}{1}"], timeout=float(value))
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps({"completion": "<answer>1</answer>", "solution": "1"}) + "\n")
    assert main(["rewards", "score", str(data), "--timeout", value]) == 2  # one line, no usage (#23)
    assert capsys.readouterr().err.count("\n") == 1


def test_d6_stale_temporaries_are_removed(tmp_path):
    run = tmp_path / "run"
    (run / "grpo" / ".model.abc.tmp").mkdir(parents=True)
    (run / ".summary.json.xyz.tmp").write_text("{")
    (run / "summary.json").write_text("{}")
    removed = remove_stale_temps(run)
    assert len(removed) == 2
    assert sorted(p.name for p in run.rglob("*")) == ["grpo", "summary.json"]


def test_d7_a_second_run_with_the_same_name_fails_at_once(tmp_path):
    with exclusive_lock(tmp_path / ".lock", "run 'x'"):
        with pytest.raises(UserError, match=r"run 'x' is in use by process \d+"):
            with exclusive_lock(tmp_path / ".lock", "run 'x'"):
                pass
    with exclusive_lock(tmp_path / ".lock", "run 'x'"):  # released: usable again
        pass


def test_d7_cli_refuses_a_run_whose_directory_is_locked(tmp_path, capsys, r1lab_cache):
    with exclusive_lock(tmp_path / "busy" / ".lock", "held by the test"):
        rc = main(
            [
                "run",
                "--config",
                "recipes/seed.yaml",
                "--model",
                "tiny",
                "--name",
                "busy",
                "--output-dir",
                str(tmp_path),
                "--eval_n",
                "0",
            ]
        )
    err = capsys.readouterr().err
    assert rc == 2 and "is in use by process" in err
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == [".lock"]


def test_d14_saved_directories_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "weights.bin").write_bytes(b"x")
            os.chmod(tmp / "weights.bin", 0o600)
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "model" / "weights.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_d9_a_lone_surrogate_in_jsonl_is_scored_printed_and_written(tmp_path, capsys):
    data = tmp_path / "c.jsonl"
    data.write_text('{"completion": "<think>x</think><answer>\\ud800 7</answer>", "solution": "7"}\n')
    out = tmp_path / "scored.jsonl"
    assert main(["rewards", "score", str(data), "--out", str(out), "--show", "1"]) == 0
    capsys.readouterr()
    row = json.loads(out.read_text())
    assert row["completion"].endswith("\ud800 7</answer>") and row["scores"]["format"] == 1.0


def test_d1_answer_extraction_is_linear_on_unclosed_boxes():
    import time

    from r1lab.rewards import extract_answer
    from r1lab.rewards.verify import verify_answers

    hostile = "<answer>" + "\\boxed{" * 10000
    t0 = time.perf_counter()
    extract_answer(hostile)
    extract_answer(hostile + "</answer>")
    verify_answers([None], ["7"])
    assert time.perf_counter() - t0 < 2.0  # was 57 s (quadratic)


def test_last_boxed_has_one_definition_with_one_behaviour():
    """data and rewards used to disagree on these two inputs; r1lab.answers owns the function now."""
    import importlib

    from r1lab.answers import last_boxed

    data = importlib.import_module("r1lab.data")
    reward_extract = importlib.import_module("r1lab.rewards.extract")
    assert data.last_boxed is last_boxed is reward_extract.last_boxed
    assert last_boxed(r"\boxed{a} then \boxed{unclosed") == "a"
    assert last_boxed(r"\boxed 7.") == "7"


def _saved_tiny(tmp_path):
    from r1lab.models import load_model

    model, tok = load_model("tiny", dtype="float32")
    out = tmp_path / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize("damage", ["bad_config", "no_weights", "truncated"])
def test_d4_broken_model_directories_exit_2_in_one_line_writing_nothing(
    tmp_path, capsys, r1lab_cache, damage
):
    model = _saved_tiny(tmp_path)
    weights = model / "model.safetensors"
    if damage == "bad_config":
        (model / "config.json").write_text("{not json")
    elif damage == "no_weights":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:-100])
    runs = tmp_path / "runs"
    capsys.readouterr()  # the fixture's save_pretrained progress
    for argv in (
        ["run", "--config", "recipes/seed.yaml", "--model", str(model), "--output-dir", str(runs)],
        [
            "eval",
            "--model",
            str(model),
            "--data",
            "builtin",
            "--limit",
            "2",
            "--out",
            str(tmp_path / "evals"),
        ],
    ):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert str(model) in err
    assert not runs.exists() and not (tmp_path / "evals").exists()


def test_d5_a_kill_during_the_post_stage_evaluation_is_finished_on_rerun(tmp_path, r1lab_cache):
    argv = [
        "run", "--config", "recipes/r1-zero.yaml", "--model", "tiny", "--name", "k", "--output-dir", str(tmp_path),
        "--eval_n", "2", "--eval_max_new_tokens", "4", "--system_prompt", "none",
        "--grpo.max_steps", "1", "--grpo.n", "4", "--grpo.num_generations", "2",
        "--grpo.per_device_train_batch_size", "2", "--grpo.max_completion_length", "4",
    ]  # fmt: skip
    assert main(argv) == 0
    run = tmp_path / "k"
    summary = json.loads((run / "summary.json").read_text())
    # what a kill -9 in the middle of the post-GRPO evaluation leaves: the model, no metrics, status running
    entry = summary["stages"][0]
    for key in ("metrics_after", "vs_base", "achieved"):
        entry.pop(key, None)
    entry["status"] = "running"
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "evals" / "grpo" / "summary.json").unlink()
    assert main(argv) == 0
    entry = json.loads((run / "summary.json").read_text())["stages"][0]
    assert entry["status"] == "done" and entry["metrics_after"]["n_items"] == 2
    assert entry["vs_base"]["format_rate"]["n"] == 2 and "vs base" in entry["achieved"]


def test_d8_an_interrupt_during_scoring_leaves_the_verifier_pool_usable(monkeypatch):
    from r1lab.rewards import verify

    pool = verify.VerifierPool(n_workers=1)
    try:
        assert pool.map([("\\frac{1}{2}", "0.5")], timeout=10) == [True]  # warm
        real_wait = verify.wait

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(verify, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.map([("\\frac{1}{3}", "0.5")] * 3 + [("\\frac{2}{4}", "0.5")], timeout=10)
        monkeypatch.setattr(verify, "wait", real_wait)
        # the interrupted items' answers must not be read as this call's (they raised IndexError)
        assert pool.map([("\\frac{2}{4}", "0.5")], timeout=10) == [True]
        assert pool.map([("\\frac{1}{3}", "0.5"), ("\\frac{2}{4}", "0.5")], timeout=10) == [False, True]
    finally:
        pool.close()


@pytest.mark.parametrize("verb", ["ask", "chat", "eval"])
def test_d13_the_remote_code_hint_names_a_flag_the_verb_takes(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    assert "--trust-remote-code" in capsys.readouterr().out
    import inspect

    from r1lab import models

    assert f"({verb}" in inspect.getsource(models.load_model) or verb in inspect.getsource(models.load_model)


@pytest.mark.parametrize(
    "override, fragment",
    [
        (["--model", "missing/dir/model"], "model path not found"),
        (["--model", "fake.gguf"], "GGUF file not found"),
        (["--grpo.reward_params", "{format: {colour: red}}"], "unknown parameter"),
        (["--grpo.reward_params", "5"], "reward_params must be a mapping"),
    ],
)
def test_d10_exit_2_errors_write_nothing(tmp_path, capsys, override, fragment, r1lab_cache):
    argv = ["run", "--config", "recipes/seed.yaml", "--model", "tiny", "--output-dir", str(tmp_path)]
    assert main(argv + override) == 2
    assert fragment in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_rewards_audit_takes_a_bundled_recipe_name_like_run(capsys):
    assert main(["rewards", "audit", "--config", "seed", "--fail-on-higher"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the table may wrap
    assert "reward-hacking audit" in out and "tag_count×0.5" in out
    assert "probes scoring higher than an honest correct answer: none" in out
