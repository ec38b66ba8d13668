"""Layout detection, column overrides, and reference-answer extraction from every layout."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1lab.answers import after_hashes, last_boxed, reference_answer
from r1lab.data.answers import looks_parseable
from r1lab.data.formatting import template_prefills_think, to_r1_trace
from r1lab.data.layouts import detect_layout, extract
from r1lab.errors import UserError


@pytest.mark.parametrize(
    ("row", "kind", "name", "problem", "answer"),
    [
        ({"question": "Q?", "answer": "a <<1+1=2>>2\n#### 2"}, "grpo", "question/answer (####)", "Q?", "2"),
        ({"problem": "P?", "solution": "so $\\boxed{\\frac{1}{2}}$"}, "grpo", "problem/solution (boxed)", "P?",
         "\\frac{1}{2}"),
        ({"problem": "P?", "answer": "\\sqrt{2}", "subject": "Algebra", "level": 3}, "eval", "problem/answer", "P?",
         "\\sqrt{2}"),
        ({"problem": "P?", "solution": "long \\boxed{4}", "answer": "4"}, "grpo", "problem/answer", "P?", "4"),
        ({"messages": [{"role": "user", "content": "U?"}, {"role": "assistant", "content": "<think>t</think>"
          "<answer>5</answer>"}]}, "sft", "messages", "U?", "5"),
        ({"system": "S", "conversations": [{"from": "user", "value": "U?"}, {"from": "assistant", "value":
          "<|begin_of_thought|>t<|end_of_thought|><|begin_of_solution|>\\boxed{6}<|end_of_solution|>"}]},
         "sft", "conversations", "U?", "6"),
        ({"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U?"}], "solution": "7"},
         "grpo", "messages", "U?", "7"),
    ],
)  # fmt: skip
def test_detect_and_extract(row, kind, name, problem, answer):
    layout = detect_layout(row, kind=kind)
    assert layout.name == name
    rec = extract(row, layout)
    assert rec.error is None
    assert (rec.problem, rec.answer) == (problem, answer)


def test_sharegpt_trace_becomes_r1_tags_and_system_is_kept():
    row = {"system": "Be careful.", "conversations": [
        {"from": "human", "value": "U?"},
        {"from": "gpt", "value": "<|begin_of_thought|>\n\nthink\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n"
                                 "\\boxed{6}\n\n<|end_of_solution|>"},
    ]}  # fmt: skip
    rec = extract(row, detect_layout(row, kind="sft"))
    assert rec.system == "Be careful."
    assert (
        rec.trace.startswith("<think>")
        and "</think>" in rec.trace
        and rec.trace.rstrip().endswith("</answer>")
    )


def test_sft_prefers_messages_grpo_prefers_question_answer():
    row = {
        "problem": "P?",
        "answer": "3",
        "messages": [
            {"role": "user", "content": "P?"},
            {"role": "assistant", "content": "<think>x</think> 3"},
        ],
    }
    assert detect_layout(row, kind="sft").name == "messages"
    assert detect_layout(row, kind="grpo").name == "problem/answer"


def test_column_overrides():
    row = {"q": "What?", "gold": "#### 9", "other": "x"}
    layout = detect_layout(row, columns={"question": "q", "answer": "gold"})
    assert extract(row, layout).answer == "9"
    assert "custom columns" in layout.name
    with pytest.raises(
        UserError, match=r"column 'nope' \(given for question\) is not in the data.*--question-col"
    ):
        detect_layout(row, columns={"question": "nope"})
    with pytest.raises(UserError, match="unknown column override"):
        detect_layout(row, columns={"colour": "q"})


def test_missing_columns_are_user_errors_listing_columns():
    with pytest.raises(
        UserError, match=r"no question column found; columns are: text, label.*--question-col"
    ):
        detect_layout({"text": "x", "label": "1"})
    with pytest.raises(UserError, match=r"no answer or solution column.*--answer-col"):
        detect_layout({"question": "x", "notes": "1"})


def test_row_level_field_errors():
    layout = detect_layout({"question": "x", "answer": "1"})
    assert extract({"answer": "1"}, layout).error == "missing field 'question'"
    assert (
        extract({"question": ["x"], "answer": "1"}, layout).error == "field 'question' is not text (got list)"
    )
    assert extract({"question": "x", "answer": 12}, layout).answer == "12"
    msgs = detect_layout({"messages": [{"role": "user", "content": "u"}]}, kind="sft")
    assert (
        extract({"messages": [{"role": "assistant", "content": "a"}]}, msgs).error
        == "no user turn in 'messages'"
    )
    assert "needs text 'role'" in extract({"messages": [{"role": "user"}]}, msgs).error


def test_reference_extraction_shapes():
    assert after_hashes("x\n#### -3") == "-3"
    assert last_boxed("\\boxed{\\text{(A)}} then \\fbox{B}") == "B"
    assert last_boxed("\\boxed{a{b{c}}d}") == "a{b{c}}d"
    assert reference_answer("#### 1,000") == "1000"
    assert reference_answer("(1,2)") == "(1,2)"
    assert reference_answer("$x^2$") == "x^2"
    assert looks_parseable("x" * 301) == "reference answer longer than 300 characters"
    assert looks_parseable("...") == "reference answer has no digits, letters or LaTeX"


_brace_free = st.text(
    alphabet=st.characters(blacklist_characters="{}\\", blacklist_categories=("Cs",)), max_size=20
)


@st.composite
def nested(draw, depth=3):
    """Balanced-brace LaTeX-ish text."""
    if depth == 0 or draw(st.booleans()):
        return draw(_brace_free)
    return draw(_brace_free) + "{" + draw(nested(depth=depth - 1)) + "}" + draw(_brace_free)


@given(before=_brace_free, inner=nested(), after=_brace_free)
def test_last_boxed_recovers_nested_content(before, inner, after):
    assert last_boxed(f"{before}\\boxed{{{inner}}}{after}") == inner.strip()


def test_to_r1_trace_variants():
    assert to_r1_trace("<think>a</think><answer>1</answer>") == "<think>a</think><answer>1</answer>"
    r1_generation = "<think>\nLet me see. x=2.\n</think>\n\nThe answer is $\\boxed{2}$."
    assert to_r1_trace(r1_generation) == (
        "<think>\nLet me see. x=2.\n</think>\n<answer>\nThe answer is $\\boxed{2}$.\n</answer>"
    )
    assert to_r1_trace("Steps. So 4.", "4").endswith("<answer>\n4\n</answer>")


def _tokenizer(generation_suffix: str):
    """A real transformers tokenizer (word-level, built in code) with a ChatML-like template."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    )
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>" + generation_suffix + "{% endif %}"
    )
    return tok


