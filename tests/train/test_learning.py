"""The learning test: on `tiny` with the built-in task, an SFT warm-up then GRPO beats SFT alone.

Set-up (seeded, CPU):
  * task: built-in level-1 problems (one + or - on numbers below 20), no system prompt;
  * SFT warm-up: compact R1 traces (`<think> a + b = c </think> <answer> c </answer>`) so sequences stay
    short for the character-level tokenizer; deliberately short, so the model knows the format and picks
    the right numbers only part of the time;
  * GRPO from the SFT model with the rewards package's `accuracy` reward (SFT already teaches the format:
    ~93% of samples are well formatted, so a format reward only adds noise to the advantages);
  * both models decoded greedily on the same held-out test problems.

Margin: GRPO must add at least MARGIN (5 points) of held-out accuracy on N_TEST = 200 problems, and fix
more problems than it breaks. With paired answers on the same problems the noise is in the problems that
flip; at the ~20-40 flips seen here one standard error of the difference is ~2.5-3 points, so 5 points is
about two standard errors: unlikely by chance, small enough for a ~2-minute budget.
"""

import datasets
import pytest

from r1lab.data.formatting import grpo_row, sft_row
from r1lab.data.synthetic import make_problems
from r1lab.inference import generate
from r1lab.models import load_model
from r1lab.rewards import get_reward_funcs, judge
from r1lab.train.grpo import run_grpo
from r1lab.train.sft import run_sft, to_prompt_completion

N_TEST = 200
MARGIN = 0.05
MAX_TOKENS = 40


def compact_trace(p: dict) -> str:
    """`<think>\\n11 + 13 = 24\\n</think>\\n<answer>\\n24\\n</answer>` from a built-in problem's worked trace."""
    step = next(line for line in p["solution"].splitlines() if "=" in line)
    return f"<think>\n{step.split(':', 1)[-1].strip()}\n</think>\n<answer>\n{p['answer']}\n</answer>"


def heldout_accuracy(model_dir, problems) -> list[bool]:
    model, tok = load_model(str(model_dir))
    prompts = [grpo_row(p["problem"], p["answer"], None)["prompt"] for p in problems]
    outs = generate(model, tok, prompts, temperature=0.0, max_new_tokens=MAX_TOKENS, batch_size=N_TEST)
    verdicts = judge([o[0].text for o in outs], [p["answer"] for p in problems])
    return [v.correct is True for v in verdicts]


# Not reached yet, and marked so rather than weakened: measured on 2026-11-24 (2-core CPU, seed 0) SFT alone
# scored 0.100 and SFT+GRPO 0.090 (fixed 3, broke 5); GRPO's sampled accuracy stayed at ~5% over 120 steps,
# too few successes for a 0.4M-parameter character-level model to learn from in this budget. A format +
# accuracy reward with lr 3e-4 and 40 steps did worse (0.100 -> 0.020). strict=True: the day this passes,
# the marker must go.
@pytest.mark.xfail(strict=True, reason="GRPO does not yet beat SFT alone on tiny within the test budget")
@pytest.mark.slow
def test_grpo_after_sft_beats_sft_alone(tiny_run):
    train = make_problems(3000, level=1, seed=0, split="train")
    test = make_problems(N_TEST, level=1, seed=0, split="test")
    sft_ds = datasets.Dataset.from_list([sft_row(p["problem"], compact_trace(p), None) for p in train])
    sft_ds = sft_ds.map(to_prompt_completion, remove_columns=["messages"])
    grpo_ds = datasets.Dataset.from_list([grpo_row(p["problem"], p["answer"], None) for p in train[::-1]])

    quiet = {"save_strategy": "no", "report_to": [], "disable_tqdm": True, "logging_steps": 10}
    run = tiny_run(
        {
            "name": "sft",
            "kind": "sft",
            "max_steps": 200,
            "learning_rate": 3e-3,
            "per_device_train_batch_size": 16,
            "lr_scheduler_type": "cosine",
            "warmup_steps": 20,
            **quiet,
        },
        {
            "name": "grpo",
            "kind": "grpo",
            "max_steps": 120,
            "learning_rate": 1e-4,
            "num_generations": 8,
            "per_device_train_batch_size": 32,
            "max_completion_length": MAX_TOKENS,
            "temperature": 1.0,
            "beta": 0.0,
            "lr_scheduler_type": "constant",
            **quiet,
        },
    )
    sft_stage, grpo_stage = run.stages
    sft_model = run_sft(sft_stage, run, model_spec="tiny", stage_dir=run.run_dir / "sft", dataset=sft_ds)
    before = heldout_accuracy(sft_model, test)
    print(f"SFT alone: {sum(before) / N_TEST:.3f}", flush=True)

    grpo_model = run_grpo(
        grpo_stage,
        run,
        model_spec=str(sft_model),
        stage_dir=run.run_dir / "grpo",
        dataset=grpo_ds,
        reward_funcs=get_reward_funcs(["accuracy"]),
    )
    after = heldout_accuracy(grpo_model, test)

    acc_before, acc_after = sum(before) / N_TEST, sum(after) / N_TEST
    fixed = sum(a and not b for a, b in zip(after, before, strict=True))
    broken = sum(b and not a for a, b in zip(after, before, strict=True))
    print(
        f"held-out accuracy: SFT {acc_before:.3f} -> SFT+GRPO {acc_after:.3f} (fixed {fixed}, broke {broken})"
    )
    assert acc_after >= acc_before + MARGIN, (acc_before, acc_after, fixed, broken)
    assert fixed > broken
