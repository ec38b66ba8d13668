"""The system prompt shared by data formatting, training, evaluation and inference.

One definition, so the model is asked the same way everywhere (the seed project, which r1lab grew from, used a different prompt
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


# A trained model remembers how it was asked: r1lab writes this file next to the weights of every model
# a stage saves, and `eval` / `ask` / `chat` default to it, so a model trained with its own prompt (or a
# reply_prefix) is measured and used the way it was trained.
MODEL_PROMPT_FILE = "r1lab_prompt.json"


def write_model_prompt(model_dir, system_prompt: str | None, reply_prefix: str | None) -> None:
    """Record the system prompt (resolved to its text) and ``reply_prefix`` a model was trained with."""
    import json
    from pathlib import Path

    record = {"system_prompt": resolve_system_prompt(system_prompt), "reply_prefix": reply_prefix or None}
    (Path(model_dir) / MODEL_PROMPT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def trained_prompt(model) -> dict | None:
    """What :func:`write_model_prompt` recorded for a local model directory, or ``None`` (a hub id, a GGUF,
    a model r1lab did not train, an unreadable record)."""
    import json
    from pathlib import Path

    path = Path(str(model)).expanduser() / MODEL_PROMPT_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return {
        k: record.get(k) if isinstance(record.get(k), str) else None
        for k in ("system_prompt", "reply_prefix")
    }


def prompt_for(
    model, system_prompt: str | None, reply_prefix: str | None
) -> tuple[str | None, str | None, str]:
    """The system prompt and reply prefix to ask ``model`` with, and where they came from.

    A flag the user gave wins; otherwise the model's own record (:data:`MODEL_PROMPT_FILE`); otherwise the
    R1 prompt and no prefix.

    >>> prompt_for("tiny", None, None)[0] == R1_SYSTEM_PROMPT, prompt_for("tiny", "none", "<think>")[:2]
    (True, (None, '<think>'))
    """
    record = trained_prompt(model) if system_prompt is None or reply_prefix is None else None
    source = "flags"
    if record is not None:
        source = f"the prompt {model} was trained with ({MODEL_PROMPT_FILE})"
    elif system_prompt is None:
        source = "the R1 prompt"
    if system_prompt is None:
        system = record["system_prompt"] if record is not None else R1_SYSTEM_PROMPT
    else:
        system = resolve_system_prompt(system_prompt)
    if reply_prefix is None:
        reply_prefix = record["reply_prefix"] if record is not None else None
    return system, reply_prefix or None, source
