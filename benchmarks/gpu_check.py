"""`make gpu-check`: r1lab's GPU path, checked and measured on one CUDA GPU in one process run (~8 minutes on
an H200), or rehearsed on a CPU.

On a GPU machine (a lent H200: Python 3.12 with torch, transformers, accelerate and peft, no network):

1. installs the wheels ``make gpu-wheels`` put in ``gpu-wheels/`` (offline, into a scratch folder) and runs
   itself again with them and ``src/`` on ``PYTHONPATH``;
2. runs the GPU-marked tests that need no vLLM (``pytest -m gpu -k "not vllm"``);
3. measures, in bf16 on CUDA, with randomly initialised models (SmolLM2-135M's configuration and tokenizer,
   and a ~0.5B Llama with the same tokenizer; no weights can be fetched there):
   - the GPU's bf16 matmul peak;
   - GRPO optimizer steps, plain TRL ``GRPOTrainer`` against r1lab's GRPO stage (the machinery of
     ``benchmarks/bench_grpo.py``), at the seed recipe's shape and at 64 prompts x 8 completions x 256 tokens;
   - SFT tokens/s and the fraction of the bf16 peak it reaches;
   - evaluation throughput, r1lab's decoder against ``model.generate`` on the same batches;
4. writes ``gpu.json`` and ``gpu.md`` to ``--out`` (default ``$OUT``, the folder the device tool brings back,
   else ``benchmarks/results``) and prints one summary table. A part it cannot run (no time left, a missing
   package, an error) is recorded with the reason, and the rest still runs.

Without CUDA (or with ``--rehearse``) it rehearses: the same steps on ``tiny``-shaped models for a couple of
steps, on the CPU, with no install; ``tests/test_gpu_check.py`` runs this in ``make test``.

    python -m benchmarks.gpu_check [--rehearse] [--out DIR] [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHEELS = REPO / "gpu-wheels"
SITE = Path(tempfile.gettempdir()) / "r1lab-gpu-site"
INSTALLED_ENV = "R1LAB_GPU_CHECK_INSTALL"
# The ~0.5B model: SmolLM2-135M's configuration (and tokenizer) made wider and deeper.
LLAMA_05B = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "head_dim": 64,
}


class Plan:
    """Sizes of everything the check runs: the GPU's, or the rehearsal's (tiny, a couple of steps)."""

    def __init__(self, rehearse: bool):
        self.rehearse = rehearse
        self.device = "cpu" if rehearse else "cuda"
        if rehearse:
            # tiny's own config and character tokenizer; the "larger" model is tiny made wider and deeper.
            self.models = {"tiny": {}, "tiny-wide": {"hidden_size": 192, "intermediate_size": 512}}
            self.seed_grpo = {"max_completion_length": 8}
            self.large_grpo = {"num_generations": 2, "per_device_train_batch_size": 4}
            self.large_grpo |= {"gradient_accumulation_steps": 2, "max_completion_length": 8}
            self.seed_steps, self.large_steps = 2, 1
            self.grpo_halves = ("r1lab-trl-rollouts",)
            # tiny's tokenizer is character-level: a prompt with the seed's system prompt is ~700 tokens.
            self.sft = {"per_device_train_batch_size": 2, "max_length": 1536, "max_steps": 2}
            self.eval = {"n": 4, "max_new_tokens": 8, "batch_size": 4}
            self.tests_timeout, self.tests_estimate = 120, 0
            small, large, needs = "tiny", "tiny-wide", (0, 0, 0, 0, 0, 0)  # a rehearsal runs every part
        else:
            self.models = {"smollm2-135m": {}, "llama-0.5b": LLAMA_05B}
            self.seed_grpo = {}
            # 64 prompts x 8 completions x 256 tokens per optimizer step, in micro-batches of 32 completions.
            self.large_grpo = {"num_generations": 8, "per_device_train_batch_size": 32}
            self.large_grpo |= {"gradient_accumulation_steps": 16, "max_completion_length": 256}
            self.seed_steps, self.large_steps = 4, 2  # the first step of each is a warm-up, not counted
            # The first H200 run (benchmarks/results/gpu.md) had r1lab slower than TRL: which half is it?
            self.grpo_halves = ("r1lab-trl-rollouts", "r1lab-per-row-loss")
            self.sft = {"per_device_train_batch_size": 32, "max_length": 512, "max_steps": 6}
            self.eval = {"n": 128, "max_new_tokens": 256, "batch_size": 64}
            self.tests_timeout, self.tests_estimate = 240, 60
            # Seconds each part below needs at least (guesses until a GPU run measures them): a part that
            # no longer fits in the budget is skipped and says so.
            small, large, needs = "smollm2-135m", "llama-0.5b", (40, 40, 40, 90, 40, 150)
        # (kind, model, GRPO shape, seconds needed), the most telling first.
        kinds = [("grpo", small, "seed"), ("eval", small, None), ("sft", small, None)]
        kinds += [("grpo", small, "large"), ("sft", large, None), ("grpo", large, "large")]
        self.parts = [(*kind, seconds) for kind, seconds in zip(kinds, needs, strict=True)]


# ---------------------------------------------------------------------------------------------- install


def install_command(wheels: Path, site: Path) -> list[str]:
    """The offline pip install of the carried wheels into ``site`` (the machine's own packages stay as they
    are; ``site`` comes first on ``PYTHONPATH``, so a carried version wins)."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels)]
    cmd += ["--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site)]
    return cmd + [str(p) for p in sorted(wheels.glob("*.whl"))]


def install_and_reexec(argv: list[str], wheels: Path) -> None:
    """Install the carried wheels, then run this script again with them (and ``src/``) importable; what the
    install did travels in the environment, for the report. Does not return."""
    env = dict(os.environ)
    paths = [str(REPO / "src"), env.get("PYTHONPATH", "")]
    if any(wheels.glob("*.whl")):
        t0 = time.perf_counter()
        proc = subprocess.run(install_command(wheels, SITE), capture_output=True, text=True)
        if proc.returncode == 0:
            env[INSTALLED_ENV] = f"{time.perf_counter() - t0:.1f} s"
            paths.insert(0, str(SITE))
        else:  # the parts that need the wheels then fail with their import errors, and the report says why
            env[INSTALLED_ENV] = f"failed: {(proc.stderr or proc.stdout)[-500:]}"
    else:
        env[INSTALLED_ENV] = f"nothing installed: no wheels in {wheels} (run `make gpu-wheels` and carry it)"
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.gpu_check", *argv], env)


def carried_names(wheels: Path) -> list[str]:
    from benchmarks.gpu_wheels import wheel_name

    return sorted(wheel_name(p) for p in wheels.glob("*.whl"))


def project_requirements() -> list[str]:
    """r1lab's own requirements, from pyproject.toml (r1lab runs from ``src/`` there, not installed)."""
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def unmet_requirements(carried: list[str]) -> list[str]:
    """Requirements of r1lab and of the carried packages that what is importable does not meet: a carried
    package that needs a newer version of one the machine has, say."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    owners = {"r1lab": project_requirements()}
    for name in carried:
        try:
            owners[name] = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            owners[name] = []
    problems = []
    for owner, requires in owners.items():
        for line in requires:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                problems.append(f"{owner} needs {req}: missing")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{owner} needs {req}: has {have}")
    return problems


def environment(wheels: Path) -> dict:
    import importlib.metadata as md

    versions = {}
    for name in (
        "torch",
        "transformers",
        "trl",
        "datasets",
        "accelerate",
        "peft",
        "math-verify",
        "deepspeed",
    ):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    carried = carried_names(wheels)
    return {
        "versions": versions,
        "carried_wheels": carried,
        "install": os.environ.get(INSTALLED_ENV),
        "unmet_requirements": unmet_requirements(carried),
    }


# ---------------------------------------------------------------------------------------------- models


def tokenizer_source(plan: Plan, wheels: Path) -> Path:
    """Where the config and tokenizer of the random models come from: SmolLM2-135M's (carried by
    ``make gpu-wheels``) on the GPU, ``tiny``'s in a rehearsal."""
    if plan.rehearse:
        from r1lab.models import resolve_model

        return Path(resolve_model("tiny"))
    src = wheels / "smollm2-135m"
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src}/tokenizer.json missing: run `make gpu-wheels` and carry gpu-wheels")
    return src


