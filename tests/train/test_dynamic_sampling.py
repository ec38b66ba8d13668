"""Dynamic sampling on the tiny model: zero-spread groups are dropped and the batch is still full, the cap
on generation rounds is honoured, extra prompts are reproducible, and with filtering off (or nothing to
filter) the trainer is exactly r1lab's GRPO trainer."""

from __future__ import annotations

import datasets
import pytest
import torch
from train_helpers import grpo_rows, tiny_grpo_args

from r1lab.train.dynamic_sampling import (
    PREFIX,
    DynamicSampling,
    DynamicSamplingGRPOTrainer,
    group_has_spread,
)
from r1lab.train.rollouts import R1labGRPOTrainer

G = 4  # num_generations
BATCH = 8  # rows per generation batch: 2 groups


def flagged_rows(n: int, flat: list[bool]) -> datasets.Dataset:
    """The built-in task with a `flat` column: prompts whose reward is the same for every completion."""
    rows = grpo_rows(n).to_list()
    return datasets.Dataset.from_list([{**r, "flat": f} for r, f in zip(rows, flat, strict=True)])


class FlatOrLively:
    """1.0 for every completion of a `flat` prompt (zero spread); else the completion's position in its
    group (always spread), so which groups have spread is known for certain."""

    __name__ = "flat_or_lively"

    def __init__(self):
        self.rows_scored = 0

    def __call__(self, completions, flat, **kwargs):
        self.rows_scored += len(completions)
        return [1.0 if f else float(i % G) for i, f in enumerate(flat)]


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(0, for_training=True)


def make_trainer(model_tok, tmp_path, dataset, reward, cls=DynamicSamplingGRPOTrainer, **kwargs):
    model, tok = model_tok
    config = dict(per_device_train_batch_size=BATCH, num_generations=G, max_completion_length=6)
    config.update(kwargs.pop("config", {}))
    return cls(
        model=model,
        reward_funcs=[reward],
        args=tiny_grpo_args(tmp_path / "out", **config),
        train_dataset=dataset,
        processing_class=tok,
        **kwargs,
    )


