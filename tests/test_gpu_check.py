"""`make gpu-check` rehearsed on the CPU: the script a lent GPU machine runs (benchmarks/gpu_check.py) goes
through every part with tiny models, so it does not first break on the GPU, where time is scarce."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the benchmarks package lives beside src/, not inside the installed r1lab

from benchmarks import gpu_check, gpu_wheels  # noqa: E402


@pytest.mark.slow
def test_rehearsal_runs_every_part_and_writes_the_report(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--rehearse", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert result["rehearsal"] is True and result["device"] == "cpu"
    parts = result["results"]
    expected = {"gpu tests", "matmul peak", "model tiny", "model tiny-wide", "grpo tiny seed", "eval tiny"}
    expected |= {"sft tiny", "grpo tiny large", "sft tiny-wide", "grpo tiny-wide large"}
    assert set(parts) == expected
    assert all(p["status"] == "ok" for p in parts.values()), {n: p.get("why") for n, p in parts.items()}
    # Without CUDA every GPU-marked test is collected and skipped with its reason; vLLM's is deselected.
    assert parts["gpu tests"]["counts"]["skipped"] >= 3 and "passed" not in parts["gpu tests"]["counts"]
    assert any("CUDA" in why for why in parts["gpu tests"]["skip_reasons"])
    for name in ("grpo tiny seed", "grpo tiny large", "grpo tiny-wide large"):
        for engine in ("trl", "r1lab"):
            assert parts[name][engine]["completion_tokens_per_second"] > 0
        assert parts[name]["r1lab"]["rollout_engine"] != "trl"
    assert parts["grpo tiny large"]["trl"]["completion_tokens_per_step"] > (
        parts["grpo tiny seed"]["trl"]["completion_tokens_per_step"] / 4
    )
    assert 0 < parts["sft tiny"]["fraction_of_peak"] < 1
    assert parts["eval tiny"]["generate"]["new_tokens"] > 0 and parts["eval tiny"]["r1lab"]["new_tokens"] > 0
    md = (tmp_path / "gpu.md").read_text()
    assert "CPU rehearsal" in md and "grpo tiny seed: completion tok/s" in md
    assert "grpo tiny seed: completion tok/s" in proc.stdout  # the summary table is printed too


def test_a_part_that_cannot_run_says_why():
    budget = gpu_check.Budget(0)
    assert budget.run("grpo big", 60, lambda: {}) is None
    assert budget.results["grpo big"]["status"] == "skipped"
    assert "time budget" in budget.results["grpo big"]["why"]

    def broken():
        raise RuntimeError("CUDA out of memory")

    budget = gpu_check.Budget(100)
    assert budget.run("sft big", 0, broken) is None
    assert budget.results["sft big"]["status"] == "failed"
    table = gpu_check.summary_table({"results": budget.results})
    assert "failed: RuntimeError: CUDA out of memory" in table


def test_the_gpu_install_is_offline_and_takes_each_carried_wheel(tmp_path):
    for name in ("trl-1.16.0-py3-none-any.whl", "datasets-5.2.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    cmd = gpu_check.install_command(tmp_path, Path("/tmp/site"))
    assert {"--no-index", "--no-deps", "--find-links", str(tmp_path), "--target", "/tmp/site"} <= set(cmd)
    assert [c for c in cmd if c.endswith(".whl")] == sorted(str(p) for p in tmp_path.glob("*.whl"))


def test_carried_wheels_are_pinned_and_leave_out_what_the_gpu_machine_has():
    versions = gpu_wheels.wanted()
    pins = gpu_wheels.pinned_versions()
    assert versions["trl"] == pins["trl"] and versions["transformers"] == pins["transformers"]
    # torch (CUDA build), accelerate and peft are on the machine; playwright and ruff are not needed there.
    assert not {"torch", "accelerate", "peft", "playwright", "ruff"} & set(versions)
