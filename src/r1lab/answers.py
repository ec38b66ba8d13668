"""What an answer looks like in text: the R1 tags and the ``\\boxed{}`` a solution ends with.

One definition that data preparation, rewards, evaluation and inference all import, so "the answer of this
text" means the same thing everywhere. Pure string work; nothing here evaluates text.
"""

from __future__ import annotations

import re

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")


def _matching_braces(text: str) -> dict[int, int]:
    """For each ``{`` that is closed, the index of its ``}`` (one pass, so hostile input stays linear)."""
    stack: list[int] = []
    match: dict[int, int] = {}
    for j, ch in enumerate(text):
        if ch == "{":
            stack.append(j)
        elif ch == "}" and stack:
            match[stack.pop()] = j
    return match


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{...}`` (or ``\fbox{...}``, ``\boxed 7``), nested braces kept;
    an unclosed last box (a truncated completion) falls back to the one before it.

    >>> last_boxed(r"so $x = \boxed{\frac{1}{2}}$ and then \boxed{\dfrac{\sqrt{3}}{2}}.")
    '\\dfrac{\\sqrt{3}}{2}'
    >>> last_boxed(r"\boxed{a} then \boxed{unclosed"), last_boxed(r"\boxed 7."), last_boxed("no box")
    ('a', '7', None)

    Linear in the length of ``text``, whatever it holds (``\boxed{`` repeated 10,000 times included).
    """
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    if not starts:
        return None
    braces = None
    for i in reversed(starts):
        if i < len(text) and text[i] == "{":
            braces = braces if braces is not None else _matching_braces(text)
            end = braces.get(i)
            if end is not None:
                return text[i + 1 : end].strip()
        elif i < len(text) and text[i] == " ":  # "\boxed 7": the argument is the next token
            m = re.match(r"\s+([^\s$]+)", text[i : i + 200])
            if m:
                return m.group(1).rstrip(".")
    return None
