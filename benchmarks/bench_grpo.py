"""GRPO speed: plain TRL ``GRPOTrainer`` against r1lab's GRPO stage, same settings, one process run.

For each setting (the seed recipe's GRPO stage, and TRL's defaults with ``num_generations: 8``,
``max_completion_length: 128``) both trainers start from the same weights, prompts, rewards and
``GRPOConfig`` (r1lab's defaults for this machine: bf16 autocast only on CPUs with native bf16):

- **TRL**: ``trl.GRPOTrainer`` as is (``model.generate`` on the padded generation batch);
- **r1lab**: ``r1lab.train.grpo.build_grpo_trainer``, i.e. what ``r1lab run`` trains with (r1lab's decoder
  for rollouts, in bf16 on CPUs with native bf16).

Each runs ``R1LAB_BENCH_GRPO_STEPS`` optimizer steps (default 4); the first is a warm-up and not counted.
Per step it records wall time, completion tokens, and the split: generation (the trainer's single-turn
generation call), reward scoring, and the rest (loss forward + backward + optimizer: "update"). The
update's arithmetic rate is compared with this machine's measured matmul peak (a large fp32, and where
native, bf16 ``torch.mm``): ~6 x parameters x tokens FLOPs for forward and backward. For r1lab's decoder it
also times every decoding step (one token per live row through the model) against that step's bound: the
larger of reading every weight once at the measured memory read rate (``machine.memory_read_gbps``, a
``torch.sum`` over 512 MiB) and 2 x parameters x rows at the matmul peak, in the rollout's precision.

Writes ``benchmarks/results/grpo.json`` and ``grpo.md``. Knobs: ``R1LAB_BENCH_GRPO_MODEL`` (default
``smollm2-135m``), ``R1LAB_BENCH_GRPO_STEPS``, ``R1LAB_BENCH_GRPO_SETTINGS`` (comma list of ``seed``,
``trl-defaults``), ``R1LAB_BENCH_GRPO_OUT`` (where to write), ``R1LAB_BENCH_GRPO_SMOKE=1`` (a smoke run:
the tiny model, 2 steps of the seed setting at 2 prompts x 2 completions x 8 tokens, results in a temporary
folder unless ``..._OUT`` says where).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from benchmarks.machine import describe_machine_now, memory_read_gbps

RESULTS = Path(__file__).parent / "results"
SEED_RECIPE = Path(__file__).parent.parent / "recipes" / "seed.yaml"
# The r1lab rows, one per rollout precision (the stage's rollout_dtype; int8 and bf16 rollouts are corrected
# by importance sampling in the loss). `trl` is plain TRL.
ROLLOUTS = {
    "r1lab": {"rollout_dtype": "float32"},
    "r1lab-int8": {"rollout_dtype": "int8"},
    "r1lab-bf16": {"rollout_dtype": "bf16"},
    # Halves of r1lab's step, for telling which one a device gains from (gpu_check runs them on CUDA):
    # TRL's generation with r1lab's loss, and r1lab's decoder with TRL's one-forward-per-row loss.
    "r1lab-trl-rollouts": {"rollout_dtype": "float32", "rollout_engine": "trl"},
    "r1lab-per-row-loss": {"rollout_dtype": "float32", "share_prompt_forward": False},
}


def trainer_names() -> tuple[str, ...]:
    """The rows: plain TRL, exact fp32 r1lab, int8 rollouts, and bf16 rollouts where the CPU runs bf16."""
    from r1lab.models import cpu_has_fast_bf16

    return ("trl", "r1lab", "r1lab-int8") + (("r1lab-bf16",) if cpu_has_fast_bf16() else ())


def matmul_peak_gflops(dtype_name: str, sizes=(1024, 2048, 4096), repeats: int = 3) -> float:
    """The best rate of square matmuls in ``dtype`` (GFLOP/s), over a few sizes."""
    import torch

    dtype = getattr(torch, dtype_name)
    rates = []
    for size in sizes:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        rates.append(2 * size**3 / best / 1e9)
    return max(rates)


def _sync_cuda() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def decode_step_bound_seconds(model, rows: int, read_gbps: float, peaks: dict[str, float]) -> float:
    """The hardware's bound on one decoding step of ``model`` for ``rows`` rows: the larger of reading every
    weight once (bytes / memory read rate) and the matmul work (2 x parameters x rows / the matmul peak in
    the weights' dtype; the fp32 peak where that dtype's was not measured)."""
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    n_bytes = sum(p.numel() * p.element_size() for p in params)
    # an int8 rollout copy's linear layers hold packed int8 weights, not parameters: one byte per weight
    # (its matmuls are bounded here by the fp32 peak: no int8 peak is measured)
    packed = [m for m in model.modules() if hasattr(m, "_packed_params") and hasattr(m, "in_features")]
    n_params += sum(m.in_features * m.out_features for m in packed)
    n_bytes += sum(m.in_features * m.out_features for m in packed)
    dtype = str(params[0].dtype).removeprefix("torch.")
    peak = peaks.get(dtype, peaks["float32"])
    return max(n_bytes / (read_gbps * 1e9), 2 * n_params * rows / (peak * 1e9))


class PhaseTimer:
    """Wraps a trainer's generation and reward methods and times every optimizer step; with ``bound``
    (``model, rows -> seconds``), also every decoding step of r1lab's decoder (one token per row through
    the model) against that bound."""

    def __init__(self, trainer, bound=None):
        from transformers import TrainerCallback

        self.steps: list[dict] = []
        self.current = self._fresh()
        timer = self

        def timed(name, fn):
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                out = fn(*args, **kwargs)
                timer.current[name] += time.perf_counter() - t0
                if name == "generate":
                    timer.current["tokens"] += sum(len(ids) for ids in out[0])
                return out

            return wrapper

        trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)
        trainer._calculate_rewards = timed("rewards", trainer._calculate_rewards)
        self._bound = bound
        self._restore = None
        if bound is not None:
            self._time_decode_steps()

        class StepTimes(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                _sync_cuda()
                timer.current = timer._fresh()

            def on_step_end(self, args, state, control, **kwargs):
                _sync_cuda()  # the step's GPU work is queued, not done, when the trainer returns
                c = timer.current
                total = time.perf_counter() - c["start"]
                timer.steps.append(
                    {
                        "seconds": total,
                        "generate": c["generate"],
                        "rewards": c["rewards"],
                        "update": total - c["generate"] - c["rewards"],
                        "completion_tokens": c["tokens"],
                        **{k: c[k] for k in ("decode_steps", "decode_seconds", "decode_bound_seconds")},
                    }
                )

        trainer.add_callback(StepTimes())

    @staticmethod
    def _fresh() -> dict:
        return {
            "generate": 0.0,
            "rewards": 0.0,
            "tokens": 0,
            "start": time.perf_counter(),
            "decode_steps": 0,
            "decode_seconds": 0.0,
            "decode_bound_seconds": 0.0,
        }

    def _time_decode_steps(self) -> None:
        """Time every one-token forward of r1lab's decoder (``_Batch.forward``: all layers, the KV cache
        and the LM head; not the sampling) and add up its bound."""
        from r1lab import decoding

        original = decoding._Batch.forward
        timer = self

        def forward(batch, ids, *args, **kwargs):
            t0 = time.perf_counter()
            out = original(batch, ids, *args, **kwargs)
            if ids.shape[1] == 1:  # a decoding step (prefill runs many tokens per row)
                _sync_cuda()
                c = timer.current
                c["decode_steps"] += 1
                c["decode_seconds"] += time.perf_counter() - t0
                c["decode_bound_seconds"] += timer._bound(batch.model, ids.shape[0])
            return out

        decoding._Batch.forward = forward
        self._restore = lambda: setattr(decoding._Batch, "forward", original)

    def close(self) -> None:
        """Undo the decoder's patch."""
        if self._restore is not None:
            self._restore()
            self._restore = None


