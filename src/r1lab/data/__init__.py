"""Data for r1lab: the built-in offline task, hub datasets, local files, formatting, validation.

Every stage takes its data through the three loaders here::

    from r1lab.data import load_grpo_dataset, load_sft_dataset, load_eval_dataset
    train = load_grpo_dataset("builtin:level=1", n=1000)        # prompt, solution, problem
    sft = load_sft_dataset("data/traces.jsonl")                  # messages (system, user, assistant)
    test = load_eval_dataset("openai/gsm8k", n=200)              # prompt, solution, problem, subject, level

Modules: ``synthetic`` (built-in task), ``sources`` (hub names), ``files`` (local files),
``layouts`` (column detection), ``answers`` (GSM8K steps, reference checks; reading a reference is :mod:`r1lab.answers`), ``formatting`` (row shapes),
``validate`` (row checks, contamination), ``normalize`` (what "same problem" means), ``load``.
"""

from r1lab.answers import last_boxed, reference_answer, reference_from_solution
from r1lab.data.formatting import template_prefills_think, to_r1_trace
from r1lab.data.layouts import Layout, Record, detect_layout
from r1lab.data.load import (
    BUILTIN_DEFAULT_N,
    DataInfo,
    check_source,
    load_eval_dataset,
    load_grpo_dataset,
    load_records,
    load_sft_dataset,
    parse_source,
)
from r1lab.data.normalize import normalize_text
from r1lab.data.sources import SOURCES
from r1lab.data.synthetic import make_problems
from r1lab.data.validate import contamination, warn_contamination

__all__ = [
    "BUILTIN_DEFAULT_N",
    "SOURCES",
    "DataInfo",
    "Layout",
    "Record",
    "check_source",
    "contamination",
    "detect_layout",
    "last_boxed",
    "load_eval_dataset",
    "load_grpo_dataset",
    "load_records",
    "load_sft_dataset",
    "make_problems",
    "normalize_text",
    "parse_source",
    "reference_answer",
    "reference_from_solution",
    "template_prefills_think",
    "to_r1_trace",
    "warn_contamination",
]
