"""Reference answers out of the shapes datasets store them in: GSM8K's ``#### n``, the last
``\\boxed{...}`` of a worked solution (nested braces included), ``<answer>`` tags, or a bare answer.

Plain string logic only: nothing here evaluates text. Whether two answers are *equal* is the
rewards module's job (``r1lab.rewards.verify_answers``); this module only finds the answer.
"""

from __future__ import annotations

import re

from r1lab.answers import last_boxed

_GSM8K_CALC = re.compile(r"<<[^<>]*>>")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")


def after_hashes(text: str) -> str | None:
    """GSM8K's final answer: what follows the last ``####``, with thousands separators removed.

    >>> after_hashes("He pays 2*3=<<2*3=6>>6 dollars.\\n#### 1,206")
    '1206'
    """
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip()
    return strip_thousands(answer) or None


def strip_thousands(answer: str) -> str:
    """``"1,206"`` -> ``"1206"``; anything that is not a plain grouped number is unchanged.

    >>> strip_thousands("1,206"), strip_thousands("(1,2)")
    ('1206', '(1,2)')
    """
    return answer.replace(",", "") if _THOUSANDS.match(answer) else answer


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>``.

    >>> answer_tag("<think>x</think><answer> 42 </answer>")
    '42'
    """
    found = _ANSWER_TAG.findall(text)
    return found[-1].strip() if found else None


def reference_from_solution(text: str) -> str | None:
    """The final answer inside a worked solution: ``####``, then ``<answer>``, then last ``\\boxed``.

    >>> reference_from_solution(r"The sum is $\\boxed{12}$.")
    '12'
    >>> reference_from_solution(r"<think>..</think><answer>So it is $\\boxed{7}$.</answer>")
    '7'
    """
    for find in (after_hashes, answer_tag, last_boxed):
        found = find(text)
        if found:
            # An <answer> block may hold prose around a \boxed{} answer: keep just the box.
            return (last_boxed(found) or found) if find is answer_tag else found
    return None


def reference_from_answer(text: str) -> str:
    """A value from an *answer* column: usually bare (``"\\frac{14}{3}"``, ``"72"``), sometimes still
    wrapped (``"#### 72"``, ``"$\\boxed{3}$"``, ``"$5$"``).

    >>> reference_from_answer("$\\\\boxed{3}$"), reference_from_answer(" 1,000 "), reference_from_answer("$5$")
    ('3', '1000', '5')
    """
    text = text.strip()
    if "####" in text:  # GSM8K-style: what follows the marker, even if that is nothing
        return after_hashes(text) or ""
    wrapped = reference_from_solution(text)
    if wrapped:
        return wrapped
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$" and text.count("$") == 2:
        text = text[1:-1].strip()
    return strip_thousands(text)


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
