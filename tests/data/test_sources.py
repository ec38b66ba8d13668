"""Named hub sources: each one's real column layout, mapped from a tiny in-memory dataset of that
shape (``datasets.load_dataset`` is replaced; no network), and the offline error."""

import time

import datasets
import pytest

from r1lab.data import SOURCES, load_eval_dataset, load_grpo_dataset, load_sft_dataset
from r1lab.errors import UserError

R1_TRACE = "<think>\nx+1=3 so x=2\n</think>\n<answer>\n2\n</answer>"
SHAPES = {
    "AI-MO/NuminaMath-TIR": {
        "problem": ["Solve $x+1=3$."],
        "solution": ["```python\nprint(2)\n```\nSo $x = \\boxed{2}$."],
        "messages": [[{"role": "user", "content": "Solve $x+1=3$."},
                      {"role": "assistant", "content": "So $x = \\boxed{2}$."}]],
    },
    "openai/gsm8k": {"question": ["Solve x+1=3."], "answer": ["x=3-1=<<3-1=2>>2\n#### 2"]},
    "HuggingFaceH4/MATH-500": {
        "problem": ["Solve $x+1=3$."], "solution": ["Subtract: $\\boxed{2}$"], "answer": ["2"],
        "subject": ["Algebra"], "level": [1], "unique_id": ["test/algebra/1.json"],
    },
    "bespokelabs/Bespoke-Stratos-17k": {
        "system": ["Your role as an assistant involves thoroughly exploring questions..."],
        "conversations": [[
            {"from": "user", "value": "Solve $x+1=3$."},
            {"from": "assistant", "value": "<|begin_of_thought|>\n\nx+1=3 so x=2\n\n<|end_of_thought|>\n\n"
                                           "<|begin_of_solution|>\n\n$\\boxed{2}$\n\n<|end_of_solution|>"},
        ]],
    },
    "HuggingFaceH4/Bespoke-Stratos-17k": {
        "messages": [[{"role": "user", "content": "Solve $x+1=3$."}, {"role": "assistant", "content": R1_TRACE}]],
    },
    "open-r1/OpenR1-Math-220k": {
        "problem": ["Solve $x+1=3$."], "solution": ["Clearly $x=2$."], "answer": ["2"],
        "problem_type": ["Algebra"], "generations": [[R1_TRACE]], "correctness_math_verify": [[True]],
        "messages": [[{"role": "user", "content": "Solve $x+1=3$."}, {"role": "assistant", "content": R1_TRACE}]],
    },
}  # fmt: skip


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None, **kw):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(SHAPES[path])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_every_named_source_has_a_shape_here():
    assert {s.hub_id for s in SOURCES.values()} == set(SHAPES)


@pytest.mark.parametrize("name", list(SHAPES))
def test_source_mapping(fake_hub, name):
    split = SOURCES[name.lower()].splits[0]
    grpo = load_grpo_dataset(name, split=split)
    assert grpo[0]["problem"].startswith("Solve") and grpo[0]["solution"] == "2"
    assert grpo[0]["prompt"][-1] == {"role": "user", "content": grpo[0]["problem"]}
    sft = load_sft_dataset(name, split=split)
    assistant = sft[0]["messages"][-1]
    assert assistant["role"] == "assistant"
    assert assistant["content"].startswith("<think>") and "</think>" in assistant["content"]
    assert "<answer>" in assistant["content"]
    ev = load_eval_dataset(name, split=split)
    assert ev[0]["solution"] == "2"
    assert fake_hub[0][0] == name


def test_gsm8k_uses_main_config_and_math500_knows_subject(fake_hub):
    load_grpo_dataset("openai/gsm8k", n=1)
    assert fake_hub[-1] == ("openai/gsm8k", "main", "train")
    ev = load_eval_dataset("HuggingFaceH4/MATH-500")
    assert (ev[0]["subject"], ev[0]["level"]) == ("Algebra", "1")


def test_openr1_sft_uses_the_generated_trace(fake_hub):
    content = load_sft_dataset("open-r1/OpenR1-Math-220k")[0]["messages"][-1]["content"]
    assert content == R1_TRACE


def test_bespoke_own_system_prompt_on_request(fake_hub):
    msgs = load_sft_dataset("bespokelabs/Bespoke-Stratos-17k", system_prompt="source")[0]["messages"]
    assert msgs[0]["content"].startswith("Your role as an assistant")


def test_unknown_split_of_named_source(fake_hub):
    with pytest.raises(UserError, match=r"MATH-500 has no 'train' split.*--split test"):
        load_grpo_dataset("HuggingFaceH4/MATH-500", split="train")


def test_offline_error_is_fast_and_says_how_to_use_a_local_copy(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        load_grpo_dataset("openai/gsm8k")
    assert time.perf_counter() - start < 20
    msg = str(err.value)
    assert "openai/gsm8k" in msg and "offline" in msg and "--data" in msg and "builtin" in msg
