"""The system prompt shared by data formatting, training, evaluation and inference.

One definition, so the model is asked the same way everywhere (the seed used a different prompt
for its inference test than for training).
"""

# DeepSeek-R1-Zero's prompt, as open-r1 uses it.
R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with "
    "the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think>"
    "<answer> answer here </answer>"
)

SYSTEM_PROMPTS = {"r1": R1_SYSTEM_PROMPT}


def resolve_system_prompt(name_or_text: str | None) -> str | None:
    """A named prompt (``"r1"``), literal text, or ``None``/``"none"`` for no system message."""
    if name_or_text is None or name_or_text.lower() == "none":
        return None
    return SYSTEM_PROMPTS.get(name_or_text, name_or_text)
