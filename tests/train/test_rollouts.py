"""r1lab's rollout engine inside GRPOTrainer: same tokens as TRL's generate path (greedy), same sampling
distribution, same completion masks, seeded reproducibility, and the fallbacks to TRL's path.

All on a tiny fp32 model with redrawn weights (a fresh tiny model repeats one token forever, which would
make every comparison trivially true). fp32 on every CPU: token equality across batch shapes needs it.
"""

from __future__ import annotations

import contextlib
import logging

import pytest
import torch
from train_helpers import grpo_rows, tiny_grpo_args

from r1lab.decoding import Sampling, decode_shared_prefix, group_repeats, sampling_from_generation_config
from r1lab.train.rollouts import R1labGRPOTrainer

# Depends on the CPU-bf16 decision (models.cpu_has_fast_bf16): `make test` also runs these with it flipped.
pytestmark = pytest.mark.dtype


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 3) for c in completions]


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(0, for_training=True)


def make_trainer(lively, tmp_path, engine, **config):
    model, tok = lively
    return R1labGRPOTrainer(
        model=model,
        reward_funcs=[length_reward],
        args=tiny_grpo_args(tmp_path / engine, **config),
        train_dataset=grpo_rows(8),
        processing_class=tok,
        rollout_engine=engine,
    )


def prompt_batch(trainer, n_prompts=2, copies=4):
    """Token ids as TRL hands them to generation: each prompt repeated num_generations times in a row."""
    rows = [trainer.train_dataset[i] for i in range(n_prompts)]
    ids, _, _ = trainer._tokenize_prompts([r["prompt"] for r in rows for _ in range(copies)])
    return ids


def frequent_token_as_eos(trainer, ids):
    """A random tiny model rarely says EOS: call a token it produces often "EOS", so rows stop at
    different steps and the batch really shrinks."""
    free = trainer._generate_single_turn(ids, None, {}, 4)[0]
    counts = torch.bincount(torch.tensor([t for row in free for t in row[1:]]))
    return int(counts.argmax())


def test_greedy_rollouts_equal_trls_generate_token_for_token(lively, tmp_path):
    greedy = {"generation_kwargs": {"do_sample": False}}
    ours = make_trainer(lively, tmp_path, "r1lab", **greedy)
    trls = make_trainer(lively, tmp_path, "trl", **greedy)
    ids = prompt_batch(ours)
    eos = frequent_token_as_eos(trls, ids)
    for t in (ours, trls):
        t.eos_token_ids = [eos]
    got, _ = ours._generate_single_turn(ids, None, {}, 4)
    want, _ = trls._generate_single_turn(ids, None, {}, 4)
    assert got == want
    assert len({len(r) for r in got}) > 1  # rows stopped at different steps
    assert any(r[-1] == eos for r in got) and any(len(r) == 10 for r in got)


def test_completion_masks_and_eos_handling_equal_trls(lively, tmp_path):
    """Through TRL's whole _generate_and_score_completions: ids, masks and the truncation flag agree."""
    greedy = {"generation_kwargs": {"do_sample": False}, "mask_truncated_completions": True}
    ours = make_trainer(lively, tmp_path, "r1lab", **greedy)
    trls = make_trainer(lively, tmp_path, "trl", **greedy)
    inputs = [ours.train_dataset[i] for i in range(2) for _ in range(4)]
    eos = frequent_token_as_eos(trls, prompt_batch(trls))
    outs = []
    for t in (ours, trls):
        t.eos_token_ids = [eos]
        t.model.train()
        outs.append(t._generate_and_score_completions(inputs))
    a, b = outs
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages"):
        assert torch.equal(a[key], b[key]), key
    assert a["completion_mask"].sum(1).min() == 0  # a truncated completion was masked out, in both


def test_seeded_sampled_rollouts_are_reproducible(lively, tmp_path):
    trainer = make_trainer(lively, tmp_path, "r1lab", temperature=1.0)
    ids = prompt_batch(trainer)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(trainer._generate_single_turn(ids, None, {}, 4)[0])
    assert runs[0] == runs[1]
    assert len({tuple(r) for r in runs[0]}) > 2  # samples of one prompt differ


def _first_token_probs(model, row, sampling):
    with torch.no_grad():
        logits = model(torch.tensor([row])).logits[:, -1, :].float()
    return torch.softmax(sampling.processors()(torch.tensor([row]), logits), dim=-1)[0]


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=1.0, top_k=6),
        Sampling(temperature=0.7, top_p=0.8),
        Sampling(temperature=1.3, min_p=0.1),
    ],
)
def test_sampled_first_tokens_follow_the_models_distribution(lively, sampling):
    """Chi-square over 3000 first tokens against the exact warped distribution."""
    model, tok = lively
    model.eval()
    row = tok(
        "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False
    )["input_ids"]
    probs = _first_token_probs(model, row, sampling)
    support = (probs > 0).nonzero().squeeze(1)
    torch.manual_seed(0)
    n = 3000
    with torch.no_grad():
        draws = decode_shared_prefix(
            model, [row], per_prompt=n, max_new_tokens=1, eos=set(), pad_id=0, sampling=sampling
        )
    counts = torch.bincount(torch.tensor([d[0] for d in draws]), minlength=probs.numel()).float()
    assert counts[probs == 0].sum() == 0  # never a token the warpers removed
    expected = probs[support] * n
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    df = len(support) - 1
    # p < 0.001 critical value, Wilson-Hilferty approximation (no scipy needed)
    critical = df * (1 - 2 / (9 * df) + 3.09 * (2 / (9 * df)) ** 0.5) ** 3
    assert 2 <= len(support) and chi2 < critical, (chi2, critical, df)


