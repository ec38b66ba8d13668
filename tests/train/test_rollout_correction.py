"""Low-precision rollouts, corrected: the decoder's sampling log-probs, TRL's importance-sampling branch
opened in r1lab's loss, the int8 rollout copy, and when the correction applies.

On the tiny model with redrawn weights (see conftest.redrawn_tiny), fp32 training weights.
"""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from train_helpers import grpo_rows, independent_processors, tiny_grpo_args

from r1lab.decode_step import attention_in_fp32
from r1lab.decoding import Sampling, decode_shared_prefix
from r1lab.models import cpu_has_fast_bf16
from r1lab.train.rollout_correction import MODES, Correction, importance_ratio
from r1lab.train.rollouts import R1labGRPOTrainer

IS_KEYS = (
    "sampling/sampling_logp_difference/mean",
    "sampling/sampling_logp_difference/max",
    "sampling/importance_sampling_ratio/min",
    "sampling/importance_sampling_ratio/mean",
    "sampling/importance_sampling_ratio/max",
    "sampling/importance_sampling_ratio/clipped",
)


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 3) for c in completions]


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(0, for_training=True)


def make_trainer(lively, tmp_path, *, rollout_dtype=None, engine="r1lab", **config):
    model, tok = lively
    return R1labGRPOTrainer(
        model=copy.deepcopy(model),  # tests train: each trainer its own copy of the weights
        reward_funcs=[length_reward],
        args=tiny_grpo_args(tmp_path / "out", **config),
        train_dataset=grpo_rows(8),
        processing_class=tok,
        rollout_engine=engine,
        rollout_dtype=rollout_dtype,
    )


def batch(trainer):
    return [trainer.train_dataset[i] for i in range(2) for _ in range(4)]


# --- the decoder's sampling log-probs ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=1.0),
        Sampling(temperature=0.7, top_k=20, top_p=0.9),
        Sampling(temperature=1.3, min_p=0.05, repetition_penalty=1.3),
    ],
)
def test_recorded_logprobs_are_those_of_the_warped_distribution_tokens_were_drawn_from(lively, sampling):
    """Every token's recorded log-prob equals log softmax of the warped logits of a plain full forward over
    prompt + the tokens before it (no KV cache), at every position, not just the first."""
    model, tok = lively
    model.eval()
    rows = [
        tok(t, add_special_tokens=False)["input_ids"]
        for t in ["<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n", "<|im_start|>user\nab<|im_end|>\n"]
    ]
    logprobs: list[list[float]] = []
    torch.manual_seed(0)
    with torch.no_grad():
        out = decode_shared_prefix(
            model,
            rows,
            per_prompt=3,
            max_new_tokens=8,
            eos=set(),
            pad_id=0,
            sampling=sampling,
            logprobs=logprobs,
        )
        procs = independent_processors(sampling)
        checked = 0
        for i, (tokens, lps) in enumerate(zip(out, logprobs, strict=True)):
            prompt = rows[i // 3]
            assert len(lps) == len(tokens) == 8
            full = torch.tensor([prompt + tokens])
            logits = model(full).logits[0].float()
            for t, (token, lp) in enumerate(zip(tokens, lps, strict=True)):
                before = full[:, : len(prompt) + t]
                warped = procs(before, logits[len(prompt) + t - 1][None].clone())
                want = torch.log_softmax(warped, dim=-1)[0, token].item()
                assert math.isfinite(lp) and lp <= 0
                assert lp == pytest.approx(want, abs=2e-4), (i, t)
                checked += 1
    assert checked == 48


# --- the ratio -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_ratio_of_identical_logprobs_is_exactly_one(mode):
    logps = -torch.rand(3, 5) * 4
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    ratio, clipped = importance_ratio(logps, logps.clone(), mask, Correction(mode, 0.5, 2.0))
    assert torch.equal(ratio, torch.ones_like(ratio)) and not clipped.any()


@pytest.mark.parametrize("mode", MODES)
def test_ratio_equals_trls_own_computation(lively, tmp_path, mode):
    """The ratio r1lab computes in the loss equals the one TRL computes (with its extra forward) when its
    vLLM gate is open during generation: same fields, same modes, same numbers."""
    trainer = make_trainer(
        lively,
        tmp_path,
        rollout_dtype=torch.int8,
        vllm_importance_sampling_mode=mode,
        vllm_importance_sampling_clip_min=0.9,
        vllm_importance_sampling_clip_max=1.05,
    )
    trainer.model.train()
    torch.manual_seed(0)
    trainer._correcting = True  # TRL's whole path, for reference only (r1lab never opens it here)
    try:
        trl = trainer._generate_and_score_completions(batch(trainer))
    finally:
        trainer._correcting = False
    ours, clipped = importance_ratio(
        trl["old_per_token_logps"],
        trl["sampling_per_token_logps"],
        trl["completion_mask"],
        Correction.from_args(trainer.args),
    )
    assert torch.equal(ours, trl["importance_sampling_ratio"])
    assert clipped.any()  # the tight bounds did act on int8's mismatch


# --- the loss --------------------------------------------------------------------------------------------


def test_with_identical_weights_the_ratio_is_one_and_the_loss_is_todays(lively, tmp_path, monkeypatch):
    """fp32 rollouts with the correction forced on. The decoder's cached fp32 log-probs match the loss
    forward's to rounding; fed the learner's own log-probs, the ratio is exactly 1 and the loss bit for bit
    the uncorrected one."""
    trainer = make_trainer(lively, tmp_path)
    assert trainer.correction() is None  # fp32 rollouts of fp32 weights: nothing to correct
    monkeypatch.setattr(trainer, "rollout_mismatch", lambda: "forced for the test")
    trainer.model.train()
    torch.manual_seed(0)
    inputs = trainer._generate_and_score_completions(batch(trainer))
    assert "old_per_token_logps" not in inputs  # TRL ran no extra forward for the correction
    sampling = inputs["sampling_per_token_logps"]
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        learner, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, inputs["completion_ids"].size(1)
        )
    real = inputs["completion_mask"].bool()
    assert (learner - sampling)[real].abs().max() < 1e-4  # same weights, same distribution

    trainer._metrics["train"].clear()
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before a loss
    corrected = trainer._compute_loss(trainer.model, {**inputs, "sampling_per_token_logps": learner.clone()})
    assert trainer._metrics["train"]["sampling/importance_sampling_ratio/min"] == [1.0]
    assert trainer._metrics["train"]["sampling/importance_sampling_ratio/max"] == [1.0]
    assert trainer._metrics["train"]["sampling/sampling_logp_difference/max"] == [0.0]
    monkeypatch.setattr(trainer, "rollout_mismatch", lambda: None)
    today = trainer._compute_loss(trainer.model, inputs)
    assert torch.equal(corrected, today)
    assert not trainer.use_vllm  # the gate closed again


