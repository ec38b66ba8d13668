"""What data preparation needs beyond :mod:`r1lab.answers` (which owns reading a reference answer):
GSM8K's reasoning steps without its calculator notes, and a structural check that a reference looks usable.

Plain string logic only: nothing here evaluates text.
"""

from __future__ import annotations

import re

_GSM8K_CALC = re.compile(r"<<[^<>]*>>")


def gsm8k_steps(text: str) -> str:
    """The reasoning part of a GSM8K answer: before ``####``, calculator notes ``<<...>>`` removed.

    >>> gsm8k_steps("2*3=<<2*3=6>>6 apples.\\n#### 6")
    '2*3=6 apples.'
    """
    return _GSM8K_CALC.sub("", text.split("####", 1)[0]).strip()


def looks_parseable(answer: str | None, *, max_chars: int = 300) -> str | None:
    """``None`` if ``answer`` looks like a usable reference answer, else the reason it does not.

    A conservative structural check (non-empty, bounded length, balanced braces/brackets, has a
    digit, letter or LaTeX command) — the rewards verifier decides equality later.

    >>> looks_parseable("\\\\frac{1}{2}"), looks_parseable(""), looks_parseable("{1")
    (None, 'empty reference answer', 'unbalanced braces in reference answer')
    """
    if answer is None or not answer.strip():
        return "empty reference answer"
    if len(answer) > max_chars:
        return f"reference answer longer than {max_chars} characters"
    depth = 0
    for ch in answer:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                break
    if depth != 0:
        return "unbalanced braces in reference answer"
    if not any(ch.isalnum() or ch == "\\" for ch in answer):
        return "reference answer has no digits, letters or LaTeX"
    return None
