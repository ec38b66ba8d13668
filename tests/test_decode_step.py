"""r1lab.decode_step computes exactly what the model's own forward computes for a decoding step: the same
logits bit for bit, step after step, in fp32 and under bf16 autocast, with and without padding and with
prepacked weights; and it steps aside wherever it would not be the same computation. Under bf16 autocast on
a CPU without AMX it runs attention in fp32 (``decode_step.attention_in_fp32``): there it equals the model's
forward with attention in fp32, bit for bit, and is as close to a float64 computation as bf16 attention."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from r1lab import decode_step
from r1lab.compat import cache_argument
from r1lab.decoding import decode_shared_prefix
from r1lab.errors import UserError
from r1lab.kvcache import cpu_sdpa_gqa, preallocated_cache
from r1lab.prepacked import prepacked_linears


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    model, tok = redrawn_tiny(2)
    model.eval()
    return model, tok


def _steps(model, *, lean: bool, padded: bool, steps: int = 6, feed=None):
    """Prefill with the model, then ``steps`` decoding steps through decode_step (``lean``) or the model's
    forward, each fed the previous step's argmax (or ``feed[step]``); the logits of every step."""
    cache = preallocated_cache(model.config, capacity=32)
    key = cache_argument(model)
    if padded:
        ids = torch.tensor([[0, 0, 11, 12, 13], [4, 3, 8, 9, 10], [0, 21, 22, 23, 24]])
        mask = (torch.arange(5) >= torch.tensor([[2], [0], [1]])).long()
    else:
        ids = torch.tensor([[4, 3, 8, 9, 10]] * 3)
        mask = torch.ones_like(ids)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with cpu_sdpa_gqa(torch.device("cpu")):
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{key: cache}
        )
    logits, length = out.logits[:, -1], ids.shape[1]
    next_pos = positions[:, -1] + 1
    seen = []
    for step in range(steps):
        tokens = logits.float().argmax(-1)[:, None] if feed is None else feed[step]
        mask = torch.cat([mask, mask.new_ones((3, 1))], dim=1)
        if lean:
            assert decode_step.supported(model, cache)
            logits = decode_step.decode_step(model, cache, tokens, mask, next_pos[:, None])
        else:
            with cpu_sdpa_gqa(torch.device("cpu")):
                logits = model(
                    input_ids=tokens,
                    attention_mask=mask,
                    position_ids=next_pos[:, None],
                    cache_position=torch.arange(length, length + 1),
                    use_cache=True,
                    logits_to_keep=1,
                    **{key: cache},
                ).logits[:, -1]
        length += 1
        next_pos = next_pos + 1
        seen.append(logits.clone())
    return seen


def _attention_in_fp32(monkeypatch):
    """The model's forward with its attention computed in fp32 (inputs read exactly, autocast off): the
    computation decode_step makes under ``R1LAB_DECODE_ATTENTION=fp32``."""
    real = torch.nn.functional.scaled_dot_product_attention

    def fp32_attention(query, key, value, attn_mask=None, **kwargs):
        if attn_mask is not None and attn_mask.is_floating_point():
            attn_mask = attn_mask.float()
        with torch.autocast("cpu", enabled=False):
            out = real(query.float(), key.float(), value.float(), attn_mask=attn_mask, **kwargs)
        return out.to(query.dtype)  # fp32 under autocast (its queries are); a bf16 model's own dtype

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", fp32_attention)
    monkeypatch.setenv(decode_step.ATTENTION_ENV, "fp32")


def _attention(monkeypatch, attention: str) -> None:
    """Decode with the model's own attention precision (``model``) or fp32 attention (``fp32``), whatever
    this CPU would choose."""
    if attention == "fp32":
        _attention_in_fp32(monkeypatch)
    else:
        monkeypatch.setenv(decode_step.ATTENTION_ENV, "model")


