"""Per-problem pass rates (written by ``r1lab data pass-rate``) and what a GRPO stage does with them: keep
the problems inside a pass-rate band (open-r1's offline filtering), or order problems easy to hard.

A pass-rate file is JSONL, one problem a line::

    {"problem": "...", "solution": "12", "k": 8, "passes": 3, "pass_rate": 0.375, "level": "1"}

``passes`` and ``pass_rate`` are null for a problem whose reference answer the verifier cannot parse.
Problems are matched to a training set by their text (the ``problem`` column of a GRPO dataset).

>>> rows = [{"problem": "a", "pass_rate": 0.0}, {"problem": "b", "pass_rate": 0.5},
...         {"problem": "c", "pass_rate": 1.0}, {"problem": "d", "pass_rate": 0.25}]
>>> rates = {r["problem"]: r["pass_rate"] for r in rows}
>>> keep, why = select_problems(["a", "b", "c", "d", "e"], rates=rates, band=(0.1, 0.9))
>>> keep, why
([1, 3], '2 of 5 problems kept: pass rate in [0.1, 0.9] (2 outside, 1 without a pass rate)')
>>> order_easy_to_hard([0, 1, 2, 3], [0.0, 0.5, 1.0, 0.25], higher_is_easier=True, seed=0)
[2, 1, 3, 0]
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from r1lab.errors import UserError
from r1lab.io import read_jsonl, write_jsonl


def pass_rate_row(
    problem: str, solution: str, correct: Sequence[bool | None], level: str | None = None
) -> dict:
    """One line of a pass-rate file from a problem's per-sample verdicts (``None``: unscorable).

    >>> pass_rate_row("2+3?", "5", [True, False, True, False])
    {'problem': '2+3?', 'solution': '5', 'k': 4, 'passes': 2, 'pass_rate': 0.5}
    """
    scorable = bool(correct) and all(c is not None for c in correct)
    passes = sum(bool(c) for c in correct) if scorable else None
    row = {
        "problem": problem,
        "solution": solution,
        "k": len(correct),
        "passes": passes,
        "pass_rate": passes / len(correct) if scorable else None,
    }
    if level not in (None, ""):
        row["level"] = str(level)
    return row


def write_pass_rates(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write a pass-rate file atomically."""
    return write_jsonl(path, rows)


def read_pass_rates(path: str | Path) -> dict[str, float | None]:
    """``{problem text: pass rate or None}`` from a pass-rate file; a malformed file is a UserError."""
    rates: dict[str, float | None] = {}
    try:
        for i, row in enumerate(read_jsonl(path), 1):
            if not isinstance(row, dict) or "problem" not in row or "pass_rate" not in row:
                raise UserError(
                    f"{path}: line {i} is not a pass-rate row (needs 'problem' and 'pass_rate')",
                    hint="write the file with `r1lab data pass-rate`",
                )
            rate = row["pass_rate"]
            if rate is not None and not (isinstance(rate, int | float) and 0 <= rate <= 1):
                raise UserError(f"{path}: line {i}: pass_rate {rate!r} is not in [0, 1]")
            rates[str(row["problem"])] = rate
    except OSError as err:
        raise UserError(f"cannot read pass-rate file {path}: {err}") from err
    if not rates:
        raise UserError(f"pass-rate file {path} is empty", hint="write it with `r1lab data pass-rate`")
    return rates


def select_problems(
    problems: Sequence[str], *, rates: dict[str, float | None], band: Sequence[float]
) -> tuple[list[int], str]:
    """Indices of ``problems`` whose pass rate lies in ``band`` (inclusive), and a one-line account."""
    low, high = band
    keep, outside, missing = [], 0, 0
    for i, p in enumerate(problems):
        rate = rates.get(p)
        if rate is None:
            missing += 1
        elif low <= rate <= high:
            keep.append(i)
        else:
            outside += 1
    why = (
        f"{len(keep)} of {len(problems)} problems kept: pass rate in [{low:g}, {high:g}] "
        f"({outside} outside, {missing} without a pass rate)"
    )
    return keep, why


def order_easy_to_hard(
    indices: Sequence[int], difficulty: Sequence[float | None], *, higher_is_easier: bool, seed: int
) -> list[int]:
    """``indices`` ordered easy to hard by ``difficulty`` (one value per index; None counts as hardest),
    ties in a seeded random order."""
    shuffled = list(zip(indices, difficulty, strict=True))
    random.Random(seed).shuffle(shuffled)

    def key(item):
        value = item[1]
        if value is None:
            return (1, 0.0)
        return (0, -value if higher_is_easier else value)

    return [i for i, _ in sorted(shuffled, key=key)]


def level_number(level: str | int | None) -> float | None:
    """A difficulty level as a number: ``3``, ``"3"``, ``"Level 3"`` -> 3.0; unknown -> None.

    >>> level_number("Level 4"), level_number(2), level_number(""), level_number("?")
    (4.0, 2.0, None, None)
    """
    if isinstance(level, int | float) and not isinstance(level, bool):
        return float(level)
    m = re.search(r"\d+(\.\d+)?", str(level or ""))
    return float(m.group()) if m else None


def curate(
    dataset,
    *,
    rates: dict[str, float | None] | None,
    band: Sequence[float] | None,
    curriculum: str,
    levels: Sequence[str | None] | None = None,
    seed: int = 0,
) -> tuple[object, list[str]]:
    """A GRPO dataset (``problem`` column) kept to a pass-rate band and/or ordered easy to hard (by pass
    rate when ``rates`` is given, else by ``levels``, one per row). Returns the dataset and what was done,
    as log lines; a selection that leaves nothing, or an order with no difficulty to go by, is a UserError.
    """
    problems = list(dataset["problem"])
    indices = list(range(len(problems)))
    notes = []
    if band is not None:
        indices, why = select_problems(problems, rates=rates or {}, band=band)
        notes.append(why)
        if not indices:
            raise UserError(
                f"pass_rate_band {list(band)} leaves no problems ({why})",
                hint="widen the band, or check that pass_rate_file was measured on this data",
            )
    if curriculum == "easy_to_hard":
        if rates is not None:
            difficulty = [rates.get(problems[i]) for i in indices]
            by, higher_is_easier = "pass rate", True
        else:
            numbers = [level_number(levels[i]) for i in indices] if levels is not None else []
            if not any(n is not None for n in numbers):
                raise UserError(
                    "curriculum easy_to_hard needs a difficulty: this data has no levels",
                    hint="measure pass rates (`r1lab data pass-rate`) and set pass_rate_file",
                )
            difficulty, by, higher_is_easier = numbers, "level", False
        indices = order_easy_to_hard(indices, difficulty, higher_is_easier=higher_is_easier, seed=seed)
        unknown = sum(d is None for d in difficulty)
        notes.append(
            f"curriculum: {len(indices)} problems ordered easy to hard by {by}"
            + (f" ({unknown} without one go last)" if unknown else "")
        )
    if indices != list(range(len(problems))):
        dataset = dataset.select(indices)
    return dataset, notes