def summarize(steps: list[dict], n_params: int, prompt_tokens_per_step: float, peak: float) -> dict:
    """Medians over the timed steps (the first is a warm-up). The update's rate counts the work of TRL's
    loss (6 x parameters x every row's prompt + completion tokens), whichever trainer did it, so for r1lab
    (which runs each prompt once per group) it is the rate of equivalent work, and can exceed the peak."""
    timed = steps[1:] or steps
    keys = ("decode_steps", "decode_seconds", "decode_bound_seconds")
    decode = {k: sum(s.get(k, 0) for s in timed) for k in keys}
    med = {k: statistics.median(s[k] for s in timed) for k in timed[0] if k not in keys}
    trained_tokens = prompt_tokens_per_step + med["completion_tokens"]
    update_gflops = 6 * n_params * trained_tokens / med["update"] / 1e9
    return {
        "seconds_per_step": med["seconds"],
        "completion_tokens_per_step": med["completion_tokens"],
        "completion_tokens_per_second": med["completion_tokens"] / med["seconds"],
        "generate_seconds": med["generate"],
        "generate_tokens_per_second": med["completion_tokens"] / med["generate"],
        "rewards_seconds": med["rewards"],
        "update_seconds": med["update"],
        "update_gflops": update_gflops,
        "update_fraction_of_peak": update_gflops / peak,
        "steps_timed": len(timed),
        **(
            {  # means over every decoding step of the timed optimizer steps
                "decode_step_ms": 1000 * decode["decode_seconds"] / decode["decode_steps"],
                "decode_step_bound_ms": 1000 * decode["decode_bound_seconds"] / decode["decode_steps"],
            }
            if decode["decode_steps"]
            else {}
        ),
    }


