"""Entry point of a verifier worker process: ``python -m r1lab.rewards._worker``.

Protocol: one JSON value per line. The worker writes ``{"ready": true}`` once math-verify is imported,
then for each request ``[i, answer, reference]`` on stdin writes ``[i, result, error]`` on stdout;
``null`` or end of input stops it. A fresh interpreter (not ``multiprocessing``) is used so the
user's ``__main__`` script is never re-imported in the worker.
"""

from __future__ import annotations

import json
import os
import sys

MEMORY_ENV = "R1LAB_VERIFY_MEMORY_BYTES"


def _limit_memory() -> None:
    # Address-space cap, so a runaway sympy computation raises MemoryError instead of swapping.
    try:
        import resource

        limit = int(os.environ.get(MEMORY_ENV, str(4 * 1024**3)))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without the limit
        pass


def main() -> None:
    """Serve verification requests until stdin closes."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol stream
    _limit_memory()
    from r1lab.rewards import _mv

    def send(obj) -> None:
        out.write(json.dumps(obj).encode("ascii") + b"\n")
        out.flush()

    send({"ready": True})
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        if msg is None:
            return
        i, answer, reference = msg
        try:
            result, error = _mv.verify_pair(answer, reference), None
        except BaseException as exc:  # MemoryError, RecursionError: report it and keep serving
            result, error = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        send([i, result, error])


if __name__ == "__main__":
    main()
