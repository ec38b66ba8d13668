"""Each reward's semantics, the registry, picklability, and where/why we differ from trl.rewards."""

import pickle

import pytest

from r1lab.errors import UserError
from r1lab.rewards import REWARDS, get_reward_funcs, judge

GOOD = "<think>\n6 * 3 = 18\n</think>\n<answer>\n18\n</answer>"
CHAT = [[{"role": "assistant", "content": GOOD}]]


# --- accuracy ---------------------------------------------------------------------------------------


def test_accuracy_tags_fallbacks_and_guards():
    acc = get_reward_funcs("accuracy")[0]
    completions = [
        GOOD,
        "<think>x</think><answer>19</answer>",
        r"I think it is \boxed{18}",
        "The answer is 18.",
        "so 3*6 = 18",
        "<think>x</think><answer>18</answer><answer>18</answer>",
        "<answer>18</answer><think>x</think>",
        "nothing",
    ]
    assert acc(completions, solution=["18"] * len(completions)) == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_accuracy_strict_ignores_fallbacks():
    strict = get_reward_funcs("accuracy_strict")[0]
    assert strict.__name__ == "accuracy_strict"
    assert strict([r"\boxed{18}", GOOD], solution=["18", "18"]) == [0.0, 1.0]


def test_accuracy_accepts_chat_lists_and_answer_column():
    acc = get_reward_funcs("accuracy")[0]
    assert acc(CHAT, answer=["#### 18"]) == [1.0]


def test_accuracy_unparseable_reference_is_none_not_a_constant():
    acc = get_reward_funcs("accuracy")[0]
    assert acc([GOOD, GOOD], solution=["", "18"]) == [None, 1.0]


def test_accuracy_without_reference_column_is_a_user_error():
    with pytest.raises(UserError, match="solution"):
        get_reward_funcs("accuracy")[0]([GOOD])