def settings() -> dict[str, dict]:
    import yaml

    seed = next(s for s in yaml.safe_load(SEED_RECIPE.read_text())["stages"] if s["kind"] == "grpo")
    # The same step for both trainers: plain TRL has no dynamic sampling (extra generation rounds would make
    # r1lab's step do more work, not the same work faster), so the seed setting is measured without it.
    seed = {k: v for k, v in seed.items() if not k.startswith(("vllm_", "dynamic_sampling"))}
    trl_defaults = {
        "name": "grpo",
        "kind": "grpo",
        "rewards": seed["rewards"],
        "num_generations": 8,
        "per_device_train_batch_size": 8,
        "max_completion_length": 128,
    }
    return {"seed": seed, "trl-defaults": trl_defaults}


def run_one(
    engine: str, stage_fields: dict, spec: str, steps: int, workdir: Path, bound=None
) -> tuple[list[dict], dict]:
    import torch
    from trl import GRPOTrainer

    from r1lab.config import RunConfig, validate
    from r1lab.train.grpo import build_grpo_trainer, grpo_dataset, grpo_rewards

    recipe = __import__("yaml").safe_load(SEED_RECIPE.read_text())
    stage = dict(stage_fields, **ROLLOUTS.get(engine, {}), max_steps=steps, save_steps=10_000, n=64)
    run = validate(
        RunConfig.from_dict(
            {
                "name": f"bench-{engine}",
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
    st = run.stages[0]
    torch.manual_seed(0)
    trainer, _ = build_grpo_trainer(st, run, model_spec=spec, stage_dir=workdir / engine)
    if engine == "trl":  # plain TRL: the same model, args, prompts and rewards in TRL's own class
        trainer = GRPOTrainer(
            model=trainer.model,
            reward_funcs=grpo_rewards(st),
            args=trainer.args,
            train_dataset=grpo_dataset(st, run),
            processing_class=trainer.processing_class,
        )
    timer = PhaseTimer(trainer, bound=bound if engine != "trl" else None)
    prompt_lengths = []
    original = trainer._generate

    def record_prompts(prompts):
        out = original(prompts)
        prompt_lengths.append(sum(len(p) for p in out[0]))
        return out

    trainer._generate = record_prompts
    try:
        trainer.train()
    finally:
        timer.close()
    info = {
        "n_params": sum(p.numel() for p in trainer.model.parameters()),
        "prompt_tokens_per_step": statistics.median(prompt_lengths),
        "bf16_autocast": bool(trainer.args.bf16),
        "rollout_engine": getattr(trainer, "rollout_engine", "trl"),
    }
    return timer.steps, info


def main() -> dict:
    import tempfile

    from r1lab.io import atomic_write_json, atomic_write_text
    from r1lab.models import cpu_has_fast_bf16

    smoke = os.environ.get("R1LAB_BENCH_GRPO_SMOKE") == "1"  # the tiny model, 2 steps: does it run?
    spec = os.environ.get("R1LAB_BENCH_GRPO_MODEL", "tiny" if smoke else "smollm2-135m")
    steps = int(os.environ.get("R1LAB_BENCH_GRPO_STEPS", "2" if smoke else "4"))
    wanted = os.environ.get("R1LAB_BENCH_GRPO_SETTINGS", "seed" if smoke else "seed,trl-defaults").split(",")
    out_dir = Path(os.environ.get("R1LAB_BENCH_GRPO_OUT") or (tempfile.mkdtemp() if smoke else RESULTS))
    sizes = (256,) if smoke else (1024, 2048, 4096)
    peaks = {"float32": matmul_peak_gflops("float32", sizes)}
    if cpu_has_fast_bf16():
        peaks["bfloat16"] = matmul_peak_gflops("bfloat16", sizes)
    read_gbps = memory_read_gbps(64 if smoke else 512)

    def bound(model, rows):
        return decode_step_bound_seconds(model, rows, read_gbps, peaks)

    all_settings = settings()
    if smoke:  # a small shape: 2 prompts x 2 completions x 8 tokens
        small = {"num_generations": 2, "per_device_train_batch_size": 4, "max_completion_length": 8}
        all_settings = {name: {**fields, **small} for name, fields in all_settings.items()}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            results[name] = {}
            for engine in trainer_names():
                raw, info = run_one(engine, all_settings[name], spec, steps, Path(tmp) / name, bound)
                peak = peaks["bfloat16" if info["bf16_autocast"] else "float32"]
                results[name][engine] = {
                    **summarize(raw, info["n_params"], info["prompt_tokens_per_step"], peak),
                    **info,
                    "steps": raw,
                }
            t = results[name]["trl"]
            for engine in trainer_names()[1:]:  # every r1lab row against plain TRL, end to end
                row = results[name][engine]
                row["speedup_vs_trl"] = (
                    row["completion_tokens_per_second"] / t["completion_tokens_per_second"]
                )
            r = results[name]["r1lab"]
            results[name]["speedup_tokens_per_second"] = (
                r["completion_tokens_per_second"] / t["completion_tokens_per_second"]
            )
            results[name]["speedup_generate"] = (
                r["generate_tokens_per_second"] / t["generate_tokens_per_second"]
            )

    header = (
        f"{'setting':13} {'trainer':10} {'s/step':>7} {'compl tok/s':>11} {'gen s':>6} {'gen tok/s':>9} "
        f"{'reward s':>8} {'update s':>8} {'update % peak':>13} {'decode step ms':>14} {'bound ms':>8}"
    )
    lines = [header, "-" * len(header)]
    for name, res in results.items():
        for engine in trainer_names():
            r = res[engine]
            lines.append(
                f"{name:13} {engine:10} {r['seconds_per_step']:7.1f} {r['completion_tokens_per_second']:11.1f} "
                f"{r['generate_seconds']:6.1f} {r['generate_tokens_per_second']:9.1f} {r['rewards_seconds']:8.2f} "
                f"{r['update_seconds']:8.1f} {100 * r['update_fraction_of_peak']:12.0f}%"
                + (
                    f" {r['decode_step_ms']:14.1f} {r['decode_step_bound_ms']:8.1f}"
                    if "decode_step_ms" in r
                    else ""
                )
            )
        lines.append(
            f"{'':13} ratio   end to end {res['speedup_tokens_per_second']:.2f}x, "
            f"generation {res['speedup_generate']:.2f}x; "
            + ", ".join(f"{e} {res[e]['speedup_vs_trl']:.2f}x" for e in trainer_names()[2:])
        )
    table = "\n".join(lines)
    print(table)
    machine = describe_machine_now(
        native_cpu_bf16=cpu_has_fast_bf16(), matmul_peak_gflops=peaks, memory_read_gbps=read_gbps
    )
    result = {
        "benchmark": "grpo",
        "model": spec,
        "optimizer_steps": steps,
        "settings": all_settings,
        "machine": machine,
        "results": results,
        "goal": "end-to-end completion tokens/s >= 5x plain TRL with the same settings",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "grpo.json", result)
    md = (
        "# GRPO speed: plain TRL GRPOTrainer vs r1lab's GRPO stage\n\n"
        f"Model `{spec}`, {steps} optimizer steps per trainer (the first a warm-up, medians of the rest), "
        "same weights, prompts (built-in level-1 problems with the seed recipe's system prompt), rewards and "
        "GRPOConfig. `gen tok/s` is completion tokens per second inside the generation call; `update` is the "
        "step's wall time less generation and reward scoring (loss forward, backward, optimizer); `update % "
        "peak` is the rate of TRL's loss work (6 x parameters x every row's prompt + completion tokens) over "
        "this machine's measured matmul peak in the dtype it trains in; r1lab runs each prompt once for its "
        "group, so for r1lab this is the rate of equivalent work. `decode step ms` is the mean time of one "
        "decoding forward of r1lab's decoder (every layer, KV cache and LM head for one token per live row; "
        "not the sampling), `bound ms` the mean of its bound: the larger of the weights' bytes over the "
        "measured memory read rate and 2 x parameters x rows over the matmul peak, in the rollout's "
        "precision.\n\n"
        f"```\n{table}\n```\n\n"
        f"Machine: {machine}\n\n"
        "Settings: `seed` is recipes/seed.yaml's GRPO stage; `trl-defaults` is TRL's defaults with "
        "num_generations 8 and max_completion_length 128 (one prompt x 8 completions per step).\n"
    )
    atomic_write_text(out_dir / "grpo.md", md)
    print(f"results: {out_dir}")
    return result


if __name__ == "__main__":
    main()
