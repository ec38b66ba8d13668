"""A training stage's verdict is judged against its own input model (paired, on the same held-out
problems), with the comparison to the base model as a second line (issue #23, item 9)."""

from __future__ import annotations

from r1lab.config import RunConfig, StageConfig
from r1lab.evaluate import ITEMS_FILE
from r1lab.io import write_jsonl
from r1lab.pipeline import describe_progress, input_label, stage_verdict

N = 40


def _evals(run: RunConfig, label: str, n_correct: int) -> dict:
    """Held-out items of one measurement: the first ``n_correct`` problems right, all formatted."""
    rows = [{"key": f"p{i}", "correct": [i < n_correct], "formatted": [True]} for i in range(N)]
    write_jsonl(run.run_dir / "evals" / label / ITEMS_FILE, rows)
    return {"accuracy": n_correct / N, "format_rate": 1.0, "n_items": N}


def _sft_then_grpo(tmp_path) -> RunConfig:
    stages = [StageConfig(name="sft", kind="sft"), StageConfig(name="grpo", kind="grpo")]
    return RunConfig(name="r", model="tiny", output_dir=str(tmp_path), stages=stages)


def test_a_grpo_stage_that_lost_to_its_sft_input_is_not_called_improved(tmp_path):
    run = _sft_then_grpo(tmp_path)
    _evals(run, "base", 0)
    sft = _evals(run, "sft", 30)
    grpo = _evals(run, "grpo", 15)  # 15 problems lost to SFT, none gained; still 15 above the base model
    achieved, vs_base, vs_input = stage_verdict(
        run, run.stages[1], str(run.run_dir / "sft" / "model"), sft, grpo
    )
    verdict, base_line = achieved.split("\n")
    assert verdict.startswith("learned nothing measurable: ")
    assert "vs its input model: accuracy 75.0% -> 37.5% (+0/-15" in verdict
    assert base_line.startswith("vs base: accuracy 0.0% -> 37.5% (+15/-0")
    assert (vs_input["accuracy"]["gained"], vs_input["accuracy"]["lost"]) == (0, 15)
    assert (vs_base["accuracy"]["gained"], vs_base["accuracy"]["lost"]) == (15, 0)
    # without a paired test against its input, the verdict falls back to the input's metrics, never vs base
    assert describe_progress(sft, grpo, [], vs_base=vs_base).startswith("learned nothing measurable")


def test_a_stage_that_beat_its_input_is_improved_even_if_the_base_was_better(tmp_path):
    run = _sft_then_grpo(tmp_path)
    _evals(run, "base", 30)
    sft = _evals(run, "sft", 5)
    grpo = _evals(run, "grpo", 20)  # gains 15 over its SFT input; still 10 below the base model
    achieved, _, _ = stage_verdict(run, run.stages[1], str(run.run_dir / "sft" / "model"), sft, grpo)
    verdict, base_line = achieved.split("\n")
    assert verdict.startswith("improved: ") and "(+15/-0" in verdict
    assert "(+0/-10" in base_line


def test_the_first_stage_is_tested_against_the_base_once(tmp_path):
    run = _sft_then_grpo(tmp_path)
    base = _evals(run, "base", 0)
    sft = _evals(run, "sft", 30)
    achieved, vs_base, vs_input = stage_verdict(run, run.stages[0], "tiny", base, sft)
    assert vs_input is vs_base and "\n" not in achieved and achieved.startswith("improved: ")
    assert "vs base (its input model): accuracy 0.0% -> 75.0% (+30/-0" in achieved


def test_input_labels(tmp_path):
    run = _sft_then_grpo(tmp_path)
    assert input_label(run, "tiny") == "base"
    assert input_label(run, str(run.run_dir / "sft" / "model")) == "sft"
    assert input_label(run, "/elsewhere/model") is None
