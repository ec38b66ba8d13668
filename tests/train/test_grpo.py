"""The GRPO stage on the tiny model: columns reach the rewards, run logs, checkpoints, final model."""

import json

from train_helpers import grpo_rows

from r1lab.io import read_jsonl
from r1lab.train.callbacks import COMPLETE
from r1lab.train.grpo import run_grpo

GRPO = {
    "name": "grpo",
    "kind": "grpo",
    "max_steps": 3,
    "save_steps": 2,
    "num_generations": 4,
    "per_device_train_batch_size": 4,
    "max_completion_length": 12,
}


class RecordingReward:
    """A reward that fails loudly unless GRPOTrainer hands it the dataset's `solution` column."""

    __name__ = "recording"

    def __init__(self):
        self.calls = []

    def __call__(self, completions, **kwargs):
        assert "solution" in kwargs, f"solution column did not reach the reward: {sorted(kwargs)}"
        assert len(kwargs["solution"]) == len(completions)
        self.calls.append(list(kwargs["solution"]))
        return [float(len(c[0]["content"]) % 2) for c in completions]


def test_solution_reaches_rewards_and_run_logs_are_written(tiny_run):
    run = tiny_run(GRPO)
    ds = grpo_rows(8)
    reward = RecordingReward()
    out = run_grpo(
        run.stages[0],
        run,
        model_spec="tiny",
        stage_dir=run.run_dir / "grpo",
        reward_funcs=[reward],
        dataset=ds,
    )

    answers = set(ds["solution"])
    assert reward.calls and all(set(c) <= answers for c in reward.calls)
    # Each prompt's 4 completions are scored against that prompt's own answer.
    assert all(c[0] == c[1] == c[2] == c[3] for c in reward.calls)

    rows = list(read_jsonl(run.run_dir / "metrics.jsonl"))
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert r["stage"] == "grpo" and isinstance(r["time"], float)
        for key in (
            "loss",
            "reward",
            "reward_std",
            "rewards/recording/mean",
            "completions/mean_length",
            "frac_reward_zero_std",
            "learning_rate",
        ):
            assert key in r, key

    samples = list(read_jsonl(run.run_dir / "samples.jsonl"))
    assert samples and all(s["stage"] == "grpo" for s in samples)
    assert all(s["solution"] in answers and "recording" in s["rewards"] for s in samples)

    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    assert list((run.run_dir / "tb" / "grpo").glob("events.out.tfevents.*"))
    ckpts = sorted((run.run_dir / "grpo" / "checkpoints").glob("checkpoint-*"))
    assert ckpts and all((c / COMPLETE).is_file() for c in ckpts)
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0


def test_registry_rewards_train_on_the_real_columns(tiny_run):
    """With the rewards package's own functions: accuracy is computed against `solution` (not a constant)."""
    run = tiny_run(dict(GRPO, max_steps=1, rewards=["accuracy", "format"]))
    run_grpo(run.stages[0], run, model_spec="tiny", stage_dir=run.run_dir / "grpo", dataset=grpo_rows(8))
    row = next(r for r in read_jsonl(run.run_dir / "metrics.jsonl") if "reward" in r)
    assert "rewards/accuracy/mean" in row and "rewards/format/mean" in row
    json.dumps(row)  # plain JSON values only
