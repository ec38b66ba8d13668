"""Small datasets built from the built-in task, for the training tests."""

import datasets

from r1lab.data.formatting import grpo_row, sft_row
from r1lab.data.synthetic import make_problems


def grpo_rows(n: int, *, level: int = 1, split: str = "train") -> datasets.Dataset:
    probs = make_problems(n, level=level, seed=0, split=split)
    return datasets.Dataset.from_list([grpo_row(p["problem"], p["answer"], None) for p in probs])


def sft_rows(n: int, *, level: int = 1) -> datasets.Dataset:
    from r1lab.train.sft import to_prompt_completion

    probs = make_problems(n, level=level, seed=0, split="train")
    ds = datasets.Dataset.from_list([sft_row(p["problem"], p["solution"], None) for p in probs])
    return ds.map(to_prompt_completion, remove_columns=["messages"])


def tiny_grpo_args(output_dir, **overrides):
    """A ``GRPOConfig`` for a one-step GRPO test on the CPU: 8 rows of 4 completions x 10 tokens, fp32, no
    saving, no trackers, seeded; ``overrides`` replace any field."""
    from trl import GRPOConfig

    fields = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=10,
        max_steps=1,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        remove_unused_columns=False,
        save_strategy="no",
        seed=0,
    )
    return GRPOConfig(**{**fields, **overrides})


def independent_processors(s):
    """transformers' own logits processors for a :class:`r1lab.decoding.Sampling`, built here from its
    settings (not through ``Sampling.processors()``), so tests compare the decoder with an independent
    warped distribution: what ``generate(do_sample=True, ...)`` draws from."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = LogitsProcessorList()
    if s.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
    procs.append(TemperatureLogitsWarper(s.temperature))
    if s.top_k:
        procs.append(TopKLogitsWarper(s.top_k))
    if s.top_p < 1.0:
        procs.append(TopPLogitsWarper(s.top_p))
    if s.min_p:
        procs.append(MinPLogitsWarper(s.min_p))
    return procs
