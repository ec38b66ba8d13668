"""r1lab.allocator: large freed blocks stay in the heap for reuse on a CPU (glibc), and R1LAB_MALLOC=0 leaves
glibc's defaults alone. Each case runs in a fresh interpreter: mallopt settings last for the process."""

import json
import subprocess
import sys

import pytest

from r1lab.allocator import mapped_bytes

PROBE = """
import json, torch
from r1lab.allocator import keep_freed_memory, mapped_bytes
kept = keep_freed_memory() if {call} else None
big = torch.ones(64 * 2**20)          # 256 MiB: glibc maps a block this large on its own by default
during = mapped_bytes()
print(json.dumps({{"kept": kept, "during": during}}))
"""

needs_glibc = pytest.mark.skipif(mapped_bytes() is None, reason="needs glibc's mallinfo2 (Linux)")


def probe(call: bool, env: dict | None = None) -> dict:
    import os

    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(call=call)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_large_tensors_come_from_the_heap_once_freed_memory_is_kept():
    assert probe(call=False)["during"] >= 256 * 2**20  # glibc's default: its own mapping
    kept = probe(call=True, env={"R1LAB_MALLOC": "1"})
    assert kept["kept"] is True
    assert kept["during"] < 256 * 2**20  # the tensor is not a mapping of its own (imports map a few MB)


@needs_glibc
def test_r1lab_malloc_0_leaves_glibc_defaults():
    off = probe(call=True, env={"R1LAB_MALLOC": "0"})
    assert off["kept"] is False
    assert off["during"] >= 256 * 2**20


@needs_glibc
def test_loading_a_model_on_the_cpu_keeps_freed_memory():
    code = (
        "from r1lab.models import load_model; from r1lab import allocator; "
        "load_model('tiny', device='cpu'); print(allocator._done)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"
