"""One decoding step of a Llama-family model (Llama, Qwen2) on a CPU, without transformers' per-call plumbing.

A decoding step feeds one token per row through every layer. On a CPU the matrices are small (SmolLM2:
576 wide, 16 rows) and the step is mostly fixed costs: the GEMMs read the weights, and around them run
~40 small kernels per layer, each dispatched from Python through transformers' modules (keyword
plumbing, output-capture decorators, a 4D mask built every step, cache bookkeeping). This module runs
the same kernels, in the same order, on the same tensors, with less in between:

- the mask is the padding mask as it is (a one-token query sees every cached position, so transformers'
  causal mask is the padding mask), or none where nothing is padded, as transformers passes;
- under bf16 autocast each normalised hidden state is cast to bf16 once and shared by the projections
  that read it (q/k/v; gate/up), where autocast cast it once per projection: the same cast of the same
  numbers;
- the rotary embedding turns queries and keys in one pass over both (elementwise: the same numbers).

Its logits equal transformers' forward bit for bit, in fp32 and under bf16 autocast, with and without
padding (``tests/test_decode_step.py``), with one exception chosen per CPU: where bf16 attention is slow
(no AMX), attention runs in fp32 (:func:`attention_in_fp32`), and the logits equal the model's forward
with its attention in fp32 instead. Measured on SmolLM2-135M, 16 rows, ~190 positions, bf16 autocast
over fp32 weights with prepacked GEMMs, idle 2-core Xeon: 50.2 -> 46.2 ms a step (medians of 37 steps).

It runs only where it is the same computation: a plain ``LlamaForCausalLM``, or ``Qwen2ForCausalLM`` without
sliding-window layers (transformers' own classes for every part, no hooks or replaced forwards on them),
SDPA attention, a CPU, and r1lab's preallocated KV cache (:func:`supported`); anywhere else the decoder
calls the model as before. ``R1LAB_DECODE_STEP=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import os

ENV = "R1LAB_DECODE_STEP"
ATTENTION_ENV = "R1LAB_DECODE_ATTENTION"


def attention_in_fp32() -> bool:
    """Whether a decoding step whose attention would run in bf16 (under CPU bf16 autocast, or in a bf16
    model) runs it in fp32 instead, reading the bf16 cache exactly.

    torch's CPU attention kernel is fast in bf16 only with AMX tiles. On a Zen 4 EPYC (native bf16 through
    ``avx512_bf16``, no AMX) one layer's attention for a 16-row step over ~160 positions took 1.38 ms in bf16
    and 0.36 ms in fp32, casts included, inside the step (isolated: 1.25 and 0.25 ms): 30 layers made bf16
    attention ~45% of the step. In fp32 the output is as close to a float64 computation as bf16's (both end
    rounded to bf16 for ``o_proj``: max relative error 0.32% against bf16's 0.38% on SmolLM2's real
    queries), but no longer bit-equal to the model's own forward. So: fp32 on CPUs without AMX, the model's
    bf16 with it (measured there: 277 us a layer in the step). ``R1LAB_DECODE_ATTENTION=fp32`` / ``model``
    forces either (``auto`` or unset: this rule); anything else is an error.
    """
    from r1lab.errors import UserError
    from r1lab.models import cpu_flags

    forced = os.environ.get(ATTENTION_ENV, "").strip().lower()
    if forced in ("fp32", "float32"):
        return True
    if forced in ("model", "bf16"):
        return False
    if forced not in ("", "auto"):
        raise UserError(
            f"{ATTENTION_ENV}={forced!r} is not a choice for the decoding step's attention",
            hint=f"use fp32, model (the model's bf16) or auto, or unset {ATTENTION_ENV}",
        )
    return "amx_bf16" not in cpu_flags()


def supported(model, cache) -> bool:
    """Whether :func:`decode_step` computes exactly what ``model``'s forward would, with ``cache``."""
    import torch

    from r1lab.kvcache import PreallocatedLayer

    if os.environ.get(ENV, "1") == "0":  # for A/B measurements and bisecting numerics
        return False
    family = _families().get(type(model))
    if family is None or getattr(model, "_hf_hook", None) is not None:
        return False
    decoder_layer, attention, mlp_kind, norm_kind = family
    config = model.config
    if config._attn_implementation != "sdpa" or getattr(config, "pretraining_tp", 1) != 1:
        return False
    if model.training or any(p.device.type != "cpu" for p in model.parameters()):
        return False
    inner = model.model
    if getattr(inner, "has_sliding_layers", False):  # Qwen2's sliding-window layers: another mask
        return False
    norms, linears = [inner.norm], [model.lm_head]
    parts = [model, inner, inner.embed_tokens, inner.rotary_emb]
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        kinds = ((layer, decoder_layer), (attn, attention), (mlp, mlp_kind))
        if any(type(part) is not kind for part, kind in kinds):
            return False
        if getattr(attn, "sliding_window", None) is not None:
            return False
        parts += [layer, attn, mlp]
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
        linears += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
        linears += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    if any(type(norm) is not norm_kind for norm in norms):
        return False
    # plain linear layers (prepacked or not): one shared cast to bf16 is what autocast gives each of them
    # (a quantized copy's layers take their input as it is)
    if any(type(linear) is not torch.nn.Linear for linear in linears):
        return False
    parts += norms + linears
    for part in parts:
        if "forward" in part.__dict__ and not _is_prepacked(part):
            return False
        if part._forward_hooks or part._forward_pre_hooks:
            return False
    if torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks:
        return False
    layers = getattr(cache, "layers", None)
    return (
        bool(layers)
        and len(layers) == len(inner.layers)
        and all(type(layer) is PreallocatedLayer for layer in layers)
    )


