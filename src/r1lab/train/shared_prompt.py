"""GRPO's loss forward with each prompt computed once for all its completions.

TRL scores a batch as ``num_generations`` full rows per prompt: prompt + completion, each
row running the whole prompt through the model again, forward and backward. With R1-style system
prompts the prompt is most of a row (recipes/seed.yaml: ~130 prompt tokens, <= 64 completion tokens), so
most of the update recomputes the same prompt ``num_generations`` times.

Here the rows of a prompt share one prompt forward: the prompt (all but its last token) runs once per
distinct prompt, its KV cache is copied to that prompt's rows (an indexing op, so gradients from every
row flow back into the one prompt forward and add up), and each row runs only ``[last prompt token] +
completion`` through the model, with TRL's own fused LM head computing the completion log-probabilities
and entropies. Positions, masks and the temperature are TRL's, so the result is the same computation
(equal up to float rounding; ``tests/train/test_shared_prompt.py`` checks values and gradients).

TRL pads every completion to the longest in the batch, and the padding goes through the model forward and
backward like real tokens (a quarter of the rows' tokens when completions stop at ~48 of 64). Here rows
run in a few groups of similar completion length, each padded only to its own longest
(:func:`length_buckets`); a real token never attends to the padding after it, so dropping trailing
padding changes no value, and the dropped positions are zero, as TRL's fused head makes them.
"""

from __future__ import annotations


def prompt_groups(prompt_ids, prompt_mask):
    """``(first_rows, row_to_group)``: one row index per distinct prompt (its first row), and for every row
    the index of its prompt. TRL shuffles the generation batch before splitting it into optimizer steps,
    so a prompt's rows need not be next to each other.

    >>> import torch
    >>> ids = torch.tensor([[0, 5, 6], [7, 8, 9], [0, 5, 6], [0, 5, 6]])
    >>> first, group = prompt_groups(ids, ids != 0)
    >>> first.tolist(), group.tolist()
    ([0, 1], [0, 1, 0, 0])
    """
    import torch

    keys = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    # number the distinct prompts in order of first appearance (unique sorts them)
    order: dict[int, int] = {}
    first: list[int] = []
    for row, key in enumerate(inverse.tolist()):
        if key not in order:
            order[key] = len(first)
            first.append(row)
    group = torch.tensor([order[k] for k in inverse.tolist()], device=prompt_ids.device)
    return torch.tensor(first, device=prompt_ids.device), group


# What one more group costs, in padded tokens. Each group is one more forward and backward: kernel dispatch
# through every layer, a dense embedding gradient and one more accumulation into every parameter's .grad
# (~1 GB of memory traffic for SmolLM2-135M), ~0.15 s on a quiet 2-core machine, ~35 tokens of matmul work.
# 128 asks for ~4x that in saved work before splitting; on a loaded machine the memory-bound part grows
# and a split measured slower (docs/grpo-speed.md).
GROUP_OVERHEAD_TOKENS = 128


def length_buckets(lengths, *, overhead: int | None = None, most: int = 4) -> list[list[int]]:
    """Rows grouped to run padded to their group's longest completion: runs of rows sorted by length, chosen
    to minimise padded tokens (rows x longest, summed over groups) plus ``overhead`` tokens per group
    (:data:`GROUP_OVERHEAD_TOKENS`), in at most ``most`` groups. Each group lists its rows in order.

    >>> length_buckets([64, 20, 64, 18, 64, 22], overhead=32)
    [[0, 2, 4], [1, 3, 5]]
    >>> length_buckets([64, 60, 62, 64])
    [[0, 1, 2, 3]]
    """
    overhead = GROUP_OVERHEAD_TOKENS if overhead is None else overhead
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    n = len(order)
    sizes = [lengths[i] for i in order]
    # best[k][j]: cheapest split of the first j sorted rows into k groups, and where its last group starts
    inf = float("inf")
    best = [[(inf, 0)] * (n + 1) for _ in range(most + 1)]
    best[0][0] = (0, 0)
    for k in range(1, most + 1):
        for j in range(1, n + 1):
            best[k][j] = min(
                ((best[k - 1][i][0] + (j - i) * sizes[i] + overhead, i) for i in range(j)),
                key=lambda c: c[0],
            )
    k = min(range(1, most + 1), key=lambda k: best[k][n][0])
    groups, j = [], n
    while k:
        i = best[k][j][1]
        groups.append(sorted(order[i:j]))
        j, k = i, k - 1
    return groups[::-1]  # longest first


# Attention scores per layer (rows x heads x queries x keys) up to which the loss forward runs SDPA's math
# kernel on a CPU. There the fused (flash) kernel's backward is slow for a loss's small, masked shapes: on the
# seed recipe's (16 rows x 9 heads x 65 queries x ~195 keys; 2 prompts of ~130), r1lab's whole update measured
# 4.75-4.85 -> 4.23-4.31 s (idle 2-core Xeon, bf16 autocast). The math kernel keeps each layer's attention
# probabilities for the backward (4 bytes a score), so larger shapes keep the fused kernel.
MATH_ATTENTION_MAX_SCORES = 4 * 2**20


