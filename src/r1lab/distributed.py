"""Multi-process helpers: who am I, who writes, and how metrics are combined.

Every r1lab stage runs unchanged under ``accelerate launch`` (DDP, DeepSpeed ZeRO, FSDP; one or many
nodes). These helpers are thin wrappers over :class:`accelerate.PartialState` and behave sensibly in a plain
single process too (rank 0 of 1: every call is a no-op or returns the input).

Rules the stages follow:

* only the main process writes run files (``config.yaml``, ``metrics.jsonl``, ``samples.jsonl``,
  ``summary.json``, ``report.html``, the final model): guard them with :func:`is_main_process`;
* a dataset is prepared once: wrap its loading in :func:`main_process_first` so the main process fills the
  ``datasets`` cache and the others read it;
* numbers measured on a shard of the data (eval, rejection sampling) are combined with
  :func:`gather_metrics` before they are written.

>>> from r1lab import distributed as dist
>>> dist.num_processes(), dist.process_index(), dist.is_main_process()
(1, 0, True)
>>> dist.gather_metrics({"pass@1": 0.5, "n_items": 10}, weight_key="n_items")
{'pass@1': 0.5, 'n_items': 10}
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from r1lab.errors import UserError

log = logging.getLogger(__name__)

REDUCTIONS = ("mean", "sum", "max", "min")
VLLM_MODES = ("colocate", "server")

# Environment variables set by torchrun / accelerate launch / deepspeed / MPI for a multi-process job.
_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: Sequence[str], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                continue
    return default


def launched_world_size() -> int:
    """The number of processes the launcher started (from the environment; 1 without a launcher).

    Cheap: imports nothing and starts no process group.

    >>> launched_world_size()  # doctest: +SKIP
    1
    """
    return max(1, _env_int(_WORLD_SIZE_VARS, 1))


def _want_cpu() -> bool:
    """Whether the process group should be a CPU (gloo) one.

    Transformers' ``Trainer`` builds its ``PartialState(cpu=use_cpu)``; r1lab sets ``use_cpu`` when CUDA is
    absent, so the state created here must agree, or a helper called first would leave a non-distributed state
    behind for the trainer.
    """
    flag = os.environ.get("ACCELERATE_USE_CPU", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    import torch

    return not torch.cuda.is_available()


def state():
    """The process's :class:`accelerate.PartialState` (created on first use; joins the launcher's group).

    Without a launcher it is a single-process state and starts no process group.
    """
    from accelerate import PartialState

    if PartialState._shared_state:  # already built (by us or by a Trainer): reuse it as is
        return PartialState()
    return PartialState(cpu=_want_cpu())


def is_distributed() -> bool:
    """True when more than one process takes part in this job."""
    return launched_world_size() > 1 and num_processes() > 1


def num_processes() -> int:
    """How many processes take part (1 without a launcher)."""
    if launched_world_size() == 1:
        return 1
    return int(state().num_processes)


def process_index() -> int:
    """This process's global rank (0 without a launcher)."""
    if launched_world_size() == 1:
        return 0
    return int(state().process_index)


def is_main_process() -> bool:
    """True on the one process that writes run files (global rank 0)."""
    return process_index() == 0


def is_local_main_process() -> bool:
    """True on the first process of each machine (writes machine-local caches)."""
    if launched_world_size() == 1:
        return True
    return bool(state().is_local_main_process)


def wait_for_everyone() -> None:
    """Barrier: return once every process got here. A no-op in a single process."""
    if launched_world_size() > 1:
        state().wait_for_everyone()


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on the main process first, then on the others.

    Use it around dataset preparation: the main process downloads / builds / caches, the others then read the
    finished cache instead of racing to write it.

    >>> with main_process_first():
    ...     rows = [1, 2, 3]   # e.g. load_grpo_dataset(...)
    """
    if launched_world_size() == 1:
        yield
        return
    with state().main_process_first():
        yield


def shard(items: Sequence[Any]) -> list[Any]:
    """This process's contiguous share of ``items`` (all of them in a single process): accelerate's
    ``split_between_processes``. Shares differ by at most one item; concatenating every rank's share in rank
    order gives ``items`` back.

    >>> shard([1, 2, 3])
    [1, 2, 3]
    """
    if launched_world_size() == 1 or num_processes() == 1:
        return list(items)
    with state().split_between_processes(list(items)) as share:
        return list(share)


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process (``[obj]`` in a single process): accelerate's
    ``gather_object``. Objects must be picklable; this is for small things (metric dicts, a shard's rows)."""
    if launched_world_size() == 1 or num_processes() == 1:
        return [obj]
    from accelerate.utils import gather_object

    state()  # make sure the process group exists
    return gather_object([obj])  # one-element lists, concatenated in rank order