@pytest.mark.dtype
def test_correction_applies_whenever_rollout_and_training_precision_differ(lively, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="r1lab")
    assert make_trainer(lively, tmp_path).correction() is None  # fp32 / fp32
    assert make_trainer(lively, tmp_path, rollout_dtype=torch.int8).correction() is not None
    assert make_trainer(lively, tmp_path, rollout_dtype=torch.bfloat16).correction() is not None
    # fp32 rollouts against a bf16-autocast learner differ too
    assert make_trainer(lively, tmp_path, bf16=True).correction() is not None
    assert not caplog.records
    # never silently skipped: switched off, or on TRL's generation (no sampling log-probs), it says so
    off = make_trainer(lively, tmp_path, rollout_dtype=torch.int8, vllm_importance_sampling_correction=False)
    assert off.correction() is None
    assert (
        "nothing corrects it" in caplog.text and "vllm_importance_sampling_correction is false" in caplog.text
    )
    caplog.clear()
    assert make_trainer(lively, tmp_path, engine="trl", bf16=True).correction() is None
    assert "TRL's generation records no sampling log-probabilities" in caplog.text


@pytest.mark.dtype
@pytest.mark.parametrize("bf16", [None, False])  # None: r1lab's default (bf16 where the CPU has it)
def test_default_rollouts_decode_the_learners_weights_unless_an_fp32_learner_runs_on_native_bf16(
    lively, tmp_path, tiny_run, bf16
):
    """``rollout_dtype: auto`` decodes the learner's own weights in its own precision (bf16 autocast where
    the CPU has native bf16; R1LAB_CPU_BF16 flips it); only an fp32 learner on a native-bf16 CPU gets a bf16
    copy. The correction is on exactly where the CPU has native bf16 (autocast or the copy), off otherwise."""
    from r1lab.train.common import build_trl_args
    from r1lab.train.grpo import rollout_choice

    run = tiny_run({"name": "grpo", "kind": "grpo"} | ({} if bf16 is None else {"bf16": bf16}))
    stage = run.stages[0]
    args = build_trl_args(stage, run, tmp_path / "args")
    assert args.bf16 == (bf16 is None and cpu_has_fast_bf16())
    engine, dtype, why = rollout_choice(stage, run, args, lively[0])
    copy_wanted = cpu_has_fast_bf16() and not args.bf16
    assert engine == "r1lab" and dtype == (torch.bfloat16 if copy_wanted else None)
    assert ("learner's precision" in why) == bool(args.bf16)
    # the run log says where bf16 decoding runs its attention in fp32 (decode_step.attention_in_fp32)
    assert ("attention in fp32" in why) == (cpu_has_fast_bf16() and attention_in_fp32())
    trainer = make_trainer(lively, tmp_path, rollout_dtype=dtype, bf16=args.bf16)
    assert (trainer.correction() is not None) == cpu_has_fast_bf16()


