"""Rule-based rewards for GRPO and the one definition of a correct answer.

Public API::

    get_reward_funcs(names, **params) -> list[callable]   # TRL signature fn(completions, **columns)
    REWARDS                                                 # name -> factory
    completion_text(completion) -> str
    extract_answer(text, fallbacks=("boxed", "answer_is", "last_number")) -> str | None
    verify_answers(answers, references, *, timeout=2.0) -> list[bool | None]
    judge(completions, references, *, fallbacks=...) -> list[Verdict]

Importing this package is light (no torch); math-verify loads in worker processes on first use.
"""

from r1lab.answers import reference_answer  # the reward's reference is the data loader's
from r1lab.rewards.extract import DEFAULT_FALLBACKS, completion_text, extract, extract_answer
from r1lab.rewards.functions import (
    AccuracyReward,
    CosineReward,
    FormatReward,
    LengthReward,
    ReasoningStepsReward,
    RepetitionPenaltyReward,
    Reward,
    SoftOverlongReward,
    TagCountReward,
    Verdict,
    judge,
)
from r1lab.rewards.registry import REWARDS, WholeReply, get_reward_funcs, parse_names
from r1lab.rewards.verify import DEFAULT_TIMEOUT, VerifierPool, shutdown_pool, verify_answers

__all__ = [
    "WholeReply",
    "DEFAULT_FALLBACKS",
    "DEFAULT_TIMEOUT",
    "REWARDS",
    "AccuracyReward",
    "CosineReward",
    "FormatReward",
    "LengthReward",
    "ReasoningStepsReward",
    "RepetitionPenaltyReward",
    "Reward",
    "SoftOverlongReward",
    "TagCountReward",
    "Verdict",
    "VerifierPool",
    "completion_text",
    "extract",
    "extract_answer",
    "get_reward_funcs",
    "judge",
    "parse_names",
    "reference_answer",
    "shutdown_pool",
    "verify_answers",
]
