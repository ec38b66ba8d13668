"""Rows in the shapes the trainers and the evaluator read.

* GRPO: ``{"prompt": [system, user], "solution": reference, "problem": question}``
* SFT:  ``{"messages": [system, user, assistant]}`` — the assistant turn keeps the ``<think>`` trace
* eval: the GRPO row plus ``subject`` / ``level`` when the source knows them

The system prompt comes from :func:`r1lab.prompts.resolve_system_prompt` (default ``"r1"``), the
same one training, evaluation and inference use; ``None``/``"none"`` leaves it out.

Chat templates that pre-fill ``<think>``
    Some templates (DeepSeek-R1-Distill, Qwen3 thinking mode) end the generation prompt with
    ``<think>\\n``, so the model's own text starts *inside* the think block. Training such a model
    on an assistant turn that starts with ``<think>`` again would teach it to write the tag twice.
    :func:`template_prefills_think` detects such a template; ``strip_think_prefix=True`` (in
    :func:`sft_row` / ``load_sft_dataset``) then drops the leading ``<think>`` from assistant turns.
"""

from __future__ import annotations

import re

from r1lab.answers import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    last_boxed,
    reference_from_solution,
)

_BESPOKE = (
    ("<|begin_of_thought|>", THINK_OPEN),
    ("<|end_of_thought|>", THINK_CLOSE),
    ("<|begin_of_solution|>", ANSWER_OPEN),
    ("<|end_of_solution|>", ANSWER_CLOSE),
)
_THINK_PREFIX = re.compile(r"^\s*" + re.escape(THINK_OPEN) + r"\s*")


def chat_prompt(problem: str, system_prompt: str | None, reply_prefix: str | None = None) -> list[dict]:
    r"""``[system?, user, assistant?]`` messages for a question. ``reply_prefix`` starts the assistant's turn
    (e.g. ``"<think>\n"``): chat templates render it as the start of the reply, and the model continues it.

    >>> chat_prompt("1+1?", "Be brief.")
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': '1+1?'}]
    >>> chat_prompt("1+1?", None, "<think>\n")[-1]
    {'role': 'assistant', 'content': '<think>\n'}
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": problem})
    if reply_prefix:
        messages.append({"role": "assistant", "content": reply_prefix})
    return messages


def reply_prefix_of(prompt) -> str:
    r"""The start of the reply a chat prompt already holds (its final assistant message), or ``""``.

    >>> reply_prefix_of([{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\n"}])
    '<think>\n'
    >>> reply_prefix_of("plain text prompt")
    ''
    """
    if (
        isinstance(prompt, list)
        and prompt
        and isinstance(prompt[-1], dict)
        and prompt[-1].get("role") == "assistant"
    ):
        return str(prompt[-1].get("content") or "")
    return ""


def question_of(prompt) -> str:
    """The question a prompt asks: its last user message (a plain-text prompt is returned as is).

    >>> question_of([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}])
    '2+2?'
    """
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return str(users[-1])
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in prompt)
    return "" if prompt is None else str(prompt)


def grpo_row(problem: str, solution: str, system_prompt: str | None, reply_prefix: str | None = None) -> dict:
    """One GRPO row: conversational ``prompt`` plus the reference answer as ``solution``.

    >>> grpo_row("What is 2+3?", "5", None)["prompt"]
    [{'role': 'user', 'content': 'What is 2+3?'}]
    """
    return {
        "prompt": chat_prompt(problem, system_prompt, reply_prefix),
        "solution": solution,
        "problem": problem,
    }


def eval_row(
    problem: str,
    solution: str,
    system_prompt: str | None,
    *,
    subject: str | None,
    level: str | None,
    reply_prefix: str | None = None,
) -> dict:
    """One evaluation row (a GRPO row plus ``subject`` and ``level``, ``""`` when unknown)."""
    row = grpo_row(problem, solution, system_prompt, reply_prefix)
    row["subject"] = subject or ""
    row["level"] = "" if level is None else str(level)
    return row


def sft_row(problem: str, trace: str, system_prompt: str | None, *, strip_think_prefix: bool = False) -> dict:
    """One SFT row: ``[system?, user, assistant]`` with the reasoning trace as the assistant turn.

    >>> sft_row("2+3?", "<think>\\n2+3=5\\n</think>\\n<answer>\\n5\\n</answer>", None,
    ...         strip_think_prefix=True)["messages"][-1]["content"]
    '2+3=5\\n</think>\\n<answer>\\n5\\n</answer>'
    """
    if strip_think_prefix:
        trace = _THINK_PREFIX.sub("", trace, count=1)
    messages = chat_prompt(problem, system_prompt)
    messages.append({"role": "assistant", "content": trace})
    return {"messages": messages}


def to_r1_trace(text: str, answer: str | None = None) -> str:
    """An assistant target in R1 form (``<think>…</think>`` then ``<answer>…</answer>``).

    * already has ``<think>`` and ``<answer>``: kept as is;
    * ``<think>…</think>`` then free text (DeepSeek-R1 generations, OpenR1-Math): the text after
      ``</think>`` goes into the ``<answer>`` block, so every target has the format the rewards check;
    * Bespoke-Stratos markers (``<|begin_of_thought|>`` …): mapped onto the R1 tags;
    * a plain worked solution: wrapped, with the answer (``answer``, else its last ``\\boxed{}``)
      in the ``<answer>`` block, using the built-in task's whitespace convention.

    >>> print(to_r1_trace("2 + 3 = 5, so \\\\boxed{5}."))
    <think>
    2 + 3 = 5, so \\boxed{5}.
    </think>
    <answer>
    5
    </answer>
    >>> to_r1_trace("<think>\\nx=2\\n</think>\\n\\nSo $\\\\boxed{2}$.")
    '<think>\\nx=2\\n</think>\\n<answer>\\nSo $\\\\boxed{2}$.\\n</answer>'
    """
    if THINK_OPEN in text:
        if ANSWER_OPEN in text or THINK_CLOSE not in text:
            return text
        thought, _, rest = text.partition(THINK_CLOSE)
        return f"{thought.rstrip()}\n{THINK_CLOSE}\n{ANSWER_OPEN}\n{rest.strip()}\n{ANSWER_CLOSE}"
    if "<|begin_of_thought|>" in text:
        for old, new in _BESPOKE:
            text = text.replace(old, new)
        return text
    final = answer or last_boxed(text) or reference_from_solution(text) or ""
    return "<think>\n" + text.strip() + "\n</think>\n<answer>\n" + final + "\n</answer>"


def template_prefills_think(tokenizer) -> bool:
    """Whether ``tokenizer``'s chat template ends the generation prompt with ``<think>``.

    Pass the result as ``strip_think_prefix`` to ``load_sft_dataset``.
    """
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "1+1?"}], tokenize=False, add_generation_prompt=True
    )
    return isinstance(text, str) and prompt_prefills_think(text)


def prompt_prefills_think(prompt_text: str) -> bool:
    """Whether a rendered prompt already opens ``<think>`` (some R1 chat templates do).

    >>> prompt_prefills_think("<|im_start|>assistant\\n<think>\\n")
    True
    """
    return prompt_text.rstrip().endswith(THINK_OPEN)