def step_metrics(trainer) -> dict:
    clocks = ("runtime", "per_second", "time")
    return {k: v for k, v in trainer.state.log_history[0].items() if not any(c in k for c in clocks)}


def test_int8_rollouts_train_with_the_correction_and_no_extra_forward(lively, tmp_path, monkeypatch):
    forwards = []
    original = R1labGRPOTrainer._get_per_token_logps_and_entropies

    def counted(self, *args, **kwargs):
        forwards.append(torch.is_grad_enabled())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(R1labGRPOTrainer, "_get_per_token_logps_and_entropies", counted)
    exact = make_trainer(lively, tmp_path)
    exact.train()
    exact_forwards, forwards[:] = list(forwards), []
    int8 = make_trainer(lively, tmp_path, rollout_dtype=torch.int8)
    int8.train()
    assert forwards == exact_forwards == [True]  # the loss forward only, in both
    logged = int8.state.log_history[0]
    for key in IS_KEYS:
        assert key in logged, key
    assert (
        0
        < logged["sampling/sampling_logp_difference/mean"]
        <= logged["sampling/sampling_logp_difference/max"]
    )
    assert not any(k.startswith("sampling/") for k in exact.state.log_history[0])
    assert next(int8.model.parameters()).dtype == torch.float32  # the quantized copy was a copy


def test_seeded_int8_run_is_reproducible(lively, tmp_path):
    runs = []
    for i in range(2):
        trainer = make_trainer(lively, tmp_path / str(i), rollout_dtype=torch.int8, max_steps=2)
        trainer.train()
        runs.append((step_metrics(trainer), {k: v.clone() for k, v in trainer.model.state_dict().items()}))
    (metrics_a, weights_a), (metrics_b, weights_b) = runs
    assert metrics_a == metrics_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_step_line_shows_the_mismatch():
    from r1lab.train.callbacks import step_line

    line = step_line(
        "grpo",
        1,
        4,
        {
            "loss": 0.1,
            "sampling/sampling_logp_difference/mean": 0.02,
            "sampling/sampling_logp_difference/max": 0.5,
            "sampling/importance_sampling_ratio/clipped": 0.01,
        },
    )
    assert line == "grpo step 1/4: loss 0.1, |log p/q| 0.02 (max 0.5), 1.0% clipped"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.int8])
def test_a_decoding_copy_runs_its_own_weights_not_the_trainers(lively, tmp_path, dtype):
    """GRPOTrainer sets `forward` on the model instance (its fused LM head) as a closure over the original
    model; a deep copy kept that closure and decoded with the fp32 training weights."""
    from r1lab.train.rollouts import _decoding_copy

    trainer = make_trainer(lively, tmp_path)
    assert "forward" in trainer.model.__dict__  # what made the copies run the original
    ids = torch.tensor([[1, 5, 7, 9, 3]])
    with torch.no_grad():
        exact = trainer.model(ids).logits.float()
        with _decoding_copy(trainer.model, dtype) as copy_:
            low = copy_(ids).logits
    assert (dtype == torch.bfloat16) == (low.dtype == torch.bfloat16)
    assert (low.float() - exact).abs().max() > 1e-3


def test_a_recipes_int8_reaches_the_trainer(lively, tmp_path, tiny_run):
    from r1lab.train.common import build_trl_args
    from r1lab.train.grpo import rollout_choice

    run = tiny_run({"name": "grpo", "kind": "grpo", "rollout_dtype": "int8"})
    stage = run.stages[0]
    engine, dtype, why = rollout_choice(stage, run, build_trl_args(stage, run, tmp_path / "a"), lively[0])
    assert (engine, dtype) == ("r1lab", torch.int8) and "int8" in why