def gather_metrics(metrics: dict[str, Any], *, reduce: str = "mean", weight_key: str | None = None) -> dict:
    """Combine one metrics dict per process into one dict, the same on every process.

    Numeric values are reduced with ``reduce`` (mean, sum, max or min) over the processes that report the key;
    with ``weight_key`` (e.g. ``"n_items"``) means are weighted by that count and the count itself is summed,
    so shards of different sizes combine to the exact global average. Non-numeric values (and NaN-only ones)
    come from the lowest rank that has them. In a single process the input comes back unchanged (a copy).

    >>> gather_metrics({"loss": 2.0, "model": "tiny"})
    {'loss': 2.0, 'model': 'tiny'}
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    return combine_metrics(gather_objects(dict(metrics)), reduce=reduce, weight_key=weight_key)


def combine_metrics(
    per_process: Sequence[dict[str, Any]], *, reduce: str = "mean", weight_key: str | None = None
) -> dict[str, Any]:
    """The pure part of :func:`gather_metrics`: reduce a list of per-process dicts (rank order) into one.

    >>> combine_metrics([{"acc": 1.0, "n": 1}, {"acc": 0.0, "n": 3}], weight_key="n")
    {'acc': 0.25, 'n': 4}
    >>> combine_metrics([{"loss": 1.0}, {"loss": 3.0}], reduce="max")
    {'loss': 3.0}
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, not {reduce!r}")
    if len(per_process) == 1:
        return dict(per_process[0])
    keys: list[str] = []
    for d in per_process:
        keys.extend(k for k in d if k not in keys)
    out: dict[str, Any] = {}
    for key in keys:
        present = [(d[key], d) for d in per_process if key in d]
        if any(not _is_number(v) and v is not None for v, _ in present):
            out[key] = present[0][0]  # text, lists...: the lowest rank's value
            continue
        numbers = [(v, d) for v, d in present if _is_number(v) and not math.isnan(v)]
        if not numbers:  # only None / NaN
            out[key] = present[0][0]
            continue
        out[key] = _reduce(key, numbers, reduce, weight_key)
    return out


def _reduce(key: str, numbers: list[tuple[float, dict]], reduce: str, weight_key: str | None) -> float | int:
    values = [v for v, _ in numbers]
    all_int = all(isinstance(v, int) for v in values)
    if key == weight_key or reduce == "sum":
        return sum(values) if all_int else float(sum(values))
    if reduce in ("max", "min"):
        return (max if reduce == "max" else min)(values)
    weights = [d.get(weight_key) if weight_key else 1 for _, d in numbers]
    if not all(_is_number(w) for w in weights):  # a process did not report the count: plain mean
        weights = [1] * len(values)
    total = float(sum(weights))
    return sum(float(v) * w for v, w in zip(values, weights, strict=True)) / total if total else math.nan


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def shutdown() -> None:
    """Tear down the process group at the end of a multi-process command.

    Without it, gloo aborts the interpreter at exit ("terminate called without an active exception") and the
    launcher reports a failure although every stage finished.
    """
    if launched_world_size() == 1:
        return
    try:
        import torch.distributed as tdist
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()
        tdist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- vLLM


