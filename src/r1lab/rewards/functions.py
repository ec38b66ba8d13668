"""The reward functions, one small class per reward.

Every reward has TRL's signature ``fn(completions, **dataset_columns) -> list[float | None]``:
completions are plain strings or chat lists, the reference answer arrives as the ``solution`` column
(``answer`` is accepted too), and ``None`` means "cannot judge this item" (TRL skips it). They are
classes with ``__call__`` rather than closures so they pickle (TRL may ship them to another process),
and each instance has a ``__name__`` (TRL logs ``rewards/<__name__>/mean``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r1lab.answers import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from r1lab.errors import UserError
from r1lab.rewards.extract import DEFAULT_FALLBACKS, KNOWN_FALLBACKS, completion_text, extract
from r1lab.rewards.verify import DEFAULT_TIMEOUT, verify_answers

log = logging.getLogger(__name__)


def _references(kwargs: dict, n: int, reward: str) -> list:
    for column in ("solution", "answer"):
        refs = kwargs.get(column)
        if refs is not None:
            refs = list(refs)
            if len(refs) != n:
                raise ValueError(f"{reward}: {n} completions but {len(refs)} values in column {column!r}")
            return refs
    raise UserError(
        f"reward {reward!r} needs the reference answer in a 'solution' (or 'answer') column",
        hint="load the dataset with r1lab.data.load_grpo_dataset or add a 'solution' field to each row",
    )


class Reward:
    """Base class: per-item failures are logged once and become ``None`` for that item."""

    name = "reward"

    def __init__(self) -> None:
        self.__name__ = self.name
        self._warned = False

    def _texts(self, completions: Sequence[Any]) -> list[str]:
        out = []
        for c in completions:
            try:
                out.append(completion_text(c))
            except Exception:  # an item we cannot read has length 0 and no answer
                out.append("")
        return out

    def _safe(self, func, *args) -> float | None:
        try:
            return func(*args)
        except Exception as exc:  # one bad item must not kill a training step
            if not self._warned:
                log.warning(
                    "reward %s failed on an item (scored None): %s: %s", self.name, type(exc).__name__, exc
                )
                self._warned = True
            return None

    def _score_each(self, completions: Sequence[Any]) -> list[float | None]:
        return [self._safe(self._score_one, c) for c in completions]

    def _score_one(self, completion: Any) -> float:
        return self.score(completion_text(completion))

    def __getstate__(self) -> dict:
        # Pickle the configuration only, not the last batch's answers.
        return {k: (None if k.startswith("_last") else v) for k, v in vars(self).items()}

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "__name__"
        )
        return f"{type(self).__name__}({params})"


@dataclass(frozen=True)
class Verdict:
    """How one completion was judged: the extracted ``answer`` (None if none), ``correct``
    (None when the reference cannot be parsed), ``formatted`` (strict R1 format), and the hacking
    guard that fired, if any."""

    answer: str | None
    correct: bool | None
    formatted: bool
    violation: str | None = None


def judge(
    completions: Sequence[Any],
    references: Sequence[str],
    *,
    fallbacks: Sequence[str] = DEFAULT_FALLBACKS,
    timeout: float = DEFAULT_TIMEOUT,
    think_prefilled: bool = False,
) -> list[Verdict]:
    """The one definition of "correct" shared by training filters and evaluation.

    >>> [v.correct for v in judge(["<think>6*3</think><answer>18</answer>", "The answer is 19."], ["18", "18"])]
    [True, False]
    >>> judge(["<think>6*3</think><answer>18</answer>"], ["#### 18"])[0].formatted
    True
    """
    texts = [completion_text(c) for c in completions]
    found = [extract(t, tuple(fallbacks)) for t in texts]
    correct = verify_answers([f.answer for f in found], list(references), timeout=timeout)
    fmt = FormatReward(think_prefilled=think_prefilled)
    return [
        Verdict(answer=f.answer, correct=c, formatted=fmt.score(t) == 1.0, violation=f.violation)
        for f, c, t in zip(found, correct, texts, strict=True)
    ]


class AccuracyReward(Reward):
    """1.0 if the final answer equals the reference (math-verify, bounded), else 0.0; None when the
    reference cannot be parsed.

    The answer is the content of the single ``<answer>`` block; without one, ``fallbacks`` are tried
    (``"boxed"``, ``"answer_is"``, ``"last_number"``; ``()`` for strict R1). Hacking guards: more than one
    ``<answer>`` block, or an ``<answer>`` opened before ``</think>``, scores 0.

    >>> acc = AccuracyReward()
    >>> acc(["<think>6*3</think><answer>18</answer>", "<answer>18</answer><answer>19</answer>", "x"], solution=["18"] * 3)
    [1.0, 0.0, 0.0]
    """

    name = "accuracy"

    def __init__(
        self,
        fallbacks: Sequence[str] = DEFAULT_FALLBACKS,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
    ):
        if name:
            self.name = name
        super().__init__()
        bad = [f for f in fallbacks if f not in KNOWN_FALLBACKS]
        if bad:
            raise UserError(
                f"accuracy: unknown fallback(s) {bad}", hint=f"choose from {list(KNOWN_FALLBACKS)}"
            )
        self.fallbacks = tuple(fallbacks)
        self.timeout = float(timeout)
        self._last_answers: list[str | None] | None = None

    def correctness(self, completions: Sequence[Any], refs: list) -> list[bool | None]:
        answers: list[str | None] = []
        for c in completions:
            try:
                answers.append(extract(completion_text(c), self.fallbacks).answer)
            except Exception as exc:  # an unreadable item has no answer
                if not self._warned:
                    log.warning("reward %s: could not read a completion (no answer): %s", self.name, exc)
                    self._warned = True
                answers.append(None)
        self._last_answers = answers
        return verify_answers(answers, refs, timeout=self.timeout)

    def __call__(self, completions, **kwargs) -> list[float | None]:
        refs = _references(kwargs, len(completions), self.name)
        scores = [None if c is None else float(c) for c in self.correctness(completions, refs)]
        log_extra = kwargs.get("log_extra")
        if callable(log_extra) and self._last_answers is not None:
            # TRL's completions table then shows what was judged, next to the reference.
            try:
                log_extra(f"{self.name}/answer", list(self._last_answers))
            except Exception as exc:  # logging must never cost a training step
                log.debug("log_extra failed: %s", exc)
        return scores


class FormatReward(Reward):
    """1.0 for the strict R1 format, else 0.0: exactly one ``<think>…</think>`` then exactly one
    ``<answer>…</answer>``, only whitespace between and after.

    ``newlines=True`` is open-r1's variant (``<think>\\n…\\n</think>\\n<answer>\\n…\\n</answer>``).
    ``think_prefilled=True`` is for chat templates that end the prompt with ``<think>``: the completion
    then starts inside the think block.

    >>> FormatReward()(["<think>a</think>\\n<answer>1</answer>", "<think>a</think><answer>1</answer> extra"])
    [1.0, 0.0]
    """

    name = "format"

    def __init__(self, newlines: bool = False, think_prefilled: bool = False):
        super().__init__()
        self.newlines = bool(newlines)
        self.think_prefilled = bool(think_prefilled)

    def score(self, text: str) -> float:
        if self.think_prefilled:
            text = THINK_OPEN + ("\n" if self.newlines and not text.startswith("\n") else "") + text
        if not self.newlines:
            text = text.strip()
        else:
            text = text.rstrip(" \t\r\n") if text.endswith("</answer>\n") else text
        for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE):
            if text.count(tag) != 1:
                return 0.0
        if not (text.startswith(THINK_OPEN) and text.endswith(ANSWER_CLOSE)):
            return 0.0
        t_close, a_open = text.index(THINK_CLOSE), text.index(ANSWER_OPEN)
        if a_open < t_close:
            return 0.0
        between = text[t_close + len(THINK_CLOSE) : a_open]
        if self.newlines:
            think = text[len(THINK_OPEN) : t_close]
            answer = text[a_open + len(ANSWER_OPEN) : -len(ANSWER_CLOSE)]
            ok = (
                think.startswith("\n")
                and think.endswith("\n")
                and between == "\n"
                and answer.startswith("\n")
                and answer.endswith("\n")
            )
            return 1.0 if ok else 0.0
        return 1.0 if between.strip() == "" else 0.0

    def __call__(self, completions, **kwargs) -> list[float | None]:
        return self._score_each(completions)


class TagCountReward(Reward):
    """open-r1's ``tag_count_reward``: 0.25 for each of ``<think>\\n``, ``\\n</think>\\n``,
    ``\\n<answer>\\n``, ``\\n</answer>`` appearing exactly once (partial credit for the format).

    >>> TagCountReward()(["<think>\\nx\\n</think>\\n<answer>\\n1\\n</answer>", "<think>\\nx"])
    [1.0, 0.25]
    """

    name = "tag_count"

    def __init__(self, think_prefilled: bool = False):
        super().__init__()
        self.think_prefilled = bool(think_prefilled)

    def score(self, text: str) -> float:
        if self.think_prefilled and not text.startswith(THINK_OPEN):
            text = THINK_OPEN + "\n" + text.lstrip("\n")
        count = 0.0
        for piece in ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>"):
            if text.count(piece) == 1:
                count += 0.25
        return count

    def __call__(self, completions, **kwargs) -> list[float | None]:
        return self._score_each(completions)


class ReasoningStepsReward(Reward):
    """open-r1's ``reasoning_steps_reward``: ``min(1, markers / 3)`` where markers are "Step N:",
    "N." at the very start, a newline followed by ``-`` or ``*``, "First,", "Second,", "Next,", "Finally,".

    (open-r1 compiles the pattern without ``re.MULTILINE``, so ``^\\d+\\.`` only matches at the start of
    the text; we keep that to reproduce its published numbers.)

    >>> ReasoningStepsReward()(["Step 1: a\\nStep 2: b\\nStep 3: c", "First, a. Next, b."])
    [1.0, 0.6666666666666666]
    """

    name = "reasoning_steps"
    PATTERN = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)")

    def __init__(self, min_steps: int = 3):
        super().__init__()
        self.min_steps = int(min_steps)

    def score(self, text: str) -> float:
        return min(1.0, len(self.PATTERN.findall(text)) / self.min_steps)

    def __call__(self, completions, **kwargs) -> list[float | None]:
        return self._score_each(completions)


def _lengths(texts: list[str], kwargs: dict) -> list[int]:
    ids = kwargs.get("completion_ids")
    if ids is not None and len(ids) == len(texts):
        return [len(x) for x in ids]
    return [len(t) for t in texts]


class CosineReward(AccuracyReward):
    """Correctness scaled by length on a cosine schedule ("Demystifying Long CoT", as in open-r1):
    short correct answers earn most, short wrong answers lose most. Length is in tokens when TRL passes
    ``completion_ids``, else in characters; beyond ``max_len`` it is clamped (the cosine would otherwise
    climb back up). None when the reference cannot be parsed.

    Differs from ``trl.rewards.get_cosine_scaled_reward``: that one requires ``completion_ids``, accepts
    only chat-list completions and judges correctness with TRL's ``accuracy_reward``.

    >>> cos = CosineReward(max_len=100)
    >>> cos(["<answer>18</answer>", "<answer>19</answer>"], solution=["18", "18"], completion_ids=[[1] * 50, [1] * 50])
    [0.75, -0.75]
    """

    name = "cosine"

    def __init__(
        self,
        max_len: int = 1000,
        min_value_wrong: float = -1.0,
        max_value_wrong: float = -0.5,
        min_value_correct: float = 0.5,
        max_value_correct: float = 1.0,
        fallbacks: Sequence[str] = DEFAULT_FALLBACKS,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        super().__init__(fallbacks=fallbacks, timeout=timeout)
        if max_len <= 0:
            raise UserError(f"cosine: max_len must be positive, got {max_len}")
        self.max_len = int(max_len)
        self.min_value_wrong, self.max_value_wrong = float(min_value_wrong), float(max_value_wrong)
        self.min_value_correct, self.max_value_correct = float(min_value_correct), float(max_value_correct)

    def value(self, correct: bool, length: int) -> float:
        progress = min(length / self.max_len, 1.0)
        cosine = math.cos(progress * math.pi)
        if correct:
            lo, hi = self.min_value_correct, self.max_value_correct
        else:
            lo, hi = self.max_value_wrong, self.min_value_wrong
        return float(lo + 0.5 * (hi - lo) * (1.0 + cosine))

    def __call__(self, completions, **kwargs) -> list[float | None]:
        refs = _references(kwargs, len(completions), self.name)
        correct = self.correctness(completions, refs)
        lengths = _lengths(self._texts(completions), kwargs)
        return [None if c is None else self.value(c, n) for c, n in zip(correct, lengths, strict=True)]


class RepetitionPenaltyReward(Reward):
    """open-r1's ``repetition_penalty_reward``: ``(1 - unique/total word n-grams) * max_penalty`` on
    the lower-cased, whitespace-split text (0.0 for texts shorter than ``ngram_size`` words).

    Differs from ``trl.rewards.get_repetition_penalty_reward``, which counts token-id n-grams and needs
    ``completion_ids``; ours scores text, so it also works on JSONL files and in evaluation.

    >>> RepetitionPenaltyReward(ngram_size=2)(["a b c d", "a a a a a"])
    [0.0, -0.75]
    """

    name = "repetition_penalty"

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0):
        super().__init__()
        if max_penalty > 0:
            raise UserError(f"repetition_penalty: max_penalty {max_penalty} should not be positive")
        if ngram_size < 1:
            raise UserError(f"repetition_penalty: ngram_size must be >= 1, got {ngram_size}")
        self.ngram_size = int(ngram_size)
        self.max_penalty = float(max_penalty)

    def score(self, text: str) -> float:
        words = text.lower().split()
        if len(words) < self.ngram_size:
            return 0.0
        ngrams = list(zip(*[words[i:] for i in range(self.ngram_size)], strict=False))
        scaling = 1 - len(set(ngrams)) / len(ngrams)
        return scaling * self.max_penalty if scaling else 0.0

    def __call__(self, completions, **kwargs) -> list[float | None]:
        return self._score_each(completions)


class LengthReward(AccuracyReward):
    """Kimi 1.5's length reward (as open-r1's ``len_reward``), relative to the batch: with
    ``lam = 0.5 - (len - min_len) / (max_len - min_len)``, a correct completion gets ``lam`` and a wrong
    one ``min(0, lam)``; all zeros when every length is equal. Length in tokens when ``completion_ids``
    is given, else characters. Unlike open-r1 (which counts an unparseable reference as correct), such
    items get None.

    >>> LengthReward()(["<answer>18</answer>", "ok, <answer>18</answer>", "<answer>19</answer> padding"], solution=["18"] * 3)
    [0.5, 0.0, -0.5]
    """

    name = "length"

    def __call__(self, completions, **kwargs) -> list[float | None]:
        refs = _references(kwargs, len(completions), self.name)
        correct = self.correctness(completions, refs)
        lengths = _lengths(self._texts(completions), kwargs)
        lo, hi = min(lengths, default=0), max(lengths, default=0)
        if hi == lo:
            return [None if c is None else 0.0 for c in correct]
        out: list[float | None] = []
        for c, n in zip(correct, lengths, strict=True):
            lam = 0.5 - (n - lo) / (hi - lo)
            out.append(None if c is None else float(lam if c else min(0.0, lam)))
        return out


class SoftOverlongReward(Reward):
    """DAPO's soft overlong punishment (Eq. 13): 0 up to ``max_completion_len - soft_punish_cache``
    tokens, then linearly down to -1 at ``max_completion_len``, -1 beyond. Delegates to
    ``trl.rewards.get_soft_overlong_punishment`` (correct as is). Needs token counts: TRL passes
    ``completion_ids``; without them (e.g. a JSONL file) each item is None unless ``count_chars=True``.

    >>> SoftOverlongReward(max_completion_len=100, soft_punish_cache=20)(["x"], completion_ids=[[1] * 90])
    [-0.5]
    """

    name = "soft_overlong"

    def __init__(
        self, max_completion_len: int = 1024, soft_punish_cache: int = 256, count_chars: bool = False
    ):
        super().__init__()
        if soft_punish_cache <= 0 or soft_punish_cache > max_completion_len:
            raise UserError(
                f"soft_overlong: need 0 < soft_punish_cache <= max_completion_len, got {soft_punish_cache}, {max_completion_len}",
                hint="set max_completion_len to the trainer's max_completion_length and soft_punish_cache to a fraction of it",
            )
        self.max_completion_len = int(max_completion_len)
        self.soft_punish_cache = int(soft_punish_cache)
        self.count_chars = bool(count_chars)

    def __call__(self, completions, **kwargs) -> list[float | None]:
        from trl.rewards import get_soft_overlong_punishment

        ids = kwargs.get("completion_ids")
        if ids is None:
            if not self.count_chars:
                if not self._warned:
                    log.warning("soft_overlong: no completion_ids given, cannot count tokens; scoring None")
                    self._warned = True
                return [None] * len(completions)
            ids = [range(len(t)) for t in self._texts(completions)]
        punish = get_soft_overlong_punishment(self.max_completion_len, self.soft_punish_cache)
        return [float(x) for x in punish(ids)]
