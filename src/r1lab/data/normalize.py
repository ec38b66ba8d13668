"""Text normalization shared by the built-in task's split assignment and the contamination check.

Two questions are "the same problem" when :func:`normalize_text` gives equal strings: case,
Unicode form (NFKC), spacing and sentence punctuation (``. , ! ? ; : " ' ```) do not matter, but
math symbols do (``2+2`` and ``2-2`` stay different; ``2+2`` and ``2 + 2`` are equal).

Known, accepted conflations: a decimal point counts as sentence punctuation (``3.5`` equals
``3 5``), and non-ASCII symbols are not re-spaced (``2−2`` differs from ``2 − 2``). It is built from
``str.translate`` rather than a regex because the built-in task hashes every generated candidate
(10**6 problems in seconds).
"""

from __future__ import annotations

import hashlib
import string
import unicodedata

_SENTENCE_PUNCT = ".,!?;:\"'`"
_TABLE = str.maketrans(
    {c: " " if c in _SENTENCE_PUNCT else f" {c} " for c in string.punctuation} | {"\u00a0": " "}
)


def normalize_text(text: str) -> str:
    """Lower-case, NFKC, sentence punctuation dropped, other symbols spaced, whitespace collapsed.

    >>> normalize_text("  What is 2+2?\\nMia has $3  apples!")
    'what is 2 + 2 mia has $ 3 apples'
    >>> normalize_text("what is 2 + 2") == normalize_text("What is 2+2?") != normalize_text("What is 2-2?")
    True
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.lower().translate(_TABLE).split())


def text_key(text: str) -> int:
    """A stable 64-bit key of :func:`normalize_text` (same on every run and machine, unlike ``hash``).

    >>> text_key("Mia has 3 apples.") == text_key("mia  has 3 apples")
    True
    """
    return int.from_bytes(
        hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest(), "big"
    )
