"""The built-in task: exact answers, deterministic, disjoint splits, levels, R1 trace format."""

import re

import pytest

from r1lab.data.normalize import normalize_text
from r1lab.data.synthetic import LEVEL_SPECS, iter_problems, make_problems, parse_levels, split_of
from r1lab.errors import UserError

TRACE = re.compile(r"^<think>\n(.+)\n</think>\n<answer>\n(-?\d+)\n</answer>$", re.DOTALL)
STEP = re.compile(r"^(?:Add|Subtract|Multiply by|Divide by) \d+: (\d+) ([-+*/]) (\d+) = (\d+)\.$")


def _replay(solution: str) -> int:
    """Re-do the trace's arithmetic line by line and return the final value."""
    body = TRACE.match(solution).group(1).splitlines()
    value = int(re.search(r"starts with (\d+)", body[0]).group(1))
    for line in body[1:]:
        m = STEP.match(line)
        if not m:
            continue
        x, op, v, y = int(m[1]), m[2], int(m[3]), int(m[4])
        assert x == value, line
        expected = {"+": x + v, "-": x - v, "*": x * v, "/": x // v}[op]
        assert op != "/" or x % v == 0, f"inexact division: {line}"
        assert y == expected, line
        value = y
    return value


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_answers_are_exact_and_traces_replay(level):
    rows = make_problems(300, level=level, seed=level)
    spec = LEVEL_SPECS[level]
    for row in rows:
        m = TRACE.match(row["solution"])
        assert m, row["solution"]
        assert m.group(2) == row["answer"]
        assert _replay(row["solution"]) == int(row["answer"]) >= 2
        n_ops = sum(1 for line in m.group(1).splitlines() if STEP.match(line))
        assert n_ops == spec.steps
        assert row["problem"].endswith("?")
        assert row["level"] == level


def test_level_1_is_small():
    for row in make_problems(500, level=1):
        numbers = [int(x) for x in re.findall(r"\d+", row["problem"])]
        assert len(numbers) == 2 and all(x < 20 for x in numbers), row["problem"]
        assert " * " not in row["solution"] and " / " not in row["solution"]


def test_higher_levels_have_distractors_and_all_ops():
    rows = make_problems(300, level=5)
    assert all(row["solution"].count("is not needed for the answer") == 2 for row in rows)
    text = "".join(r["solution"] for r in rows)
    for op in (" + ", " - ", " * ", " / "):
        assert op in text


def test_varied_templates_names_objects():
    rows = make_problems(400, level="mix")
    assert len({r["problem"].split()[0] for r in rows}) > 20  # names / openings vary
    assert {r["level"] for r in rows} == {1, 2, 3, 4, 5}
    units = {"dollars", "points", "liters"}
    assert all(any(u in r["solution"] for r in rows) for u in units)


def test_deterministic_by_seed():
    assert make_problems(50, level="1-3", seed=7) == make_problems(50, level="1-3", seed=7)
    assert make_problems(50, level="1-3", seed=7) != make_problems(50, level="1-3", seed=8)


def test_splits_are_disjoint_across_seeds_and_levels():
    seen, numbers_seen = {}, {}
    for split in ("train", "validation", "test"):
        for seed in (0, 1):
            for row in make_problems(2000 if split == "train" else 400, level="mix", seed=seed, split=split):
                key = normalize_text(row["problem"])
                assert seen.setdefault(key, split) == split, f"{row['problem']!r} in {seen[key]} and {split}"
                # Stricter: the same numbers in a new story stay in the same split too.
                numbers = tuple(re.findall(r"[0-9]+", row["problem"]))
                assert numbers_seen.setdefault(numbers, split) == split, row["problem"]
                assert split_of(row["problem"]) == split
                assert row["split"] == split


def test_no_duplicates_within_a_split():
    rows = make_problems(5000, level=1, seed=0)
    assert len({normalize_text(r["problem"]) for r in rows}) == 5000


def test_large_n_once():
    # Speed is measured in benchmarks/bench_data.py; here: a large n stays distinct and exact.
    rows = make_problems(100_000, level=1)
    assert len(rows) == 100_000 and len({r["id"] for r in rows}) == 100_000
    assert all(r["answer"] == TRACE.match(r["solution"]).group(2) for r in rows[::97])
    it = iter_problems(level=5, split="test")
    assert next(it)["split"] == "test"  # an endless iterator: nothing generated ahead of need


@pytest.mark.parametrize(
    ("spec", "levels"),
    [(1, (1,)), ("2", (2,)), ("1-3", (1, 2, 3)), ("mix", (1, 2, 3, 4, 5)), ([5, 1], (1, 5))],
)
def test_parse_levels(spec, levels):
    assert parse_levels(spec) == levels


@pytest.mark.parametrize("bad", [-1, 6, "x", "3-9"])
def test_bad_level_is_a_user_error(bad):
    with pytest.raises(UserError, match="level"):
        make_problems(1, level=bad)


def _column_value(steps: list[str]) -> int:
    """Replay a column-arithmetic trace: ones digit from the ones line, tens from the tens line."""
    ones = int(re.fullmatch(r"ones: \d+ [+-] \d+ = (\d+)", steps[1])[1])
    tens = int(re.fullmatch(r"tens: \d+ [+-] \d+ [+-] \d = (\d+)", steps[2])[1])
    return 10 * tens + ones % 10


def test_level_0_is_bare_arithmetic_with_a_column_trace():
    rows = make_problems(300, level=0, seed=3)
    for row in rows:
        a, op, b = re.search(r"(\d+) ([+-]) (\d+)", row["problem"]).groups()
        value = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert row["answer"] == str(value) and value >= 2 and int(a) < 20 and int(b) < 20
        m = TRACE.match(row["solution"])
        steps = m.group(1).splitlines()
        assert steps[0] == f"{a} {op} {b}" and steps[-1] == f"= {value}" and m.group(2) == str(value)
        assert _column_value(steps) == value  # the written steps really compute the answer
        assert row["level"] == 0
    assert len({r["problem"].split()[0] for r in rows}) >= 3  # several phrasings
    assert 0 not in parse_levels("mix")


def test_level_0_splits_are_disjoint_and_running_out_is_a_user_error():
    train = {(r["problem"], split_of(r["problem"])) for r in make_problems(1000, level=0, split="train")}
    test = make_problems(150, level=0, split="test")
    assert {s for _, s in train} == {"train"} and {split_of(r["problem"]) for r in test} == {"test"}
    train_numbers = {tuple(re.findall(r"\d+", q)) for q, _ in train}
    assert not train_numbers & {tuple(re.findall(r"\d+", r["problem"])) for r in test}
    with pytest.raises(UserError, match="ran out of distinct test problems at level 0"):
        make_problems(1000, level=0, split="test")


def test_bad_split_is_a_user_error():
    with pytest.raises(UserError, match="split"):
        make_problems(1, split="holdout")
