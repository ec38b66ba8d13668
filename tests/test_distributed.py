"""Scale-out: the helpers in r1lab.distributed, the accelerate configs in recipes/accelerate/, and real
multi-process runs of the r1lab CLI under ``accelerate launch``.

CPU tests (always run): helper behaviour, every config parsed and turned into launch environments by
accelerate itself, the multi-node wrapper, and a 2-process gloo run of a GRPO + SFT recipe on ``tiny``
compared file by file with the same recipe in one process, then resumed.

GPU tests (``@pytest.mark.gpu``): the same recipe under DeepSpeed ZeRO-2/3, FSDP and with vLLM generation;
skipped, with the reason, when CUDA (or DeepSpeed / vLLM) is missing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from r1lab import distributed as dist
from r1lab.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "accelerate"

# ---------------------------------------------------------------------------------------------- helpers


def test_single_process_defaults():
    assert dist.num_processes() == 1
    assert dist.process_index() == 0
    assert dist.is_main_process() and dist.is_local_main_process()
    assert not dist.is_distributed()
    dist.wait_for_everyone()  # a no-op, must not hang or start a process group
    with dist.main_process_first():
        ran = True
    assert ran
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    assert dist.gather_metrics({"loss": 1.5, "tag": "x"}) == {"loss": 1.5, "tag": "x"}
    dist.shutdown()


def test_combine_metrics_weighted_mean_is_the_global_mean():
    # 1 of 1 right on rank 0, 1 of 3 right on rank 1 -> 2 of 4 overall, not the mean of means (0.667).
    per_rank = [{"pass@1": 1.0, "n_items": 1, "model": "m"}, {"pass@1": 1 / 3, "n_items": 3, "model": "m"}]
    out = dist.combine_metrics(per_rank, weight_key="n_items")
    assert out == {"pass@1": pytest.approx(0.5), "n_items": 4, "model": "m"}
    assert dist.combine_metrics(per_rank)["pass@1"] == pytest.approx(2 / 3)


def test_combine_metrics_reductions_and_odd_values():
    per_rank = [
        {"kept": 2, "loss": 1.0, "note": None, "x": float("nan")},
        {"kept": 5, "loss": 3.0, "note": None, "x": 4.0, "only_here": 7},
    ]
    assert dist.combine_metrics(per_rank, reduce="sum") == {
        "kept": 7,
        "loss": 4.0,
        "note": None,
        "x": 4.0,
        "only_here": 7,
    }
    assert dist.combine_metrics(per_rank, reduce="max")["loss"] == 3.0
    assert dist.combine_metrics(per_rank, reduce="min")["kept"] == 2
    assert dist.combine_metrics([{"s": "a"}, {"s": "b"}]) == {"s": "a"}  # text: the lowest rank's
    with pytest.raises(ValueError):
        dist.combine_metrics(per_rank, reduce="median")


def test_launched_world_size_reads_the_launcher_env(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert dist.launched_world_size() == 4
    monkeypatch.setenv("WORLD_SIZE", "junk")
    assert dist.launched_world_size() == 1


HELPERS_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from r1lab import distributed as dist

out = Path(sys.argv[1])
rank, n = dist.process_index(), dist.num_processes()
order = out / "order.txt"
with dist.main_process_first():  # rank 0's block ends before rank 1's starts
    if rank == 0:
        time.sleep(0.5)
    with open(order, "a") as f:
        f.write(f"{rank}\\n")
share = dist.shard(list(range(7)))
metrics = dist.gather_metrics({"acc": sum(share) / len(share), "n": len(share), "rank": f"r{rank}"},
                              weight_key="n")
total = dist.gather_metrics({"items": len(share)}, reduce="sum")
everyone = dist.gather_objects(share)
dist.wait_for_everyone()
if dist.is_main_process():
    (out / "result.json").write_text(json.dumps({"n": n, "metrics": metrics, "total": total, "all": everyone}))
dist.shutdown()
"""


