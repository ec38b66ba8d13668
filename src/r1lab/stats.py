"""Paired significance for before/after evaluations on the same problems.

A stage "improved" the model only if the change on held-out problems is unlikely to be chance. Both
evaluations see the same problems with greedy decoding, so the right test is paired: McNemar's exact test
on the problems whose outcome changed (b: right before, wrong after; c: wrong before, right after). Under
"no effect" each changed problem is a fair coin, so the two-sided p-value is an exact binomial tail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r1lab.io import read_jsonl

# Per-item fields of an evaluation's items.jsonl that the tests compare, under their summary names.
PAIRED_FIELDS = {"accuracy": "correct", "format_rate": "formatted"}


def mcnemar(before: Sequence[bool], after: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test for paired binary outcomes.

    >>> r = mcnemar([False] * 10, [True] * 8 + [False] * 2)
    >>> r["gained"], r["lost"], round(r["p"], 4)
    (8, 0, 0.0078)
    >>> mcnemar([True, False], [True, False])["p"]
    1.0
    """
    if len(before) != len(after):
        raise ValueError(f"paired samples differ in length: {len(before)} vs {len(after)}")
    lost = sum(1 for x, y in zip(before, after, strict=True) if x and not y)
    gained = sum(1 for x, y in zip(before, after, strict=True) if y and not x)
    n = lost + gained
    tail = sum(math.comb(n, i) for i in range(min(lost, gained) + 1)) / 2**n if n else 1.0
    return {
        "n": len(before),
        "before": sum(map(bool, before)) / len(before) if before else None,
        "after": sum(map(bool, after)) / len(after) if after else None,
        "gained": gained,
        "lost": lost,
        "p": min(1.0, 2 * tail) if n else 1.0,
        "test": "McNemar exact",
    }


def paired_tests(before_dir: str | Path, after_dir: str | Path) -> dict[str, dict[str, Any]] | None:
    """McNemar tests of accuracy and format rate between two evaluations' ``items.jsonl`` (first sample of
    each item, items matched by key). ``None`` when either is missing or they share no items."""
    from r1lab.evaluate import ITEMS_FILE

    paths = [Path(before_dir) / ITEMS_FILE, Path(after_dir) / ITEMS_FILE]
    if not all(p.is_file() for p in paths):
        return None
    before, after = ({row["key"]: row for row in read_jsonl(p)} for p in paths)
    keys = [k for k in before if k in after]
    if not keys:
        return None
    out = {}
    for name, field in PAIRED_FIELDS.items():
        pairs = [(before[k][field][0], after[k][field][0]) for k in keys]
        if any(x is None or y is None for x, y in pairs):  # an unscorable reference
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        out[name] = mcnemar([bool(x) for x, _ in pairs], [bool(y) for _, y in pairs])
    return out


def describe_test(name: str, result: dict[str, Any]) -> str:
    """``format 0.0% -> 45.3% (+29/-0, p=1.9e-09)``.

    >>> describe_test("format", mcnemar([False] * 4, [True] * 4))
    'format 0.0% -> 100.0% (+4/-0, p=0.125)'
    """
    return (
        f"{name} {result['before']:.1%} -> {result['after']:.1%} "
        f"(+{result['gained']}/-{result['lost']}, p={result['p']:.3g})"
    )