def _assert_same_bits_in_fp32_and_bf16_autocast(model) -> None:
    """decode_step's logits equal the model's forward, step after step, in fp32 and under bf16 autocast."""
    for autocast in (contextlib.nullcontext(), torch.autocast("cpu", dtype=torch.bfloat16)):
        with autocast:
            ours = _steps(model, lean=True, padded=True)
            theirs = _steps(model, lean=False, padded=True)
        assert len({tuple(t.float().argmax(-1).tolist()) for t in theirs}) > 1  # not vacuous
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize(
    "precision",
    [
        "fp32",
        "bf16-autocast",
        "bf16-autocast-prepacked",
        "bf16-autocast-fp32-attention",
        "bf16-weights",
        "bf16-weights-fp32-attention",
    ],
)
def test_decode_step_logits_equal_the_models_forward_bit_for_bit(lively, padded, precision, monkeypatch):
    """(bf16 autocast works on CPUs with or without native bf16; only its speed differs, and the model is
    tiny.)"""
    model, _ = lively
    if precision.startswith("bf16-weights"):  # a bf16 copy decoding without autocast (rollout_dtype: bf16)
        model = copy.deepcopy(model).to(torch.bfloat16)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision.startswith("bf16-autocast")
        else contextlib.nullcontext()
    )
    packed = prepacked_linears(model, 3) if precision.endswith("prepacked") else contextlib.nullcontext()
    _attention(monkeypatch, "fp32" if precision.endswith("fp32-attention") else "model")
    with torch.no_grad(), autocast, packed:
        ours = _steps(model, lean=True, padded=padded)
        theirs = _steps(model, lean=False, padded=padded)
    assert len({tuple(t.float().argmax(-1).tolist()) for t in theirs}) > 1  # the steps differ: not vacuous
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)


def test_the_decoder_gives_the_same_tokens_and_logprobs_with_and_without_it(lively, monkeypatch):
    model, tok = lively
    rows = [tok.encode("2+2=?"), tok.encode("What is 7 times 8, please?")]
    calls = []
    real = decode_step.decode_step
    monkeypatch.setattr(decode_step, "decode_step", lambda *a: calls.append(1) or real(*a))

    def run():
        torch.manual_seed(0)
        logprobs: list = []
        out = decode_shared_prefix(
            model,
            rows,
            per_prompt=3,
            max_new_tokens=12,
            eos=set(),
            pad_id=tok.pad_token_id,
            temperature=0.9,
            logprobs=logprobs,
        )
        return out, logprobs

    ours = run()
    assert len(calls) == 11  # every decoding step after the prefill went through decode_step
    monkeypatch.setenv(decode_step.ENV, "0")
    theirs = run()
    assert len(calls) == 11
    assert ours == theirs


def test_it_steps_aside_where_it_would_not_be_the_same_computation(lively):
    from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    model, _ = lively
    cache = preallocated_cache(model.config, capacity=8)
    assert decode_step.supported(model, cache)
    assert not decode_step.supported(model, DynamicCache(config=model.config))  # another cache
    handle = model.model.layers[0].mlp.register_forward_hook(lambda *a: None)  # a hook would be skipped
    try:
        assert not decode_step.supported(model, cache)
    finally:
        handle.remove()
    model.model.layers[1].self_attn.o_proj.forward = lambda x: x  # a replaced forward (not r1lab's packing)
    try:
        assert not decode_step.supported(model, cache)
    finally:
        del model.model.layers[1].self_attn.o_proj.forward
    model.train()
    try:
        assert not decode_step.supported(model, cache)  # dropout would apply
    finally:
        model.eval()
    small = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    sliding = Qwen2ForCausalLM(
        Qwen2Config(**small, use_sliding_window=True, sliding_window=4, max_window_layers=1)
    ).eval()
    assert not decode_step.supported(sliding, preallocated_cache(sliding.config, capacity=8))  # another mask
    qwen3 = Qwen3ForCausalLM(Qwen3Config(**small)).eval()  # q/k norms: another family
    assert not decode_step.supported(qwen3, preallocated_cache(qwen3.config, capacity=8))
    assert decode_step.supported(model, cache)


def test_r1lab_decode_step_0_turns_it_off(lively, monkeypatch):
    model, _ = lively
    monkeypatch.setenv(decode_step.ENV, "0")
    assert not decode_step.supported(model, preallocated_cache(model.config, capacity=8))


