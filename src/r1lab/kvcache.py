"""A KV cache for r1lab's decoder that writes each step's keys and values in place.

transformers' ``DynamicCache`` appends a step by concatenation: every decoding step copies the whole cache
of every layer (for SmolLM2-135M at 16 rows and ~190 positions: 30 layers x 2 copies of ~2 MB), which was
~37% of a decode step's time. Here each layer holds a buffer sized for the prompt plus ``max_new_tokens``
up front; a step writes one position into it and attention reads a view of the filled part. Rows leave the
batch by index (one copy of the live part, only on steps where a row finished), as with ``DynamicCache``.
The keys and values attention sees are the same numbers; only where they are stored differs.

With a padding mask, transformers' SDPA attention repeats every key/value head for the query heads that
share it (``repeat_kv``: for SmolLM2's 9 query / 3 key-value heads, a 3x copy of the whole cache, every
layer, every step) because CUDA's fast kernels do not take a mask with grouped-query attention. torch's CPU
kernel does (equal up to float rounding); :func:`cpu_sdpa_gqa` asks transformers for it while decoding on
the CPU.
"""

from __future__ import annotations

import contextlib
import os

from transformers.cache_utils import DynamicCache, DynamicLayer

# transformers' switch (read on every attention call) for passing grouped-query heads to SDPA as they are
_FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextlib.contextmanager
def cpu_sdpa_gqa(device):
    """Within this block, SDPA attention on ``device`` (if a CPU) reads shared key/value heads in place
    instead of copying them per query head. Leaves a value the user set alone."""
    if getattr(device, "type", device) != "cpu" or _FORCE_GQA in os.environ:
        yield
        return
    os.environ[_FORCE_GQA] = "1"
    try:
        yield
    finally:
        os.environ.pop(_FORCE_GQA, None)


def storage_dtype(states):
    """The dtype the cache keeps ``states`` in: under CPU autocast to a lower precision, that precision.

    There, Llama-style models add rotary embeddings in fp32 (fp32 keys) while the value projection gives
    bf16 values, and attention casts everything it reads to bf16 on every call: with fp32 keys, one copy
    of the whole key cache per layer per step. Stored as bf16, the keys are the numbers attention would
    have cast them to (fp32 -> bf16 rounds the same either way), so the output is bit for bit the same
    (``tests/test_kvcache.py``) and the copies go. Limited to the CPU, where this was measured.
    """
    import torch

    if states.device.type == "cpu" and torch.is_autocast_enabled("cpu") and states.is_floating_point():
        low = torch.get_autocast_dtype("cpu")
        if states.element_size() > low.itemsize:
            return low
    return states.dtype


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in a ``[rows, heads, capacity, head_dim]`` buffer; ``keys``/``values``
    are views of its first ``length`` positions (what ``DynamicLayer`` code reads)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._keys = self._values = None

    def lazy_initialization(self, key_states, value_states) -> None:
        self.device = key_states.device
        rows, heads, _, dim = key_states.shape
        dtype = storage_dtype(key_states)
        self._keys = key_states.new_empty((rows, heads, self.capacity, dim), dtype=dtype)
        self._values = value_states.new_empty(
            (rows, heads, self.capacity, value_states.shape[-1]), dtype=dtype
        )
        self.length = 0
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self._keys.shape[-2]:  # more than promised: grow (never on the decoder's own path)
            self.capacity = max(end, 2 * self._keys.shape[-2])
            self._rebuild(lambda t: t)
        self._keys[:, :, self.length : end].copy_(key_states)
        self._values[:, :, self.length : end].copy_(value_states)
        self.length = end
        self._publish()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def get_max_length(self) -> int:
        return -1

    def reset(self) -> None:
        self._keys = self._values = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        if self.is_initialized and tokens_to_remove:
            self.length = max(self.length + tokens_to_remove, 0)
            self._publish()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self._rebuild(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices) -> None:
        if self.get_seq_length() > 0:
            self._rebuild(lambda t: t[indices])

    def reorder_cache(self, beam_idx) -> None:
        self.batch_select_indices(beam_idx.to(self.device))

    def _rebuild(self, rows_of) -> None:
        """New buffers holding ``rows_of`` the filled part of the old ones (only that part is copied)."""
        fresh = []
        for old in (self._keys, self._values):
            live = rows_of(old[:, :, : self.length])
            new = live.new_empty((live.shape[0], live.shape[1], self.capacity, live.shape[-1]))
            new[:, :, : self.length].copy_(live)
            fresh.append(new)
        self._keys, self._values = fresh
        self._publish()

    def _publish(self) -> None:
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]


def preallocated_cache(config, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers are :class:`PreallocatedLayer` of
    ``capacity`` positions (sliding-window and other special layers stay as transformers makes them)."""
    cache = DynamicCache(config=config)
    cache.layers = [
        PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache
