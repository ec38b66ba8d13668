"""The math-verify calls, kept in one module so worker processes import only this (and math_verify).

Runs inside worker processes (see :mod:`r1lab.rewards.verify`); the functions are also usable in
process for the naive baseline of the benchmark. math-verify parses LaTeX with its own grammar and
sympy (no ``eval``/``sympify`` of the text: see ``_CONFIGS``).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from math_verify import LatexExtractionConfig, parse, verify

# Worker processes are single-threaded; we bound time by killing the worker, so math-verify's own
# signal-based timeouts are switched off (and its "timeout disabled" warnings silenced).
for _name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

# LaTeX extraction only. math-verify's ExprExtractionConfig hands plain-text expressions to sympy's
# parse_expr, which runs Python eval (restricted by its regex to digits and operators, but still eval);
# model text must never reach eval, and plain numbers are handled before this module anyway.
_CONFIGS = [LatexExtractionConfig(boxed_match_priority=0)]


def _delimited(text: str) -> str:
    # Bare LaTeX such as "\frac{3}{4}" or "6 - 5i" is only recognised by math-verify's LaTeX
    # extractor inside math delimiters; wrapping is what makes bare MATH answers parse.
    text = text.strip()
    if text.startswith("\\$"):  # a currency sign, "\$5"
        text = text[2:].strip()
    elif text.startswith("$") and text.count("$") % 2 == 1:  # "$5": currency, not a delimiter
        text = text[1:].strip()
    if text.startswith("$") or text.startswith("\\(") or text.startswith("\\["):
        return text
    return f"${text}$"


def parse_text(text: str) -> list:
    """math-verify's parse of an answer string (bare LaTeX or plain), [] when it cannot parse."""
    try:
        parsed = parse(_delimited(text), extraction_config=_CONFIGS, parsing_timeout=None)
    except Exception:  # math-verify raises on some malformed input; that is "unparseable"
        parsed = []
    if not parsed and text.strip().startswith("$"):
        return []
    return parsed


@lru_cache(maxsize=4096)
def parse_reference(text: str) -> list:
    """Cached parse of a reference answer (references repeat across a GRPO group); [] when
    math-verify could only keep the raw string (e.g. ``\\begin{``): such a reference cannot judge."""
    parsed = parse_text(text)
    if not any(not isinstance(p, str) for p in parsed):
        return []
    return parsed


def verify_pair(answer: str | None, reference: str) -> bool | None:
    """True/False when the reference parses, None when it does not."""
    gold = parse_reference(reference)
    if not gold:
        return None
    if answer is None:
        return False
    if answer.strip() == reference.strip():
        return True
    pred = parse_text(answer)
    if not pred:
        return False
    try:
        return bool(verify(gold, pred, timeout_seconds=None))
    except Exception:
        return False
