"""The built-in task: GSM8K-style word problems with exact integer answers and worked R1 traces.

Offline and deterministic: the same ``(n, level, seed, split)`` always gives the same problems.

How a problem is made
    A problem is a story about one running quantity (marbles someone owns, a game score, dollars,
    liters in a tank). It opens with a start value and applies ``level`` steps of ``+ - * /``
    (``/`` only when it divides exactly, so every intermediate and the answer are non-negative
    integers). Higher levels use larger numbers, more operations and add distractor sentences
    whose numbers do not matter.

    ========  =====  ==========  ==============  ===========
    level     steps  operations  numbers         distractors
    ========  =====  ==========  ==============  ===========
    0 (bare)  1      + -         all < 20        0
    1         1      + -         all < 20        0
    2         2      + - *       start < 50      0
    3         3      + - * /     start < 100     1
    4         4      + - * /     start < 200     1
    5         5      + - * /     start < 500     2
    ========  =====  ==========  ==============  ===========

    Level 0 is level 1's arithmetic without the story ("What is 14 - 2?"): a first rung for tiny
    models that cannot yet read a story, and for quick tests. Its trace is column arithmetic (ones,
    then tens with the carry or borrow; :func:`column_steps`). It holds few problems (about 1,300
    train and 160 test questions) and is never part of ``"mix"``.

Splits never share a problem
    Candidates come from one seeded stream; each is assigned to ``train`` (80%), ``validation``
    (10%) or ``test`` (10%) by a hash of the numbers its *normalized* question shows, in order
    (:func:`split_of`). Identical questions therefore always land in the same split, whatever the
    seed or level — and, stricter, a test question never reuses a train question's numbers with a
    new story. The numbers are known before the text is written, so a candidate of another split
    is rejected cheaply (a validation/test row still costs ~4x a train row). Within a split,
    repeated questions are dropped. Measured speeds: ``benchmarks/results/data.md``.

The worked solution (the SFT target) has exactly this shape (one convention, used everywhere)::

    <think>
    step 1
    step 2
    </think>
    <answer>
    42
    </answer>

i.e. ``"<think>\\n" + "\\n".join(steps) + "\\n</think>\\n<answer>\\n" + answer + "\\n</answer>"``.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from r1lab.data.normalize import normalize_text, text_key
from r1lab.errors import UserError

SPLITS = ("train", "validation", "test")
# Buckets of text_key % 100: train [0, 80), validation [80, 90), test [90, 100).
_SPLIT_BOUNDS = {"train": (0, 80), "validation": (80, 90), "test": (90, 100)}
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation", "eval": "test"}
LEVELS = (0, 1, 2, 3, 4, 5)
MIX_LEVELS = (1, 2, 3, 4, 5)  # "mix": the word-problem levels


@dataclass(frozen=True)
class LevelSpec:
    steps: int
    ops: str
    max_start: int
    max_operand: int
    max_factor: int
    distractors: int


LEVEL_SPECS = {
    0: LevelSpec(steps=1, ops="+-", max_start=19, max_operand=19, max_factor=1, distractors=0),
    1: LevelSpec(steps=1, ops="+-", max_start=19, max_operand=19, max_factor=1, distractors=0),
    2: LevelSpec(steps=2, ops="+-*", max_start=49, max_operand=19, max_factor=3, distractors=0),
    3: LevelSpec(steps=3, ops="+-*/", max_start=99, max_operand=30, max_factor=4, distractors=1),
    4: LevelSpec(steps=4, ops="+-*/", max_start=199, max_operand=50, max_factor=5, distractors=1),
    5: LevelSpec(steps=5, ops="+-*/", max_start=499, max_operand=99, max_factor=6, distractors=2),
}
_DIGITS = re.compile(r"[0-9]+")
_MAX_TOTAL = 5000  # keeps products readable; a "*" that would pass it becomes "+" or "-"

NAMES_HE = (
    "Liam", "Noah", "Omar", "Ravi", "Mateo", "Kenji", "Lucas", "Ethan", "Samuel", "Diego", "Tariq",
    "Jonas", "Felix", "Arjun", "Hugo", "Leo", "Marco", "Ivan", "Kwame", "Tom", "Ben", "Yusuf", "Pablo",
)  # fmt: skip
NAMES_SHE = (
    "Mia", "Emma", "Ava", "Sofia", "Aisha", "Priya", "Lena", "Chloe", "Yuki", "Zara", "Grace", "Nora",
    "Elena", "Fatima", "Hana", "Julia", "Maya", "Olivia", "Rosa", "Amara", "Ines", "Lucy", "Mei",
)  # fmt: skip
FRIENDS = ("a friend", "a neighbor", "a classmate", "a cousin", "a teammate", "a coworker")
OBJECTS = (
    "apples", "marbles", "stickers", "pencils", "cookies", "books", "seashells", "stamps", "cards",
    "beads", "eggs", "toy cars", "balloons", "crayons", "coins", "cupcakes", "buttons", "plums",
)  # fmt: skip
OTHER_THINGS = ("cats", "bikes", "plants", "hats", "pens", "chairs", "lamps", "kites")
FRACTIONS = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth", 6: "a sixth", 7: "a seventh"}
MULTIPLES = {2: "doubles", 3: "triples", 4: "quadruples"}

# One scenario = a running quantity with phrasings for each operation. Placeholders: {name},
# {He}/{he}/{his}/{His}/{him}, {b} (operand), {k} (factor), {frac} (e.g. "a third"), {mult}
# ("triples"), {friend}, {obj} (the counted thing), {unit} (how steps name the quantity).
SCENARIOS = {
    "items": {
        "unit": "{obj}",
        "open": (
            "{name} has {a} {obj}.",
            "{name} owns {a} {obj}.",
            "{name} starts the day with {a} {obj}.",
            "In a box, {name} keeps {a} {obj}.",
        ),
        "+": (
            "{He} buys {b} more {obj}.",
            "{friend_cap} gives {him} {b} {obj}.",
            "Then {he} finds {b} more.",
            "Later {he} gets another {b} {obj}.",
        ),
        "-": (
            "{He} gives {b} {obj} to {friend}.",
            "{He} loses {b} of them.",
            "Then {he} uses {b} {obj}.",
            "{He} sells {b} of {his} {obj}.",
        ),
        "*": (
            "Then the number of {obj} {he} has {mult}.",
            "After a trade, {he} has {k} times as many {obj} as before.",
        ),
        "/": (
            "{He} splits the {obj} equally into {k} bags and keeps only one bag.",
            "{He} keeps {frac} of {his} {obj} and gives the rest away.",
        ),
        "ask": (
            "How many {obj} does {name} have now?",
            "How many {obj} does {name} end up with?",
            "How many {obj} does {he} have at the end?",
        ),
    },
    "money": {
        "unit": "dollars",
        "open": (
            "{name} has ${a}.",
            "{name} has ${a} in {his} wallet.",
            "{name} saved ${a}.",
        ),
        "+": (
            "{He} earns ${b} walking dogs.",
            "{friend_cap} pays {him} back ${b}.",
            "{He} gets ${b} for {his} birthday.",
            "Then {he} sells an old toy for ${b}.",
        ),
        "-": (
            "{He} spends ${b} on lunch.",
            "Then {he} buys a book for ${b}.",
            "{He} lends ${b} to {friend}.",
            "{He} pays ${b} for a ticket.",
        ),
        "*": (
            "An investment makes {his} money grow to {k} times as much.",
            "Then {his} money {mult}.",
        ),
        "/": (
            "{He} splits {his} money equally among {k} envelopes and keeps one envelope.",
            "{He} keeps {frac} of {his} money and donates the rest.",
        ),
        "ask": (
            "How many dollars does {name} have now?",
            "How much money, in dollars, does {name} have at the end?",
        ),
    },
    "score": {
        "unit": "points",
        "open": (
            "{name} scores {a} points in the first round of a game.",
            "{name} starts a quiz with {a} points.",
        ),
        "+": (
            "{He} wins {b} more points in the next round.",
            "A correct answer gives {him} {b} points.",
            "{He} earns a bonus of {b} points.",
        ),
        "-": (
            "{He} loses {b} points for a penalty.",
            "A wrong answer costs {him} {b} points.",
        ),
        "*": (
            "A power-up multiplies {his} score by {k}.",
            "Then {his} score {mult}.",
        ),
        "/": (
            "A trap divides {his} score by {k}.",
            "A penalty leaves {him} with only {frac} of {his} points.",
        ),
        "ask": (
            "What is {name}'s final score?",
            "How many points does {name} have at the end?",
        ),
    },
    "water": {
        "unit": "liters",
        "open": (
            "A tank in {name}'s garden holds {a} liters of water.",
            "{name} fills a barrel with {a} liters of water.",
        ),
        "+": (
            "{name} pours in {b} more liters.",
            "Rain adds {b} liters.",
            "Then {he} adds another {b} liters.",
        ),
        "-": (
            "{He} uses {b} liters to water the plants.",
            "Then {b} liters leak out.",
            "{He} drains {b} liters.",
        ),
        "*": ("{He} refills it until it holds {k} times as much water as before.",),
        "/": (
            "{He} splits the water equally into {k} buckets and keeps only one bucket.",
            "{He} keeps only {frac} of the water.",
        ),
        "ask": (
            "How many liters of water are there now?",  # not "left": the last step may add water
            "How many liters of water does {name} have now?",
        ),
    },
}
_SCENARIO_NAMES = tuple(SCENARIOS)

DISTRACTORS = (
    "{other} has {d} {things}.",
    "{name}'s {relative} is {age} years old.",
    "The shop is {d} minutes away.",
    "It is {d} degrees outside.",
    "{name} also has {d} {things}.",
)
# (relative, youngest, oldest): a distractor should still be a plausible sentence.
RELATIVES = (
    ("sister", 3, 30), ("brother", 3, 30), ("cousin", 4, 35), ("uncle", 28, 65), ("aunt", 28, 65),
    ("grandmother", 58, 95),
)  # fmt: skip

# Trace lines per operation: name the step, then do it with explicit arithmetic.
_TRACE = {
    "+": "Add {b}: {x} + {b} = {y}.",
    "-": "Subtract {b}: {x} - {b} = {y}.",
    "*": "Multiply by {k}: {x} * {k} = {y}.",
    "/": "Divide by {k}: {x} / {k} = {y}.",
}


def format_trace(steps: list[str], answer: str) -> str:
    """The one R1 target format: ``<think>`` steps ``</think>`` then ``<answer>`` N ``</answer>``.

    >>> print(format_trace(["2 + 3 = 5."], "5"))
    <think>
    2 + 3 = 5.
    </think>
    <answer>
    5
    </answer>
    """
    return "<think>\n" + "\n".join(steps) + "\n</think>\n<answer>\n" + answer + "\n</answer>"


def parse_levels(level: int | str | list[int] | tuple[int, ...] | None) -> tuple[int, ...]:
    """Levels from ``1``, ``"2"``, ``"1-3"``, ``"mix"`` (all), ``"1,3"`` or a list.

    >>> parse_levels("1-3"), parse_levels("mix"), parse_levels(2), parse_levels(0)
    ((1, 2, 3), (1, 2, 3, 4, 5), (2,), (0,))
    """
    if level is None or (isinstance(level, str) and level.strip().lower() in ("mix", "all", "")):
        return MIX_LEVELS
    try:
        if isinstance(level, int):
            levels = (level,)
        elif isinstance(level, list | tuple):
            levels = tuple(int(x) for x in level)
        elif "-" in level:
            lo, hi = (int(x) for x in level.split("-", 1))
            levels = tuple(range(lo, hi + 1))
        else:
            levels = tuple(int(x) for x in level.split(","))
    except ValueError:
        levels = ()
    if not levels or any(x not in LEVELS for x in levels):
        raise UserError(
            f"bad built-in task level {level!r}",
            hint="use a level 0-5 (0: bare arithmetic), a range like 1-3, a list like 1,3, or 'mix'",
        )
    return tuple(sorted(set(levels)))


def canonical_split(split: str) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` (accepts ``val``/``valid``/``dev``/``eval``)."""
    name = SPLIT_ALIASES.get(split.strip().lower(), split.strip().lower())
    if name not in SPLITS:
        raise UserError(
            f"unknown split {split!r} for the built-in task", hint="use train, validation or test"
        )
    return name