def random_checkpoint(plan: Plan, wheels: Path, overrides: dict, dest: Path) -> dict:
    """A randomly initialised model with the configuration of :func:`tokenizer_source` (plus ``overrides``)
    and its tokenizer, saved to ``dest`` (bf16 on CUDA, fp32 otherwise). Returns its size."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    source, device = tokenizer_source(plan, wheels), plan.device
    config = AutoConfig.from_pretrained(source)
    for key, value in overrides.items():
        setattr(config, key, value)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if (source / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(source)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(source).save_pretrained(dest)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    return {"n_params": n_params, "layers": config.num_hidden_layers, "hidden": config.hidden_size}


# ---------------------------------------------------------------------------------------------- measurements


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def free_memory() -> None:
    """What one part left on the GPU (trainers, models, cached blocks) goes before the next."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def matmul_peak(plan: Plan) -> dict:
    """The best bf16 matmul rate on the GPU (GFLOP/s), or fp32 on the CPU in a rehearsal."""
    if plan.rehearse:
        from benchmarks.bench_grpo import matmul_peak_gflops

        return {"dtype": "float32", "gflops": matmul_peak_gflops("float32", sizes=(256, 512), repeats=2)}
    import torch

    size, repeats = 8192, 10
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / repeats
    return {"dtype": "bfloat16", "gflops": 2 * size**3 / seconds / 1e9, "size": size}


