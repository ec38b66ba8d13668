"""r1lab.decode_step computes exactly what the model's own forward computes for a decoding step: the same
logits bit for bit, step after step, in fp32 and under bf16 autocast, with and without padding and with
prepacked weights; and it steps aside wherever it would not be the same computation."""

from __future__ import annotations

import contextlib

import pytest
import torch

from r1lab import decode_step
from r1lab.compat import cache_argument
from r1lab.decoding import decode_shared_prefix
from r1lab.kvcache import cpu_sdpa_gqa, preallocated_cache
from r1lab.prepacked import prepacked_linears


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    model, tok = redrawn_tiny(2)
    model.eval()
    return model, tok


def _steps(model, *, lean: bool, padded: bool, steps: int = 6):
    """Prefill with the model, then ``steps`` decoding steps through decode_step (``lean``) or the model's
    forward; the logits of every step."""
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
    for _ in range(steps):
        tokens = logits.float().argmax(-1)[:, None]
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


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@pytest.mark.parametrize("precision", ["fp32", "bf16-autocast", "bf16-autocast-prepacked"])
def test_decode_step_logits_equal_the_models_forward_bit_for_bit(lively, padded, precision):
    """(bf16 autocast works on CPUs with or without native bf16; only its speed differs, and the model is
    tiny.)"""
    model, _ = lively
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision != "fp32" else contextlib.nullcontext()
    )
    packed = prepacked_linears(model, 3) if precision.endswith("prepacked") else contextlib.nullcontext()
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
    from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

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
    qwen = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).eval()
    assert not decode_step.supported(qwen, preallocated_cache(qwen.config, capacity=8))  # another family
    assert decode_step.supported(model, cache)


def test_r1lab_decode_step_0_turns_it_off(lively, monkeypatch):
    model, _ = lively
    monkeypatch.setenv(decode_step.ENV, "0")
    assert not decode_step.supported(model, preallocated_cache(model.config, capacity=8))


def test_biases_untied_heads_and_other_llama_options_stay_bit_identical():
    """Llama options that change what the layers hold (projection biases, an untied LM head, a head size
    other than hidden / heads, llama3 rope scaling): decode_step calls the same modules, so the same bits."""
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
        for autocast in (contextlib.nullcontext(), torch.autocast("cpu", dtype=torch.bfloat16)):
            with autocast:
                ours = _steps(model, lean=True, padded=True)
                theirs = _steps(model, lean=False, padded=True)
            for a, b in zip(ours, theirs, strict=True):
                assert torch.equal(a, b)
