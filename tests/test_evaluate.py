"""Evaluation: the metric math, the judge wiring, per-item files, resume, and bad input."""

from __future__ import annotations

import json
import math
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1lab import evaluate as ev
from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.inference import Completion
from r1lab.io import read_jsonl, write_jsonl

SYSTEM = "Answer in <think></think><answer></answer> tags."


def row(question: str, solution: str, **extra) -> dict:
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return {"prompt": prompt, "solution": solution, "problem": question, **extra}


def good(ans: str) -> str:
    return f"<think>working it out</think><answer>{ans}</answer>"


# ------------------------------------------------------------------ metric math


@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
@settings(max_examples=200, deadline=None)
def test_pass_at_k_matches_its_definition(nck):
    """pass@k = P(at least one correct among k drawn without replacement) — checked by enumeration."""
    n, c, k = nck
    outcomes = [True] * c + [False] * (n - c)
    draws = list(combinations(range(n), k))
    exact = sum(any(outcomes[i] for i in d) for d in draws) / len(draws)
    assert ev.pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
    assert ev.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_impossible_arguments():
    with pytest.raises(ValueError):
        ev.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        ev.pass_at_k(4, 1, 5)


def test_majority_vote_groups_equivalent_spellings_and_breaks_ties_by_first_seen():
    assert ev.majority_vote(["1,000", "7", "1000.", "7"], [True, False, True, False]) == ("1,000", True)
    assert ev.majority_vote(["7", "8"], [False, True]) == ("7", False)  # tie -> first seen
    assert ev.majority_vote([None, "3", None], [None, True, None]) == ("3", True)  # None never wins
    assert ev.majority_vote([], []) == (None, False)


def test_score_item_and_aggregate():
    scored = ev.score_item(
        answers=["4", "5", "4", None],
        correct=[True, False, True, False],
        formatted=[True, False, True, False],
        n_tokens=[10, 20, 30, 40],
        truncated=[False, False, False, True],
        k=4,
    )
    assert scored["pass@1"] == 0.5
    assert scored["pass@4"] == 1.0
    assert scored["maj@4"] == 1.0
    assert scored["format_rate"] == 0.5
    assert scored["mean_tokens"] == 25
    assert scored["truncation_rate"] == 0.25
    unscorable = ev.score_item(["4"] * 4, [None] * 4, [True] * 4, [5] * 4, [False] * 4, k=4)
    assert unscorable["pass@1"] is None and unscorable["format_rate"] == 1.0
    summary = ev.aggregate([{"metrics": scored}, {"metrics": unscorable}], k=4)
    assert summary["n_items"] == 2 and summary["n_unscorable"] == 1
    assert summary["pass@1"] == 0.5  # unscorable item left out of accuracy
    assert summary["format_rate"] == 0.75  # but not out of format rate


# ------------------------------------------------------------------ evaluate() with scripted completions