def gpu_tests(plan: Plan) -> dict:
    """The GPU-marked tests that need no vLLM, in a subprocess (they start `accelerate launch` themselves)."""
    files = sorted(
        str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text()
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu"]
    cmd += ["-k", "not vllm", *files]
    t0 = time.perf_counter()
    # Its own process group: on a timeout the `accelerate launch` workers go too, and free the GPU.
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=plan.tests_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return {"status": "failed", "why": f"timed out after {plan.tests_timeout} s", "log_tail": out[-3000:]}
    summary = [line for line in out.splitlines() if re.search(r"\d+ \w+.* in [\d.]+s", line)]
    pattern = r"(\d+) (passed|failed|skipped|errors?|deselected)"
    counts = {k: int(n) for n, k in re.findall(pattern, summary[-1] if summary else "")}
    skips = re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", out)
    ok = proc.returncode in (0, 5) and not counts.get("failed")
    return {
        "status": "ok" if ok else "failed",
        "why": ""
        if ok
        else f"pytest exit {proc.returncode}, {counts or 'no summary'} (log_tail in gpu.json)",
        "files": files,
        "counts": counts,
        "skip_reasons": sorted(set(skips)),
        "not_run": "test_vllm_colocate_grpo_on_gpus: vLLM is too large to carry to the machine",
        "seconds": time.perf_counter() - t0,
        "log_tail": out[-6000:] if proc.returncode not in (0, 5) else "",
    }


def grpo_pair(
    spec: str, shape: dict, steps: int, peak_gflops: float, workdir: Path, halves: tuple[str, ...] = ()
) -> dict:
    """Plain TRL and r1lab GRPO on the same model and settings (bench_grpo's run_one and summarize);
    ``halves``: bench_grpo rows that swap one half of r1lab's step for TRL's (which half a device gains from)."""
    from benchmarks.bench_grpo import run_one, summarize

    out = {}
    for engine in ("trl", "r1lab", *halves):
        raw, info = run_one(engine, shape, spec, steps, workdir / engine)
        out[engine] = {
            **summarize(raw, info["n_params"], info["prompt_tokens_per_step"], peak_gflops),
            **info,
        }
        out[engine]["steps"] = raw
        sync()
    for engine in halves:
        out[engine]["speedup_over_trl"] = out[engine]["seconds_per_step"] and (
            out["trl"]["seconds_per_step"] / out[engine]["seconds_per_step"]
        )
    out["speedup_tokens_per_second"] = (
        out["r1lab"]["completion_tokens_per_second"] / out["trl"]["completion_tokens_per_second"]
    )
    out["speedup_generate"] = (
        out["r1lab"]["generate_tokens_per_second"] / out["trl"]["generate_tokens_per_second"]
    )
    return out


def sft_speed(spec: str, fields: dict, peak_gflops: float, workdir: Path) -> dict:
    """Optimizer steps of r1lab's SFT stage (``build_sft_trainer``): tokens/s (non-padding tokens) and the
    rate of ~6 x parameters x tokens FLOPs against the matmul peak."""
    import yaml
    from transformers import TrainerCallback

    from r1lab.config import RunConfig, validate
    from r1lab.train.sft import build_sft_trainer

    recipe = yaml.safe_load((REPO / "recipes" / "seed.yaml").read_text())
    seed_sft = next(s for s in recipe["stages"] if s["kind"] == "sft")
    n_rows = fields["per_device_train_batch_size"] * fields["max_steps"]
    stage = dict(seed_sft, **fields, n=max(n_rows, 16), save_strategy="no")
    run = validate(
        RunConfig.from_dict(
            {
                "name": "gpu-check-sft",
                "model": spec,
                "output_dir": str(workdir),
                "system_prompt": recipe["system_prompt"],
                "data": recipe["data"],
                "eval_n": 0,
                "report": False,
                "stages": [stage],
            }
        )
    )
    trainer, _ = build_sft_trainer(run.stages[0], run, model_spec=spec, stage_dir=workdir / "sft")
    steps: list[dict] = []
    current = {"tokens": 0, "start": 0.0}
    compute_loss = trainer.compute_loss

    def counting(model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        current["tokens"] += int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel())
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = counting

    class StepTimes(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            current.update(tokens=0, start=time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            steps.append({"seconds": time.perf_counter() - current["start"], "tokens": current["tokens"]})

    trainer.add_callback(StepTimes())
    trainer.train()
    n_params = sum(p.numel() for p in trainer.model.parameters())
    timed = steps[1:] or steps
    seconds = statistics.median(s["seconds"] for s in timed)
    tokens = statistics.median(s["tokens"] for s in timed)
    gflops = 6 * n_params * tokens / seconds / 1e9
    return {
        "seconds_per_step": seconds,
        "tokens_per_step": tokens,
        "tokens_per_second": tokens / seconds,
        "gflops": gflops,
        "fraction_of_peak": gflops / peak_gflops,
        "bf16": bool(trainer.args.bf16),
        "n_params": n_params,
        "steps_timed": len(timed),
        "steps": steps,
    }


def eval_speed(spec: str, fields: dict) -> dict:
    """Greedy generation for the same prompts and batches: ``model.generate`` on the padded batch
    (``fast_decode=False``) against r1lab's shared-prefix decoder (what ``r1lab eval`` uses)."""
    from r1lab.data import load_eval_dataset
    from r1lab.inference import generate
    from r1lab.models import load_model

    model, tok = load_model(spec)
    prompts = [row["prompt"] for row in load_eval_dataset("builtin", split="test", n=fields["n"])]
    kw = {"max_new_tokens": fields["max_new_tokens"], "batch_size": fields["batch_size"]}
    for fast in (False, True):  # warm-ups: first-call allocations belong to neither
        generate(model, tok, prompts[:2], max_new_tokens=2, fast_decode=fast)
    out = {"dtype": str(model.dtype).removeprefix("torch."), "prompts": len(prompts), **kw}
    for label, fast in (("generate", False), ("r1lab", True)):
        sync()
        t0 = time.perf_counter()
        comps = generate(model, tok, prompts, fast_decode=fast, **kw)
        sync()
        seconds = time.perf_counter() - t0
        tokens = sum(c.n_tokens for group in comps for c in group)
        out[label] = {"seconds": seconds, "new_tokens": tokens, "tokens_per_second": tokens / seconds}
    out["speedup"] = out["r1lab"]["tokens_per_second"] / out["generate"]["tokens_per_second"]
    return out


# ---------------------------------------------------------------------------------------------- the run


class Budget:
    """Runs the parts in order while time is left; a part that cannot run, or fails, records why."""

    def __init__(self, seconds: float, results: dict | None = None):
        self.deadline = time.perf_counter() + seconds
        self.results: dict[str, dict] = {} if results is None else results

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, estimate: float, fn, *args) -> dict | None:
        if self.left() < estimate:
            self.results[name] = {
                "status": "skipped",
                "why": f"time budget: {self.left():.0f} s left, needs ~{estimate:.0f} s",
            }
            return None
        t0 = time.perf_counter()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            result = fn(*args)
        except Exception as err:  # one part's failure is a finding, not the end of the check
            self.results[name] = {
                "status": "failed",
                "why": f"{type(err).__name__}: {err}"[:500],
                "traceback": traceback.format_exc()[-3000:],
                "seconds": time.perf_counter() - t0,
            }
            print(f"[gpu-check] {name} failed: {self.results[name]['why']}", flush=True)
            return None
        finally:
            free_memory()
        result = {"status": result.get("status", "ok"), **result, "seconds": time.perf_counter() - t0}
        self.results[name] = result
        return result


def check(plan: Plan, wheels: Path, budget_s: float, save=lambda result: None, parts=()) -> dict:
    """Run every part in order while the budget lasts; ``save`` gets the result after each part, so a run
    stopped from outside still leaves what it measured."""
    from benchmarks.bench_grpo import settings
    from benchmarks.machine import describe_machine_now
    from r1lab.models import cpu_has_fast_bf16

    t_start = time.perf_counter()
    seed_shape = dict(settings()["seed"], save_strategy="no", **plan.seed_grpo)
    large_shape = dict(seed_shape, **plan.large_grpo)
    result = {
        "benchmark": "gpu-check",
        "rehearsal": plan.rehearse,
        "device": plan.device,
        "machine": describe_machine_now(native_cpu_bf16=cpu_has_fast_bf16()),
        "environment": environment(wheels),
        "models": {},
        "shapes": {"seed": seed_shape, "large": large_shape, "sft": plan.sft, "eval": plan.eval},
        "peak_gflops": None,
        "results": {},
        "seconds": 0.0,
    }

    def saved(part):
        result["seconds"] = time.perf_counter() - t_start
        save(result)
        return part

    budget = Budget(budget_s, result["results"])
    if not parts or "gpu tests" in parts:
        saved(budget.run("gpu tests", plan.tests_estimate, gpu_tests, plan))
    peak = saved(budget.run("matmul peak", 0, matmul_peak, plan))
    result["peak_gflops"] = peak_gflops = peak["gflops"] if peak else float("nan")
    with tempfile.TemporaryDirectory(prefix="r1lab-gpu-check-") as tmp:
        tmp = Path(tmp)
        for name, overrides in plan.models.items():
            info = saved(
                budget.run(f"model {name}", 0, random_checkpoint, plan, wheels, overrides, tmp / name)
            )
            if info is not None:
                result["models"][name] = {k: info[k] for k in ("n_params", "layers", "hidden")}
        shapes = {"seed": (seed_shape, plan.seed_steps), "large": (large_shape, plan.large_steps)}
        for kind, model, shape, estimate in plan.parts:
            label = f"{kind} {model}" + (f" {shape}" if shape else "")
            if model not in result["models"]:
                result["results"][label] = {"status": "skipped", "why": f"model {model} could not be built"}
                continue
            spec, work = str(tmp / model), tmp / label.replace(" ", "-")
            if parts and not any(label.startswith(p) for p in parts):
                continue
            if kind == "grpo":
                args = (spec, *shapes[shape], peak_gflops, work, plan.grpo_halves)
                budget.run(label, estimate * (1 + len(plan.grpo_halves) / 2), grpo_pair, *args)
            elif kind == "sft":
                budget.run(label, estimate, sft_speed, spec, plan.sft, peak_gflops, work)
            else:
                budget.run(label, estimate, eval_speed, spec, plan.eval)
            saved(None)
    return saved(result)


# ---------------------------------------------------------------------------------------------- report


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def summary_table(result: dict) -> str:
    """One table: every part's numbers, or why it has none."""
    rows = [("part", "plain (TRL / generate)", "r1lab", "r1lab / plain", "% of peak")]
    for name, r in result["results"].items():
        if r["status"] != "ok":
            rows.append((name, f"{r['status']}: {r.get('why', '')}"[:90], "", "", ""))
            continue
        if name == "gpu tests":
            counts = ", ".join(f"{n} {k}" for k, n in r["counts"].items()) or "nothing ran"
            rows.append((name, counts, "", "", ""))
        elif name == "matmul peak":
            rate = f"{r['gflops'] / 1e3:,.1f} TFLOP/s" if r["gflops"] >= 1e3 else f"{r['gflops']:.1f} GFLOP/s"
            rows.append((name, f"{r['dtype']} {rate}", "", "", "100%"))
        elif name.startswith("model "):
            millions = r["n_params"] / 1e6
            rows.append(
                (name, f"{millions:.{0 if millions >= 10 else 1}f}M parameters, random init", "", "", "")
            )
        elif name.startswith("grpo "):
            t, o = r["trl"], r["r1lab"]
            rows.append(
                (
                    f"{name}: completion tok/s",
                    f"{_rate(t['completion_tokens_per_second'])} ({t['seconds_per_step']:.2f} s/step)",
                    f"{_rate(o['completion_tokens_per_second'])} ({o['seconds_per_step']:.2f} s/step)",
                    f"{r['speedup_tokens_per_second']:.2f}x",
                    f"update {100 * t['update_fraction_of_peak']:.0f}% / {100 * o['update_fraction_of_peak']:.0f}%",
                )
            )
            for half in (k for k in r if k.startswith("r1lab-")):
                h = r[half]
                rows.append(
                    (
                        f"  {half}",
                        "",
                        f"{_rate(h['completion_tokens_per_second'])} ({h['seconds_per_step']:.2f} s/step)",
                        f"{h['speedup_over_trl']:.2f}x",
                        f"update {100 * h['update_fraction_of_peak']:.0f}%",
                    )
                )
        elif name.startswith("sft "):
            rows.append(
                (
                    f"{name}: tokens/s",
                    "",
                    _rate(r["tokens_per_second"]),
                    "",
                    f"{100 * r['fraction_of_peak']:.0f}%",
                )
            )
        elif name.startswith("eval "):
            g, o = r["generate"], r["r1lab"]
            rows.append(
                (
                    f"{name}: new tok/s",
                    _rate(g["tokens_per_second"]),
                    _rate(o["tokens_per_second"]),
                    f"{r['speedup']:.2f}x",
                    "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _grpo_shape(stage: dict) -> str:
    completions = stage["per_device_train_batch_size"] * stage.get("gradient_accumulation_steps", 1)
    prompts = completions // stage["num_generations"]
    return f"{prompts} prompts x {stage['num_generations']} completions x {stage['max_completion_length']} tokens"


def markdown(result: dict, table: str) -> str:
    env = result["environment"]
    kind = "a CPU rehearsal (tiny models, no CUDA)" if result["rehearsal"] else "CUDA, bf16"
    unmet, shapes = env["unmet_requirements"], result["shapes"]
    return (
        f"# r1lab on a GPU: `make gpu-check`\n\n"
        f"Ran on {kind}, {result['seconds']:.0f} s in all. Machine: {result['machine']}\n\n"
        f"```\n{table}\n```\n\n"
        f"Versions: {env['versions']}. Carried wheels: {', '.join(env['carried_wheels']) or 'none'} "
        f"(install: {env['install'] or 'not run'}). "
        f"Unmet requirements: {'; '.join(unmet) if unmet else 'none'}.\n\n"
        "Models are randomly initialised (no weights can be fetched on the GPU machine): "
        f"{json.dumps(result['models'])}; they rarely stop early, so completions run to their token budget. "
        f"GRPO: `large` is {_grpo_shape(shapes['large'])} per optimizer step, `seed` is recipes/seed.yaml's "
        f"GRPO stage ({_grpo_shape(shapes['seed'])}); the first step of each is a warm-up; `% of peak` is the "
        "update's rate (6 x parameters x trained tokens) over the measured matmul peak, for TRL / r1lab. "
        "SFT: non-padding tokens per second of r1lab's SFT stage. Eval: greedy new tokens per second, "
        "`model.generate` on padded batches against r1lab's shared-prefix decoder, "
        "same prompts and batch size.\n"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rehearse", action="store_true", help="tiny models on the CPU, no install")
    parser.add_argument("--out", type=Path, default=None, help="where gpu.json / gpu.md go")
    parser.add_argument("--wheels", type=Path, default=WHEELS, help="the folder `make gpu-wheels` filled")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all parts (default 450)")
    parser.add_argument(
        "--parts",
        default="",
        help="comma-separated part names to run (prefixes: 'gpu tests,grpo'); default all",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    rehearse = args.rehearse or not torch.cuda.is_available()
    if rehearse and not args.rehearse:
        print("[gpu-check] no CUDA GPU here: rehearsing on the CPU with tiny models", flush=True)
    if not rehearse and INSTALLED_ENV not in os.environ:
        install_and_reexec(argv, args.wheels)
    plan = Plan(rehearse)
    if rehearse:
        torch.set_num_threads(1)  # tiny models gain nothing from threads, and a shared CPU loses much
    if rehearse:
        print(f"[gpu-check] the GPU run would install: {' '.join(install_command(args.wheels, SITE)[3:])}")
    out = args.out or Path(os.environ.get("OUT") or REPO / "benchmarks" / "results")
    if rehearse and args.out is None and not os.environ.get("OUT"):
        out = REPO / "runs" / "gpu-check-rehearsal"  # a rehearsal never overwrites measured results
    from r1lab.io import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)

    def save(result: dict) -> None:
        atomic_write_json(out / "gpu.json", result)
        atomic_write_text(out / "gpu.md", markdown(result, summary_table(result)))

    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    result = check(plan, args.wheels, args.budget, save, parts)
    print(summary_table(result))
    print(f"[gpu-check] wrote {out / 'gpu.json'} and gpu.md", flush=True)
    failed = [n for n, r in result["results"].items() if r["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
