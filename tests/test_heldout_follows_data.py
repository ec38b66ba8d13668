"""Held-out problems follow the training data unless eval_data says otherwise: a user's file is measured on
its own last eval_n rows (which training then leaves out), not on the built-in synthetic task."""

from r1lab.cli import main
from r1lab.io import write_jsonl


def _file(tmp_path, n=40):
    path = tmp_path / "mine.jsonl"
    rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(n)]
    write_jsonl(path, rows)
    return path


def _dry_run(capsys, argv):
    import yaml

    assert main([*argv, "--dry-run"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_stage_verbs_measure_on_a_split_of_the_users_file(tmp_path, capsys):
    data = _file(tmp_path)
    resolved = _dry_run(capsys, ["sft", "--model", "tiny", "--data", str(data), "--eval_n", "8"])
    assert resolved["eval_data"] == f"{data}:rows=-8:"
    assert resolved["data"] == resolved["stages"][0]["data"] == f"{data}:rows=:-8"  # never trained on
    # --eval_data says otherwise: used as given, training reads the whole file
    resolved = _dry_run(capsys, ["grpo", "--model", "tiny", "--data", str(data), "--eval_data", "builtin"])
    assert resolved["eval_data"] == "builtin" and resolved["stages"][0]["data"] == str(data)


def test_a_recipe_run_on_the_users_data_follows_it_too(tmp_path, capsys):
    data = _file(tmp_path, n=100)
    resolved = _dry_run(capsys, ["run", "--config", "seed", "--model", "tiny", "--data", str(data)])
    # seed.yaml's builtin eval_data is dropped; eval_n 64, but at most a fifth of the file's 100 rows is held out
    assert resolved["eval_data"] == f"{data}:rows=-20:"
    resolved = _dry_run(capsys, ["run", "--config", "seed", "--model", "tiny", "--data", "builtin:level=2"])
    assert resolved["eval_data"] == "builtin:level=2"
    resolved = _dry_run(capsys, ["run", "--config", "seed", "--model", "tiny", "--system_prompt", "none"])
    assert resolved["eval_data"] == "builtin:level=1" and resolved["system_prompt"] == "none"  # recipe's own


def test_column_and_bad_row_flags_work_on_stage_verbs(tmp_path, capsys):
    """The data hints name --question-col / --on-bad-row: they exist where training data is read, too."""
    data = tmp_path / "odd.jsonl"
    good = [{"q": f"What is {i} + 2?", "a": str(i + 2)} for i in range(60)]
    rows = [{"q": "", "a": "1"}, *good, {"q": "", "a": "2"}]  # bad rows in the training and held-out parts
    write_jsonl(data, rows)
    argv = [
        "grpo",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--eval_n",
        "8",
        "--question-col",
        "q",
        "--answer-col",
        "a",
    ]
    assert main(argv + ["--dry-run"]) == 2  # the empty question stops the run, naming the fix
    assert "--on-bad-row skip" in " ".join(capsys.readouterr().err.split())
    resolved = _dry_run(capsys, [*argv, "--on-bad-row", "skip"])
    assert resolved["stages"][0]["columns"] == {"question": "q", "answer": "a"}
    assert resolved["stages"][0]["on_bad_row"] == "skip"