def numbers_key(numbers: list[str]) -> int:
    """A stable 64-bit key of a sequence of digit strings."""
    return int.from_bytes(hashlib.blake2b(" ".join(numbers).encode("ascii"), digest_size=8).digest(), "big")


def split_of(question: str) -> str:
    """The split a question belongs to: a hash of the numbers in its normalized text, in order.

    A pure function of :func:`r1lab.data.normalize.normalize_text` (identical normalized texts
    always share a split), and stricter than hashing the whole text: two questions with the same
    numbers (say 12 and 5) are in the same split whatever their story, so a test problem never
    repeats a train problem's numbers with new names. It also lets the generator reject a
    candidate before writing its text.

    >>> split_of("Mia has 12 apples. She buys 5 more apples. How many apples does Mia have now?")
    'train'
    >>> split_of("Tom has 12 pens; he finds 5 more.") == split_of("MIA HAS 12 APPLES, BUYS 5 MORE!")
    True
    """
    return _bucket_split(numbers_key(_DIGITS.findall(normalize_text(question))) % 100)


def _bucket_split(bucket: int) -> str:
    for name, (lo, hi) in _SPLIT_BOUNDS.items():
        if lo <= bucket < hi:
            return name
    raise AssertionError("bucket bounds cover 0..99")  # pragma: no cover


