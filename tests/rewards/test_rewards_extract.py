"""Answer extraction: tags, fallbacks, hacking guards, reference forms, plain numbers."""

from fractions import Fraction

import pytest

from r1lab.rewards import completion_text, extract, extract_answer, reference_answer
from r1lab.rewards.extract import last_boxed, plain_number


def test_completion_text_accepts_strings_and_chat_lists():
    assert completion_text("abc") == "abc"
    assert completion_text([{"role": "assistant", "content": "abc"}]) == "abc"
    assert completion_text([{"content": "x"}]) == "x"
    assert completion_text(None) == ""


def test_single_answer_block_wins_over_fallbacks():
    text = r"<think>maybe \boxed{3}</think><answer>4</answer>"
    assert extract_answer(text) == "4"
    assert extract(text).source == "answer_tag"


def test_boxed_inside_answer_block_is_unwrapped():
    assert extract_answer(r"<think>x</think><answer>$\boxed{\frac{1}{2}}$</answer>") == r"\frac{1}{2}"
    assert extract_answer("<think>x</think><answer>The answer is 18.</answer>") == "18"


@pytest.mark.parametrize(
    "text, violation",
    [
        ("<think>a</think><answer>1</answer><answer>2</answer>", "multiple_answer_blocks"),
        ("<answer>1</answer><think>a</think>", "answer_before_think_end"),
        ("<think><answer>1</answer></think>", "answer_before_think_end"),
    ],
)
def test_hacking_guards_give_no_answer(text, violation):
    found = extract(text)
    assert found.answer is None
    assert found.violation == violation


@pytest.mark.parametrize(
    "text, fallbacks, expected",
    [
        (r"so \boxed{5} then \boxed{7}", ("boxed",), "7"),
        (r"\boxed{\frac{\sqrt{3}}{2}}", ("boxed",), r"\frac{\sqrt{3}}{2}"),
        ("The answer is 18.", ("answer_is",), "18"),
        ("Thus the final answer is: 1,000", ("answer_is",), "1,000"),
        ("we get 3 then 42 apples", ("last_number",), "42"),
        ("we get 3 then 42 apples", ("boxed",), None),
        ("we get 3 then 42 apples", (), None),
    ],
)
def test_fallbacks(text, fallbacks, expected):
    assert extract_answer(text, fallbacks) == expected


def test_unknown_fallback_is_an_error():
    with pytest.raises(ValueError):
        extract_answer("no answer block", ("psychic",))


def test_last_boxed_handles_nesting_and_unbalanced():
    assert last_boxed(r"\boxed{a{b{c}}d}") == "a{b{c}}d"
    assert last_boxed(r"\boxed{1} and \boxed{2") == "1"
    assert last_boxed("{" * 10000 + r"\boxed{" + "{" * 10000) is None
    assert last_boxed(r"\fbox{9}") == "9"


@pytest.mark.parametrize(
    "solution, expected",
    [
        ("72", "72"),
        ("She sold 48 + 24 = 72 clips.\n#### 72", "72"),
        ("#### 1,000", "1000"),  # #16: one reader; thousands separators dropped, as in data
        (r"Thus $x = \boxed{3\sqrt{13}}$.", r"3\sqrt{13}"),
        (r"\frac{3}{4}", r"\frac{3}{4}"),
    ],
)
def test_reference_forms(solution, expected):
    assert reference_answer(solution) == expected


@pytest.mark.parametrize(
    "text, value",
    [
        ("18", Fraction(18)),
        ("$18", Fraction(18)),
        (r"\$18", Fraction(18)),
        ("18.00", Fraction(18)),
        ("18 dollars", Fraction(18)),
        ("1,000", Fraction(1000)),
        ("-3.5", Fraction(-7, 2)),
        (".5", Fraction(1, 2)),
        ("18.", Fraction(18)),
        ("50%", Fraction(50)),
        (r"\frac{1}{2}", None),
        ("1, 2", None),
        ("3,5", None),
        ("x+1", None),
        ("52_8", None),
        ("3 pi", None),  # a word that changes the number is not a unit
        ("4 sqrt 2", None),
        ("2 squared", None),
    ],
)
def test_plain_number(text, value):
    assert plain_number(text) == value
