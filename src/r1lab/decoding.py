"""r1lab's batched decoder: the engine behind evaluation (:mod:`r1lab.inference`) and GRPO rollouts
(:mod:`r1lab.train.rollouts`).

``model.generate`` on a left-padded batch runs every row through every step and recomputes nothing it
could share. On a CPU, where one decoding step costs about as much for 16 rows as for 1 (it is bound by
reading the weights), what matters is doing each piece of work once:

- the prefix every prompt shares (the system prompt and chat header: most of an R1 prompt) goes through
  the model once and its KV cache is copied to every row;
- each prompt's own tokens are prefilled once, then copied to each of its samples (GRPO's
  ``num_generations``, evaluation's ``n_samples``);
- a row that has produced EOS leaves the batch, so the batch shrinks instead of padding on until its
  longest member stops.

Sampling uses transformers' own logits processors in ``generate``'s order (repetition penalty, then
temperature, top-k, top-p, min-p), so a seeded run draws from the same distribution as ``generate``;
greedy output is token for token what ``model.generate`` gives each prompt alone (fp32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from r1lab import decode_step
from r1lab.compat import cache_argument
from r1lab.errors import UserError
from r1lab.prepacked import prepacked_linears


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. ``temperature == 0`` is greedy; otherwise the knobs mean what they mean
    in ``transformers.GenerationConfig`` (``top_k=0`` and ``top_p=1`` turn those filters off).

    >>> Sampling().greedy, Sampling(temperature=0.7).greedy
    (True, False)
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise UserError(
                f"temperature must be >= 0, got {self.temperature}", hint="use 0 for greedy decoding"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def processors(self):
        """transformers' logits processors for these settings, in ``generate``'s order."""
        from transformers import (
            LogitsProcessorList,
            MinPLogitsWarper,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        procs = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(self.repetition_penalty))
        if self.greedy:
            return procs
        if self.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            procs.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p < 1.0:
            procs.append(TopPLogitsWarper(top_p=self.top_p))
        if self.min_p is not None:
            procs.append(MinPLogitsWarper(min_p=self.min_p))
        return procs


# GenerationConfig fields the decoder honours; any other non-default field sends GRPO back to TRL's path.
SUPPORTED_GENERATION_FIELDS = {
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "max_new_tokens",
    "eos_token_id",
    "pad_token_id",
    "bos_token_id",
    "cache_implementation",
    "disable_compile",
    "use_cache",
}


def sampling_from_generation_config(config) -> tuple[Sampling | None, str | None]:
    """``(Sampling, None)`` for a ``GenerationConfig`` the decoder can reproduce, else ``(None, why)``.

    >>> from transformers import GenerationConfig
    >>> sampling_from_generation_config(GenerationConfig(do_sample=True, temperature=0.7, top_k=0))[0]
    Sampling(temperature=0.7, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0)
    >>> sampling_from_generation_config(GenerationConfig(num_beams=2))[1]
    'generation setting num_beams=2'
    """
    from transformers import GenerationConfig

    default = GenerationConfig()
    for name, value in config.to_diff_dict().items():
        if name in SUPPORTED_GENERATION_FIELDS or name.startswith("_") or name == "transformers_version":
            continue
        if getattr(default, name, None) != value:
            return None, f"generation setting {name}={value!r}"
    if not config.do_sample:
        return Sampling(repetition_penalty=config.repetition_penalty or 1.0), None
    return Sampling(
        temperature=float(config.temperature if config.temperature is not None else 1.0),
        top_p=float(config.top_p if config.top_p is not None else 1.0),
        top_k=int(config.top_k or 0),
        min_p=config.min_p,
        repetition_penalty=float(config.repetition_penalty or 1.0),
    ), None


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix all ``rows`` share, leaving every row at least one token of its own
    (the last prompt token must go through the model to give the first next-token logits).

    >>> shared_prefix_length([[1, 2, 3, 4], [1, 2, 5]])
    2
    >>> shared_prefix_length([[1, 2, 3], [1, 2, 3]])
    2
    """
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    for i in range(limit):
        if any(r[i] != first[i] for r in rows):
            return i
    return max(limit, 0)


