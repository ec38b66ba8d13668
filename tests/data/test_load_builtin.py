"""The loaders on the built-in source: the shapes training and evaluation consume."""

import pytest

from r1lab.data import load_eval_dataset, load_grpo_dataset, load_sft_dataset, parse_source
from r1lab.errors import UserError
from r1lab.prompts import R1_SYSTEM_PROMPT


def test_grpo_rows():
    ds = load_grpo_dataset("builtin", n=5)
    assert ds.column_names == ["prompt", "solution", "problem"]
    row = ds[0]
    assert row["prompt"] == [
        {"role": "system", "content": R1_SYSTEM_PROMPT},
        {"role": "user", "content": row["problem"]},
    ]
    assert row["solution"].isdigit()


def test_sft_rows_keep_trace_and_can_strip_think_prefix():
    ds = load_sft_dataset("builtin:level=2", n=3)
    msgs = ds[0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[2]["content"].startswith("<think>\n") and msgs[2]["content"].endswith("</answer>")
    stripped = load_sft_dataset("builtin:level=2", n=3, strip_think_prefix=True)[0]["messages"][2]["content"]
    assert stripped == msgs[2]["content"][len("<think>\n") :]


def test_eval_rows_default_to_test_split_and_know_level():
    ds = load_eval_dataset("builtin:level=1-3", n=30)
    assert set(ds["level"]) <= {"1", "2", "3"} and set(ds["subject"]) == {"arithmetic"}
    train = set(load_grpo_dataset("builtin:level=1-3", n=500)["problem"])
    assert not train & set(ds["problem"])


def test_system_prompt_is_configurable():
    assert [m["role"] for m in load_grpo_dataset("builtin", n=1, system_prompt=None)[0]["prompt"]] == ["user"]
    assert (
        load_grpo_dataset("builtin", n=1, system_prompt="Be terse.")[0]["prompt"][0]["content"] == "Be terse."
    )


def test_source_options():
    assert parse_source("builtin:test,level=2,n=7,seed=3").options == {
        "split": "test", "level": "2", "n": "7", "seed": "3"
    }  # fmt: skip
    assert len(load_eval_dataset("builtin:n=7")) == 7
    a = load_grpo_dataset("builtin:seed=3", n=4)["problem"]
    assert (
        a
        == load_grpo_dataset("builtin", n=4, seed=3)["problem"]
        != load_grpo_dataset("builtin", n=4)["problem"]
    )
    # The split in the source string wins over the split argument.
    assert load_grpo_dataset("builtin:test", n=3)["problem"] == load_eval_dataset("builtin", n=3)["problem"]


def test_default_sizes():
    assert len(load_eval_dataset("builtin")) == 500


@pytest.mark.parametrize(
    "bad", ["builtin:colour=red", "builtin:level=9", "builtin:n=x", "builtin:holdout", ""]
)
def test_bad_builtin_source(bad):
    with pytest.raises(UserError):
        load_grpo_dataset(bad, n=1)


def test_builtin_traces_earn_full_rewards():
    """The SFT targets are what GRPO rewards: correct answer, strict format, tags counted once."""
    from r1lab.rewards import get_reward_funcs

    sft = load_sft_dataset("builtin:level=mix", n=40)
    completions = [row["messages"][-1]["content"] for row in sft]
    solutions = load_grpo_dataset("builtin:level=mix", n=40)["solution"]
    for fn in get_reward_funcs(["accuracy_strict", "format", "tag_count"]):
        assert fn(completions, solution=solutions) == [1.0] * 40, fn.__name__
