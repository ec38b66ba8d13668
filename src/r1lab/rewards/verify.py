"""Bounded, batched answer verification.

math-verify's own timeouts use ``signal.alarm``, which only works in the main thread, and some inputs
(``\\boxed{9^{9^{9^{9}}}}``, ``100000!``, deeply nested braces) make sympy run for minutes or eat
memory. So every item that needs math-verify runs in a worker process with a per-item deadline; a
worker that misses it is killed and replaced. Plain numbers (most GSM8K-style items) never leave the
main process: they are compared exactly as fractions. Results for repeated (answer, reference) pairs
are cached, as are parsed references inside each worker.

Public entry point: :func:`verify_answers`.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from multiprocessing.connection import wait

from r1lab.rewards.extract import plain_number, reference_answer

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
# Answers longer than this are not mathematical answers; they are judged wrong without parsing.
MAX_VERIFY_CHARS = 2000
# Address-space cap per worker, so a runaway sympy computation raises MemoryError instead of
# taking the machine down.
WORKER_MEMORY_BYTES = 4 * 1024**3


def default_workers() -> int:
    """Worker processes to use: the CPU cores this process may run on (at least 1, at most 16)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))


def _worker_main(conn) -> None:
    """Loop of a worker process: receive (i, answer, reference), send (i, result, error)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform without the limit
        pass
    from r1lab.rewards import _mv

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        i, answer, reference = msg
        try:
            result, error = _mv.verify_pair(answer, reference), None
        except BaseException as exc:  # MemoryError, RecursionError: report, keep serving
            result, error = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        try:
            conn.send((i, result, error))
        except (EOFError, OSError):
            return


class _Worker:
    def __init__(self, ctx):
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.proc = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="r1lab-verify")
        self.proc.start()
        child.close()
        self.task: int | None = None
        self.deadline = 0.0

    def kill(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout=1)
        self.kill()


class VerifierPool:
    """A fixed set of worker processes that verify (answer, reference) pairs under a deadline each.

    >>> pool = VerifierPool(n_workers=1)
    >>> pool.map([("\\\\frac{1}{2}", "0.5"), ("3", "\\\\pi")], timeout=5.0)
    [True, False]
    >>> pool.close()
    """

    def __init__(self, n_workers: int | None = None):
        self.n_workers = n_workers or default_workers()
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(method)
        if method == "forkserver":
            # Workers fork from a server that already imported math-verify and sympy: respawning a
            # killed worker then costs milliseconds, not the ~1 s import.
            self._ctx.set_forkserver_preload(["r1lab.rewards._mv"])
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.n_timeouts = 0

    def _ensure_started(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker(self._ctx))

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        new = _Worker(self._ctx)
        self._workers[self._workers.index(w)] = new
        return new

    def map(
        self, pairs: Sequence[tuple[str | None, str]], *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[bool | None]:
        """Verify each (answer, reference) pair; an item past ``timeout`` seconds counts as False."""
        results: list[bool | None] = [False] * len(pairs)
        if not pairs:
            return results
        with self._lock:
            self._ensure_started()
            todo = list(range(len(pairs)))[::-1]
            busy: dict = {}  # conn -> worker
            errors: list[str] = []
            while todo or busy:
                for w in self._workers:
                    if not todo:
                        break
                    if w.task is None:
                        i = todo.pop()
                        try:
                            w.conn.send((i, pairs[i][0], pairs[i][1]))
                        except (OSError, ValueError):
                            todo.append(i)
                            self._replace(w)
                            continue
                        w.task, w.deadline = i, time.monotonic() + timeout
                        busy[w.conn] = w
                if not busy:
                    continue
                wait_for = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
                ready = wait(list(busy), timeout=wait_for)
                for conn in ready:
                    w = busy.pop(conn)
                    try:
                        i, result, error = conn.recv()
                    except (EOFError, OSError):
                        # The worker died (e.g. killed by the OS): its item is a failure.
                        errors.append(f"item {w.task}: worker died")
                        results[w.task] = False
                        w.task = None
                        self._replace(w)
                        continue
                    results[i] = result
                    if error:
                        errors.append(f"item {i}: {error}")
                    w.task = None
                now = time.monotonic()
                for conn, w in list(busy.items()):
                    if w.deadline <= now:
                        busy.pop(conn)
                        results[w.task] = False
                        self.n_timeouts += 1
                        errors.append(f"item {w.task}: timed out after {timeout:g}s")
                        w.task = None
                        self._replace(w)
            if errors:
                log.warning(
                    "answer verification failed for %d item(s), scored as wrong; first: %s",
                    len(errors),
                    errors[0],
                )
        return results

    def close(self) -> None:
        """Stop every worker process (idempotent)."""
        with self._lock:
            for w in self._workers:
                w.stop()
            self._workers = []


_POOL: VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> VerifierPool:
    """The process-wide verifier pool, started on first use and stopped at interpreter exit."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = VerifierPool()
            atexit.register(shutdown_pool)
        return _POOL