def group_repeats(rows: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """Runs of identical consecutive rows as ``(unique_rows, counts)`` (GRPO repeats each prompt
    ``num_generations`` times in a row).

    >>> group_repeats([[1, 2], [1, 2], [3], [1, 2]])
    ([[1, 2], [3], [1, 2]], [2, 1, 1])
    """
    unique: list[list[int]] = []
    counts: list[int] = []
    for row in rows:
        row = list(row)
        if unique and unique[-1] == row:
            counts[-1] += 1
        else:
            unique.append(row)
            counts.append(1)
    return unique, counts


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """``model`` without dropout while it decodes, back in its previous mode afterwards (a GRPO rollout
    happens mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def fast_decode_supported(model) -> bool:
    """The decoder needs a decoder-only model whose cache can be re-batched."""
    config = getattr(model, "config", None)
    return config is not None and not getattr(config, "is_encoder_decoder", False)


class _Batch:
    """The decoder's state: the KV cache and, per live row, its attention mask, next position and (for a
    repetition penalty) the tokens it has seen."""

    def __init__(self, model, capacity: int):
        import torch

        from r1lab.kvcache import preallocated_cache

        self.model = model
        self.device = next(model.parameters()).device
        self.cache = preallocated_cache(model.config, capacity)  # written in place, no per-step copies
        self.length = 0  # cache length, padding included
        # whether decoding steps go through r1lab.decode_step (same numbers, less overhead); decided on the first
        self.lean: bool | None = None
        self.torch = torch

    def forward(self, ids, mask, positions):
        """Run ``ids`` through the model after what the cache holds; the last position's logits (fp32)."""
        from r1lab.kvcache import cpu_sdpa_gqa

        torch = self.torch
        steps = ids.shape[1]
        if steps == 1:
            if self.lean is None:  # decided once per batch: the model and cache do not change kind
                self.lean = decode_step.supported(self.model, self.cache)
            if self.lean:
                logits = decode_step.decode_step(self.model, self.cache, ids, mask, positions)
                self.length += 1
                return logits.float()
        with cpu_sdpa_gqa(self.device):  # no per-step copy of the cache per query head
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                **{cache_argument(self.model): self.cache},
                cache_position=torch.arange(self.length, self.length + steps, device=self.device),
                use_cache=True,
                logits_to_keep=1,
            )
        self.length += steps
        return out.logits[:, -1, :].float()

    def select(self, index) -> None:
        self.cache.batch_select_indices(index)


def _prefill(batch: _Batch, rows: Sequence[Sequence[int]], pad_id: int):
    """Prefill the shared prefix once, then every prompt's own tail (padding between prefix and tail is
    masked, position ids count real tokens only). Returns ``(logits, mask)`` with one row per prompt."""
    torch = batch.torch
    device = batch.device
    shared = shared_prefix_length(rows)
    if shared:
        prefix = torch.tensor([list(rows[0][:shared])], device=device)
        batch.forward(prefix, torch.ones_like(prefix), torch.arange(shared, device=device)[None])
        batch.cache.batch_repeat_interleave(len(rows))
    tails = [list(r[shared:]) for r in rows]
    width = max(len(t) for t in tails)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(rows), shared + width), dtype=torch.long, device=device)
    mask[:, :shared] = 1
    positions = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, tail in enumerate(tails):
        pad = width - len(tail)
        ids[i, pad:] = torch.tensor(tail, device=device)
        mask[i, shared + pad :] = 1
        positions[i, pad:] = torch.arange(shared, shared + len(tail), device=device)
    return batch.forward(ids, mask, positions), mask


def _seen_tokens(rows: Sequence[Sequence[int]], device):
    """Each prompt's tokens as one tensor, left-filled with the row's own first token (a repeated token
    changes nothing for the repetition penalty, which looks at the set of tokens seen)."""
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([[r[0]] * (width - len(r)) + list(r) for r in rows], device=device)


def sample_tokens(logits):
    """One token per row drawn from ``softmax(logits)`` by inverting the cumulative distribution.

    The same distribution as ``torch.multinomial`` (which ``generate`` uses), at a fraction of its cost on a
    CPU: multinomial draws an exponential variate per vocabulary entry (~12 ms a step for 8 rows of
    SmolLM2's 49k vocabulary), this one uniform per row.
    """
    import torch

    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    u = torch.rand((logits.shape[0], 1), device=logits.device, dtype=cdf.dtype) * cdf[:, -1:]
    # right=True: the first token whose cumulative mass exceeds u, so a zero-probability token is never drawn
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