def loss_attention(device, rows: int, heads: int, queries: int, keys: int):
    """The SDPA kernel choice for one loss forward (see :data:`MATH_ATTENTION_MAX_SCORES`): a context.
    Both kernels compute softmax(QK^T)V; they round differently."""
    import contextlib

    if getattr(device, "type", device) != "cpu" or rows * heads * queries * keys > MATH_ATTENTION_MAX_SCORES:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def shared_prompt_logps(
    model, input_ids, attention_mask, logits_to_keep: int, *, autocast, batch_size: int | None = None
):
    """Per-token log-probabilities and entropies of the last ``logits_to_keep`` tokens of each row, as
    TRL's ``_get_per_token_logps_and_entropies`` computes them (model patched with TRL's fused LM head),
    with one prompt forward per distinct prompt. ``None`` when the batch has no repeated prompt (the
    caller then uses TRL's path).

    ``batch_size`` (TRL passes it when it scores a whole generation batch for the old and reference
    log-probs) bounds the rows of each forward, as on TRL's path: the rows go in chunks of that many, each
    sharing the prompt forwards of its own rows."""
    width = input_ids.size(1) - logits_to_keep
    if width < 2:
        return None
    first, _ = prompt_groups(input_ids[:, :width], attention_mask[:, :width])
    if len(first) == input_ids.size(0):
        return None
    rows = input_ids.size(0)
    step = rows if not batch_size or batch_size >= rows else int(batch_size)
    chunks = [
        _shared_chunk(model, input_ids[i : i + step], attention_mask[i : i + step], logits_to_keep, autocast)
        for i in range(0, rows, step)
    ]
    if len(chunks) == 1:
        return chunks[0]
    import torch

    logps = torch.cat([c[0] for c in chunks], dim=0)
    entropies = None if any(c[1] is None for c in chunks) else torch.cat([c[1] for c in chunks], dim=0)
    return logps, entropies


def _shared_chunk(model, input_ids, attention_mask, logits_to_keep: int, autocast):
    """:func:`shared_prompt_logps` for one chunk of rows (all of them in one prompt forward and one
    completion forward)."""
    import torch
    from transformers import DynamicCache

    from r1lab.compat import cache_argument, unwrap

    width = input_ids.size(1) - logits_to_keep
    prompt_ids, prompt_mask = input_ids[:, :width], attention_mask[:, :width]
    first, group = prompt_groups(prompt_ids, prompt_mask)
    head_ids, head_mask = prompt_ids[first, :-1], prompt_mask[first, :-1]
    config = unwrap(model).config
    cache = DynamicCache(config=config)
    key = cache_argument(model)  # the KV cache's keyword in this transformers version
    heads, device = config.num_attention_heads, input_ids.device
    with autocast(), loss_attention(device, len(first), heads, width - 1, width - 1):
        model(
            input_ids=head_ids,
            attention_mask=head_mask,
            use_cache=True,
            logits_to_keep=1,
            **{key: cache},
        )
    tail_mask = attention_mask[:, width:]
    positions = torch.arange(1, logits_to_keep + 1, device=tail_mask.device)
    lengths = (tail_mask * positions).amax(dim=1).tolist()  # up to each row's last real token
    logps, entropies, rows = [], [], []
    buckets = length_buckets(lengths)
    for bucket in buckets:
        keep = max(max(lengths[i] for i in bucket), 1)
        index = torch.tensor(bucket, device=input_ids.device)
        # each row gets its prompt's cache: index_select, whose backward (index_add_) sums the rows' gradients
        # into their prompt ~6-10x faster on a CPU than advanced indexing's (index_put_ with accumulate)
        rows_of = group.to(input_ids.device)[index]
        rows_cache = DynamicCache(config=config)
        for layer, (k, v, *_) in enumerate(cache):
            rows_cache.update(k.index_select(0, rows_of), v.index_select(0, rows_of), layer)
        tail_ids = input_ids[index, width - 1 : width + keep]
        labels = tail_ids.masked_fill(attention_mask[index, width - 1 : width + keep] == 0, -100)
        labels[:, 0] = -100  # the last prompt token is input only
        with autocast(), loss_attention(device, len(bucket), heads, keep + 1, width + keep):
            out = model(
                input_ids=tail_ids,
                attention_mask=attention_mask[index, : width + keep],
                labels=labels,
                **{key: rows_cache},
                fused_lm_head=True,
            )
        pad = (0, logits_to_keep - keep)  # the dropped padding: zero, as the fused head makes it
        logps.append(torch.nn.functional.pad(out.log_probs[:, -keep:], pad))
        if out.entropy is not None:
            entropies.append(torch.nn.functional.pad(out.entropy[:, -keep:], pad))
        rows.extend(bucket)
    back = torch.argsort(torch.tensor(rows, device=input_ids.device))  # the batch's own row order
    return torch.cat(logps)[back], (torch.cat(entropies)[back] if entropies else None)