def test_repetition_penalty_matches_generate(lively):
    """The penalty sees each row's own prompt and generated tokens, as in generate (greedy, unpadded)."""
    model, tok = lively
    model.eval()
    rows = [
        tok(t, add_special_tokens=False)["input_ids"]
        for t in ["<|im_start|>user\nab", "<|im_start|>user\nxyz12"]
    ]
    sampling = Sampling(repetition_penalty=1.8)
    with torch.no_grad():
        got = decode_shared_prefix(
            model, rows, per_prompt=1, max_new_tokens=8, eos=set(), pad_id=0, sampling=sampling
        )
        for row, out in zip(rows, got, strict=True):
            ref = model.generate(
                torch.tensor([row]),
                attention_mask=torch.ones(1, len(row), dtype=torch.long),
                max_new_tokens=8,
                do_sample=False,
                repetition_penalty=1.8,
                pad_token_id=0,
                eos_token_id=None,
            )
            assert out == ref[0, len(row) :].tolist()


def test_group_repeats_and_uneven_counts(lively):
    model, tok = lively
    model.eval()
    rows = [
        tok(t, add_special_tokens=False)["input_ids"] for t in ["<|im_start|>user\nab", "<|im_start|>user\nq"]
    ]
    assert group_repeats([rows[0], rows[0], rows[1]]) == ([rows[0], rows[1]], [2, 1])
    with torch.no_grad():
        got = decode_shared_prefix(model, rows, per_prompt=[3, 1], max_new_tokens=5, eos=set(), pad_id=0)
        alone = decode_shared_prefix(model, rows, per_prompt=1, max_new_tokens=5, eos=set(), pad_id=0)
    assert got == [alone[0]] * 3 + [alone[1]]


def test_generation_settings_the_decoder_cannot_reproduce_fall_back_to_trl(lively, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="r1lab")
    trainer = make_trainer(lively, tmp_path, "r1lab", generation_kwargs={"no_repeat_ngram_size": 2})
    assert trainer.rollout_engine == "trl"
    assert "no_repeat_ngram_size" in caplog.text
    _, why = sampling_from_generation_config(trainer.generation_config)
    assert why and "no_repeat_ngram_size" in why


def test_trl_generation_settings_reach_the_decoder(lively, tmp_path):
    trainer = make_trainer(
        lively, tmp_path, "r1lab", temperature=0.9, top_p=0.95, top_k=20, min_p=0.05, repetition_penalty=1.1
    )
    assert trainer.rollout_engine == "r1lab"
    assert trainer.sampling == Sampling(
        temperature=0.9, top_p=0.95, top_k=20, min_p=0.05, repetition_penalty=1.1
    )


def test_bf16_rollouts_decode_with_a_bf16_copy_and_leave_training_weights_alone(lively, tmp_path):
    """Where the CPU has native bf16 rollouts decode in bf16; the fp32 master weights are untouched."""
    trainer = make_trainer(lively, tmp_path, "r1lab")
    trainer.rollout_dtype = torch.bfloat16
    ids = prompt_batch(trainer, n_prompts=1, copies=2)
    torch.manual_seed(0)
    out, _ = trainer._generate_single_turn(ids, None, {}, 2)
    assert len(out) == 2 and all(1 <= len(r) <= 10 for r in out)
    assert next(trainer.model.parameters()).dtype == torch.float32


def test_rollouts_step_through_r1labs_decode_step_with_the_same_tokens(lively, tmp_path, monkeypatch):
    """The trainer's model carries TRL's fused LM head and accelerate's autocast wrapper on the instance;
    rollouts decode with the class's forward under the trainer's autocast instead (the same computation), so
    decoding steps go through r1lab.decode_step, and tokens and sampling log-probabilities are what the
    model's own forward gives. The instance's forward is back afterwards."""
    from r1lab import decode_step

    trainer = make_trainer(lively, tmp_path, "r1lab")
    ids = prompt_batch(trainer)
    patched = trainer.model.__dict__.get("forward")
    assert patched is not None  # TRL's fused head (and accelerate's wrapper where it mixes precision)
    calls = []
    real = decode_step.decode_step
    monkeypatch.setattr(decode_step, "decode_step", lambda *a: calls.append(1) or real(*a))

    def run():
        torch.manual_seed(0)
        monkeypatch.setattr(trainer, "correction", lambda: object())  # ask for sampling log-probs
        tokens, recorded = trainer._generate_single_turn(ids, None, {}, 4)
        return tokens, recorded

    ours = run()
    assert calls  # decoding steps went through decode_step
    assert trainer.model.__dict__.get("forward") is patched
    monkeypatch.setenv(decode_step.ENV, "0")
    n = len(calls)
    theirs = run()
    assert len(calls) == n
    assert ours == theirs


def test_an_unknown_forward_patch_is_left_to_run(lively):
    """Only the trainer's own patches (TRL's fused head, accelerate's autocast wrapper) are known to compute
    the class forward for generation; any other stays on the instance and the decoder calls it."""
    from r1lab.train.rollouts import _class_forward

    model, _ = lively
    entered = []

    def mine(*args, **kwargs):
        return type(model).forward(model, *args, **kwargs)

    model.forward = mine
    try:
        with _class_forward(model, lambda: entered.append(1) or contextlib.nullcontext()):
            assert model.__dict__.get("forward") is mine
        assert entered == []
    finally:
        del model.forward
    with _class_forward(model, lambda: entered.append(1) or contextlib.nullcontext()):
        assert "forward" not in model.__dict__  # nothing patched: nothing to do
    assert entered == []
