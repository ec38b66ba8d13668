"""`r1lab data preview` and `r1lab data make-synthetic` end to end (in process)."""

import json

import pytest

from r1lab.cli import main
from r1lab.data import load_grpo_dataset


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_preview_builtin(capsys):
    assert main(["data", "preview", "builtin:level=2", "--n", "2", "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "rows" in out and "50" in out and "builtin" in out and "row 1" in out and "[solution]" in out


def test_preview_gsm8k_style_file(tmp_path, capsys):
    path = _write(tmp_path / "gsm.jsonl", [{"question": "Ann has 2 pens and buys 3. How many?",
                                            "answer": "2+3=<<2+3=5>>5\n#### 5"}] * 3)  # fmt: skip
    assert main(["data", "preview", path, "--kind", "sft", "--n", "1"]) == 0
    out = capsys.readouterr().out
    assert "question/answer (####)" in out and "2+3=5" in out and "<<" not in out


def test_preview_math_style_file(tmp_path, capsys):
    path = _write(tmp_path / "math.jsonl", [{"problem": "Find [x] if $x^2=4$, x>0.",
                                             "solution": "So $x=\\boxed{2}$ since $[2]$."}])  # fmt: skip
    assert main(["data", "preview", path, "--kind", "eval"]) == 0
    out = capsys.readouterr().out
    # "[x]" must survive rich rendering (no markup interpretation of data).
    assert "problem/solution (boxed)" in out and "Find [x]" in out and "[solution] 2" in out


def test_preview_column_flags_and_skip(tmp_path, capsys):
    path = _write(tmp_path / "c.jsonl", [{"q": "1+1?", "gold": "2"}, {"q": "", "gold": "2"}])
    assert (
        main(["data", "preview", path, "--question-col", "q", "--answer-col", "gold", "--on-bad-row", "skip"])
        == 0
    )
    out = capsys.readouterr().out
    assert "custom columns" in out and "empty question" in out and "c.jsonl line 2" in out


def test_bad_file_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"')
    assert main(["data", "preview", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("r1lab: error:") and "bad.jsonl line 2" in err and "truncated" in err
    assert len(err.splitlines()) == 1


def test_bad_row_exits_2(tmp_path, capsys):
    path = _write(
        tmp_path / "r.jsonl", [{"question": "a?", "answer": "1"}, {"question": "b?", "answer": "{"}]
    )
    assert main(["data", "preview", path]) == 2
    assert "r.jsonl line 2, field answer: unbalanced braces" in capsys.readouterr().err


def test_make_synthetic_roundtrip(tmp_path, capsys):
    out = tmp_path / "sub" / "syn.jsonl"
    assert (
        main(["data", "make-synthetic", "--n", "40", "--level", "1-3", "--out", str(out), "--seed", "2"]) == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40 and {r["split"] for r in rows} == {"train"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["syn.jsonl"]  # atomic: no temp file left
    ds = load_grpo_dataset(str(out))
    assert ds["solution"] == [r["answer"] for r in rows]
    assert main(["data", "preview", str(out), "--kind", "sft", "--n", "1"]) == 0


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--n", "0", "--out", "x.jsonl"], "--n must be positive"),
        (["--n", "5", "--out", "x.csv"], "must be a .jsonl file"),
        (["--n", "5", "--level", "7", "--out", "x.jsonl"], "bad built-in task level"),
    ],
)
def test_make_synthetic_bad_args(tmp_path, capsys, argv, match):
    assert main(["data", "make-synthetic", *argv]) == 2
    assert match in capsys.readouterr().err


def test_preview_verify_uses_the_rewards_verifier(tmp_path, capsys):
    path = _write(tmp_path / "v.jsonl", [{"problem": "a?", "answer": "\\frac{1}{2}"}, {"problem": "b?", "answer": "72"},
                                         {"problem": "c?", "answer": "\\begin{pmatrix}"}])  # fmt: skip
    assert main(["data", "preview", path, "--verify", "--n", "0"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2/3 references verify as equal to themselves" in out
