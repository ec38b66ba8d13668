"""A run's ``reply_prefix`` (e.g. "<think>\\n"): written into every prompt as the start of the assistant's
turn, continued by the model, and put back in front of the completion wherever a reply is scored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from r1lab.config import RunConfig, StageConfig
from r1lab.data import load_eval_dataset, load_grpo_dataset
from r1lab.inference import generate, render_prompts
from r1lab.rewards import WholeReply, judge
from r1lab.train.grpo import grpo_rewards
from r1lab.train.rejection import select_accepted

PREFIX = "<think>\n"


@pytest.fixture(scope="module")
def tiny():
    from r1lab.models import load_model

    return load_model("tiny", dtype="float32")


def test_prompts_end_inside_the_reply(tiny):
    _, tok = tiny
    ds = load_eval_dataset("builtin", n=2, system_prompt=None, reply_prefix=PREFIX)
    assert ds[0]["prompt"][-1] == {"role": "assistant", "content": PREFIX}
    [text] = render_prompts(tok, [ds[0]["prompt"]])
    assert text.endswith("<|im_start|>assistant\n" + PREFIX)  # continued, not closed and reopened
    grpo = load_grpo_dataset("builtin", n=1, system_prompt=None, reply_prefix=PREFIX)
    assert grpo[0]["prompt"][-1]["content"] == PREFIX


def test_generated_replies_include_the_prefix(tiny):
    model, tok = tiny
    ds = load_eval_dataset("builtin", n=2, system_prompt=None, reply_prefix=PREFIX)
    plain = load_eval_dataset("builtin", n=2, system_prompt=None)
    with_prefix = generate(model, tok, [r["prompt"] for r in ds], max_new_tokens=4)
    without = generate(model, tok, [r["prompt"] for r in plain], max_new_tokens=4)
    assert all(c[0].text.startswith(PREFIX) for c in with_prefix)
    assert not any(c[0].text.startswith(PREFIX) for c in without)
    assert all(c[0].n_tokens <= 4 for c in with_prefix)  # the prefix is not counted as generated


def test_grpo_rewards_score_the_whole_reply():
    stage = StageConfig(name="g", kind="grpo", rewards=["format"])
    [fmt] = grpo_rewards(stage)
    assert isinstance(fmt, WholeReply) and fmt.__name__ == "format"
    prompts = [
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": PREFIX}],
        [{"role": "user", "content": "q"}],
    ]
    completion = [{"role": "assistant", "content": "2+2=4\n</think>\n<answer>4</answer>"}]
    assert fmt(prompts=prompts, completions=[completion, completion]) == [1.0, 0.0]


def test_judging_the_whole_reply_counts_the_format():
    [v] = judge([PREFIX + "2+2=4\n</think>\n<answer>4</answer>"], ["4"])
    assert v.formatted and v.correct


def test_rejection_sampling_rows_hold_the_whole_reply_once():
    prompt = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": PREFIX}]
    reply = PREFIX + "1+1=2\n</think>\n<answer>2</answer>"
    [row] = select_accepted([prompt], [[reply]], ["2"], [[SimpleNamespace(correct=True, formatted=True)]])
    assert row["messages"] == [prompt[0], {"role": "assistant", "content": reply}]


def test_reply_prefix_is_a_run_field():
    run = RunConfig.from_dict(
        {"name": "x", "model": "tiny", "reply_prefix": PREFIX, "stages": [{"kind": "sft"}]}
    )
    assert run.reply_prefix == PREFIX and run.to_dict()["reply_prefix"] == PREFIX