def _pick_op(rnd, spec: LevelSpec, total: int) -> tuple[str, int]:
    """One exact operation on ``total``: returns (op, operand-or-factor). ``rnd`` is ``rng.random``."""
    ops = spec.ops
    for _ in range(8):
        op = ops[int(rnd() * len(ops))]
        if op == "+":
            return op, 2 + int(rnd() * (spec.max_operand - 1))
        if op == "-" and total >= 4:  # leaves at least 2
            return op, 2 + int(rnd() * (min(spec.max_operand, total - 2) - 1))
        if op == "*" and total * 2 <= _MAX_TOTAL:
            return op, 2 + int(rnd() * (min(spec.max_factor, _MAX_TOTAL // total) - 1))
        if op == "/":
            divisors = _DIVISORS[total % 420]
            if divisors and total // divisors[-1] >= 2:
                return op, divisors[int(rnd() * len(divisors))]
    return "+", 2 + int(rnd() * (spec.max_operand - 1))


# Divisors in 2..7 of x depend only on x % 420 (420 = lcm(2..7)); precomputed for speed. Results
# stay >= 2 because every total is >= 4 before a step (start >= 4, "-" leaves >= 2, "/" below).
_DIVISORS = tuple(tuple(k for k in range(2, 8) if r % k == 0) for r in range(420))
_OPS = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}


def _shown(phrase: str, v: int) -> str | None:
    """The digits ``phrase`` shows for operand ``v``, space-separated (``None`` when it says
    "doubles" or "half")."""
    if "{b}" in phrase or "{k}" in phrase or "{a}" in phrase:
        return str(v)
    if "{mult}" in phrase and v not in MULTIPLES:
        return str(v)  # "becomes 5 times as large"
    if "{frac}" in phrase and v not in FRACTIONS:
        return f"1 {v}"  # "1/9"
    return None


def _plan_one(rng: random.Random, level: int) -> tuple[list[str], tuple]:
    """Every random choice of one candidate, and the numbers its question will show, in order.

    Drawing all choices first keeps the random stream the same whether or not the candidate is
    kept, and lets :func:`iter_problems` reject it by its numbers before writing any text
    (9 in 10 candidates for the test split). Operands are >= 2 so units read as plurals
    ("2 liters"); picks use ``rng.random()`` directly because ``rng.choice``/``randint`` dominate
    the cost at 10**6 problems.
    """
    rnd = rng.random
    spec = LEVEL_SPECS[level]
    if level == 0:
        return _plan_bare(rnd, spec)
    scenario = SCENARIOS[_SCENARIO_NAMES[int(rnd() * len(_SCENARIO_NAMES))]]
    gender = _GENDER[int(rnd() * 2)]
    name = gender["names"][int(rnd() * len(gender["names"]))]
    friend = FRIENDS[int(rnd() * len(FRIENDS))]
    obj = OBJECTS[int(rnd() * len(OBJECTS))]
    # Level 1 starts at 4+ so "-" always has room; higher levels start at a tenth of the range.
    lo = 4 if level == 1 else max(4, spec.max_start // 10)
    start = total = lo + int(rnd() * (spec.max_start - lo + 1))
    opens = scenario["open"]
    sentences = [(opens[int(rnd() * len(opens))], start)]
    shown = [str(start)]  # per sentence: the digits it shows, or None
    ops = []
    for _ in range(spec.steps):
        op, v = _pick_op(rnd, spec, total)
        phrases = scenario[op]
        phrase = phrases[int(rnd() * len(phrases))]
        sentences.append((phrase, v))  # the operand's wording is made in _render, if kept
        shown.append(str(v) if _SHOWS_OPERAND[phrase] else _shown(phrase, v))
        new = _OPS[op](total, v)
        ops.append((op, v, total, new))
        total = new
    if spec.distractors:
        for template in rng.sample(DISTRACTORS, spec.distractors):
            relative, young, old = RELATIVES[int(rnd() * len(RELATIVES))]
            values = {
                "other": _ALL_NAMES[int(rnd() * len(_ALL_NAMES))],
                "d": 2 + int(rnd() * 59),
                "things": OTHER_THINGS[int(rnd() * len(OTHER_THINGS))],
                "relative": relative,
                "age": young + int(rnd() * (old - young + 1)),
            }
            # Never first (the story needs its opening); the question always comes last.
            at = 1 + int(rnd() * len(sentences))
            sentences.insert(at, (template, values))
            shown.insert(at, str(values["age" if "{age}" in template else "d"]))
    asks = scenario["ask"]
    ask = asks[int(rnd() * len(asks))]
    numbers = [x for x in shown if x is not None]
    return numbers, (scenario, gender, name, friend, obj, sentences, ask, start, ops, total, level)


# Level 0: the arithmetic alone, in a few phrasings.
BARE_PHRASES = (
    "What is {a} {op} {b}?",
    "Compute {a} {op} {b}.",
    "Calculate {a} {op} {b}.",
    "{a} {op} {b} = ?",
)


def _plan_bare(rnd, spec: LevelSpec) -> tuple[list[str], tuple]:
    """A level-0 candidate: start, one + or -, and a phrasing (see :func:`_plan_one`)."""
    start = 4 + int(rnd() * (spec.max_start - 3))
    op, v = _pick_op(rnd, spec, start)
    phrase = BARE_PHRASES[int(rnd() * len(BARE_PHRASES))]
    return [str(start), str(v)], ("bare", phrase, start, op, v)


def column_steps(a: int, op: str, b: int) -> list[str]:
    """Level 0's worked steps: column arithmetic, ones then tens, with the carry or borrow written out.

    Every step is a single-digit fact, and all of those occur in the train split, so a model that
    learns the procedure can solve test questions whose numbers it never saw.

    >>> column_steps(17, "+", 8)
    ['17 + 8', 'ones: 7 + 8 = 15', 'tens: 1 + 0 + 1 = 2', '= 25']
    >>> column_steps(13, "-", 5)
    ['13 - 5', 'ones: 13 - 5 = 8', 'tens: 1 - 0 - 1 = 0', '= 8']
    """
    a1, a0, b1, b0 = a // 10, a % 10, b // 10, b % 10
    if op == "+":
        ones = a0 + b0
        carry = ones // 10
        lines = [f"ones: {a0} + {b0} = {ones}", f"tens: {a1} + {b1} + {carry} = {a1 + b1 + carry}"]
    else:
        borrow = int(a0 < b0)
        top = a0 + 10 * borrow
        lines = [f"ones: {top} - {b0} = {top - b0}", f"tens: {a1} - {b1} - {borrow} = {a1 - b1 - borrow}"]
    return [f"{a} {op} {b}", *lines, f"= {_OPS[op](a, b)}"]


def _render_bare(plan: tuple) -> dict:
    _, phrase, a, op, b = plan
    answer = str(_OPS[op](a, b))
    question = phrase.format(a=a, op=op, b=b)
    return {
        "problem": question,
        "answer": answer,
        "solution": format_trace(column_steps(a, op, b), answer),
        "level": 0,
    }


def _wording(values: dict | int) -> dict:
    """Placeholder values of a sentence: a distractor's dict, or an operand's forms."""
    if isinstance(values, dict):
        return values
    v = values
    return {"a": v, "b": v, "k": v, "frac": FRACTIONS.get(v) or f"1/{v}",
            "mult": MULTIPLES.get(v) or f"becomes {v} times as large"}  # fmt: skip


def _render(plan: tuple) -> dict:
    """Question, answer and worked solution of a kept candidate."""
    if plan[0] == "bare":
        return _render_bare(plan)
    scenario, gender, name, friend, obj, sentences, ask, start, ops, total, level = plan
    ctx = {**gender, "name": name, "friend": friend, "friend_cap": friend[0].upper() + friend[1:], "obj": obj}
    texts = []
    for template, values in sentences:
        ctx.update(_wording(values))
        texts.append(template.format_map(ctx))
    question = " ".join(texts) + " " + ask.format_map(ctx)
    unit = scenario["unit"].format_map(ctx)
    distractors = [
        t for (template, _), t in zip(sentences, texts, strict=True) if template in _DISTRACTOR_SET
    ]
    steps = [f"{name} starts with {start} {unit}."]
    steps += [_TRACE[op].format(b=v, k=v, x=x, y=y) for op, v, x, y in ops]
    steps += [f'"{d}" is not needed for the answer.' for d in distractors]
    steps.append(f"So {name} ends with {total} {unit}.")
    answer = str(total)
    return {"problem": question, "answer": answer, "solution": format_trace(steps, answer), "level": level}


_GENDER = (
    {"names": NAMES_SHE, "He": "She", "he": "she", "His": "Her", "his": "her", "him": "her"},
    {"names": NAMES_HE, "He": "He", "he": "he", "His": "His", "his": "his", "him": "him"},
)
_ALL_NAMES = NAMES_HE + NAMES_SHE
_DISTRACTOR_SET = frozenset(DISTRACTORS)
# Phrases that always show their operand as digits (the common case, looked up instead of parsed).
_SHOWS_OPERAND = {
    phrase: "{b}" in phrase or "{k}" in phrase
    for scenario in SCENARIOS.values()
    for op in "+-*/"
    for phrase in scenario[op]
}


def iter_problems(
    *, level: int | str | list[int] | None = 1, seed: int = 0, split: str = "train"
) -> Iterator[dict]:
    """Yield distinct problems of ``split`` forever (lazily), in a fixed order for ``seed``.

    Each row: ``{"id", "problem", "answer", "solution", "level", "split"}`` where ``solution`` is
    the worked R1 trace (see the module doc) and ``answer`` the integer answer as a string.

    >>> row = next(iter_problems(level=1, seed=0, split="test"))
    >>> sorted(row)
    ['answer', 'id', 'level', 'problem', 'solution', 'split']
    """
    levels = parse_levels(level)
    split = canonical_split(split)
    lo, hi = _SPLIT_BOUNDS[split]
    rng = random.Random(f"r1lab-builtin/{seed}/{','.join(map(str, levels))}")
    seen: set[int] = set()
    misses = 0
    while True:
        lvl = levels[0] if len(levels) == 1 else rng.choice(levels)
        numbers, plan = _plan_one(rng, lvl)
        if not lo <= numbers_key(numbers) % 100 < hi:
            continue  # another split's problem: rejected before any text is written
        row = _render(plan)
        key = text_key(row["problem"])
        if key in seen:
            misses += 1
            if misses > 100_000:  # level 0 runs out; levels 1-5 hold far more than 10**6 problems
                raise UserError(
                    f"the built-in task ran out of distinct {split} problems at level {level} "
                    f"after {len(seen)}",
                    hint="ask for fewer problems, or use a higher level (level 0 holds about 1,300 train, "
                    "200 validation and 160 test questions)",
                )
            continue
        misses = 0
        seen.add(key)
        row["id"] = f"builtin-{split}-{key:016x}"
        row["split"] = split
        yield row


def make_problems(
    n: int, *, level: int | str | list[int] | None = 1, seed: int = 0, split: str = "train"
) -> list[dict]:
    """``n`` distinct problems of the built-in task (see :func:`iter_problems` for the row shape).

    ``level`` is 0-5, a range ``"1-3"``, a list, or ``"mix"``; ``split`` is train/validation/test,
    and no question text ever appears in two splits.

    >>> rows = make_problems(2, level=1, seed=0)
    >>> len(rows), rows[0]["solution"].startswith("<think>\\n")
    (2, True)
    """
    if n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    return list(itertools.islice(iter_problems(level=level, seed=seed, split=split), n))
