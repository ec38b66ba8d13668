"""What an answer looks like in text: the R1 tags, the ``\\boxed{}`` a solution ends with, GSM8K's
``#### n``, and a number as people write it.

One definition that data preparation, rewards, evaluation and inference all import, so "the answer of this
text" and "this number" mean the same thing everywhere (a reference read by the data loader is the one the
reward verifies against). Pure string work; nothing here evaluates text.
"""

from __future__ import annotations

import re
from fractions import Fraction

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

_BOX_RE = re.compile(r"\\(?:boxed|fbox)")
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

# A number as people write it: optional sign, thousands separators or plain digits, optional decimals.
NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
NUMBER_RE = re.compile(NUMBER)
# A plain numeric answer, possibly dressed: "$18", "\$18", "18.00", "18 dollars", "18%", "$18$.".
_PLAIN_NUMBER_RE = re.compile(
    r"^\s*\$?\s*(?:\\\$|\$)?\s*(?P<num>"
    + NUMBER
    + r")\s*(?:\\%|%)?\s*(?P<unit>[a-zA-Z]{2,}(?:\s+[a-zA-Z]+)?)?\s*\$?\s*\.?\s*$"
)
# Words after a number that make it something else than that number ("3 pi", "4 sqrt 2", "2 squared").
_MATH_WORDS = frozenset(
    "pi sqrt root roots squared cubed times plus minus over divided by of to power".split()
)


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


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>...</answer>``.

    >>> answer_tag("<think>x</think><answer> 42 </answer>")
    '42'
    """
    found = _ANSWER_TAG_RE.findall(text)
    return found[-1].strip() if found else None


# ------------------------------------------------------------------------------------ numbers


def strip_thousands(answer: str) -> str:
    """``"1,206"`` -> ``"1206"``; anything that is not a plain grouped number is unchanged.

    >>> strip_thousands("1,206"), strip_thousands("-12,000.5"), strip_thousands("(1,2)"), strip_thousands("3,5")
    ('1206', '-12000.5', '(1,2)', '3,5')
    """
    return answer.replace(",", "") if NUMBER_RE.fullmatch(answer) else answer


def plain_number(text: str | None) -> Fraction | None:
    """The exact value of a plainly written number (``"1,000"``, ``"$18"``, ``"18.00"``, ``"18 dollars"``),
    or None when ``text`` is anything richer (LaTeX, expressions, several numbers).

    >>> plain_number("$1,000.50")
    Fraction(2001, 2)
    >>> plain_number("18 dollars")
    Fraction(18, 1)
    >>> plain_number(r"\\frac{1}{2}") is None, plain_number("3 pi") is None
    (True, True)
    """
    if text is None or len(text) > 100:
        return None
    m = _PLAIN_NUMBER_RE.match(text)
    if not m or (m.group("unit") and _MATH_WORDS & set(m.group("unit").lower().split())):
        return None
    try:
        return Fraction(m.group("num").replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


# ------------------------------------------------------------------------------------ references


def after_hashes(text: str) -> str | None:
    """GSM8K's final answer: what follows the last ``####``, with thousands separators removed.

    >>> after_hashes("He pays 2*3=<<2*3=6>>6 dollars.\\n#### 1,206")
    '1206'
    """
    if "####" not in text:
        return None
    return strip_thousands(text.rsplit("####", 1)[1].strip()) or None


def reference_from_solution(text: str) -> str | None:
    """The final answer inside a worked solution: ``####``, then ``<answer>``, then last ``\\boxed``;
    None when it has none of them.

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


def reference_answer(text: object) -> str:
    """The reference answer a dataset stores, in any of its shapes: bare (``"72"``, ``"\\frac{14}{3}"``),
    GSM8K's ``... #### 72``, a worked solution ending in ``\\boxed{}`` or ``<answer>``, or ``$5$``.
    The data loader and the accuracy reward both read references with it.

    >>> reference_answer("Natalia sold 48/2 = 24 clips.\\n#### 72"), reference_answer(" 1,000 ")
    ('72', '1000')
    >>> reference_answer(r"... so the total is $\\boxed{3\\sqrt{13}}$."), reference_answer("$5$")
    ('3\\\\sqrt{13}', '5')
    """
    text = str(text).strip()
    if "####" in text:  # GSM8K-style: what follows the marker, even if that is nothing
        return after_hashes(text) or ""
    wrapped = reference_from_solution(text)
    if wrapped:
        return wrapped
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$" and text.count("$") == 2:
        text = text[1:-1].strip()
    return strip_thousands(text)