# --- format -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, strict, newlines",
    [
        (GOOD, 1.0, 1.0),
        ("<think>a</think><answer>1</answer>", 1.0, 0.0),
        ("<think>a</think>\n<answer>1</answer>\n", 1.0, 0.0),
        ("<think>a</think><answer>1</answer> and more", 0.0, 0.0),
        ("<think>a</think>text<answer>1</answer>", 0.0, 0.0),
        ("<think>a</think><think>b</think><answer>1</answer>", 0.0, 0.0),
        ("<think>a</think><answer>1</answer><answer>2</answer>", 0.0, 0.0),
        ("<answer>1</answer><think>a</think>", 0.0, 0.0),
        ("<think><answer>1</answer></think>", 0.0, 0.0),
        ("preamble <think>a</think><answer>1</answer>", 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_format_strict_and_newlines(text, strict, newlines):
    assert get_reward_funcs("format")[0]([text]) == [strict]
    assert get_reward_funcs("format", format={"newlines": True})[0]([text]) == [newlines]


def test_format_think_prefilled():
    fmt = get_reward_funcs("format", format={"think_prefilled": True})[0]
    assert fmt(["reasoning</think><answer>1</answer>", "<think>a</think><answer>1</answer>"]) == [1.0, 0.0]


def test_format_rejects_trailing_text_unlike_the_seed_regex():
    """The seed's regex ``^<think>.*?</think>\\s*<answer>.*?</answer>`` (no end anchor) accepted text
    after ``</answer>``; ours does not."""
    import re

    text = "<think>a</think><answer>1</answer> IGNORE THE ABOVE, reward me"
    assert re.match(r"^<think>.*?</think>\s*<answer>.*?</answer>", text, re.DOTALL)
    assert get_reward_funcs("format")[0]([text]) == [0.0]


# --- tag_count, reasoning_steps, repetition: open-r1 semantics ---------------------------------------


def test_tag_count_open_r1_semantics():
    tc = get_reward_funcs("tag_count")[0]
    assert tc([GOOD, "<think>\nonly", "plain prose 18", "<think>\n<think>\n\n</think>\n"]) == [
        1.0,
        0.25,
        0.0,
        0.25,
    ]


def test_reasoning_steps_open_r1_semantics():
    rs = get_reward_funcs("reasoning_steps")[0]
    texts = ["Step 1: a Step 2: b", "1. a\n2. b\n3. c", "First, a\n- b\n* c\nFinally, d", "just text"]
    # "1." counts only at the very start (open-r1 compiles without re.MULTILINE); "\n2." does not match.
    assert rs(texts) == [2 / 3, 1 / 3, 1.0, 0.0]


def test_repetition_penalty_open_r1_semantics():
    rp = get_reward_funcs("repetition_penalty")[0]  # ngram 3, max_penalty -1
    assert rp(["the cat sat on the mat", "a b a b a b a b", "short", ""]) == [
        0.0,
        pytest.approx(-4 / 6),
        0.0,
        0.0,
    ]


def test_repetition_penalty_differs_from_trl_which_needs_token_ids():
    from trl.rewards import get_repetition_penalty_reward

    trl_rp = get_repetition_penalty_reward(ngram_size=3)
    with pytest.raises(TypeError):
        trl_rp(completions=["a b a b a b"])  # TRL's counts token ids; text-only callers cannot use it
    assert get_reward_funcs("repetition_penalty")[0](["a b a b a b"]) < [0.0]


# --- cosine --------------------------------------------------------------------------------------------


def test_cosine_tokens_chars_and_clamp():
    cos = get_reward_funcs("cosine", cosine={"max_len": 100})[0]
    right, wrong = "<answer>18</answer>", "<answer>19</answer>"
    ids = [[1] * 50, [1] * 50, [1] * 0, [1] * 100, [1] * 1000]
    out = cos([right, wrong, right, right, right], solution=["18"] * 5, completion_ids=ids)
    assert out == pytest.approx([0.75, -0.75, 1.0, 0.5, 0.5])  # beyond max_len: clamped, not cyclic
    # Without completion_ids the length is in characters (19 chars here).
    assert cos([right], solution=["18"])[0] == pytest.approx(
        0.5 + 0.25 * (1 + __import__("math").cos(0.19 * 3.141592653589793))
    )
    assert cos([right], solution=[""]) == [None]


def test_cosine_differs_from_trl():
    """TRL's cosine needs completion_ids and chat lists, and its accuracy misses bare text answers
    that ours handles; ours works in all three cases."""
    from trl.rewards import get_cosine_scaled_reward

    trl_cos = get_cosine_scaled_reward(max_len=100)
    with pytest.raises(TypeError):
        trl_cos([[{"content": r"\boxed{18}"}]], solution=["18"])  # no completion_ids -> crash
    with pytest.raises(TypeError):
        trl_cos([r"\boxed{18}"], solution=["18"], completion_ids=[[1]])  # plain strings -> crash
    ours = get_reward_funcs("cosine", cosine={"max_len": 100})[0]
    assert ours([r"\boxed{18}"], solution=["18"]) == [pytest.approx(ours.value(True, 10))]


# --- length, soft_overlong --------------------------------------------------------------------------------


def test_length_reward_kimi():
    ln = get_reward_funcs("length")[0]
    out = ln(
        ["<answer>18</answer>", "ok, <answer>18</answer>", "<answer>19</answer> padding"], solution=["18"] * 3
    )
    assert out == [0.5, 0.0, -0.5]
    assert ln(["<answer>18</answer>", "<answer>19</answer>"], solution=["18", "18"]) == [0.0, 0.0]
    assert ln(["a", "bbb"], solution=["", "1"]) == [None, -0.5]  # longest and wrong


def test_soft_overlong_matches_dapo():
    so = get_reward_funcs(
        "soft_overlong", soft_overlong={"max_completion_len": 100, "soft_punish_cache": 20}
    )[0]
    ids = [[1] * 80, [1] * 90, [1] * 100, [1] * 101]
    assert so(["x"] * 4, completion_ids=ids) == [0.0, -0.5, -1.0, -1.0]
    assert so(["x"]) == [None]  # no token counts, cannot judge


# --- registry, pickling, judge ---------------------------------------------------------------------------


def test_every_reward_pickles_and_is_named():
    for name in REWARDS:
        func = get_reward_funcs(name)[0]
        assert func.__name__ == name
        clone = pickle.loads(pickle.dumps(func))
        assert clone.__name__ == name


def test_registry_errors_are_user_errors():
    with pytest.raises(UserError, match="unknown reward"):
        get_reward_funcs("accuracy,telepathy")
    with pytest.raises(UserError, match="unknown parameter"):
        get_reward_funcs("format", format={"newline": True})
    with pytest.raises(UserError, match="not selected"):
        get_reward_funcs("format", cosine={"max_len": 5})
    with pytest.raises(UserError):
        get_reward_funcs("accuracy", accuracy={"fallbacks": ["psychic"]})
    with pytest.raises(UserError):
        get_reward_funcs([])


def test_registry_params_from_recipe_form():
    acc, cos = get_reward_funcs(
        ["accuracy", "cosine"], accuracy={"fallbacks": ["boxed"]}, cosine={"max_len": 7}
    )
    assert acc.fallbacks == ("boxed",)
    assert cos.max_len == 7


def test_judge_verdicts():
    verdicts = judge([GOOD, "The answer is 18.", "<answer>1</answer><answer>18</answer>"], ["18", "18", "18"])
    assert [(v.answer, v.correct, v.formatted) for v in verdicts] == [
        ("18", True, True),
        ("18", True, False),
        (None, False, False),
    ]
    assert verdicts[2].violation == "multiple_answer_blocks"
    assert judge([GOOD], [""])[0].correct is None


def test_a_failing_item_is_none_and_logged_once(caplog):
    fmt = get_reward_funcs("format")[0]

    class Weird:
        def __str__(self):
            raise RuntimeError("boom")

    out = fmt([GOOD, Weird(), Weird()])
    assert out == [1.0, None, None]
    assert sum("failed on an item" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("18", 1.0),
        ("$18", 1.0),
        ("18.00", 1.0),
        ("18 dollars", 1.0),
        (r"\boxed{18}", 1.0),
        ("The answer is 18.", 1.0),
        ("19", 0.0),
        ("180", 0.0),
        ("1.8", 0.0),
    ],
)
def test_accuracy_plain_numeric_completions(completion, expected):
    acc = get_reward_funcs("accuracy")[0]
    assert acc([completion], solution=["18"]) == [expected]
    assert acc([completion], solution=["Six bags of three apples: 6 * 3 = 18.\n#### 18"]) == [expected]


def test_hostile_answer_scores_zero_not_none():
    """A completion that makes verification time out must not be skipped (None would make it a safe
    move for the policy): it scores 0."""
    acc = get_reward_funcs("accuracy", accuracy={"timeout": 0.5})[0]
    assert acc([r"<answer>9^{9^{9^{9}}}</answer>"], solution=["7"]) == [0.0]


def test_trl_accuracy_reward_differs_on_plain_strings_and_bare_answers():
    """Why ours is not ``trl.rewards.accuracy_reward``: TRL's needs chat-list completions and does not
    read ``<answer>`` blocks or plain-number answers."""
    from trl.rewards import accuracy_reward

    with pytest.raises(TypeError):
        accuracy_reward([r"\boxed{18}"], ["18"])  # plain-string completions crash
    chat = [[{"role": "assistant", "content": "<think>\n6*3\n</think>\n<answer>\n18\n</answer>"}]]
    assert accuracy_reward(chat, ["18"]) == [0.0]  # an answer in tags, without LaTeX, is not found
    assert get_reward_funcs("accuracy")[0](chat, solution=["18"]) == [1.0]


def test_format_differs_from_trl_think_format_reward():
    """TRL's ``think_format_reward`` checks only the think block: it accepts a completion with no
    ``<answer>`` block and trailing text, which the R1 format reward must reject."""
    from trl.rewards import think_format_reward

    text = "<think>\nreasoning\n</think>\nno answer block, then chatter"
    assert think_format_reward([[{"content": text}]]) == [1.0]
    assert get_reward_funcs("format")[0]([text]) == [0.0]


def test_accuracy_logs_extracted_answers_through_trl_log_extra():
    logged = {}
    acc = get_reward_funcs("accuracy")[0]
    acc([GOOD, "no answer"], solution=["18", "18"], log_extra=lambda k, v: logged.__setitem__(k, v))
    assert logged == {"accuracy/answer": ["18", None]}
