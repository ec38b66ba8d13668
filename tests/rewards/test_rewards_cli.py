"""``r1lab rewards score|audit`` end to end through the CLI entry point, and the audit battery."""

import json

import pytest

from r1lab.cli import main
from r1lab.rewards.audit import PROBES, audit_rewards


@pytest.fixture
def completions_file(tmp_path):
    rows = [
        {"completion": "<think>\n6*3\n</think>\n<answer>\n18\n</answer>", "solution": "18"},
        {"completion": [{"role": "assistant", "content": r"so \boxed{\frac{3}{4}}"}], "solution": "0.75"},
        {"completion": "no idea", "solution": "#### 5"},
        {"completion": "<answer>7</answer>", "solution": ""},
    ]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_prints_table_and_writes_jsonl(completions_file, tmp_path, capsys):
    out = tmp_path / "scored.jsonl"
    rc = main(["rewards", "score", str(completions_file), "--rewards", "accuracy,format", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "summary" in printed and "accuracy" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["scores"]["accuracy"] for r in rows] == [1.0, 1.0, 0.0, None]
    assert [r["scores"]["format"] for r in rows] == [1.0, 0.0, 0.0, 0.0]
    assert rows[0]["solution"] == "18"  # the input row is kept


def test_score_params(completions_file, tmp_path):
    out = tmp_path / "s.jsonl"
    argv = [
        "rewards",
        "score",
        str(completions_file),
        "--rewards",
        "accuracy",
        "--param",
        "accuracy.fallbacks=",
        "--out",
        str(out),
        "--show",
        "0",
    ]
    assert main(argv) == 0
    # With no fallbacks only the <answer> block counts: the \boxed answer of row 2 no longer scores.
    assert [json.loads(x)["scores"]["accuracy"] for x in out.read_text().splitlines()] == [
        1.0,
        0.0,
        0.0,
        None,
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rewards", "score", "missing.jsonl"], "file not found"),
        (["rewards", "score", "{bad}", "--rewards", "telepathy"], "unknown reward"),
        (["rewards", "score", "{file}", "--param", "cosine"], "bad --param"),
        (["rewards", "score", "{file}", "--completion-field", "text"], "no field 'text'"),
        (["rewards", "audit", "--rewards", "accuracy,format", "--weights", "1"], "1 weights for 2 rewards"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, completions_file, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completion": "x"}\nnot json\n')
    argv = [a.replace("{file}", str(completions_file)).replace("{bad}", str(bad)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("r1lab: error:") and message in err and "\n" not in err


def test_bad_json_line_is_located(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"completion": "x", "solution": "1"}\nnot json\n')
    assert main(["rewards", "score", str(bad)]) == 2
    assert (
        "bad.jsonl line 2: invalid JSON" in capsys.readouterr().err
    )  # #16: the data files' reader and wording


def test_audit_default_stack_has_no_probe_above_honest(capsys):
    assert main(["rewards", "audit", "--fail-on-higher"]) == 0
    printed = capsys.readouterr().out
    assert "answer_spam" in printed and "higher than an honest correct answer: none" in printed


def test_audit_finds_the_reasoning_steps_hole(capsys):
    rc = main(["rewards", "audit", "--rewards", "accuracy,format,reasoning_steps", "--fail-on-higher"])
    assert rc == 1
    assert "step_spam" in capsys.readouterr().out.split("higher than an honest correct answer:")[1]


def test_audit_reads_a_recipe(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: t\nmodel: tiny\nstages:\n"
        "  - {name: g, kind: grpo, rewards: [accuracy, format, tag_count], reward_weights: [1.0, 0.5, 0.5],"
        " num_generations: 2, per_device_train_batch_size: 2}\n"
    )
    assert main(["rewards", "audit", "--config", str(recipe)]) == 0
    assert "format×0.5" in capsys.readouterr().out


def test_audit_guards_hold_for_accuracy():
    rows = {r.name: r for r in audit_rewards(["accuracy"])}
    assert rows["honest"].scores["accuracy"] == 1.0
    for name in (
        "answer_spam",
        "answer_in_think",
        "answer_before_think",
        "repeated_blocks",
        "tags_only",
        "wrong_formatted",
        "hedge",
        "candidate_list",
        "injection_in_answer",
        "code_injection",
    ):
        assert rows[name].scores["accuracy"] == 0.0, name
    assert len(rows) == len(PROBES) + 1