def test_helpers_across_two_real_processes(tmp_path):
    script = tmp_path / "helpers.py"
    script.write_text(HELPERS_SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=_env(tmp_path / "cache"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "order.txt").read_text().split() == ["0", "1"]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["n"] == 2
    assert result["all"] == [[0, 1, 2, 3], [4, 5, 6]]  # rank order, every item once
    # Weighted by each rank's count: the mean of 0..6 (3.0), not the mean of the ranks' means (3.25).
    assert result["metrics"] == {"acc": 3.0, "n": 7, "rank": "r0"}
    assert result["total"] == {"items": 7}


# ---------------------------------------------------------------------------------------------- vLLM


def test_vllm_off_is_never_checked():
    dist.check_vllm({"use_vllm": False, "vllm_mode": "nonsense"})


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"vllm_mode": "remote"}, "vllm_mode 'remote'"),
        ({"vllm_gpu_memory_utilization": 1.5}, "vllm_gpu_memory_utilization"),
        ({"vllm_gpu_memory_utilization": "lots"}, "vllm_gpu_memory_utilization"),
        ({"vllm_tensor_parallel_size": 0}, "vllm_tensor_parallel_size"),
        ({"vllm_server_port": 70000}, "vllm_server_port"),
    ],
)
def test_bad_vllm_settings_are_user_errors(settings, fragment):
    with pytest.raises(UserError, match=fragment) as err:
        dist.check_vllm({"use_vllm": True, **settings}, where="r.yaml: stage 'grpo'")
    assert "r.yaml: stage 'grpo'" in str(err.value) and err.value.hint


def test_missing_vllm_is_a_clear_user_error(monkeypatch):
    monkeypatch.setattr(dist, "vllm_available", lambda: False)
    with pytest.raises(UserError, match="vLLM is not installed") as err:
        dist.check_vllm({"use_vllm": True, "vllm_mode": "colocate"})
    assert "use_vllm: false" in err.value.hint


