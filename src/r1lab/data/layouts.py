"""Which columns hold the question, the reference answer and the worked solution.

A :class:`Layout` is detected from a row's columns (or set explicitly with ``columns=`` /
``--question-col`` …) and turns each raw row into a :class:`Record`. Detected shapes:

==============================  ==========================================================
layout                          columns (first match wins; aliases in the ``*_COLS`` lists)
==============================  ==========================================================
``question/answer (####)``      ``question`` + ``answer`` ending in ``#### n`` (GSM8K)
``problem/solution (boxed)``    ``problem`` + ``solution`` with ``\\boxed{}`` (MATH, NuminaMath)
``problem/answer``              ``problem`` + ``answer`` (MATH-500, OpenR1-Math, the built-in task)
``messages``                    ``messages``: ``[{"role", "content"}, …]`` (H4 Bespoke-Stratos)
``conversations``               ShareGPT ``conversations``: ``[{"from", "value"}, …]`` + ``system``
==============================  ==========================================================

For SFT a conversation column is preferred (it holds the curated trace); for GRPO and evaluation
the question and answer columns are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from r1lab.answers import reference_answer, reference_from_solution
from r1lab.data.answers import gsm8k_steps
from r1lab.errors import UserError

QUESTION_COLS = ("problem", "question", "query", "instruction", "input", "prompt")
ANSWER_COLS = ("answer", "final_answer", "expected_answer", "ground_truth", "gold", "target", "label")
SOLUTION_COLS = ("solution", "response", "completion", "output", "reasoning", "generation")
MESSAGES_COLS = ("messages", "conversations", "conversation", "chat", "prompt")
SYSTEM_COLS = ("system", "system_prompt")
SUBJECT_COLS = ("subject", "type", "category", "problem_type")
LEVEL_COLS = ("level", "difficulty")
KINDS = ("grpo", "sft", "eval")

_USER_ROLES = {"user", "human"}
_ASSISTANT_ROLES = {"assistant", "gpt", "model", "bot"}


@dataclass(frozen=True)
class Layout:
    """Where a source keeps each field; ``None`` = not available."""

    name: str
    question: str | None = None
    answer: str | None = None
    solution: str | None = None
    messages: str | None = None
    system: str | None = None
    subject: str | None = None
    level: str | None = None


@dataclass
class Record:
    """One source row, source-agnostic. ``problem``/``answer``/``trace`` are ``None`` when absent;
    ``error`` names what was wrong with the row's fields (validation turns it into a bad-row reason)."""

    problem: str | None = None
    answer: str | None = None
    trace: str | None = None
    system: str | None = None
    subject: str | None = None
    level: str | None = None
    error: str | None = None


def _first(candidates: tuple[str, ...], row: dict, want: type | tuple[type, ...]) -> str | None:
    for name in candidates:
        if name in row and isinstance(row[name], want):
            return name
    return None


def detect_layout(row: dict, *, kind: str = "grpo", columns: dict[str, str] | None = None) -> Layout:
    """The layout of ``row`` (a sample row of the source) for ``kind`` (grpo, sft or eval).

    ``columns`` overrides detection: keys ``question``, ``answer``, ``solution``, ``messages``,
    ``system``, ``subject``, ``level``; values are column names that must exist in ``row``.

    >>> detect_layout({"question": "q", "answer": "x\\n#### 3"}).name
    'question/answer (####)'
    >>> detect_layout({"problem": "p", "solution": "so \\\\boxed{3}"}).name
    'problem/solution (boxed)'
    """
    columns = {k: v for k, v in (columns or {}).items() if v}
    unknown = set(columns) - {"question", "answer", "solution", "messages", "system", "subject", "level"}
    if unknown:
        raise UserError(f"unknown column override(s): {', '.join(sorted(unknown))}")
    for field, col in columns.items():
        if col not in row:
            raise UserError(
                f"column {col!r} (given for {field}) is not in the data; columns are: {_cols(row)}",
                hint=f"pass --{field}-col with one of those",
            )
    pick = {
        "question": columns.get("question") or _first(QUESTION_COLS, row, str),
        "answer": columns.get("answer") or _first(ANSWER_COLS, row, (str, int, float)),
        "solution": columns.get("solution") or _first(SOLUTION_COLS, row, str),
        "messages": columns.get("messages") or _first(MESSAGES_COLS, row, list),
        "system": columns.get("system") or _first(SYSTEM_COLS, row, str),
        "subject": columns.get("subject") or _first(SUBJECT_COLS, row, str),
        "level": columns.get("level") or _first(LEVEL_COLS, row, (str, int)),
    }
    use_messages = pick["messages"] and (
        "messages" in columns or (kind == "sft" and "question" not in columns) or not pick["question"]
    )
    if use_messages:
        style = "conversations" if _is_sharegpt(row[pick["messages"]]) else "messages"
        return Layout(style, messages=pick["messages"], system=pick["system"], answer=pick["answer"],
                      solution=pick["solution"], subject=pick["subject"], level=pick["level"])  # fmt: skip
    misfit = next((c for c in QUESTION_COLS if c in row), None)
    if not pick["question"] and misfit and not (columns or pick["messages"]):
        value = row[misfit]
        raise UserError(
            f"column {misfit!r} holds {'null' if value is None else type(value).__name__} "
            f"({str(value)[:40]!r}), not the question's text",
            hint="each row's question must be a string; fix or delete that row",
        )
    if not pick["question"]:
        raise UserError(
            f"no question column found; columns are: {_cols(row)}",
            hint="name it with --question-col (and --answer-col), or a recipe stage's columns: {question: ...}; "
            "or use one of: " + ", ".join(QUESTION_COLS),
        )
    if not pick["answer"] and not pick["solution"]:
        raise UserError(
            f"no answer or solution column found; columns are: {_cols(row)}",
            hint="name it with --answer-col, or use one of: " + ", ".join(ANSWER_COLS + SOLUTION_COLS),
        )
    answer_text = str(row[pick["answer"]]) if pick["answer"] else ""
    if pick["answer"] and "####" in answer_text and not pick["solution"]:
        name = "question/answer (####)"
    elif pick["answer"]:
        name = f"{pick['question']}/{pick['answer']}"
    else:
        name = f"{pick['question']}/{pick['solution']} (boxed)"
    layout = Layout(name, **{k: v for k, v in pick.items() if k != "messages"})
    return layout if not columns else replace(layout, name=layout.name + " (custom columns)")


