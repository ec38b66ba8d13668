"""Linear layers with prepacked weights while the decoder runs on a CPU.

A decode step multiplies a few rows by every weight matrix once, so it is bound by reading the weights. Each
``F.linear`` call re-packs its weight into the GEMM library's layout on the fly (and under bf16 autocast
first casts the fp32 weight to bf16). Measured on SmolLM2-135M's shapes at 16 rows on a 2-core Xeon (AMX),
weights packed once:

- fp32, oneDNN (``torch.ops.mkldnn._linear_pointwise``): LM head 10.5 -> 7.7 ms, an MLP projection
  0.35 -> 0.27 ms, at any row count (MKL's packed GEMM, used before, was as fast at the row count it was
  packed for and fell back to a plain GEMM at any other: every step after a row finished);
- bf16, oneDNN (``torch.ops.mkldnn._linear_pointwise``): ~2x faster (LM head 4.6 -> 2.0 ms, an MLP
  projection 0.17 -> 0.08 ms), at the memory-read bound.

Weights change after every optimizer step, so packing is done anew for each decode call, lazily: a layer is
packed for the precision it first runs in (fp32, bf16, or bf16 autocast over fp32 weights, which is what
accelerate's mixed precision wraps a model's forward in), one pass over the weights per call.

The packed GEMMs are other kernels: for many shapes their outputs equal ``F.linear``'s bit for bit, for
others (bf16 with several hundred rows, as in a prefill; fp32) they differ in the last bits, as any change of
GEMM kernel may. A seeded run still reproduces itself on the same machine; it need not reproduce a run made
without packing token for token. ``R1LAB_PREPACK=0`` turns packing off.

Only plain ``torch.nn.Linear`` layers with CPU weights are packed, only under ``torch.no_grad`` (the packed
ops have no backward), and a layer whose ``forward`` is already replaced on the instance (accelerate hooks,
other patches) is left alone. Any other input (fp16, another autocast dtype) computes as ``F.linear``. The
packed copies cost up to the weights' memory, for the call.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator


def packing_available() -> bool:
    """oneDNN's packed GEMMs are in this torch build, and ``R1LAB_PREPACK`` is not ``0``."""
    import os

    import torch

    if os.environ.get("R1LAB_PREPACK", "1") == "0":  # for A/B measurements and bisecting numerics
        return False
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _packable(module, torch) -> bool:
    weight = getattr(module, "weight", None)
    return (
        type(module) is torch.nn.Linear
        and "forward" not in module.__dict__
        and weight is not None
        and weight.device.type == "cpu"
        and weight.dtype in (torch.float32, torch.bfloat16)
        and weight.dim() == 2
    )


@contextlib.contextmanager
def prepacked_linears(model, rows: int) -> Iterator[int]:
    """Within this block, ``model``'s packable linear layers multiply with weights packed once for about
    ``rows`` rows (any row count works; ``rows`` only tunes the layout). Yields how many layers take part."""
    import torch

    if torch.is_grad_enabled() or not packing_available():
        yield 0
        return
    layers = [m for m in model.modules() if _packable(m, torch)]
    try:
        for module in layers:
            module.forward = _PackedForward(module.weight.detach(), module.bias, max(int(rows), 1))
        yield len(layers)
    finally:
        for module in layers:
            module.__dict__.pop("forward", None)


class _PackedForward:
    """One layer's forward: its weight packed on first use, per precision."""

    def __init__(self, weight, bias, rows: int):
        self.weight, self.rows = weight, rows
        self.bias = None if bias is None else bias.detach()
        self.packed: dict = {}

    def __call__(self, x):
        import torch

        gemm = self.gemm(x.dtype) if x.is_floating_point() else None
        if gemm is None:  # F.linear (under autocast: on bf16 casts of input, weight and bias)
            return torch.nn.functional.linear(x, self.weight, self.bias)
        if torch.is_autocast_enabled("cpu"):  # what autocast's F.linear computes: bf16 in, bf16 out
            x = x.to(torch.bfloat16)
        return self._onednn(x, *gemm)

    def gemm(self, dtype):
        """``(packed weight, bias)`` of the GEMM this layer runs now for a floating input of ``dtype``
        (under autocast: cast to bf16 first), packed on first use; ``None`` where it computes as
        ``F.linear``."""
        import torch

        weight = self.weight
        if torch.is_autocast_enabled("cpu"):
            return self._bf16() if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None
        if dtype != weight.dtype:
            return None
        if weight.dtype == torch.bfloat16:
            return self._bf16()
        # oneDNN, not MKL: MKL's packed GEMM serves only the row count it was packed for and falls back to a
        # plain GEMM for any other, so a batch that lost a finished row ran unpacked (and slower than
        # oneDNN's packed fp32 GEMM, which takes any row count: 1536x576 at 12 rows 253 us against 329)
        if "fp32" not in self.packed:
            self.packed["fp32"] = (torch.ops.mkldnn._reorder_linear_weight(weight, self.rows), self.bias)
        return self.packed["fp32"]

    def _bf16(self):
        import torch

        if not _onednn_bf16():  # oneDNN without bf16 kernels on this CPU: transformers' own path
            return None
        if "bf16" not in self.packed:
            weight = self.weight.to(torch.bfloat16)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, self.rows)
            self.packed["bf16"] = (packed, _bf16_or_none(self.bias))
        return self.packed["bf16"]

    @staticmethod
    def _onednn(x, packed, bias):
        import torch

        flat = x.reshape(-1, x.shape[-1]).contiguous()
        out = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _bf16_or_none(tensor):
    import torch

    return None if tensor is None else tensor.to(torch.bfloat16)


@functools.cache
def _onednn_bf16() -> bool:
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False
