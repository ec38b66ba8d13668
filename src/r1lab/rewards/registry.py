"""Reward names for recipes: ``get_reward_funcs(["accuracy", "format"], format={"newlines": True})``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from r1lab.errors import UserError
from r1lab.rewards.functions import (
    AccuracyReward,
    CosineReward,
    FormatReward,
    LengthReward,
    ReasoningStepsReward,
    RepetitionPenaltyReward,
    SoftOverlongReward,
    TagCountReward,
)

# name -> factory. Every factory takes keyword parameters only and returns a picklable callable whose
# ``__name__`` is the registry name.
REWARDS: dict[str, Callable[..., Any]] = {
    "accuracy": AccuracyReward,
    # Only the <answer> block counts: R1's rule-based accuracy reward, no fallbacks.
    "accuracy_strict": partial(AccuracyReward, fallbacks=(), name="accuracy_strict"),
    "format": FormatReward,
    "tag_count": TagCountReward,
    "reasoning_steps": ReasoningStepsReward,
    "cosine": CosineReward,
    "repetition_penalty": RepetitionPenaltyReward,
    "length": LengthReward,
    "soft_overlong": SoftOverlongReward,
}


def _factory_params(factory) -> set[str]:
    target = factory.func if isinstance(factory, partial) else factory
    sig = inspect.signature(target)
    fixed = set(factory.keywords) if isinstance(factory, partial) else set()
    return {p for p in sig.parameters if p not in ("self", "name") and p not in fixed}


def parse_names(names: list[str] | str) -> list[str]:
    """``"accuracy, format"`` or ``["accuracy", "format"]`` -> ``["accuracy", "format"]``."""
    if isinstance(names, str):
        names = names.split(",")
    return [n.strip() for n in names if n and n.strip()]


def get_reward_funcs(names: list[str] | str, **params: Mapping[str, Any]) -> list[Callable]:
    """Build reward callables by name, in order, for ``GRPOTrainer(reward_funcs=...)``.

    ``names``: a list or comma-separated string of names from :data:`REWARDS`: accuracy,
    accuracy_strict, format, tag_count, reasoning_steps, cosine, repetition_penalty, length,
    soft_overlong. ``params``: one keyword per reward name, whose value is a dict of that reward's
    constructor parameters. In a recipe this is a mapping under the reward's name, e.g.::

        rewards: [accuracy, format, cosine]
        reward_params:
          accuracy: {fallbacks: [boxed], timeout: 2.0}
          format: {newlines: true, think_prefilled: false}
          cosine: {max_len: 1000}

    Weights are not set here; they go to TRL's ``reward_weights`` in the recipe.

    >>> [f.__name__ for f in get_reward_funcs("accuracy,format", format={"newlines": True})]
    ['accuracy', 'format']
    >>> get_reward_funcs(["tag_count"])[0](["<think>\\nx\\n</think>\\n<answer>\\n1\\n</answer>"])
    [1.0]
    """
    chosen = parse_names(names)
    if not chosen:
        raise UserError("no reward functions given", hint=f"choose from: {', '.join(REWARDS)}")
    stray = [k for k in params if k not in chosen]
    if stray:
        raise UserError(
            f"reward parameters given for {stray} but those rewards are not selected ({chosen})",
            hint="add them to the reward list or remove their parameters",
        )
    funcs = []
    for name in chosen:
        if name not in REWARDS:
            raise UserError(f"unknown reward {name!r}", hint=f"choose from: {', '.join(REWARDS)}")
        kw = dict(params.get(name) or {})
        if not isinstance(params.get(name) or {}, Mapping):
            raise UserError(f"parameters of reward {name!r} must be a mapping, got {params.get(name)!r}")
        allowed = _factory_params(REWARDS[name])
        unknown = sorted(set(kw) - allowed)
        if unknown:
            raise UserError(
                f"unknown parameter(s) {unknown} for reward {name!r}",
                hint=f"{name} accepts: {', '.join(sorted(allowed)) or 'no parameters'}",
            )
        if "fallbacks" in kw:
            # YAML gives None for an empty value and a string for a single name.
            fb = kw["fallbacks"]
            kw["fallbacks"] = () if fb is None else ((fb,) if isinstance(fb, str) else tuple(fb))
        try:
            funcs.append(REWARDS[name](**kw))
        except (TypeError, ValueError) as exc:
            raise UserError(f"bad parameters for reward {name!r}: {exc}") from exc
    return funcs


class WholeReply:
    """A reward that scores the reply as the model gave it: when a prompt ends with the start of the
    assistant's turn (a ``reply_prefix`` such as ``"<think>\\n"``), TRL's completion is only what the model
    generated after it, so the prefix is put back in front before ``func`` sees the text.

    >>> fmt = WholeReply(get_reward_funcs("format")[0])
    >>> prompts = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\\n"}]]
    >>> fmt(prompts=prompts, completions=[[{"role": "assistant", "content": "x</think><answer>1</answer>"}]])
    [1.0]
    """

    def __init__(self, func: Callable):
        self.func = func
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, completions, prompts=None, **kwargs):
        from r1lab.data.formatting import reply_prefix_of

        prefixes = [reply_prefix_of(p) for p in prompts] if prompts else []
        if any(prefixes):
            completions = [_prepend(pre, c) for pre, c in zip(prefixes, completions, strict=True)]
        return self.func(completions=completions, prompts=prompts, **kwargs)

    def __getattr__(self, name):  # the wrapped reward's own attributes (log_extra, ...)
        if name == "func":
            raise AttributeError(name)
        return getattr(self.func, name)


def _prepend(prefix: str, completion):
    if not prefix:
        return completion
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return [
            {**completion[0], "content": prefix + str(completion[0].get("content") or "")},
            *completion[1:],
        ]
    return prefix + str(completion)