def _cols(row: dict) -> str:
    return ", ".join(map(str, row)) or "(none)"


def _is_sharegpt(messages: list) -> bool:
    return bool(messages) and isinstance(messages[0], dict) and "from" in messages[0]


def _text(row: dict, col: str | None) -> tuple[str | None, str | None]:
    """(value, error) of a text field; numbers become text (JSON answers like ``72``)."""
    if col is None:
        return None, None
    if col not in row or row[col] is None:
        return None, f"missing field {col!r}"
    value = row[col]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"field {col!r} is not text (got {type(value).__name__})"
    return str(value), None


def _turns(value: Any, col: str) -> tuple[list[tuple[str, str]], str | None]:
    """``[(role, text)]`` from role/content or ShareGPT from/value dicts."""
    if not isinstance(value, list):
        return [], f"field {col!r} is not a list of messages"
    turns = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            return [], f"{col}[{i}] is not a message object"
        role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        if not isinstance(role, str) or not isinstance(content, str):
            return [], f"{col}[{i}] needs text 'role' and 'content' (or 'from' and 'value')"
        role = role.lower()
        role = "user" if role in _USER_ROLES else "assistant" if role in _ASSISTANT_ROLES else role
        turns.append((role, content))
    return turns, None


def extract(row: dict, layout: Layout) -> Record:
    """Turn a raw row into a :class:`Record` according to ``layout``.

    >>> r = extract({"question": "2+2?", "answer": "2+2=<<2+2=4>>4\\n#### 4"},
    ...             Layout("q", question="question", answer="answer"))
    >>> r.problem, r.answer, r.trace
    ('2+2?', '4', '<think>\\n2+2=4\\n</think>\\n<answer>\\n4\\n</answer>')
    """
    from r1lab.data.formatting import to_r1_trace

    rec = Record()
    system, err = _text(row, layout.system)
    rec.system = system
    subject, _ = _text(row, layout.subject)
    level, _ = _text(row, layout.level)
    rec.subject, rec.level = subject, level
    if layout.messages:
        turns, err = _turns(row.get(layout.messages), layout.messages)
        if err:
            rec.error = err
            return rec
        users = [t for r, t in turns if r == "user"]
        assistants = [t for r, t in turns if r == "assistant"]
        systems = [t for r, t in turns if r == "system"]
        rec.problem = users[0] if users else None
        rec.system = rec.system or (systems[0] if systems else None)
        if assistants:
            rec.trace = to_r1_trace(assistants[-1])
        # A reference column wins over the assistant turn (a saved GRPO file has prompt + solution).
        answer = _text(row, layout.answer)[0] or _text(row, layout.solution)[0]
        if answer is not None:
            rec.answer = reference_answer(answer)
        elif assistants:
            rec.answer = reference_from_solution(assistants[-1])
        if rec.problem is None:
            rec.error = f"no user turn in {layout.messages!r}"
        return rec
    rec.problem, err = _text(row, layout.question)
    if err:
        rec.error = err
        return rec
    answer, err = _text(row, layout.answer)
    if err:
        rec.error = err
        return rec
    solution, err = _text(row, layout.solution)
    if err:
        rec.error = err
        return rec
    if answer is not None:
        rec.answer = reference_answer(answer)
    elif solution is not None:
        rec.answer = reference_from_solution(solution)
    if solution is not None:
        rec.trace = to_r1_trace(solution, rec.answer)
    elif answer is not None and "####" in answer:
        rec.trace = to_r1_trace(gsm8k_steps(answer), rec.answer)
    return rec