@pytest.mark.parametrize("attention", ["model", "fp32"])
def test_biases_untied_heads_and_other_llama_options_stay_bit_identical(monkeypatch, attention):
    """Llama options that change what the layers hold (projection biases, an untied LM head, a head size
    other than hidden / heads, llama3 rope scaling): decode_step calls the same modules, so the same bits."""
    _attention(monkeypatch, attention)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        attention_bias=True,
        mlp_bias=True,
        tie_word_embeddings=False,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        _assert_same_bits_in_fp32_and_bf16_autocast(model)


def test_attention_runs_in_fp32_under_autocast_only_where_asked_or_without_amx(monkeypatch):
    from r1lab.models import cpu_flags

    monkeypatch.setenv(decode_step.ATTENTION_ENV, "fp32")
    assert decode_step.attention_in_fp32()
    monkeypatch.setenv(decode_step.ATTENTION_ENV, "model")
    assert not decode_step.attention_in_fp32()
    monkeypatch.delenv(decode_step.ATTENTION_ENV)
    assert decode_step.attention_in_fp32() == ("amx_bf16" not in cpu_flags())
    monkeypatch.setenv(decode_step.ATTENTION_ENV, "fp16")
    with pytest.raises(UserError, match="R1LAB_DECODE_ATTENTION='fp16'.*use fp32, model"):
        decode_step.attention_in_fp32()


def test_fp32_attention_is_as_close_to_float64_as_the_models_bf16_attention(lively, monkeypatch):
    """The trade it makes: not the model's bits, but no further from the exact step. Both steps' logits
    against the same steps computed in float64 (weights, cache and attention), fed the same tokens; the mean
    error over every logit of 12 steps."""
    model, _ = lively
    feed = [
        torch.randint(0, model.config.vocab_size, (3, 1), generator=torch.Generator().manual_seed(s))
        for s in range(12)
    ]
    with torch.no_grad():
        reference = _steps(copy.deepcopy(model).double(), lean=False, padded=True, steps=12, feed=feed)
        errors = {}
        for attention in ("model", "fp32"):
            monkeypatch.setenv(decode_step.ATTENTION_ENV, attention)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ours = _steps(model, lean=True, padded=True, steps=12, feed=feed)
            errors[attention] = (
                torch.stack([(a.double() - b).abs().mean() for a, b in zip(ours, reference, strict=True)])
                .mean()
                .item()
            )
    assert errors["fp32"] > 0.0  # it did run in reduced precision: the comparison is not vacuous
    assert errors["fp32"] <= errors["model"] * 1.1


@pytest.mark.parametrize("attention", ["model", "fp32"])
def test_qwen2_steps_through_it_bit_identically(monkeypatch, attention):
    """Qwen2 (q/k/v biases, untied head; the family of most R1 reproductions' models) without sliding
    windows: the same bits as its own forward, in fp32 and under bf16 autocast."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    _attention(monkeypatch, attention)
    torch.manual_seed(5)
    config = Qwen2Config(
        vocab_size=64,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).eval()
    assert decode_step.supported(model, preallocated_cache(model.config, capacity=8))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        # r1lab's decoder (prepacked weights, rows leaving) samples the same tokens with it and without
        runs, calls, real = [], [], decode_step.decode_step
        monkeypatch.setattr(decode_step, "decode_step", lambda *a: calls.append(1) or real(*a))
        for lean in ("1", "0"):
            monkeypatch.setenv(decode_step.ENV, lean)
            torch.manual_seed(0)
            logprobs: list = []
            rows = [[5, 6, 7, 8], [9, 10, 11]]
            out = decode_shared_prefix(
                model,
                rows,
                per_prompt=3,
                max_new_tokens=8,
                eos={3},
                pad_id=0,
                temperature=0.9,
                logprobs=logprobs,
            )
            runs.append((out, logprobs))
        assert runs[0] == runs[1] and len({tuple(r) for r in runs[0][0]}) > 1
        assert calls  # the first run went through decode_step
        monkeypatch.setattr(decode_step, "decode_step", real)
        monkeypatch.setenv(decode_step.ENV, "1")
        _assert_same_bits_in_fp32_and_bf16_autocast(model)