def scored_batch(trainer):
    """The batch the trainer trains on for its first step (no optimizer step taken)."""
    trainer.model.train()
    rows = [dict(trainer.train_dataset[i]) for i in range(BATCH // G) for _ in range(G)]
    return trainer._generate_and_score_completions(rows)


def logged(trainer) -> dict:
    return {k: sum(v) / len(v) for k, v in trainer._metrics["train"].items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("engine", ["r1lab", "trl", "r1lab-bf16"])
def test_zero_spread_groups_are_dropped_and_the_batch_is_still_full(lively, tmp_path, engine):
    # Prompts 0 and 1 (the first generation batch) are flat, the rest are lively. bf16 rollouts of fp32
    # weights record sampling log-probs (rollout correction): rounds are joined with those too.
    reward = FlatOrLively()
    dtype = {"rollout_dtype": torch.bfloat16} if engine.endswith("bf16") else {}
    trainer = make_trainer(
        lively,
        tmp_path,
        flagged_rows(16, [True, True] + [False] * 14),
        reward,
        dynamic_sampling=DynamicSampling(max_rounds=4),
        rollout_engine=engine.removesuffix("-bf16"),
        **dtype,
    )
    assert trainer.rollout_engine == engine.removesuffix("-bf16")
    out = scored_batch(trainer)
    assert out["completion_ids"].shape[0] == BATCH  # full
    advantages = out["advantages"].view(-1, G)
    assert group_has_spread(advantages).all()  # every group trained on has spread
    metrics = logged(trainer)
    assert metrics[PREFIX + "generation_rounds"] == 2
    assert metrics[PREFIX + "groups_drawn"] == 4 and metrics[PREFIX + "groups_kept"] == 2
    assert metrics[PREFIX + "zero_spread_frac"] == 0.5 and metrics[PREFIX + "batch_full"] == 1.0
    assert out["num_items_in_batch"] == out["completion_mask"].sum()
    if dtype:
        assert out["sampling_per_token_logps"].shape == out["completion_ids"].shape


def test_the_cap_on_generation_rounds_is_honoured(lively, tmp_path):
    reward = FlatOrLively()
    trainer = make_trainer(
        lively,
        tmp_path,
        flagged_rows(16, [True] * 16),
        reward,
        dynamic_sampling=DynamicSampling(max_rounds=3),
    )
    out = scored_batch(trainer)
    assert reward.rows_scored == 3 * BATCH  # three rounds, no more
    metrics = logged(trainer)
    assert metrics[PREFIX + "generation_rounds"] == 3 and metrics[PREFIX + "groups_kept"] == 0
    assert metrics[PREFIX + "batch_full"] == 0.0
    assert (out["advantages"] == 0).all() and out["completion_ids"].shape[0] >= 1


def test_a_short_batch_trains_on_what_it_has(lively, tmp_path):
    # One lively prompt in the whole dataset: the cap is reached with one group of two wanted.
    flat = [True] * 16
    flat[3] = False
    trainer = make_trainer(
        lively,
        tmp_path,
        flagged_rows(16, flat),
        FlatOrLively(),
        dynamic_sampling=DynamicSampling(max_rounds=2),
    )
    trainer.args.shuffle_dataset = False  # extra prompts are then 2, 3, ...: prompt 3 comes in round 2
    out = scored_batch(trainer)
    metrics = logged(trainer)
    assert metrics[PREFIX + "generation_rounds"] == 2
    assert metrics[PREFIX + "groups_kept"] == 1 and metrics[PREFIX + "batch_full"] == 0.0
    assert out["completion_ids"].shape[0] == G
    assert group_has_spread(out["advantages"].view(-1, G)).all()


def test_extra_prompts_depend_only_on_seed_generation_and_round(lively, tmp_path):
    ds = flagged_rows(16, [True] * 16)
    a = make_trainer(lively, tmp_path, ds, FlatOrLively(), dynamic_sampling=DynamicSampling(max_rounds=3))
    b = make_trainer(lively, tmp_path, ds, FlatOrLively(), dynamic_sampling=DynamicSampling(max_rounds=3))
    assert a._extra_indices(1, 2) == b._extra_indices(1, 2)
    assert a._extra_indices(1, 2) != a._extra_indices(2, 2)
    first = a._extra_indices(1, 2)
    a.state.global_step = 1  # a resumed run: TRL's _step is back at 0, global_step is not
    assert a._extra_indices(1, 2) != first
    b.state.global_step, b._step = 1, 1  # an uninterrupted run after one step
    assert b._extra_indices(1, 2) == a._extra_indices(1, 2)


def train_two_steps(model_tok, tmp_path, cls, reward, **kwargs):
    import copy

    model, tok = model_tok
    trainer = make_trainer(
        (copy.deepcopy(model), tok),
        tmp_path,
        grpo_rows(16),
        reward,
        cls=cls,
        config={"max_steps": 2},
        **kwargs,
    )
    torch.manual_seed(0)
    trainer.train()
    weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    history = [
        {
            k: v
            for k, v in row.items()
            if not k.startswith(PREFIX) and "time" not in k and "runtime" not in k and "per_second" not in k
        }
        for row in trainer.state.log_history
    ]
    return weights, history


def positional(completions, **kwargs):
    """Always spread: a completion's position in its group."""
    return [float(i % G) for i in range(len(completions))]


@pytest.fixture(scope="module")
def baseline(lively, tmp_path_factory):
    """Two steps of r1lab's own GRPO trainer: the weights and logs to match."""
    return train_two_steps(lively, tmp_path_factory.mktemp("base"), R1labGRPOTrainer, positional)


@pytest.mark.parametrize("dynamic", [None, DynamicSampling(max_rounds=4)], ids=["off", "nothing-to-drop"])
def test_filtering_off_or_idle_is_exactly_r1labs_trainer(lively, baseline, tmp_path, dynamic):
    base_w, base_h = baseline
    ds_w, ds_h = train_two_steps(
        lively, tmp_path, DynamicSamplingGRPOTrainer, positional, dynamic_sampling=dynamic
    )
    assert base_w.keys() == ds_w.keys()
    for k in base_w:
        assert torch.equal(base_w[k], ds_w[k]), k
    assert base_h == ds_h
    assert any(not torch.equal(w, lively[0].state_dict()[k]) for k, w in base_w.items())  # it trained


def test_a_grpo_stage_with_dynamic_sampling_trains_and_logs_each_step(tiny_run, caplog):
    """Through the stage: two optimizer steps of two accumulation slices each (TRL splits the kept batch
    in two), prompts mostly flat so batches come up short, rounds capped at 2; metrics.jsonl and the
    console line say what happened."""
    import logging

    from r1lab.io import read_jsonl
    from r1lab.train.callbacks import step_line
    from r1lab.train.grpo import run_grpo

    stage = {
        "name": "grpo",
        "kind": "grpo",
        "max_steps": 2,
        "save_strategy": "no",
        "num_generations": G,
        "per_device_train_batch_size": G,
        "gradient_accumulation_steps": 2,
        "max_completion_length": 6,
        "dynamic_sampling": True,
        "dynamic_sampling_max_rounds": 2,
    }
    run = tiny_run(stage)
    flat = [i % 4 != 3 for i in range(16)]  # one lively prompt in four
    with caplog.at_level(logging.INFO):
        out = run_grpo(
            run.stages[0],
            run,
            model_spec="tiny",
            stage_dir=run.run_dir / "grpo",
            reward_funcs=[FlatOrLively()],
            dataset=flagged_rows(16, flat),
        )
    assert (out / "config.json").is_file()
    steps = [r for r in read_jsonl(run.run_dir / "metrics.jsonl") if PREFIX + "groups_drawn" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert 1 <= r[PREFIX + "generation_rounds"] <= 2
        assert r[PREFIX + "groups_kept"] <= 2 and r[PREFIX + "groups_drawn"] >= 2
        assert 0 <= r[PREFIX + "zero_spread_frac"] <= 1
        assert f"groups {r[PREFIX + 'groups_kept']:.3g}/{r[PREFIX + 'groups_drawn']:.3g} kept" in step_line(
            "grpo", r["step"], 2, r
        )


def test_every_field_of_trls_scored_batch_is_one_dynamic_sampling_knows():
    """TRL's ``_generate_and_score_completions`` output fields: dynamic sampling pads, filters or
    recomputes each text-only one; multimodal ones are refused at run time. A TRL upgrade that adds a
    field fails here, not in a training run."""
    import inspect
    import re

    from trl import GRPOTrainer

    from r1lab.train import dynamic_sampling as ds

    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    fields = set(re.findall(r'output\["(\w+)"\]', source)) | set(re.findall(r'^\s+"(\w+)": ', source, re.M))
    known = set(ds._LEFT_PADDED + ds._RIGHT_PADDED + ds._PER_ROW + ds._RECOMPUTED)
    multimodal = {
        "pixel_values",
        "image_grid_thw",
        "pixel_attention_mask",
        "spatial_shapes",
        "image_sizes",
        "token_type_ids",
        "mm_token_type_ids",
        "image_position_ids",
        "num_images",
        "num_tiles",
    }
    assert fields - known - multimodal == set()


TWO_PROCESS_SCRIPT = r"""
import json, sys
from pathlib import Path

import datasets
from train_helpers import grpo_rows
from trl import GRPOConfig

from r1lab.models import load_model
from r1lab.train.dynamic_sampling import DynamicSampling, DynamicSamplingGRPOTrainer, group_has_spread

out, G = Path(sys.argv[1]), 4
rows = grpo_rows(32).to_list()
ds = datasets.Dataset.from_list([{**r, "flat": i % 2 == 0} for i, r in enumerate(rows)])


def flat_or_lively(completions, flat, **kwargs):
    return [1.0 if f else float(i % G) for i, f in enumerate(flat)]


model, tok = load_model("tiny", dtype="float32", for_training=True)
args = GRPOConfig(
    output_dir=str(out / "o"), per_device_train_batch_size=8, num_generations=G, max_completion_length=6,
    max_steps=2, report_to=[], use_cpu=True, bf16=False, remove_unused_columns=False, save_strategy="no",
    seed=0, logging_steps=1,
)
trainer = DynamicSamplingGRPOTrainer(
    model=model, reward_funcs=[flat_or_lively], args=args, train_dataset=ds, processing_class=tok,
    dynamic_sampling=DynamicSampling(max_rounds=4),
)
batches = []
score = trainer._generate_and_score_completions


def spy(inputs):
    batch = score(inputs)
    spread = group_has_spread(batch["advantages"].view(-1, G))
    batches.append({"rows": len(batch["advantages"]), "all_spread": bool(spread.all())})
    return batch


trainer._generate_and_score_completions = spy
trainer.train()
rank = trainer.accelerator.process_index
logs = [r for r in trainer.state.log_history if "dynamic_sampling/groups_drawn" in r]
(out / f"rank{rank}.json").write_text(json.dumps({"batches": batches, "logs": logs}))
# as r1lab's commands do: without it gloo may abort the interpreter at exit (r1lab.distributed.shutdown)
from r1lab.distributed import shutdown  # noqa: E402

shutdown()
"""


@pytest.mark.slow
def test_under_two_processes_each_filters_its_own_whole_groups(tmp_path):
    """accelerate, 2 processes (gloo): each process keeps whole groups of its own slice and fills its own
    batch, both run the same number of rounds (no collective hangs), and the logged counts are global."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")
    }
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(here), env.get("PYTHONPATH", "")]),
        R1LAB_CACHE=str(tmp_path / "cache"),
    )
    config = here.parents[1] / "recipes" / "accelerate" / "cpu_2proc.yaml"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    cmd += ["--main_process_port", str(port), str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        assert [b["rows"] for b in rank["batches"]] == [8, 8]  # each process's batch is full
        assert all(b["all_spread"] for b in rank["batches"])
    logs = ranks[0]["logs"]
    assert len(logs) == 2
    for row in logs:
        assert row[PREFIX + "groups_kept"] == 4  # 2 groups on each of 2 processes
        assert row[PREFIX + "groups_drawn"] >= 4 and row[PREFIX + "generation_rounds"] >= 1
