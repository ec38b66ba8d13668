"""The decoder's preallocated KV cache gives the model exactly what transformers' DynamicCache gives it:
same logits at every step, through the decoder's whole life cycle (prefix, repeat to rows, tails, steps,
rows leaving, growing past the promised capacity)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from r1lab.compat import cache_argument
from r1lab.kvcache import PreallocatedLayer, preallocated_cache


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(1)


def _life_cycle(model, cache):
    """Logits of every forward the decoder makes, with ``cache``."""
    key = cache_argument(model)
    length = 0
    seen = []

    def step(ids, mask, positions):
        nonlocal length
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            **{key: cache},
            cache_position=torch.arange(length, length + ids.shape[1]),
            use_cache=True,
        )
        length += ids.shape[1]
        seen.append(out.logits[:, -1].clone())
        return out.logits[:, -1].argmax(-1)

    prefix = torch.tensor([[5, 9, 13, 2, 7]])
    step(prefix, torch.ones_like(prefix), torch.arange(5)[None])
    cache.batch_repeat_interleave(3)
    tails = torch.tensor([[0, 11, 12], [4, 3, 8], [0, 0, 6]])
    mask = torch.tensor([[1] * 5 + [0, 1, 1], [1] * 8, [1] * 5 + [0, 0, 1]])
    positions = torch.tensor([[0, 5, 6], [5, 6, 7], [0, 0, 5]])
    tokens = step(tails, mask, positions)
    next_pos = torch.tensor([7, 8, 6])
    for i in range(12):  # past the capacity of 12 given below: the buffers grow
        if i == 4:  # the middle row leaves
            keep = torch.tensor([0, 2])
            cache.batch_select_indices(keep)
            mask, tokens, next_pos = mask[keep], tokens[keep], next_pos[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        tokens = step(tokens[:, None], mask, next_pos[:, None])
        next_pos = next_pos + 1
    return seen


def test_preallocated_cache_gives_the_same_logits_as_dynamic_cache(lively):
    model, _ = lively
    with torch.no_grad():
        ours = _life_cycle(model, preallocated_cache(model.config, capacity=12))
        theirs = _life_cycle(model, DynamicCache(config=model.config))
    assert len(ours) == len(theirs) == 14
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_preallocated_cache_uses_its_own_layers_and_writes_in_place(lively):
    model, _ = lively
    cache = preallocated_cache(model.config, capacity=32)
    assert cache.layers and all(isinstance(layer, PreallocatedLayer) for layer in cache.layers)
    layer = cache.layers[0]
    k = torch.randn(2, 1, 3, 4)
    layer.update(k, k + 1)
    buffer = layer._keys
    layer.update(k[:, :, :1], k[:, :, :1])
    assert layer._keys is buffer and layer.get_seq_length() == 4  # no new buffer for a step
    torch.testing.assert_close(layer.keys, torch.cat([k, k[:, :, :1]], dim=2))
    layer.batch_select_indices(torch.tensor([1]))
    torch.testing.assert_close(layer.values, torch.cat([k + 1, k[:, :, :1]], dim=2)[1:])
    layer.crop(-1)
    assert layer.get_seq_length() == 3


def test_grouped_query_attention_read_in_place_gives_the_same_logits(lively, monkeypatch):
    import os

    from r1lab.kvcache import cpu_sdpa_gqa

    model, _ = lively
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # the tiny model shares heads
    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    with torch.no_grad():
        plain = _life_cycle(model, preallocated_cache(model.config, capacity=12))
        with cpu_sdpa_gqa(torch.device("cpu")):
            assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "1"
            grouped = _life_cycle(model, preallocated_cache(model.config, capacity=12))
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ  # put back as it was
    for a, b in zip(grouped, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float rounding: another kernel path


def test_under_cpu_bf16_autocast_keys_are_kept_in_bf16_and_logits_are_bit_identical(lively):
    """Attention casts the keys to bf16 under autocast anyway; keeping them in bf16 changes no bit (works on
    CPUs with or without native bf16: only speed differs, and the tiny model is small)."""
    model, _ = lively
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cache = preallocated_cache(model.config, capacity=12)
        ours = _life_cycle(model, cache)
        dynamic = DynamicCache(config=model.config)
        theirs = _life_cycle(model, dynamic)
    assert cache.layers[0]._keys.dtype == torch.bfloat16
    assert dynamic.layers[0].keys.dtype == torch.float32  # what attention was given to cast, step by step
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():  # without autocast the cache keeps the model's dtype
        cache = preallocated_cache(model.config, capacity=12)
        _life_cycle(model, cache)
    assert cache.layers[0]._keys.dtype == torch.float32