def shutdown_pool() -> None:
    """Stop the process-wide pool's workers (it restarts on next use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None


class _ResultCache:
    """Bounded LRU of (answer, reference) -> verdict: GRPO groups repeat the same answers."""

    def __init__(self, size: int = 200_000):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return KeyError

    def put(self, key, value) -> None:
        with self._lock:
            self._d[key] = value
            if len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_CACHE = _ResultCache()


def _clean(text: str) -> str:
    # NUL bytes and lone surrogates (invalid UTF-8 decoded with surrogateescape) are never part of an
    # answer; dropping them keeps pipes, regexes and the LaTeX parser on ordinary text.
    text = text.replace("\x00", "")
    return text.encode("utf-8", "ignore").decode("utf-8", "ignore") if not text.isascii() else text


def verify_answers(
    answers: Sequence[str | None],
    references: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: VerifierPool | None = None,
) -> list[bool | None]:
    """Judge each extracted answer against its reference; the batch form used by every reward.

    ``references`` may be bare answers (``"72"``, ``"\\frac{3}{4}"``), GSM8K solutions ending in
    ``#### 72``, or worked solutions with a ``\\boxed{}``. Returns True/False per item, or None when
    the reference cannot be parsed (TRL then skips the item). A missing answer (None) is False.
    Each item needing math-verify is bounded by ``timeout`` seconds in a worker process.

    >>> verify_answers(["18", "$18", "19", None, "\\\\frac{1}{2}"], ["18", "#### 18", "18", "18", "0.5"])
    [True, True, False, False, True]
    """
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    results: list[bool | None] = [None] * len(answers)
    pending: list[int] = []
    pending_pairs: list[tuple[str | None, str]] = []
    for i, (ans, ref) in enumerate(zip(answers, references, strict=True)):
        ref_text = _clean(reference_answer("" if ref is None else str(ref)))
        if not ref_text:
            results[i] = None
            continue
        ans = None if ans is None else _clean(str(ans)).strip()
        ref_num = plain_number(ref_text)
        if ref_num is not None:
            # Fast path: a plain-number reference needs math-verify only for a LaTeX-ish answer.
            if not ans:
                results[i] = False
                continue
            ans_num = plain_number(ans)
            if ans_num is not None:
                results[i] = ans_num == ref_num
                continue
        if ans is not None and len(ans) > MAX_VERIFY_CHARS:
            ans = None  # still sent, so an unparseable reference gives None rather than False
        key = (ans, ref_text)
        cached = _CACHE.get(key)
        if cached is not KeyError:
            results[i] = cached
            continue
        pending.append(i)
        pending_pairs.append(key)
    if pending:
        # Identical pairs inside one batch are verified once.
        unique = list(dict.fromkeys(pending_pairs))
        pool = workers or get_pool()
        verdicts = dict(zip(unique, pool.map(unique, timeout=timeout), strict=True))
        for i, key in zip(pending, pending_pairs, strict=True):
            results[i] = verdicts[key]
            _CACHE.put(key, verdicts[key])
    return results
