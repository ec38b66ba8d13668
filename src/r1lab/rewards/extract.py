"""Turning a completion into the text of its final answer.

Pure string work, no math: find the ``<answer>`` block (or a fallback such as the last ``\\boxed{}``),
enforce the hacking guards, and normalise plain numbers. Nothing here evaluates model text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from r1lab.answers import ANSWER_CLOSE, ANSWER_OPEN, NUMBER_RE, THINK_CLOSE, last_boxed, plain_number

DEFAULT_FALLBACKS: tuple[str, ...] = ("boxed", "answer_is", "last_number")
KNOWN_FALLBACKS = ("boxed", "answer_is", "last_number")

# Bounds keep every regex below linear-time on hostile input: we only ever look at the tail of a
# completion for fallbacks, and cap the answer we hand to the verifier.
MAX_TAIL_CHARS = 4000
MAX_ANSWER_CHARS = 1000

_ANSWER_OPEN, _ANSWER_CLOSE, _THINK_CLOSE = ANSWER_OPEN, ANSWER_CLOSE, THINK_CLOSE

_ANSWER_IS_RE = re.compile(
    r"(?:final answer|answer)\s*(?:is|=|:)\s*:?\s*(.{1,200}?)\s*(?:\.\s|\.$|$|\n)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Extraction:
    """What :func:`extract` found. ``answer`` is None when nothing was found or a guard fired;
    ``source`` says where the answer came from (``"answer_tag"``, a fallback name, or ``""``);
    ``violation`` names the hacking guard that fired, if any."""

    answer: str | None
    source: str = ""
    violation: str | None = None


def completion_text(completion: Any) -> str:
    """The text of one completion, whether TRL passes a plain string or a chat list.

    >>> completion_text("hi")
    'hi'
    >>> completion_text([{"role": "assistant", "content": "<answer>4</answer>"}])
    '<answer>4</answer>'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, list | tuple):
        # A chat list: the assistant turn(s) are what the model wrote; join them in order.
        parts = [
            completion_text(m)
            for m in completion
            if not (isinstance(m, dict) and m.get("role") not in (None, "assistant"))
        ]
        return "".join(parts)
    return str(completion)


def _answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS_RE.finditer(text[-MAX_TAIL_CHARS:]))
    if not matches:
        return None
    ans = matches[-1].group(1).strip()
    return ans or None


def _last_number(text: str) -> str | None:
    matches = NUMBER_RE.findall(text[-MAX_TAIL_CHARS:])
    return matches[-1] if matches else None


_FALLBACK_FUNCS = {
    "boxed": lambda t: last_boxed(t[-MAX_TAIL_CHARS:]),
    "answer_is": _answer_is,
    "last_number": _last_number,
}


def _unwrap(content: str) -> str:
    """The answer inside an ``<answer>`` block: a ``\\boxed{}`` or "The answer is" inside wins."""
    boxed = last_boxed(content)
    if boxed is not None:
        return boxed
    said = _answer_is(content)
    if said is not None and len(content) > len(said) + 3:
        return said
    return content.strip()


def extract(text: str, fallbacks: tuple[str, ...] | list[str] = DEFAULT_FALLBACKS) -> Extraction:
    """Find the final answer of a completion, applying the hacking guards to the ``<answer>`` path.

    Rules: one ``<answer>…</answer>`` block wins; two or more blocks, or an ``<answer>`` that opens
    before ``</think>``, fire a guard (``answer=None``). With no answer block, ``fallbacks`` are tried
    in order: ``"boxed"`` (last ``\\boxed{}``), ``"answer_is"`` ("The answer is …"), ``"last_number"``.

    >>> extract("<think>2+2</think><answer>4</answer>").answer
    '4'
    >>> extract("<answer>4</answer><answer>5</answer>").violation
    'multiple_answer_blocks'
    >>> extract("The answer is 18.").answer
    '18'
    """
    fallbacks = tuple(fallbacks or ())
    n_open = text.count(_ANSWER_OPEN)
    if n_open > 1 or text.count(_ANSWER_CLOSE) > 1:
        return Extraction(None, "answer_tag", "multiple_answer_blocks")
    if n_open == 1:
        open_at = text.index(_ANSWER_OPEN)
        think_close = text.rfind(_THINK_CLOSE)
        if think_close != -1 and open_at < think_close:
            return Extraction(None, "answer_tag", "answer_before_think_end")
        close_at = text.find(_ANSWER_CLOSE, open_at)
        if close_at != -1:
            content = text[open_at + len(_ANSWER_OPEN) : close_at]
            ans = _unwrap(content)[:MAX_ANSWER_CHARS]
            return Extraction(ans or None, "answer_tag")
        # An unclosed <answer> (truncated generation): fall through to the fallbacks on its tail.
        text = text[open_at + len(_ANSWER_OPEN) :]
    for name in fallbacks:
        func = _FALLBACK_FUNCS.get(name)
        if func is None:
            raise ValueError(f"unknown answer fallback {name!r}; choose from {KNOWN_FALLBACKS}")
        ans = func(text)
        if ans:
            return Extraction(ans[:MAX_ANSWER_CHARS], name)
    return Extraction(None, "")


def extract_answer(text: str, fallbacks: tuple[str, ...] | list[str] = DEFAULT_FALLBACKS) -> str | None:
    """The final answer of ``text`` (see :func:`extract`), or None if none is found or a guard fired.

    >>> extract_answer(r"so the result is \\boxed{\\frac{3}{4}}")
    '\\\\frac{3}{4}'
    >>> extract_answer("<answer>72</answer>")
    '72'
    >>> extract_answer("no numbers here", fallbacks=("last_number",)) is None
    True
    """
    return extract(text, fallbacks).answer


_FRAC_RE = re.compile(
    r"^(?P<sign>-?)\s*\\[dt]?frac(?:\{\s*(?P<p>-?\d+)\s*\}\{\s*(?P<q>-?\d+)\s*\}|(?P<p1>\d)(?P<q1>\d))$"
)
_SLASH_RE = re.compile(r"^(?P<p>-?\d+)\s*/\s*(?P<q>\d+)$")


def simple_rational(text: str | None) -> Fraction | None:
    """The exact value of a plain number or a single integer fraction (``\\frac{3}{4}``, ``\\frac43``,
    ``-\\dfrac{1}{2}``, ``3/4``), or None for anything else. Used to decide easy items without math-verify.

    >>> simple_rational(r"-\\frac{7}{2}")
    Fraction(-7, 2)
    >>> simple_rational(r"$\\frac43$")
    Fraction(4, 3)
    >>> simple_rational(r"1\\frac{4}{5}") is None
    True
    """
    value = plain_number(text)
    if value is not None or text is None or len(text) > 100:
        return value
    body = text.strip()
    if body.startswith("$") and body.endswith("$") and len(body) > 1:
        body = body.strip("$").strip()
    m = _FRAC_RE.match(body) or _SLASH_RE.match(body)
    if not m:
        return None
    groups = m.groupdict()
    p, q = groups.get("p") or groups.get("p1"), groups.get("q") or groups.get("q1")
    try:
        value = Fraction(int(p), int(q))
    except (ZeroDivisionError, TypeError, ValueError):
        return None
    return -value if groups.get("sign") else value
