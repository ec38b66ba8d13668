"""Every validation path: the error names file, line, field and reason; skip counts per reason;
the contamination check."""

import json
import logging

import pytest

from r1lab.data import (
    contamination,
    load_eval_dataset,
    load_grpo_dataset,
    load_sft_dataset,
    warn_contamination,
)
from r1lab.data.load import load_records
from r1lab.errors import UserError

GOOD = {"question": "What is 2+2?", "answer": "#### 4"}
BAD_ROWS = [
    ({"question": "   ", "answer": "#### 4"}, "question", "empty question"),
    ({"answer": "#### 4"}, "row", "missing field 'question'"),
    ({"question": "Q?", "answer": "#### "}, "answer", "empty reference answer"),
    ({"question": "Q?", "answer": "\\frac{1}{2"}, "answer", "unbalanced braces in reference answer"),
    ({"question": "Q?", "answer": "?!"}, "answer", "reference answer has no digits, letters or LaTeX"),
    ({"question": "Q" * 20_001, "answer": "1"}, "question", "question longer than 20000 characters"),
    ({"question": {"text": "Q"}, "answer": "1"}, "row", "field 'question' is not text (got dict)"),
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_ROWS)
def test_bad_row_error_names_file_line_field_reason(tmp_path, bad, field, reason):
    path = _write(tmp_path / "train.jsonl", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(UserError) as err:
        load_grpo_dataset(path)
    msg = str(err.value)
    assert f"bad row in train.jsonl line 3, field {field}: {reason}" in msg
    assert "--on-bad-row skip" in msg


def test_skip_reports_counts_per_reason(tmp_path, caplog):
    rows = [GOOD] + [bad for bad, _, _ in BAD_ROWS] + [BAD_ROWS[0][0], GOOD]
    path = _write(tmp_path / "mixed.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        ds = load_grpo_dataset(path, on_bad_row="skip")
    assert len(ds) == 2
    _, info = load_records(path, kind="grpo", on_bad_row="skip")
    assert info.skipped.total == len(BAD_ROWS) + 1
    assert info.skipped.counts["empty question"] == 2
    assert info.skipped.examples["empty question"] == "mixed.jsonl line 2"
    assert "skipped 8 bad row(s)" in caplog.text and "2 x empty question" in caplog.text


def test_all_rows_bad_is_an_error(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [BAD_ROWS[0][0]] * 3)
    with pytest.raises(UserError, match=r"no usable rows in .*all 3 were skipped"):
        load_grpo_dataset(path, on_bad_row="skip")


def test_sft_needs_an_assistant_turn(tmp_path):
    path = _write(tmp_path / "qa.jsonl", [{"problem": "Q?", "answer": "4"}])
    with pytest.raises(UserError, match=r"qa.jsonl line 1, field assistant: no assistant turn"):
        load_sft_dataset(path)
    msgs = _write(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "Q?"}]}])
    with pytest.raises(UserError, match="field assistant: no assistant turn"):
        load_sft_dataset(msgs)


def test_eval_needs_a_parseable_reference(tmp_path):
    path = _write(tmp_path / "e.jsonl", [{"problem": "Q?", "solution": "no final answer here"}])
    with pytest.raises(UserError, match="field answer: empty reference answer"):
        load_eval_dataset(path)


def test_bad_on_bad_row_value():
    with pytest.raises(UserError, match="on_bad_row must be one of error, skip"):
        load_grpo_dataset("builtin", n=2, on_bad_row="ignore")


def test_contamination_counts_and_warns(caplog):
    train = load_grpo_dataset("builtin", n=300)
    clean = load_eval_dataset("builtin", n=100)
    assert warn_contamination(train, clean) == 0
    from datasets import concatenate_datasets

    leaked = concatenate_datasets([clean.select(range(90)), load_eval_dataset("builtin:train", n=10)])
    with caplog.at_level(logging.WARNING):
        assert warn_contamination(train, leaked) == 10
    assert "10 of 100 evaluation problems also appear in the training data" in caplog.text
    # Normalized match: case, spacing and sentence punctuation do not hide a duplicate.
    sft = load_sft_dataset("builtin", n=5)
    shouted = [{"problem": "  " + p.upper().replace(".", " ;") + "  "} for p in train["problem"][:5]]
    from datasets import Dataset

    assert len(contamination(sft, Dataset.from_list(shouted))) == 5


def test_check_source_before_any_model_loads(tmp_path, monkeypatch):
    from r1lab.data import check_source

    check_source("builtin:level=1-3,split=test")
    for bad in ("builtin:level=7", "builtin:split=dev2", "builtin:n=many", "nowhere"):
        with pytest.raises(UserError):
            check_source(bad)
    good = _write(tmp_path / "ok.jsonl", [{"messages": [{"role": "user", "content": "Q?"}]}] * 2)
    check_source(good)
    with pytest.raises(UserError, match="field assistant: no assistant turn"):
        check_source(good, kind="sft")
    with pytest.raises(UserError, match="line 2, field question: empty question"):
        check_source(_write(tmp_path / "b.jsonl", [GOOD, BAD_ROWS[0][0]]))
    with pytest.raises(UserError, match="data file not found"):
        check_source(str(tmp_path / "missing.csv"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="openai/gsm8k.*--data"):
        check_source("openai/gsm8k")  # offline in tests, and not cached


def test_check_source_without_split_accepts_a_test_only_folder(tmp_path):
    from r1lab.data import check_source

    (tmp_path / "m500").mkdir()
    _write(tmp_path / "m500" / "test.jsonl", [{"problem": "Q?", "answer": "\\frac{1}{2}"}])
    check_source(str(tmp_path / "m500"))
    check_source(str(tmp_path / "m500"), kind="eval", split="test")
    with pytest.raises(UserError, match="no 'train' split files"):
        check_source(str(tmp_path / "m500"), kind="grpo", split="train")
