"""A model r1lab trained remembers how it was asked (``r1lab_prompt.json`` beside its weights): ``eval``,
``ask`` and ``chat`` default to that prompt and reply prefix, flags win, and an ``eval`` rerun says when it
reuses results while a changed setting starts a new result set."""

import json
import shutil

import pytest

from r1lab.cli import main
from r1lab.io import read_jsonl
from r1lab.prompts import MODEL_PROMPT_FILE, R1_SYSTEM_PROMPT, prompt_for, write_model_prompt

GSM = [{"question": "Tom has 2 apples and buys 3 more. How many apples?", "answer": "2+3=<<2+3=5>>5\n#### 5"}]


@pytest.fixture
def trained_dir(tmp_path, r1lab_cache):
    """The tiny model copied into a run-like model dir, with the prompt record a stage writes."""
    from r1lab.models import resolve_model

    model = tmp_path / "run" / "sft" / "model"
    shutil.copytree(resolve_model("tiny"), model)
    write_model_prompt(model, "Answer briefly.", "<think>\n")
    return model


def test_flags_beat_the_record_which_beats_the_r1_default(trained_dir, tmp_path):
    assert prompt_for(trained_dir, None, None)[:2] == ("Answer briefly.", "<think>\n")
    assert prompt_for(trained_dir, "none", None)[:2] == (None, "<think>\n")
    assert prompt_for(trained_dir, "r1", "")[:2] == (R1_SYSTEM_PROMPT, None)
    assert prompt_for(tmp_path, None, None)[:2] == (R1_SYSTEM_PROMPT, None)  # no record: R1, no prefix
    (trained_dir / MODEL_PROMPT_FILE).write_text("[1, 2]")  # a damaged record is ignored, not fatal
    assert prompt_for(trained_dir, None, None)[:2] == (R1_SYSTEM_PROMPT, None)


def test_eval_asks_a_trained_model_its_own_way_and_says_when_it_reuses(
    trained_dir, tmp_path, monkeypatch, capsys
):
    data = tmp_path / "gsm.jsonl"
    data.write_text(json.dumps(GSM[0]) + "\n")
    monkeypatch.chdir(tmp_path)  # the default result folder is runs/eval/... under the working directory
    argv = ["eval", "--model", str(trained_dir), "--data", str(data), "--max-new-tokens", "4", "--json"]

    def said():  # the console log, unwrapped
        return " ".join(capsys.readouterr().err.split())

    assert main(argv) == 0
    (first,) = list((tmp_path / "runs" / "eval").iterdir())
    (item,) = list(read_jsonl(first / "items.jsonl"))
    assert item["completions"][0].startswith("<think>\n")  # the recorded reply prefix was used
    log = said()
    assert "was trained with (r1lab_prompt.json)" in log and "reused" not in log
    assert main(argv) == 0  # identical rerun: reused, and said so
    assert "reused all 1 results" in said()
    assert main([*argv[:-1], "--max-new-tokens", "6", "--json"]) == 0  # a changed setting: a new result set
    assert "reused" not in said()
    assert len(list((tmp_path / "runs" / "eval").iterdir())) == 2
