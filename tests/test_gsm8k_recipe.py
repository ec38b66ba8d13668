"""recipes/gsm8k.yaml stays runnable: the same recipe on `tiny` with a few steps, on a GSM8K-format file
(question / answer with <<calc>> annotations and "#### n"), with a validation slice carved by rows=."""

import json

import pytest

from r1lab.cli import main
from r1lab.data import load_eval_dataset, load_sft_dataset
from r1lab.errors import UserError
from r1lab.io import write_jsonl


def gsm8k_file(path, n=24):
    rows = []
    for i in range(n):
        a, b = i + 2, 3 * i + 1
        rows.append(
            {
                "question": f"Tom has {a} apples and buys {b} more. How many apples does he have?",
                "answer": f"Tom has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}",
            }
        )
    write_jsonl(path, rows)
    return path


def test_row_slices_carve_a_validation_split_that_training_never_sees(tmp_path):
    data = gsm8k_file(tmp_path / "train.jsonl")
    train = load_sft_dataset(f"{data}:rows=:-6", system_prompt=None)
    val = load_eval_dataset(f"{data}:rows=-6:", system_prompt=None)
    assert len(train) == 18 and len(val) == 6
    assert not {m[0]["content"] for m in train["messages"]} & set(val["problem"])
    trace = train[0]["messages"][-1]["content"]
    assert trace.startswith("<think>") and "<<" not in trace and trace.rstrip().endswith("</answer>")
    assert val[0]["solution"] == "75"  # row 18: 20 + 55
    with pytest.raises(UserError, match="bad row slice"):
        load_eval_dataset(f"{data}:rows=last500")


@pytest.mark.slow
def test_gsm8k_recipe_runs_on_tiny(tmp_path, r1lab_cache):
    data = gsm8k_file(tmp_path / "train.jsonl")
    rc = main(
        [
            "run", "--config", "recipes/gsm8k.yaml", "--model", "tiny", "--name", "g", "--output-dir", str(tmp_path),
            "--data", f"{data}:rows=:-6", "--eval_data", f"{data}:rows=-6:", "--eval_n", "4",
            "--eval_max_new_tokens", "8",
            "--sft.max_steps", "2", "--sft.n", "8", "--sft.per_device_train_batch_size", "4",
        ]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["sft"]
    for stage in summary["stages"]:
        assert stage["status"] == "done" and stage["vs_base"]["accuracy"]["n"] == 4
    assert summary["base_metrics"]["n_items"] == 4


def test_the_gsm8k_grpo_recipe_is_valid_with_a_pass_rate_file(tmp_path, capsys):
    """recipes/gsm8k-grpo.yaml (GRPO after the SFT model, measured in docs/gsm8k.md) validates once its
    pass-rate file exists, and is refused (exit 2) while it does not."""
    import json

    data = gsm8k_file(tmp_path / "train.jsonl")
    problems = [json.loads(line)["question"] for line in data.read_text().splitlines()]
    rates = tmp_path / "pass_rates.jsonl"
    rates.write_text(
        "".join(
            json.dumps({"problem": q, "pass_rate": 0.25 if i % 2 else 0.0}) + "\n"
            for i, q in enumerate(problems)
        )
    )
    argv = ["run", "--config", "recipes/gsm8k-grpo.yaml", "--model", "tiny", "--data", str(data)]
    argv += ["--grpo.pass_rate_file", str(rates), "--eval_n", "4", "--dry-run"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pass_rate_band" in out and "dynamic_sampling: true" in out
    argv[argv.index(str(rates))] = str(tmp_path / "missing.jsonl")
    assert main(argv) == 2
    assert "pass_rate_file not found" in capsys.readouterr().err