def check_vllm(settings: dict[str, Any], *, where: str = "recipe") -> None:
    """Fail early, with how to fix it, when a stage asks for vLLM generation that cannot work here.

    ``settings`` holds TRL's field names (``use_vllm``, ``vllm_mode``, ``vllm_gpu_memory_utilization``,
    ``vllm_tensor_parallel_size``, ``vllm_server_host``, ``vllm_server_port``, ``vllm_server_base_url``).
    Checks, in order: the values are valid; vLLM is importable; CUDA is present; in ``server`` mode, the
    ``trl vllm-serve`` server answers. Does nothing when ``use_vllm`` is false.

    >>> check_vllm({"use_vllm": False})
    """
    if not settings.get("use_vllm"):
        return
    validate_vllm_settings(settings, where=where)
    if not vllm_available():
        raise UserError(
            f"{where}: use_vllm is true but vLLM is not installed",
            hint="install it on a CUDA machine (`pip install -e .[vllm]`), or set use_vllm: false to generate "
            "with transformers",
        )
    if not cuda_available():
        raise UserError(
            f"{where}: use_vllm is true but no CUDA GPU is visible (vLLM generation needs one)",
            hint="run on a GPU machine, or set use_vllm: false",
        )
    if settings.get("vllm_mode", "colocate") == "server":
        host, port = vllm_server_address(settings)
        if not _port_open(host, port):
            raise UserError(
                f"{where}: vllm_mode is server but no vLLM server answers at {host}:{port}",
                hint="start one on other GPUs first, e.g. `CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model "
                "<model dir>`, and point vllm_server_host / vllm_server_port at it",
            )


def validate_vllm_settings(settings: dict[str, Any], *, where: str = "recipe") -> None:
    """Check the vLLM fields' values (pure; no import of vLLM).

    >>> validate_vllm_settings({"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3})
    """
    mode = settings.get("vllm_mode", "colocate")
    if mode not in VLLM_MODES:
        raise UserError(
            f"{where}: vllm_mode {mode!r} is not one of {', '.join(VLLM_MODES)}",
            hint="colocate: vLLM shares the training GPUs; server: a separate `trl vllm-serve`",
        )
    util = settings.get("vllm_gpu_memory_utilization", 0.3)
    if not _is_number(util) or not 0 < float(util) <= 1:
        raise UserError(
            f"{where}: vllm_gpu_memory_utilization must be a number in (0, 1], not {util!r}",
            hint="the share of each GPU's memory vLLM may take, e.g. 0.3 in colocate mode",
        )
    tp = settings.get("vllm_tensor_parallel_size", 1)
    if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
        raise UserError(
            f"{where}: vllm_tensor_parallel_size must be a positive integer, not {tp!r}",
            hint="1 for models that fit one GPU; it must divide the number of training processes "
            "in colocate mode",
        )
    if mode == "colocate" and tp > 1 and launched_world_size() % tp:
        raise UserError(
            f"{where}: vllm_tensor_parallel_size {tp} does not divide the {launched_world_size()} processes",
            hint="pick a tensor-parallel size that divides --num_processes",
        )
    port = settings.get("vllm_server_port", 8000)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise UserError(f"{where}: vllm_server_port must be a port number, not {port!r}", hint="e.g. 8000")


def vllm_server_address(settings: dict[str, Any]) -> tuple[str, int]:
    """``(host, port)`` of the ``trl vllm-serve`` server a stage talks to.

    >>> vllm_server_address({"vllm_server_base_url": "http://10.0.0.5:8001"})
    ('10.0.0.5', 8001)
    >>> vllm_server_address({})
    ('0.0.0.0', 8000)
    """
    url = settings.get("vllm_server_base_url")
    if url:
        from urllib.parse import urlparse

        parsed = urlparse(url if "//" in url else f"http://{url}")
        return parsed.hostname or "localhost", parsed.port or 80
    return str(settings.get("vllm_server_host", "0.0.0.0")), int(settings.get("vllm_server_port", 8000))


def vllm_available() -> bool:
    """True when the ``vllm`` package can be imported here (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def _port_open(host: str, port: int, timeout: float = 3.0) -> bool:
    # "0.0.0.0" is where the server listens, not an address to reach it by.
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host
    try:
        with socket.create_connection((target, port), timeout=timeout):
            return True
    except OSError:
        return False
