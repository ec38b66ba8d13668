"""Prepacked linear layers while decoding: the same numbers up to GEMM rounding, layers put back, only where
it applies. (Packed and unpacked GEMMs may accumulate in another order for some shapes, so logits are
compared with a tolerance, not bit for bit.)"""

from __future__ import annotations

import pytest
import torch

from r1lab.prepacked import packing_available, prepacked_linears

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no MKL packed GEMM")


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


def test_packed_layers_give_the_same_logits_and_are_put_back():
    model = _model()
    ids = torch.randint(0, 97, (3, 11))
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    with torch.no_grad():
        plain = model(ids).logits
        with prepacked_linears(model, rows=3) as n:
            assert n == len(linears) == 2 * 7 + 1  # q k v o gate up down per layer, and the LM head
            assert all("forward" in m.__dict__ for m in linears)
            packed = model(ids).logits
    assert all("forward" not in m.__dict__ for m in linears)
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)


def test_greedy_decoding_is_token_for_token_the_same():
    from r1lab.decoding import decode_shared_prefix

    model = _model()
    rows = [[5, 6, 7, 8, 9, 10], [5, 6, 7, 11, 12]]
    kwargs = dict(per_prompt=2, max_new_tokens=12, eos=set(), pad_id=0)
    with torch.no_grad():
        packed = decode_shared_prefix(model, rows, **kwargs)
        import r1lab.decoding as decoding

        real = decoding.prepacked_linears
        try:
            decoding.prepacked_linears = lambda model, rows: _no_packing()
            plain = decode_shared_prefix(model, rows, **kwargs)
        finally:
            decoding.prepacked_linears = real
    assert packed == plain


def test_nothing_is_packed_with_gradients_on_or_for_fp16():
    model = _model()
    with prepacked_linears(model, rows=2) as n:  # grad enabled: the packed ops have no backward
        assert n == 0
    with torch.no_grad(), prepacked_linears(model.to(torch.float16), rows=2) as n:
        assert n == 0


def test_a_bf16_model_gives_the_same_logits_packed():
    model = _model().to(torch.bfloat16)
    ids = torch.randint(0, 97, (2, 7))
    with torch.no_grad():
        plain = model(ids).logits
        with prepacked_linears(model, rows=2) as n:
            assert n == 15
            packed = model(ids).logits
    torch.testing.assert_close(packed.float(), plain.float(), rtol=2e-2, atol=2e-2)  # bf16 rounding


def _no_packing():
    import contextlib

    return contextlib.nullcontext(0)


def test_under_autocast_a_packed_layer_computes_as_f_linear():
    """accelerate wraps a mixed-precision model's forward in autocast: the layers then take bf16 inputs."""
    model = _model()
    ids = torch.randint(0, 97, (2, 7))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(ids).logits
        with prepacked_linears(model, rows=2) as n:
            assert n > 0
            packed = model(ids).logits
    assert packed.dtype == plain.dtype
    torch.testing.assert_close(packed.float(), plain.float(), rtol=2e-2, atol=2e-2)  # bf16 rounding
