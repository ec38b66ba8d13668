"""A one-line description of the machine a benchmark ran on, stored beside its results."""

from __future__ import annotations

import os
import platform


def describe_machine() -> dict:
    """CPU model, core count, memory, torch version and GPU (if any)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def describe_machine_now(**extra) -> dict:
    """:func:`describe_machine` plus what a result needs at the moment it is written: torch's thread count,
    the load average (the machine may be shared) and any ``extra`` fields."""
    info = describe_machine()
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    info.update(extra)
    try:
        info["load_average_at_end"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    return info


def memory_read_gbps(mib: int = 512, repeats: int = 5) -> float:
    """This machine's memory read rate (GB/s): the best of ``repeats`` ``torch.sum`` over ``mib`` MiB of
    fp32, with torch's threads (a reduction does almost no arithmetic per byte, so it is bound by reading).
    A decode step must read all the weights once, so this is the bound on its time."""
    import time

    import torch

    data = torch.ones(mib * 2**20 // 4)
    data.sum()  # first touch: pages mapped and in no cache
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - t0)
    return data.numel() * 4 / best / 1e9
