"""Rejection sampling keeps correct, formatted, distinct completions and writes SFT data."""

from types import SimpleNamespace

from r1lab.inference import Completion
from r1lab.io import read_jsonl
from r1lab.train import rejection
from r1lab.train.rejection import select_accepted

V = SimpleNamespace


def test_select_keeps_correct_formatted_unique():
    prompt = [{"role": "user", "content": "2+2?"}]
    texts = ["<answer>4</answer>", "<answer>4</answer>", "4", "<answer>5</answer>", "<answer> 4 </answer>"]
    verdicts = [
        V(correct=True, formatted=True),
        V(correct=True, formatted=True),
        V(correct=True, formatted=False),
        V(correct=False, formatted=True),
        V(correct=True, formatted=True),
    ]
    rows = select_accepted([prompt], [texts], ["4"], [verdicts], max_per_prompt=5)
    assert [r["messages"][-1]["content"] for r in rows] == ["<answer>4</answer>", "<answer> 4 </answer>"]
    assert rows[0]["messages"][:-1] == prompt and rows[0]["messages"][-1]["role"] == "assistant"
    assert len(select_accepted([prompt], [texts], ["4"], [verdicts], max_per_prompt=1)) == 1
    unscorable = [V(correct=None, formatted=True)]
    assert select_accepted([prompt], [["<answer>4</answer>"]], ["?"], [unscorable]) == []


def test_stage_judges_with_the_shared_judge_and_writes_sft_rows(tiny_run, monkeypatch):
    """Generation is replaced by fixed replies so the filter's result is known; judging is the real one."""
    run = tiny_run({"name": "rs", "kind": "rs", "data": "builtin:level=1", "n": 3, "num_samples": 3})
    seen = {}

    def fake_generate(model, tokenizer, prompts, *, n_samples, **kw):
        seen["n"] = (len(prompts), n_samples)
        out = []
        for p in prompts:
            # the reference answer is in the prompt's problem text only indirectly; use the dataset's
            answer = seen["answers"][p[-1]["content"]]
            good = f"<think>\nok\n</think>\n<answer>\n{answer}\n</answer>"
            out.append(
                [
                    Completion(good, 9, False),
                    Completion(good, 9, False),
                    Completion(f"<think>\nx\n</think>\n<answer>\n{int(answer) + 1}\n</answer>", 9, False),
                ]
            )
        return out

    from r1lab.data import load_grpo_dataset

    ds = load_grpo_dataset("builtin:level=1", split="train", n=3, system_prompt=None, seed=0)
    seen["answers"] = {p[-1]["content"]: s for p, s in zip(ds["prompt"], ds["solution"], strict=True)}
    monkeypatch.setattr(rejection, "generate", fake_generate)
    stats = rejection.run_rejection_sampling(
        run.stages[0], run, model_spec="tiny", stage_dir=run.run_dir / "rs"
    )
    assert seen["n"] == (3, 3)
    assert (
        stats["samples"] == 9
        and stats["correct"] == 6
        and stats["kept"] == 3
        and stats["prompts_solved"] == 3
    )
    rows = list(read_jsonl(run.run_dir / "rs" / "data.jsonl"))
    assert len(rows) == 3
    assert all(r["messages"][-1]["content"].endswith(f"{r['solution']}\n</answer>") for r in rows)
