"""Hostile inputs (issue #23): each probe is refused with exit code 2 and one line on stderr, before any
model loads, and writes nothing (no run folder, no output file).

The probes are run in-process through ``r1lab.cli.main``; an exception escaping ``main`` (a traceback at
the command line) fails the test as surely as a wrong exit code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1lab.cli import main
from r1lab.io import write_jsonl

TINY = ["--model", "tiny"]


@pytest.fixture(autouse=True)
def _no_model_loads(monkeypatch):
    """A probe that gets past validation fails here at once, instead of training a model."""
    import r1lab.pipeline

    def refuse(run):
        raise AssertionError("the probe passed validation: a model would load now")

    monkeypatch.setattr(r1lab.pipeline, "_prepare_models", refuse)


def _files(root: Path) -> list[Path]:
    """Everything under ``root``: files and folders (a refused run must not leave an empty run folder)."""
    return sorted(root.rglob("*"))


def _refused(argv: list[str], capsys, out: Path, *, keep: tuple[Path, ...] = ()) -> str:
    """Run ``r1lab argv``; assert exit 2, one line on stderr, and no file under ``out`` but ``keep``."""
    before = set(_files(out)) | set(keep)
    rc = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, (rc, err[-2000:])
    assert err.count("\n") == 1 and err.startswith("r1lab: error: "), err[-2000:]
    assert "Traceback" not in err
    assert set(_files(out)) - before == set(), "something was written"
    return err


def _recipe(tmp_path: Path, text: str | bytes, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _run(recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--config", str(recipe), *TINY, "--output-dir", str(out), *extra]


SFT = "  - {name: sft, kind: sft, max_steps: 1}\n"


# ---------------------------------------------------------------- item 1: stage names stay inside the run


@pytest.mark.parametrize("stage_name", ["..", ".", "a/b", "../x", "con\x00sole", ".hidden", "a\\b", "g.x"])
def test_stage_name_that_is_not_a_plain_name_is_refused(tmp_path, capsys, stage_name):
    recipe = _recipe(tmp_path, "name: r\nstages:\n  - {name: " + json.dumps(stage_name) + ", kind: sft}\n")
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert "stage" in err


# ---------------------------------------------------- item 2: numbers and types checked before any work


@pytest.mark.parametrize(
    "override, fragment",
    [
        (["--grpo.learning_rate", "-1"], "learning_rate"),
        (["--grpo.learning_rate", ".nan"], "learning_rate"),
        (["--grpo.learning_rate", "inf"], "learning_rate"),
        (["--grpo.beta", "-0.5"], "beta"),
        (["--grpo.temperature", "-1"], "temperature"),
        (["--grpo.max_grad_norm", ".nan"], "max_grad_norm"),
        (["--eval_n", "1e20"], "eval_n"),
        (["--eval_batch_size", "0"], "eval_batch_size"),
        (["--eval_max_new_tokens", "-3"], "eval_max_new_tokens"),
        (["--grpo.max_steps", "1e20"], "max_steps"),
        (["--grpo.n", "1e20"], "n"),
        (["--grpo.num_generations", "1e20"], "num_generations"),
        (["--inference.questions", "{a: 1}"], "questions"),
        (["--inference.questions", "[1, [2]]"], "questions"),
        (["--inference.max_new_tokens", "0"], "max_new_tokens"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_bad_numbers_and_types_refused_before_any_model_loads(tmp_path, capsys, override, fragment):
    argv = ["run", "--config", "recipes/seed.yaml", *TINY, "--output-dir", str(tmp_path), *override]
    err = _refused(argv, capsys, tmp_path)
    assert fragment in err


def test_nan_learning_rate_in_a_recipe_file(tmp_path, capsys):
    recipe = _recipe(tmp_path, "name: r\nstages:\n  - {name: g, kind: grpo, learning_rate: .nan}\n")
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert "learning_rate" in err


# -------------------------------------------------------------- item 3: the verifier's time-out bounded


@pytest.mark.parametrize("timeout", ["1e308", "61", "inf", "0", "-1", "nan"])
def test_rewards_score_timeout_out_of_range(tmp_path, capsys, timeout):
    data = write_jsonl(tmp_path / "c.jsonl", [{"completion": "<answer>1</answer>", "solution": "1"}])
    out = tmp_path / "scored.jsonl"
    argv = ["rewards", "score", str(data), "--timeout", timeout, "--out", str(out)]
    err = _refused(argv, capsys, tmp_path, keep=(data,))
    assert "timeout" in err


@pytest.mark.parametrize("timeout", ["1e308", "100"])
def test_reward_params_timeout_out_of_range_in_a_recipe(tmp_path, capsys, timeout):
    argv = ["run", "--config", "recipes/seed.yaml", *TINY, "--output-dir", str(tmp_path)]
    err = _refused([*argv, "--grpo.reward_params", "{timeout: " + timeout + "}"], capsys, tmp_path)
    assert "timeout" in err


# ----------------------------------------------------------------------- item 4: YAML alias bomb


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    body = "\n".join("    " + line for line in lines)
    return f"name: r\nstages:\n  - name: g\n    kind: grpo\n    model_init_kwargs:\n{body}\n"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    recipe = _recipe(tmp_path, _alias_bomb())
    t0 = time.monotonic()
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert time.monotonic() - t0 < 10
    assert "alias" in err or "too large" in err


# --------------------------------------------------------------- item 5: one line, never a traceback


@pytest.mark.parametrize("name", ["x" * 300, "a\x00b", "~", "..", "a/b", "", "-", " lead", "a b"])
def test_bad_run_names(tmp_path, capsys, name):
    argv = ["run", "--config", "recipes/seed.yaml", *TINY, "--output-dir", str(tmp_path), f"--name={name}"]
    err = _refused(argv, capsys, tmp_path)
    assert "name" in err


def test_non_utf8_recipe_names_file_and_byte(tmp_path, capsys):
    recipe = _recipe(tmp_path, b"name: r\nmodel: tiny\xff\xfe\nstages: []\n")
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert str(recipe) in err and "UTF-8" in err and "byte 19" in err


def test_duplicate_key_in_a_recipe_is_refused(tmp_path, capsys):
    recipe = _recipe(tmp_path, "name: r\nmodel: tiny\nmodel: smollm2-135m\nstages:\n" + SFT)
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert "duplicate" in err and "'model'" in err and "line 3" in err


def test_duplicate_key_inside_a_stage_is_refused(tmp_path, capsys):
    recipe = _recipe(tmp_path, "name: r\nstages:\n  - name: s\n    kind: sft\n    kind: grpo\n")
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert "duplicate" in err and "'kind'" in err


def test_yaml_syntax_error_keeps_line_and_column(tmp_path, capsys):
    recipe = _recipe(tmp_path, "name: r\nstages: [\n")
    err = _refused(_run(recipe, tmp_path / "runs"), capsys, tmp_path, keep=(recipe,))
    assert "line" in err


def test_deeply_nested_data_line_in_data_preview(tmp_path, capsys):
    data = tmp_path / "deep.jsonl"
    data.write_text('{"question": "q", "answer": "1"}\n' + "[" * 100000 + "\n", encoding="utf-8")
    err = _refused(["data", "preview", str(data)], capsys, tmp_path, keep=(data,))
    assert "line 2" in err


@pytest.mark.parametrize(
    "value, type_name", [(None, "null"), (5, "int"), (["a"], "list"), ({"x": 1}, "dict")]
)
def test_question_of_the_wrong_type_names_the_row_and_type(tmp_path, capsys, value, type_name):
    rows = [{"question": value, "answer": "3"}, {"question": "What is 1+1?", "answer": "2"}]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    err = _refused(["data", "preview", str(data)], capsys, tmp_path, keep=(data,))
    assert "no question column" not in err
    assert "'question' holds " + type_name in err and "line 1" in err


# ------------------------------------------------------------------------------- item 6: the run lock


def test_second_run_with_the_same_name_refused_before_heavy_imports(tmp_path):
    from r1lab.io import exclusive_lock

    out = tmp_path / "runs"
    code = (
        "import sys, time; from r1lab.cli import main; t = time.monotonic(); "
        f"rc = main(['run', '--config', 'recipes/seed.yaml', '--model', 'tiny', '--output-dir', {str(out)!r},"
        " '--name', 'busy']); "
        "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules, round(time.monotonic() - t, 1))"
    )
    with exclusive_lock(out / "busy" / ".lock", "test holder"):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
        )
    rc, torch_loaded, transformers_loaded, seconds = proc.stdout.split()
    assert rc == "2", proc.stderr
    assert proc.stderr.count("\n") == 1 and "in use" in proc.stderr
    assert (torch_loaded, transformers_loaded) == ("False", "False"), proc.stderr
    assert float(seconds) < 10