def test_vllm_without_cuda_is_a_clear_user_error(monkeypatch):
    monkeypatch.setattr(dist, "vllm_available", lambda: True)
    monkeypatch.setattr(dist, "cuda_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        dist.check_vllm({"use_vllm": True})


def test_server_mode_needs_a_running_server(monkeypatch):
    monkeypatch.setattr(dist, "vllm_available", lambda: True)
    monkeypatch.setattr(dist, "cuda_available", lambda: True)
    port = _free_port()  # nothing listens here
    with pytest.raises(UserError, match=f"no vLLM server answers at 127.0.0.1:{port}") as err:
        dist.check_vllm(
            {
                "use_vllm": True,
                "vllm_mode": "server",
                "vllm_server_host": "127.0.0.1",
                "vllm_server_port": port,
            }
        )
    assert "trl vllm-serve" in err.value.hint
    with socket.socket() as server:  # now something answers: the check passes
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        dist.check_vllm(
            {
                "use_vllm": True,
                "vllm_mode": "server",
                "vllm_server_base_url": f"http://127.0.0.1:{server.getsockname()[1]}",
            }
        )


@pytest.mark.skipif(dist.vllm_available() and dist.cuda_available(), reason="vLLM and a GPU are present here")
def test_cli_stops_before_loading_anything_when_vllm_is_asked_for_but_unusable(tmp_path, capsys, r1lab_cache):
    from r1lab.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    code = main(
        [
            "run",
            "--config",
            str(recipe),
            "--output-dir",
            str(tmp_path / "runs"),
            "--dry-run",
            "--grpo.use_vllm",
            "true",
        ]
    )
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("r1lab: error:") and "stage 'grpo'" in lines[0]
    assert ("vLLM is not installed" if not dist.vllm_available() else "no CUDA GPU") in lines[0]
    assert not (tmp_path / "runs").exists() and not list(r1lab_cache.rglob("*.safetensors"))


# ---------------------------------------------------------------------------------------------- configs

EXPECTED = {  # file -> (distributed_type, num_processes, num_machines)
    "ddp.yaml": ("MULTI_GPU", 8, 1),
    "zero2.yaml": ("DEEPSPEED", 8, 1),
    "zero3.yaml": ("DEEPSPEED", 8, 1),
    "fsdp.yaml": ("FSDP", 8, 1),
    "multi_node.yaml": ("DEEPSPEED", 16, 2),
    "cpu_2proc.yaml": ("MULTI_GPU", 2, 1),
}


def test_every_config_is_covered():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


def _launch_env(config: Path, *extra: str):
    """What `accelerate launch --config_file config ... -m r1lab run` would run with, without running it:
    accelerate's own parser and validation, then the environment its launcher would export."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch as L

    args = launch_command_parser().parse_args(["--config_file", str(config), *extra, "-m", "r1lab", "run"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = L.prepare_deepspeed_cmd_env(args)
    else:
        env = L.prepare_multi_gpu_env(args)
    return args, env


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    path = CONFIGS / name
    cfg = load_config_from_file(str(path))
    kind, procs, machines = EXPECTED[name]
    assert str(cfg.distributed_type).split(".")[-1] == kind
    assert (cfg.num_processes, cfg.num_machines) == (procs, machines)
    assert cfg.use_cpu is False
    assert yaml.safe_load(path.read_text())["compute_environment"] == "LOCAL_MACHINE"
    args, env = _launch_env(path)
    assert args.num_processes == procs
    if kind == "DEEPSPEED":
        stage = yaml.safe_load(path.read_text())["deepspeed_config"]["zero_stage"]
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
        assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    elif kind == "FSDP":
        assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
        assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"  # the final model is one HF checkpoint
        assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    else:
        assert args.multi_gpu and "ACCELERATE_USE_DEEPSPEED" not in env


def test_zero3_gathers_16bit_weights_for_the_final_model():
    cfg = yaml.safe_load((CONFIGS / "zero3.yaml").read_text())["deepspeed_config"]
    assert cfg["zero3_save_16bit_model"] is True and cfg["zero3_init_flag"] is True


def test_multi_node_flags_override_the_placeholders():
    args, env = _launch_env(
        CONFIGS / "multi_node.yaml",
        "--machine_rank",
        "1",
        "--main_process_ip",
        "10.1.2.3",
        "--main_process_port",
        "29555",
        "--num_processes",
        "32",
        "--num_machines",
        "4",
    )
    assert (args.machine_rank, args.main_process_ip, args.main_process_port) == (1, "10.1.2.3", 29555)
    assert (args.num_processes, args.num_machines) == (32, 4)


def _wrapper(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "NNODES", "NODE_RANK", "MASTER_", "GPUS_PER_NODE", "MACHINE_RANK"))
    }
    return subprocess.run(
        ["bash", str(CONFIGS / "launch_multi_node.sh"), "-m", "r1lab", "run", "--name", "x"],
        env={**base, "R1LAB_DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_multi_node_wrapper_reads_the_environment():
    out = _wrapper(
        {
            "MASTER_ADDR": "10.0.0.1",
            "NODE_RANK": "1",
            "NNODES": "2",
            "GPUS_PER_NODE": "4",
            "MASTER_PORT": "29600",
        }
    )
    assert out.returncode == 0, out.stderr
    cmd = out.stdout.split()
    flag = lambda name: cmd[cmd.index(name) + 1]  # noqa: E731
    assert cmd[:2] == ["accelerate", "launch"] and flag("--config_file").endswith("multi_node.yaml")
    assert (flag("--num_machines"), flag("--num_processes"), flag("--machine_rank")) == ("2", "8", "1")
    assert (flag("--main_process_ip"), flag("--main_process_port")) == ("10.0.0.1", "29600")
    assert cmd[-5:] == ["-m", "r1lab", "run", "--name", "x"]
    slurm = _wrapper({"MASTER_ADDR": "h0", "SLURM_NNODES": "3", "SLURM_NODEID": "2", "GPUS_PER_NODE": "2"})
    assert slurm.returncode == 0 and "--num_processes 6 --machine_rank 2" in slurm.stdout


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"NODE_RANK": "0"}, "MASTER_ADDR is not set"),
        (
            {"MASTER_ADDR": "h", "NODE_RANK": "2", "NNODES": "2", "GPUS_PER_NODE": "1"},
            "NODE_RANK=2 but NNODES=2",
        ),
        ({"MASTER_ADDR": "h", "NNODES": "two", "GPUS_PER_NODE": "1"}, "NNODES must be a whole number"),
    ],
)
def test_multi_node_wrapper_rejects_bad_environment(env, fragment):
    out = _wrapper(env)
    assert out.returncode == 2 and fragment in out.stderr


# ---------------------------------------------------------------------------------------------- real runs

RECIPE = {
    "name": "mp",
    "model": "tiny",
    "data": "builtin",
    "eval_n": 4,  # held-out problems measured before and after each training stage
    "eval_max_new_tokens": 8,
    "eval_batch_size": 4,
    "report": False,
    "stages": [
        {
            "name": "grpo",
            "kind": "grpo",
            "n": 16,
            "rewards": ["accuracy", "format"],
            "max_steps": 2,
            "num_generations": 4,
            "per_device_train_batch_size": 4,
            "max_completion_length": 16,
            "save_steps": 1,
            "keep_checkpoints": True,  # the resume test below removes one
        },
        {
            "name": "sft",
            "kind": "sft",
            "n": 16,
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "save_steps": 1,
            "keep_checkpoints": True,
        },
        # Sampling stages after training: rs splits its prompts over the ranks, eval runs on rank 0.
        {"name": "rs", "kind": "rs", "n": 6, "num_samples": 2, "max_new_tokens": 8, "batch_size": 4},
        {"name": "eval", "kind": "eval", "n": 4, "max_new_tokens": 8, "batch_size": 4},
    ],
}
CPU_ONLY_STAGES = ("rs", "eval")  # the GPU tests train only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")
    }
    # One thread per process: two processes share this machine's cores.
    # COLUMNS: rich wraps log lines at the terminal width; keep paths in one piece for the assertions.
    env.update(
        HF_HUB_OFFLINE="1",
        R1LAB_CACHE=str(cache),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        COLUMNS="400",
    )
    return env


def _r1lab(recipe: Path, out: Path, env: dict, *, config: str | None = None, nproc: int = 2, timeout=400):
    """Run `r1lab run` (under `accelerate launch` when ``config`` is given); assert it succeeded."""
    return _finish(_start(recipe, out, env, config=config, nproc=nproc), timeout)


def _start(recipe: Path, out: Path, env: dict, *, config: str | None = None, nproc: int = 2):
    cmd = [sys.executable, "-m", "r1lab", "run", "--config", str(recipe), "--output-dir", str(out)]
    if config is not None:
        cmd[1:3] = [
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(CONFIGS / config),
            "--num_processes",
            str(nproc),
            "--main_process_port",
            str(_free_port()),
            "-m",
            "r1lab",
        ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def _finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, (
        f"{' '.join(proc.args)}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-6000:]}"
    )
    return done


def _layout(run_dir: Path) -> list[str]:
    """Every file of a run, with names that differ between runs (pids, timestamps) normalized."""
    out = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.is_dir() or "checkpoints" in rel.parts:
            continue
        out.append(str(rel.parent / "events.out.tfevents") if p.name.startswith("events.out") else str(rel))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same GRPO + SFT recipe run once in one process and once in two (gloo), sharing one model cache."""
    root = tmp_path_factory.mktemp("scale")
    recipe = root / "mp.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    env = _env(root / "cache2")  # a fresh cache: both ranks ask for `tiny` before it exists
    # Both at once: they share nothing but the CPU, and the test takes half as long.
    single = _start(recipe, root / "single", _env(root / "cache1"))
    multi = _finish(_start(recipe, root / "multi", env, config="cpu_2proc.yaml"), 400)
    single = _finish(single, 400)
    return {
        "root": root,
        "recipe": recipe,
        "env": env,
        "single": root / "single" / "mp",
        "multi": root / "multi" / "mp",
        "multi_proc": multi,
        "single_proc": single,
    }


def test_two_process_run_writes_what_one_process_writes(runs):
    single, multi = runs["single"], runs["multi"]
    assert _layout(multi) == _layout(single)
    for stage in ("grpo", "sft"):
        assert (multi / stage / "model" / "model.safetensors").is_file()
        ckpts = sorted(p.name for p in (multi / stage / "checkpoints").glob("checkpoint-*"))
        assert ckpts == ["checkpoint-1", "checkpoint-2"]
        # Two ranks trained: each checkpoint holds both ranks' RNG states (and one COMPLETE marker).
        assert sorted(
            p.name for p in (multi / stage / "checkpoints" / "checkpoint-2").glob("rng_state*")
        ) == ["rng_state_0.pth", "rng_state_1.pth"]
        assert len(list((multi / "tb" / stage).iterdir())) == 1  # one TensorBoard writer, not one per rank
    summary = json.loads((multi / "summary.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("grpo", "done"),
        ("sft", "done"),
        ("rs", "done"),
        ("eval", "done"),
    ]
    assert summary["final_model"].endswith("sft/model")
    # Rejection sampling: each rank sampled 3 of the 6 prompts; the gathered counts equal one process's.
    stats = json.loads((multi / "rs" / "stats.json").read_text())
    assert (stats["prompts"], stats["samples"]) == (6, 12)
    assert stats == json.loads((single / "rs" / "stats.json").read_text()) | {
        k: stats[k] for k in ("correct", "formatted", "accepted", "kept", "prompts_solved")
    }
    rs_rows = (multi / "rs" / "data.jsonl").read_text().splitlines()
    assert len(rs_rows) == stats["kept"]
    # Evaluations are split over the ranks and gathered: each problem once, and on the same (untrained) model
    # the greedy held-out numbers equal the single process's exactly.
    for items_file in (multi / "eval" / "items.jsonl", multi / "evals" / "base" / "items.jsonl"):
        keys = [json.loads(x)["key"] for x in items_file.read_text().splitlines()]
        assert len(keys) == len(set(keys)) == 4
    base = summary["base_metrics"]
    assert base == json.loads((single / "summary.json").read_text())["base_metrics"]
    assert base["n_items"] == 4
    assert all(s["metrics_after"]["n_items"] == 4 for s in summary["stages"] if s["name"] != "rs")
    # The tables are printed once, by rank 0.
    assert runs["multi_proc"].stdout.count("run directory:") == 1


def test_two_process_metrics_are_logged_once_per_step(runs):
    rows = [json.loads(line) for line in (runs["multi"] / "metrics.jsonl").read_text().splitlines()]
    single = [json.loads(line) for line in (runs["single"] / "metrics.jsonl").read_text().splitlines()]
    key = lambda r: (r["stage"], r["step"], "train_runtime" in r)  # noqa: E731
    assert Counter(map(key, rows)) == Counter(map(key, single))
    assert all(c == 1 for c in Counter(map(key, rows)).values())
    grpo = [r for r in rows if r["stage"] == "grpo" and "reward" in r]
    assert [r["step"] for r in grpo] == [1, 2]
    # GRPO's metrics cover both ranks' completions: 2 ranks x 4 prompts' worth of generations per step.
    assert all("rewards/accuracy/mean" in r and "completions/mean_length" in r for r in grpo)
    samples = [json.loads(line) for line in (runs["multi"] / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["stage"] == "grpo" and s["solution"] is not None for s in samples)
    assert len(samples) == len(
        [json.loads(x) for x in (runs["single"] / "samples.jsonl").read_text().splitlines()]
    )


def test_two_process_run_resumes_like_one(runs):
    """Remove the SFT stage's last checkpoint, final model and held-out evaluation (as if killed after
    checkpoint-1): a rerun under the same launch skips GRPO, resumes SFT from checkpoint-1 on both ranks,
    trains the remaining step, and writes the model once."""
    import shutil

    multi = runs["multi"]
    shutil.rmtree(multi / "sft" / "checkpoints" / "checkpoint-2")
    shutil.rmtree(multi / "sft" / "model")
    shutil.rmtree(multi / "evals" / "sft")
    before = (multi / "metrics.jsonl").read_text().splitlines()
    proc = _r1lab(runs["recipe"], multi.parent, runs["env"], config="cpu_2proc.yaml")
    logs = proc.stdout + proc.stderr
    assert "grpo: already done, skipping" in logs
    assert "sft: resuming from" in logs and "checkpoint-1" in logs
    assert (multi / "sft" / "model" / "model.safetensors").is_file()
    after = (multi / "metrics.jsonl").read_text().splitlines()
    assert after[: len(before)] == before  # earlier rows untouched
    added = [json.loads(x) for x in after[len(before) :]]
    assert added and all(r["stage"] == "sft" for r in added)
    assert {r["step"] for r in added} == {2}  # continued from checkpoint-1, did not start over or overshoot
    kinds = Counter((r["step"], "train_runtime" in r) for r in added)
    assert all(c == 1 for c in kinds.values())  # written by rank 0 only


# ---------------------------------------------------------------------------------------------- GPU paths


GPU_RECIPE = dict(RECIPE, stages=[s for s in RECIPE["stages"] if s["name"] not in CPU_ONLY_STAGES])


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _needs(module: str | None = None):
    if _cuda_count() == 0:
        pytest.skip("needs a CUDA GPU (none visible)")
    if module is not None:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} (pip install -e .[{module}])")


def _gpu_run(tmp_path, config: str, recipe: dict) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    _r1lab(
        path,
        tmp_path / "runs",
        _env(tmp_path / "cache") | {"OMP_NUM_THREADS": "4"},
        config=config,
        nproc=_cuda_count(),
        timeout=1200,
    )
    run_dir = tmp_path / "runs" / recipe["name"]
    from transformers import AutoModelForCausalLM

    for stage in recipe["stages"]:
        if stage["kind"] in ("grpo", "sft"):
            # A full checkpoint (ZeRO-3 / FSDP gathered it), loadable without the launcher.
            model = AutoModelForCausalLM.from_pretrained(run_dir / stage["name"] / "model")
            assert sum(p.numel() for p in model.parameters()) > 100_000
    return run_dir


@pytest.mark.gpu
@pytest.mark.parametrize("config", ["zero2.yaml", "zero3.yaml"])
def test_deepspeed_run_on_gpus(tmp_path, config):
    _needs("deepspeed")
    _gpu_run(tmp_path, config, GPU_RECIPE)


@pytest.mark.gpu
def test_fsdp_run_on_gpus(tmp_path):
    _needs()
    _gpu_run(tmp_path, "fsdp.yaml", GPU_RECIPE)


@pytest.mark.gpu
def test_ddp_run_on_gpus(tmp_path):
    _needs()
    _gpu_run(tmp_path, "ddp.yaml", GPU_RECIPE)


@pytest.mark.gpu
def test_vllm_colocate_grpo_on_gpus(tmp_path):
    _needs("vllm")
    recipe = json.loads(json.dumps(GPU_RECIPE))
    recipe["stages"] = [
        dict(
            recipe["stages"][0],
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=0.2,
            vllm_tensor_parallel_size=1,
        )
    ]
    run_dir = _gpu_run(tmp_path, "ddp.yaml", recipe)
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("reward" in r for r in rows)