def token_logprobs(logits, tokens):
    """``log softmax(logits)[row, tokens[row]]`` per row: the log-probability of each drawn token under the
    distribution it was drawn from, when ``logits`` are the warped ones. (One logsumexp over the vocabulary
    instead of a full log-softmax tensor.)"""
    import torch

    return logits.gather(1, tokens[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def decode_shared_prefix(
    model,
    rows: Sequence[Sequence[int]],
    *,
    per_prompt: int | Sequence[int],
    max_new_tokens: int,
    eos: set[int],
    pad_id: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    sampling: Sampling | None = None,
    on_step: Callable[[float], None] | None = None,
    logprobs: list[list[float]] | None = None,
) -> list[list[int]]:
    """Generated token rows for prompt token ``rows``: ``per_prompt`` rows per prompt (one count for all,
    or one count per prompt), in order. Each row ends at its first EOS (kept) or after
    ``max_new_tokens``. ``sampling`` (else ``temperature``/``top_p``) chooses the tokens; sampling draws
    from torch's global generator, so ``torch.manual_seed`` makes a run reproducible. ``on_step`` gets the
    fraction of the work done (by token steps, or by finished rows when more of them have finished) after
    every token step, for progress bars. ``logprobs``, an empty list, receives per generated row the
    log-probability of each of its tokens under the distribution it was drawn from (after the repetition
    penalty and the warpers; greedy: the penalized distribution): what an importance-sampling correction
    compares the learner's log-probabilities with.
    """
    import torch

    sampling = sampling or Sampling(temperature=temperature, top_p=top_p)
    counts = [per_prompt] * len(rows) if isinstance(per_prompt, int) else list(per_prompt)
    # weights packed once per call for the CPU's GEMM (r1lab.prepacked): ~2x faster steps under bf16
    with prepacked_linears(model, sum(counts)):
        batch = _Batch(model, capacity=max(len(r) for r in rows) + max_new_tokens)
        logits, mask = _prefill(batch, rows, pad_id)
        next_position = torch.tensor([len(r) for r in rows], device=batch.device)
        seen = _seen_tokens(rows, batch.device) if sampling.repetition_penalty != 1.0 else None
        if any(c != 1 for c in counts):  # copy each prompt's prefilled state to its samples
            expand = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(counts)).to(batch.device)
            batch.select(expand)
            mask, logits, next_position = mask[expand], logits[expand], next_position[expand]
            seen = seen[expand] if seen is not None else None

        processors = sampling.processors()
        eos_ids = torch.tensor(sorted(eos) or [-1], device=batch.device)
        outputs: list[list[int]] = [[] for _ in range(sum(counts))]
        if logprobs is not None:
            logprobs[:] = [[] for _ in outputs]
        alive = torch.arange(sum(counts), device=batch.device)
        for step in range(max_new_tokens):
            if processors:
                logits = processors(seen, logits)
            tokens = logits.argmax(dim=-1) if sampling.greedy else sample_tokens(logits)
            for row, token in zip(alive.tolist(), tokens.tolist(), strict=True):
                outputs[row].append(token)
            if logprobs is not None:
                for row, lp in zip(alive.tolist(), token_logprobs(logits, tokens).tolist(), strict=True):
                    logprobs[row].append(lp)
            running = ~torch.isin(tokens, eos_ids)
            if on_step is not None:
                finished = len(outputs) - int(running.sum())
                on_step(max((step + 1) / max_new_tokens, finished / len(outputs)))
            if step == max_new_tokens - 1 or not running.any():
                break
            if not running.all():
                keep = running.nonzero().squeeze(1)
                batch.select(keep)
                mask, alive, tokens, next_position = (
                    mask[keep],
                    alive[keep],
                    tokens[keep],
                    next_position[keep],
                )
                seen = seen[keep] if seen is not None else None
            if seen is not None:
                seen = torch.cat([seen, tokens[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            logits = batch.forward(tokens[:, None], mask, next_position[:, None])
            next_position = next_position + 1
        return outputs
