"""Local files: each format reads, each malformation is a UserError naming file and line."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1lab.data import load_eval_dataset, load_grpo_dataset, load_sft_dataset
from r1lab.data.files import read_rows
from r1lab.errors import UserError

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
    {"question": "A pen costs $1,200 cents... how many?", "answer": "It is 1,206.\n#### 1,206"},
]
MATH_ROWS = [
    {"problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "solution": "We get $\\boxed{\\frac{5}{6}}$."},
    {"problem": "Find $x$ if $2x=6$.", "solution": "First $\\boxed{2}$ is wrong; $x=\\boxed{3}$."},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_gsm8k_style(tmp_path):
    ds = load_grpo_dataset(str(_jsonl(tmp_path / "g.jsonl", GSM8K_ROWS)))
    assert ds["solution"] == ["7", "1206"]
    assert ds["problem"][0] == GSM8K_ROWS[0]["question"]
    sft = load_sft_dataset(str(tmp_path / "g.jsonl"))
    assert sft[0]["messages"][2]["content"] == "<think>\n3+4=7\n</think>\n<answer>\n7\n</answer>"


def test_jsonl_math_style_last_boxed(tmp_path):
    ds = load_eval_dataset(str(_jsonl(tmp_path / "m.jsonl", MATH_ROWS)))
    assert ds["solution"] == ["\\frac{5}{6}", "3"]


def test_json_list_columns_and_wrapped(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(MATH_ROWS))
    (tmp_path / "b.json").write_text(json.dumps({"data": MATH_ROWS}))
    cols = {"problem": [r["problem"] for r in MATH_ROWS], "solution": [r["solution"] for r in MATH_ROWS]}
    (tmp_path / "c.json").write_text(json.dumps(cols))
    for name in ("a.json", "b.json", "c.json"):
        assert load_grpo_dataset(str(tmp_path / name))["solution"] == ["\\frac{5}{6}", "3"], name


def test_csv(tmp_path):
    (tmp_path / "d.csv").write_text('problem,answer\n"What is 2+2, exactly?",4\nWhat is 3*3?,9\n')
    ds = load_grpo_dataset(str(tmp_path / "d.csv"))
    assert ds["solution"] == ["4", "9"] and ds["problem"][0] == "What is 2+2, exactly?"


def test_parquet(tmp_path):
    from datasets import Dataset

    Dataset.from_list(MATH_ROWS).to_parquet(str(tmp_path / "m.parquet"))
    assert load_grpo_dataset(str(tmp_path / "m.parquet"))["solution"] == ["\\frac{5}{6}", "3"]


def test_n_caps_rows(tmp_path):
    assert len(load_grpo_dataset(str(_jsonl(tmp_path / "g.jsonl", GSM8K_ROWS)), n=1)) == 1


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        (
            "t.jsonl",
            '{"question": "a", "answer": "1"}\n{"question": "b", "ans',
            r"t\.jsonl line 2: invalid JSON.*truncated",
        ),
        (
            "m.jsonl",
            '{"question": "a", "answer": "1"}\nnot json\n{"q": 1}\n',
            r"m\.jsonl line 2: invalid JSON",
        ),
        ("l.jsonl", '["a", "b"]\n', r"l\.jsonl line 1: expected a JSON object, got list"),
        ("e.jsonl", "", r"e\.jsonl has no rows"),
        ("w.jsonl", "\n  \n", r"w\.jsonl has no rows"),
        ("e.json", "", r"e\.json has no rows"),
        ("s.json", '"just a string"', r"expected a list of row objects"),
        ("r.json", "[1, 2]", r"r\.json row 0: expected a JSON object"),
        ("x.json", '{"a": 1}', r"one list of rows"),
        ("e.csv", "", r"e\.csv has no rows"),
        ("h.csv", "question,answer\n", r"h\.csv has a header but no rows"),
        ("f.csv", "question,answer\nwhat,1\nwhat,1,extra\n", r"f\.csv line 3: 3 fields but the header has 2"),
        ("p.parquet", "not parquet", r"p\.parquet: not a readable Parquet file"),
        ("u.txt", "x", r"unknown data file type"),
    ],
)
def test_malformed_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=match):
        list(read_rows(path))


def test_wrong_encoding_names_the_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"question": "ok", "answer": "1"}\n{"question": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(UserError, match=r"latin\.jsonl line 2: not valid UTF-8.*iconv"):
        load_grpo_dataset(str(path))


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(UserError, match="data file not found"):
        load_grpo_dataset(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="unknown data source"):
        load_grpo_dataset("no-such-thing")


def test_utf8_bom_is_fine(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffquestion,answer\nWhat is 1+1?,2\n".encode())
    assert load_grpo_dataset(str(path))["solution"] == ["2"]


def test_hub_snapshot_folder(tmp_path):
    from datasets import Dataset

    (tmp_path / "snap" / "data").mkdir(parents=True)
    Dataset.from_list(MATH_ROWS).to_parquet(str(tmp_path / "snap/data/train-00000-of-00002.parquet"))
    Dataset.from_list(MATH_ROWS[:1]).to_parquet(str(tmp_path / "snap/data/train-00001-of-00002.parquet"))
    Dataset.from_list(MATH_ROWS[1:]).to_parquet(str(tmp_path / "snap/data/test-00000-of-00001.parquet"))
    (tmp_path / "snap/README.md").write_text("card")
    snap = str(tmp_path / "snap")
    assert load_grpo_dataset(snap)["solution"] == ["\\frac{5}{6}", "3", "\\frac{5}{6}"]
    assert load_eval_dataset(snap)["solution"] == ["3"]
    with pytest.raises(UserError, match=r"no 'validation' split files in .*snap"):
        load_grpo_dataset(snap, split="validation")


def test_folder_of_split_files_and_ambiguity(tmp_path):
    (tmp_path / "d").mkdir()
    _jsonl(tmp_path / "d" / "train.jsonl", GSM8K_ROWS)
    _jsonl(tmp_path / "d" / "val.jsonl", GSM8K_ROWS[:1])
    assert load_grpo_dataset(str(tmp_path / "d"))["solution"] == ["7", "1206"]
    assert load_grpo_dataset(str(tmp_path / "d"), split="validation")["solution"] == ["7"]
    for sub in ("main", "socratic"):
        (tmp_path / "g" / sub).mkdir(parents=True)
        _jsonl(tmp_path / "g" / sub / "train-00000.jsonl", GSM8K_ROWS)
    with pytest.raises(UserError, match="several folders"):
        load_grpo_dataset(str(tmp_path / "g"))
    assert len(load_grpo_dataset(str(tmp_path / "g" / "main"))) == 2


def test_save_to_disk_folder(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(GSM8K_ROWS)}).save_to_disk(str(tmp_path / "dd"))
    assert load_grpo_dataset(str(tmp_path / "dd"))["solution"] == ["7", "1206"]
    with pytest.raises(UserError, match=r"has no 'test' split \(it has: train\)"):
        load_eval_dataset(str(tmp_path / "dd"))


def test_existing_file_with_unknown_suffix(tmp_path):
    (tmp_path / "rows.txt").write_text("What is 2+2? 4\n")
    with pytest.raises(UserError, match=r"unknown data file type '\.txt'.*\.jsonl"):
        load_grpo_dataset(str(tmp_path / "rows.txt"))


_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029\x85")
    | st.sampled_from(',"\n\t'),
    min_size=1,
    max_size=40,
).filter(lambda t: t.strip() and t == t.strip())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_texts, st.integers(-(10**6), 10**6)), min_size=1, max_size=5))
def test_every_format_round_trips(tmp_path, rows):
    """Whatever the text (commas, quotes, newlines, Unicode), each format reads back exactly."""
    import csv

    from datasets import Dataset

    records = [{"question": q, "answer": str(a)} for q, a in rows]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (tmp_path / "r.json").write_text(json.dumps(records), encoding="utf-8")
    with open(tmp_path / "r.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["question", "answer"])
        writer.writeheader()
        writer.writerows(records)
    Dataset.from_list(records).to_parquet(str(tmp_path / "r.parquet"))
    for name in ("r.jsonl", "r.json", "r.csv", "r.parquet"):
        ds = load_grpo_dataset(str(tmp_path / name))
        assert ds["problem"] == [q for q, _ in rows], name
        assert ds["solution"] == [str(a) for _, a in rows], name
