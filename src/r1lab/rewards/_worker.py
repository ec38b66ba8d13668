"""Entry point of a verifier worker process: ``python -m r1lab.rewards._worker``.

Protocol: one JSON value per line. The worker writes ``{"ready": true}`` once math-verify is imported,
then for each request ``[i, answer, reference, soft_timeout]`` on stdin writes ``[i, result, error]``
on stdout; ``"clear"`` empties its reference cache (answered by a new handshake); ``null`` or end of
input stops it. A fresh interpreter (not ``multiprocessing``) is used so the
user's ``__main__`` script is never re-imported in the worker.
"""

from __future__ import annotations

import json
import os
import signal
import sys

MEMORY_ENV = "R1LAB_VERIFY_MEMORY_BYTES"
_WARMUP = [
    (r"6+9i", "-9"),
    (r"\left( 3, \frac{\pi}{2} \right)", "(3, 1)"),
    (r"(0,9) \cup (9,36)", "[1, 2)"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "x^2 + 1"),
    (r"120^\circ", r"\frac{2\pi}{3}"),
    (r"x = 5", r"\sqrt{2} \pm 1"),
    (r"\text{east}", "40_9"),
]


def _limit_memory() -> None:
    # Address-space cap, so a runaway sympy computation raises MemoryError instead of swapping.
    try:
        import resource

        limit = int(os.environ.get(MEMORY_ENV, str(4 * 1024**3)))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without the limit
        pass


class SoftTimeout(BaseException):
    """Raised by SIGPROF (the item's CPU-time budget) inside an item; a BaseException so library ``except Exception`` blocks
    cannot swallow it and carry on."""


def _on_alarm(signum, frame):
    raise SoftTimeout()


def _die_with_parent() -> None:
    # If the parent is killed outright, end too instead of finishing start-up as an orphan (Linux).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc: stdin EOF still ends us
        pass


def main() -> None:
    """Serve verification requests until stdin closes."""
    _die_with_parent()
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol stream
    _limit_memory()
    from r1lab.rewards import _mv

    def send(obj) -> None:
        out.write(json.dumps(obj).encode("ascii") + b"\n")
        out.flush()

    # sympy initialises lazily per kind of expression (complex numbers, tuples, intervals, matrices);
    # paying that here, before "ready", keeps the first real items from eating their deadline.
    for answer, reference in _WARMUP:
        try:
            _mv.verify_pair(answer, reference)
        except Exception:  # pragma: no cover - warm-up is best effort
            pass
    send({"ready": True})
    # The soft deadline counts this process's CPU time (ITIMER_PROF), not wall time: on a loaded machine
    # an item gets less of a core but the same CPU seconds, so its verdict does not depend on the load.
    signal.signal(signal.SIGPROF, _on_alarm)
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        if msg is None:
            return
        if msg == "clear":  # forget parsed references (benchmarks); answer with a new handshake
            _mv.parse_reference.cache_clear()
            send({"ready": True})
            continue
        i, answer, reference, soft_timeout = msg
        try:
            # A soft deadline interrupts pure-Python sympy work without losing this warm process; the
            # parent's hard deadline (kill + respawn) still covers work stuck in C code.
            signal.setitimer(signal.ITIMER_PROF, max(0.01, float(soft_timeout)))
            try:
                result, error = _mv.verify_pair(answer, reference), None
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        except SoftTimeout:
            result, error = False, f"timed out after {soft_timeout:g}s"
        except BaseException as exc:  # MemoryError, RecursionError: report it and keep serving
            result, error = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        send([i, result, error])


if __name__ == "__main__":
    main()