def test_template_prefills_think_and_stripping_gives_one_think_tag():
    from r1lab.data import load_sft_dataset

    plain, prefilling = _tokenizer(""), _tokenizer("<think>\n")
    assert not template_prefills_think(plain)
    assert template_prefills_think(prefilling)
    strip = template_prefills_think(prefilling)
    msgs = load_sft_dataset("builtin", n=1, system_prompt=None, strip_think_prefix=strip)[0]["messages"]
    prompt = prefilling.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    text = prompt + msgs[-1]["content"]  # what the model is trained to continue
    assert text.count("<think>") == 1 and text.count("</think>") == 1


def test_math500_reference_answers_pass_through_unchanged():
    """The 500 real MATH-500 answers (the rewards' fixture) are all accepted and kept verbatim
    (only a thousands separator is dropped)."""
    import json
    from pathlib import Path

    fixture = Path(__file__).parents[1] / "rewards" / "fixtures" / "math500_answers.jsonl"
    if not fixture.is_file():
        pytest.skip("the rewards fixture is not in this checkout")
    answers = [json.loads(line)["answer"] for line in fixture.read_text().splitlines()]
    assert len(answers) == 500
    assert all(looks_parseable(reference_answer(a)) is None for a in answers)
    changed = {a: reference_answer(a) for a in answers if reference_answer(a) != a.strip()}
    assert changed == {"58,500": "58500"}
