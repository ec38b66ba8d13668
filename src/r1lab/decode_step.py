"""One decoding step of a Llama-family model on a CPU, without transformers' per-call plumbing.

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
padding (``tests/test_decode_step.py``). Measured on SmolLM2-135M, 16 rows, ~190 positions, bf16 autocast
over fp32 weights with prepacked GEMMs, idle 2-core Xeon: 50.2 -> 46.2 ms a step (medians of 37 steps).

It runs only where it is the same computation: a plain ``LlamaForCausalLM`` (transformers' own classes
for every part, no hooks or replaced forwards on them), SDPA attention, a CPU, and r1lab's preallocated
KV cache (:func:`supported`); anywhere else the decoder calls the model as before. ``R1LAB_DECODE_STEP=0``
turns it off.
"""

from __future__ import annotations

import os

ENV = "R1LAB_DECODE_STEP"


def supported(model, cache) -> bool:
    """Whether :func:`decode_step` computes exactly what ``model``'s forward would, with ``cache``."""
    import torch
    from transformers.models.llama import modeling_llama as llama

    from r1lab.kvcache import PreallocatedLayer

    if os.environ.get(ENV, "1") == "0":  # for A/B measurements and bisecting numerics
        return False
    if type(model) is not llama.LlamaForCausalLM or getattr(model, "_hf_hook", None) is not None:
        return False
    config = model.config
    if config._attn_implementation != "sdpa" or getattr(config, "pretraining_tp", 1) != 1:
        return False
    if model.training or any(p.device.type != "cpu" for p in model.parameters()):
        return False
    inner = model.model
    norms, linears = [inner.norm], [model.lm_head]
    parts = [model, inner, inner.embed_tokens, inner.rotary_emb]
    for layer in inner.layers:
        attn, mlp = layer.self_attn, layer.mlp
        kinds = ((layer, llama.LlamaDecoderLayer), (attn, llama.LlamaAttention), (mlp, llama.LlamaMLP))
        if any(type(part) is not kind for part, kind in kinds):
            return False
        parts += [layer, attn, mlp]
        norms += [layer.input_layernorm, layer.post_attention_layernorm]
        linears += [attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj]
        linears += [mlp.gate_proj, mlp.up_proj, mlp.down_proj]
    if any(type(norm) is not llama.LlamaRMSNorm for norm in norms):
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


def _is_prepacked(module) -> bool:
    from r1lab.prepacked import _PackedForward

    return isinstance(module.__dict__.get("forward"), _PackedForward)


def decode_step(model, cache, ids, mask, positions):
    """Logits (as the model's dtype makes them) of the next token for one token per row: ``ids`` and
    ``positions`` ``[rows, 1]``, ``mask`` ``[rows, cached + 1]`` (1 for real tokens). Writes the step's keys
    and values into ``cache``."""
    import torch
    from transformers.models.llama.modeling_llama import rotate_half

    inner = model.model
    rows = ids.shape[0]
    low = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    x = inner.embed_tokens(ids)
    cos, sin = inner.rotary_emb(x, positions)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    # transformers passes no mask when no position is padded (SDPA's unmasked kernel)
    attn_mask = None if bool(mask.all()) else mask.bool()[:, None, None, :]
    for layer, layer_cache in zip(inner.layers, cache.layers, strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        h = _rms_norm(layer.input_layernorm, x, low)
        q = attn.q_proj(h).view(rows, 1, -1, attn.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(rows, 1, -1, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(rows, 1, -1, attn.head_dim).transpose(1, 2)
        heads = q.shape[1]
        qk = torch.cat([q, k], dim=1)
        qk = qk * cos + rotate_half(qk) * sin
        keys, values = layer_cache.update(qk[:, heads:], v)
        out = torch.nn.functional.scaled_dot_product_attention(
            qk[:, :heads],
            keys,
            values,
            attn_mask=attn_mask,
            scale=attn.scaling,
            enable_gqa=attn.num_key_value_groups > 1,
        )
        x = x + attn.o_proj(out.transpose(1, 2).reshape(rows, 1, -1))
        h = _rms_norm(layer.post_attention_layernorm, x, low)
        x = x + mlp.down_proj(mlp.act_fn(mlp.gate_proj(h)) * mlp.up_proj(h))
    x = _rms_norm(inner.norm, x, None)
    return model.lm_head(x[:, -1, :])


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
