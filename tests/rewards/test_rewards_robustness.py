"""Property tests: random text and LaTeX fragments never raise, and every score stays in range."""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1lab.rewards import extract, get_reward_funcs, verify_answers

FRAGMENTS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "\\boxed{",
    "}",
    "{",
    "\\frac{",
    "\\sqrt",
    "^",
    "_",
    "$",
    "\\(",
    "\\)",
    "\\left(",
    "\\right)",
    "\\text{",
    "\\pi",
    "i",
    "x",
    "=",
    "-",
    "+",
    ",",
    ".",
    "!",
    "1",
    "18",
    "0.5",
    "1,000",
    "The answer is ",
    "\n",
    " ",
    "\\",
    "9^{9^{9}}",
    "\x00",
    "####",
]
fragment_text = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)
any_text = st.one_of(st.text(max_size=200), fragment_text)

RANGES = {
    "accuracy": (0.0, 1.0),
    "accuracy_strict": (0.0, 1.0),
    "format": (0.0, 1.0),
    "tag_count": (0.0, 1.0),
    "reasoning_steps": (0.0, 1.0),
    "cosine": (-1.0, 1.0),
    "repetition_penalty": (-1.0, 0.0),
    "length": (-1.0, 0.5),
}
FUNCS = get_reward_funcs(list(RANGES))


@settings(max_examples=150, deadline=None)
@given(any_text)
def test_extract_is_total(text):
    found = extract(text)
    assert found.answer is None or isinstance(found.answer, str)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(any_text, any_text), min_size=1, max_size=4))
def test_rewards_never_raise_and_stay_in_range(pairs):
    completions = [c for c, _ in pairs]
    solutions = [s for _, s in pairs]
    t0 = time.monotonic()
    for func in FUNCS:
        lo, hi = RANGES[func.__name__]
        for score in func(completions, solution=solutions):
            assert score is None or lo - 1e-9 <= score <= hi + 1e-9, (func.__name__, score)
    # 2 accuracy-style passes of at most 4 items, each bounded by the 2 s deadline, on >= 1 worker.
    assert time.monotonic() - t0 < 4 * 3 * 2.0 + 5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(fragment_text, fragment_text), min_size=1, max_size=6))
def test_verify_answers_returns_a_verdict_per_item(pairs):
    out = verify_answers([a for a, _ in pairs], [r for _, r in pairs], timeout=1.0)
    assert len(out) == len(pairs)
    assert all(v in (True, False, None) for v in out)


@settings(max_examples=60, deadline=None)
@given(st.integers(-(10**12), 10**12), st.integers(0, 3))
def test_numbers_agree_with_themselves_in_plain_forms(value, decimals):
    text = f"{value:,}" if decimals == 0 else f"{value}." + "0" * decimals
    assert verify_answers([text, f"${value}", str(value + 1)], [str(value)] * 3) == [True, True, False]
