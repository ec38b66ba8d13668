"""r1lab's decoder samples each token, not only the first, from the distribution transformers' own logits
processors define (issue #23, item 10). The expected distributions are built here from
``TemperatureLogitsWarper`` / ``TopKLogitsWarper`` / ``TopPLogitsWarper`` / ``MinPLogitsWarper`` /
``RepetitionPenaltyLogitsProcessor`` directly, in ``generate``'s order, not from the decoder's helper."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from train_helpers import independent_processors

from r1lab.decoding import Sampling, decode_shared_prefix

pytestmark = pytest.mark.dtype

PROMPT = "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    model, tok = redrawn_tiny(0)
    return model.eval(), tok


def transformers_probs(model, ids: list[int], s: Sampling) -> torch.Tensor:
    """The next-token distribution after ``ids`` as ``generate(do_sample=True, ...)`` draws it."""
    procs = independent_processors(s)
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[:, -1, :].float()
    return torch.softmax(procs(x, logits), dim=-1)[0]


def chi_square_ok(observed: Counter, probs: torch.Tensor) -> tuple[bool, str]:
    """Pearson's chi-square of ``observed`` token counts against ``probs``, at p < 0.001 (Wilson-Hilferty
    critical value), tokens outside the support never drawn."""
    n = sum(observed.values())
    support = (probs > 0).nonzero().squeeze(1).tolist()
    outside = [t for t in observed if probs[t] == 0]
    expected = {t: float(probs[t]) * n for t in support}
    chi2 = sum((observed.get(t, 0) - e) ** 2 / e for t, e in expected.items())
    df = max(1, len(support) - 1)
    critical = df * (1 - 2 / (9 * df) + 3.09 * (2 / (9 * df)) ** 0.5) ** 3
    return (
        not outside and chi2 < critical,
        f"chi2={chi2:.1f} critical={critical:.1f} df={df} outside={outside}",
    )


@pytest.mark.parametrize(
    "sampling",
    [
        Sampling(temperature=1.0, top_k=6),
        Sampling(temperature=0.7, top_p=0.8),
        Sampling(temperature=1.3, min_p=0.1),
        Sampling(temperature=1.0, top_k=8, repetition_penalty=1.5),
    ],
)
def test_second_and_third_tokens_follow_transformers_processors(lively, sampling):
    model, tok = lively
    row = tok(PROMPT, add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    n = 4000
    with torch.no_grad():
        draws = decode_shared_prefix(
            model, [row], per_prompt=n, max_new_tokens=3, eos=set(), pad_id=0, sampling=sampling
        )
    assert all(len(d) == 3 for d in draws)
    checked = 0
    for position in (1, 2):  # the 2nd and 3rd generated token, given the tokens before them
        prefixes = Counter(tuple(d[:position]) for d in draws)
        for prefix, count in prefixes.most_common(2):
            if count < 400:
                continue
            observed = Counter(d[position] for d in draws if tuple(d[:position]) == prefix)
            ok, why = chi_square_ok(observed, transformers_probs(model, row + list(prefix), sampling))
            assert ok, (position, prefix, why)
            checked += 1
    assert checked >= 3  # at least the most common prefixes of both positions were tested