@functools.cache
def _families() -> dict:
    """The model classes :func:`decode_step` steps through, each with its decoder layer, attention, MLP and
    RMSNorm classes. Qwen2's layers compute what Llama's do (its q/k/v biases are Llama's
    ``attention_bias``), apart from sliding-window attention, which :func:`supported` turns away."""
    from transformers.models.llama import modeling_llama as llama
    from transformers.models.qwen2 import modeling_qwen2 as qwen2

    return {
        llama.LlamaForCausalLM: (
            llama.LlamaDecoderLayer,
            llama.LlamaAttention,
            llama.LlamaMLP,
            llama.LlamaRMSNorm,
        ),
        qwen2.Qwen2ForCausalLM: (
            qwen2.Qwen2DecoderLayer,
            qwen2.Qwen2Attention,
            qwen2.Qwen2MLP,
            qwen2.Qwen2RMSNorm,
        ),
    }


def _is_prepacked(module) -> bool:
    from r1lab.prepacked import _PackedForward

    return isinstance(module.__dict__.get("forward"), _PackedForward)


def decode_step(model, cache, ids, mask, positions):
    """Logits (as the model's dtype makes them) of the next token for one token per row: ``ids`` and
    ``positions`` ``[rows, 1]``, ``mask`` ``[rows, cached + 1]`` (1 for real tokens). Writes the step's keys
    and values into ``cache``."""
    import torch

    inner = model.model
    rows = ids.shape[0]
    low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    # attention runs in bf16 under bf16 autocast, or in a bf16 model (a bf16 copy decoding without autocast)
    attention_low = low if low is not None else inner.embed_tokens.weight.dtype
    fp32_attention = attention_low == torch.bfloat16 and attention_in_fp32()
    x = inner.embed_tokens(ids)
    cos, sin = inner.rotary_emb(x, positions)
    x = x.view(rows, -1)  # one position per row: the hidden states as a matrix, as the GEMMs take them
    half = cos.shape[-1] // 2
    # rotate_half(t) * sin is roll(t, half) * (sin with its first half negated), exactly: the same products
    # up to a sign moved from one factor to the other
    cos, signed_sin = cos.unsqueeze(1), torch.cat([-sin[..., :half], sin[..., half:]], dim=-1).unsqueeze(1)
    # transformers passes no mask when no position is padded (SDPA's unmasked kernel); SDPA turns a boolean
    # mask into this additive one in the query's dtype on every call
    padded = None if bool(mask.all()) else ~mask.bool()[:, None, None, :]
    attn_mask = None
    for layer, layer_cache in zip(inner.layers, cache.layers, strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        q_proj, k_proj, v_proj = (_projection(p, low) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        h = _rms_norm(layer.input_layernorm, x, low)
        q = q_proj(h).view(rows, -1, 1, attn.head_dim)
        k = k_proj(h).view(rows, -1, 1, attn.head_dim)
        v = v_proj(h).view(rows, -1, 1, attn.head_dim)
        heads = q.shape[1]
        qk = torch.cat([q, k], dim=1)
        qk = qk * cos + qk.roll(half, dims=-1) * signed_sin
        keys, values = layer_cache.update(qk[:, heads:], v)
        if fp32_attention:  # the cached (bf16) keys and values read exactly in fp32; the query unrounded
            query, keys, values = qk[:, :heads].float(), keys.float(), values.float()
        else:
            query = qk[:, :heads] if low is None else qk[:, :heads].to(low)  # autocast's cast, made here
        if padded is not None and attn_mask is None:
            attn_mask = torch.zeros(padded.shape, dtype=query.dtype).masked_fill_(padded, float("-inf"))
        with torch.autocast("cpu", enabled=False) if fp32_attention else contextlib.nullcontext():
            out = torch.nn.functional.scaled_dot_product_attention(
                query,
                keys,
                values,
                attn_mask=attn_mask,
                scale=attn.scaling,
                enable_gqa=attn.num_key_value_groups > 1,
            )
        out = out.reshape(rows, -1)
        # o_proj reads bf16, as attention would have given it (under autocast: autocast's cast, made here)
        x = x + _projection(attn.o_proj, low)(out.to(attention_low) if fp32_attention else out)
        h = _rms_norm(layer.post_attention_layernorm, x, low)
        gate, up, down = (_projection(p, low) for p in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
        x = x + down(mlp.act_fn(gate(h)) * up(h))
    x = _rms_norm(inner.norm, x, None)
    return model.lm_head(x)


def _projection(linear, low):
    """``linear`` as a function of a matrix of rows: where r1lab.prepacked packed it for this precision, its
    packed GEMM called directly (the kernel its forward would call, without the module call and reshapes
    around it: ~12 us of 38 at 16 rows); otherwise the module."""
    import torch

    from r1lab.prepacked import _PackedForward

    forward = linear.__dict__.get("forward")
    gemm = forward.gemm(low or linear.weight.dtype) if isinstance(forward, _PackedForward) else None
    if gemm is None:
        return linear
    packed, bias = gemm
    kernel = torch.ops.mkldnn._linear_pointwise.default
    return lambda h: kernel(h, packed, bias, "none", [], "")


def _rms_norm(norm, x, low):
    """``LlamaRMSNorm`` as transformers computes it (its input here is fp32 or the weights' dtype), then
    the one cast to ``low`` that autocast would make for each projection reading it."""
    import torch

    dtype = x.dtype
    hidden = x.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    hidden = hidden * torch.rsqrt(variance + norm.variance_epsilon)
    out = norm.weight * hidden.to(dtype)
    return out if low is None or not out.is_floating_point() else out.to(low)