class Scripted:
    """Stands in for the generation backend: returns fixed completions, records what it was asked."""

    def __init__(self, replies: dict[str, list[str]], fail_after_batches: int | None = None):
        self.replies = replies
        self.fail_after = fail_after_batches
        self.asked: list[str] = []

    def __call__(
        self, model, prompts, *, n_samples, temperature, max_new_tokens, batch_size, seed, on_progress=None
    ):
        per_batch = max(1, batch_size // n_samples)
        for b, start in enumerate(range(0, len(prompts), per_batch)):
            if self.fail_after is not None and b >= self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            idx = list(range(start, min(start + per_batch, len(prompts))))
            comps = []
            for i in idx:
                question = prompts[i][-1]["content"]
                self.asked.append(question)
                texts = self.replies[question][:n_samples]
                comps.append([Completion(t, n_tokens=len(t), truncated=t.endswith("...")) for t in texts])
            yield idx, comps


REPLIES = {
    "What is 2+2?": [good("4"), good("4"), "the answer is 5", good("4")],
    "What is 3*3?": [good("9"), "nine...", good("8"), good("8")],
    "What is 10-7?": ["I think 3", good("2"), good("2"), good("3")],
}


def dataset():
    return [
        row("What is 2+2?", "4", level=1),
        row("What is 3*3?", "9", level=1),
        row("What is 10-7?", "#### 3", level=2),
    ]


def test_evaluate_scores_with_the_shared_judge_and_writes_files(monkeypatch, tmp_path):
    monkeypatch.setattr(ev, "_hf_batches", Scripted(REPLIES))
    out = tmp_path / "eval"
    summary = ev.evaluate("scripted", dataset(), n_samples=4, k=4, temperature=0.7, batch_size=4, out_dir=out)
    # Item 1: 3/4 correct, maj "4" correct. Item 2: 1/4 ("9"), maj "8" wrong. Item 3: 2/4 ("3"), tie 3 vs 2 -> "3" first.
    assert summary["pass@1"] == pytest.approx((3 / 4 + 1 / 4 + 2 / 4) / 3)
    assert summary["pass@4"] == pytest.approx(1.0)
    assert summary["maj@4"] == pytest.approx(2 / 3)
    assert summary["format_rate"] == pytest.approx((3 / 4 + 3 / 4 + 3 / 4) / 3)
    assert summary["truncation_rate"] == pytest.approx(1 / 12)
    assert summary["n_items"] == 3 and summary["n_unscorable"] == 0
    assert set(summary["by"]["level"]) == {"1", "2"}
    assert summary["by"]["level"]["2"]["pass@1"] == pytest.approx(0.5)
    items = list(read_jsonl(out / "items.jsonl"))
    assert [it["problem"] for it in items] == list(REPLIES)
    first = items[0]
    assert first["reference"] == "4" and first["answers"] == ["4", "4", "5", "4"]
    assert first["correct"] == [True, True, False, True]
    assert first["completions"][2] == "the answer is 5"
    assert json.loads((out / "summary.json").read_text())["maj@4"] == pytest.approx(2 / 3)


def test_killed_evaluation_resumes_without_redoing_items(monkeypatch, tmp_path):
    out = tmp_path / "eval"
    kwargs = dict(n_samples=2, temperature=0.7, batch_size=2, out_dir=out)  # one prompt per batch
    monkeypatch.setattr(ev, "_hf_batches", Scripted(REPLIES, fail_after_batches=2))
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate("scripted", dataset(), **kwargs)
    assert len(list(read_jsonl(out / "items.jsonl"))) == 2
    assert not (out / "summary.json").exists()

    second = Scripted(REPLIES)
    monkeypatch.setattr(ev, "_hf_batches", second)
    resumed = ev.evaluate("scripted", dataset(), **kwargs)
    assert second.asked == ["What is 10-7?"]  # only the unfinished item was generated
    assert resumed["n_resumed"] == 2

    fresh = tmp_path / "fresh"
    monkeypatch.setattr(ev, "_hf_batches", Scripted(REPLIES))
    full = ev.evaluate("scripted", dataset(), **{**kwargs, "out_dir": fresh})
    for key in ("pass@1", "pass@2", "maj@2", "format_rate", "mean_completion_tokens", "truncation_rate"):
        assert resumed[key] == pytest.approx(full[key])


def test_resume_refuses_a_directory_written_with_other_settings(monkeypatch, tmp_path):
    monkeypatch.setattr(ev, "_hf_batches", Scripted(REPLIES))
    ev.evaluate("scripted", dataset(), n_samples=2, temperature=0.7, out_dir=tmp_path)
    with pytest.raises(UserError, match="different settings.*max_new_tokens"):
        ev.evaluate("scripted", dataset(), n_samples=2, temperature=0.7, max_new_tokens=99, out_dir=tmp_path)


def test_a_model_retrained_in_place_is_not_resumed_and_fresh_starts_over(monkeypatch, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"old weights")
    out = tmp_path / "eval"
    monkeypatch.setattr(ev, "_hf_batches", Scripted(REPLIES))
    ev.evaluate(str(model_dir), dataset(), out_dir=out)
    (model_dir / "model.safetensors").write_bytes(b"new weights, longer")
    with pytest.raises(UserError, match=r"different settings \(model\).*--fresh"):
        ev.evaluate(str(model_dir), dataset(), out_dir=out)
    again = Scripted(REPLIES)
    monkeypatch.setattr(ev, "_hf_batches", again)
    summary = ev.evaluate(str(model_dir), dataset(), out_dir=out, fresh=True)
    assert len(again.asked) == 3 and summary["n_resumed"] == 0
    assert len(list(read_jsonl(out / "items.jsonl"))) == 3


def test_bad_input_is_a_user_error(monkeypatch):
    monkeypatch.setattr(ev, "_hf_batches", Scripted(REPLIES))
    with pytest.raises(UserError, match="--k 5 must be between 1 and --n-samples"):
        ev.evaluate("scripted", dataset(), n_samples=4, k=5)
    with pytest.raises(UserError, match="empty"):
        ev.evaluate("scripted", [], n_samples=1)
    with pytest.raises(UserError, match="no 'solution' column"):
        ev.evaluate("scripted", [{"prompt": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(UserError, match="unknown backend"):
        ev.evaluate("scripted", dataset(), backend="tgi")


def test_asking_for_vllm_without_it_is_a_clear_user_error(monkeypatch):
    monkeypatch.setattr(ev.distributed, "vllm_available", lambda: False)
    with pytest.raises(UserError, match="backend 'vllm' requested but vllm is not installed"):
        ev.choose_backend("vllm")
    assert ev.choose_backend("auto") == "hf"
    monkeypatch.setattr(ev.distributed, "vllm_available", lambda: True)
    monkeypatch.setattr(ev.distributed, "cuda_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        ev.choose_backend("vllm")


# ------------------------------------------------------------------ evaluate() with a real (tiny) model


@pytest.fixture(scope="module")
def tiny():
    from r1lab.models import load_model

    return load_model("tiny")


def test_evaluate_runs_a_real_model_end_to_end(tiny, tmp_path):
    data = [row(f"What is {a}+{b}?", str(a + b)) for a, b in [(1, 2), (30, 4), (5, 61), (7, 8), (9, 100)]]
    summary = ev.evaluate(
        tiny,
        data,
        n_samples=2,
        temperature=1.0,
        max_new_tokens=12,
        batch_size=4,
        out_dir=tmp_path,
        backend="hf",
    )
    assert summary["n_items"] == 5 and summary["backend"] == "hf"
    for key in ("pass@1", "pass@2", "maj@2", "format_rate", "truncation_rate"):
        assert 0.0 <= summary[key] <= 1.0
    assert 1 <= summary["mean_completion_tokens"] <= 12
    items = list(read_jsonl(tmp_path / "items.jsonl"))
    assert len(items) == 5 and all(len(it["completions"]) == 2 for it in items)
    assert all(n <= 12 for it in items for n in it["n_tokens"])
    # Every truncated sample used the whole budget; every finished one ended early or on time.
    assert all(n == 12 for it in items for n, t in zip(it["n_tokens"], it["truncated"], strict=True) if t)


def test_progress_moves_while_the_only_batch_decodes(tiny):
    """All problems fit in one batch: the bar must still move before that batch ends (per token step)."""
    data = [row(f"What is {a}+{b}?", str(a + b)) for a, b in [(1, 2), (30, 4), (5, 61)]]
    seen = []
    ev.evaluate(
        tiny, data, max_new_tokens=8, batch_size=64, backend="hf", on_progress=lambda d, t: seen.append(d)
    )
    assert seen[-1] == 3 and seen == sorted(seen)
    assert any(0 < d < 3 for d in seen)  # fractional progress inside the batch


# ------------------------------------------------------------------ CLI


GSM_STYLE = [
    {
        "question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
        "answer": "48/2 = 24\n#### 72",
    },
    {"question": "Weng earns $12 an hour. How much for 50 minutes?", "answer": "12/60*50 = 10\n#### 10"},
    {"question": "What is 3 + 5?", "answer": "#### 8"},
]


def gsm_file(tmp_path, rows):
    """A GSM8K-style JSONL file of ``rows``."""
    path = tmp_path / "gsm.jsonl"
    write_jsonl(path, rows)
    return path


def test_cli_eval_on_a_local_gsm8k_style_file_then_resume(tmp_path, capsys):
    data = gsm_file(tmp_path, GSM_STYLE)
    out = tmp_path / "out"
    argv = [
        "eval",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["n_items"] == 3 and first["n_resumed"] == 0 and first["k"] == 1
    items = list(read_jsonl(out / "items.jsonl"))
    assert [it["reference"] for it in items] == ["72", "10", "8"]
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["n_resumed"] == 3 and second["new_tokens"] == 0
    assert (
        second["pass@1"] == first["pass@1"]
        and second["mean_completion_tokens"] == first["mean_completion_tokens"]
    )


def test_cli_eval_prints_a_table(tmp_path, capsys):
    data = gsm_file(tmp_path, GSM_STYLE[:1])
    assert (
        main(
            [
                "eval",
                "--model",
                "tiny",
                "--data",
                str(data),
                "--max-new-tokens",
                "4",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "pass@1" in out and "items.jsonl" in out
    assert "0.0%" in out  # rates in percent, as in the report


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n-samples", "2", "--k", "4"], "--k 4 must be between 1 and --n-samples (2)"),
        (["--n-samples", "4", "--temperature", "0"], "identical samples"),
        (["--backend", "vllm"], "backend 'vllm' requested but"),
        (["--limit", "0"], "--limit must be >= 1"),
    ],
)
def test_cli_eval_bad_flags_exit_2_before_loading_anything(tmp_path, capsys, extra, message):
    data = gsm_file(tmp_path, GSM_STYLE[:1])
    assert main(["eval", "--model", "tiny", "--data", str(data), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1lab: error:") and message in err and err.count("\n") == 1


def test_cli_eval_missing_and_empty_inputs_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    data = gsm_file(tmp_path, GSM_STYLE[:1])
    assert main(["eval", "--model", "tiny", "--data", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["eval", "--model", "tiny", "--data", str(empty)]) == 2
    assert (
        main(
            ["eval", "--model", str(tmp_path / "no-model"), "--data", str(data), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("r1lab: error:") for line in err)
    assert "not found" in err[0] and "empty.jsonl" in err[1] and "no-model" in err[2]


def test_docstring_examples():
    import doctest

    import r1lab.inference
    import r1lab.report

    for module in (ev, r1lab.inference, r1lab.report):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
