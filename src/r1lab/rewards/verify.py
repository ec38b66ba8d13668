"""Bounded, batched answer verification.

math-verify's own timeouts use ``signal.alarm``, which only works in the main thread, and some inputs
(``\\boxed{9^{9^{9^{9}}}}``, ``100000!``, deeply nested braces) make sympy run for minutes or eat
memory. So every item that needs math-verify runs in a worker process with a per-item deadline: the
worker interrupts itself (SIGPROF) at 80% of it, and the parent kills and replaces a worker that still
misses it (stuck in C code). The deadline is in the worker's CPU seconds, not wall seconds: a verdict
must not depend on how loaded the machine is (a time-out under load would score a right answer 0 and
make a seeded run diverge from the same run on a quiet machine). A time-out is not cached. Plain numbers (most GSM8K-style items) never leave the
main process: they are compared exactly as fractions. Results for repeated (answer, reference) pairs
are cached, as are parsed references inside each worker.

Public entry point: :func:`verify_answers`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from r1lab.answers import reference_answer
from r1lab.rewards.extract import simple_rational

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 2.0
# The longest per-item budget accepted: math-verify settles real answers in well under a second, and the
# worker's CPU-time timer overflows on huge values (--timeout 1e308 made items fail, scored wrong).
MAX_TIMEOUT = 60.0
# Answers longer than this are not mathematical answers; they are judged wrong without parsing.
MAX_VERIFY_CHARS = 2000
MAX_REFERENCE_CHARS = 10_000
# Address-space cap per worker, so a runaway sympy computation raises MemoryError instead of
# taking the machine down.
WORKER_MEMORY_BYTES = 4 * 1024**3
MEMORY_ENV = "R1LAB_VERIFY_MEMORY_BYTES"  # read by r1lab.rewards._worker
# Workers interrupt themselves at this fraction of the deadline (no respawn needed); the parent kills
# a worker only when it misses the full deadline (stuck in C code).
SOFT_TIMEOUT_FRACTION = 0.8
# Items sent ahead to each worker (see VerifierPool.map).
PIPELINE_DEPTH = 2
# A worker that has used less CPU than its item's budget is waited for (it was starved by other load),
# up to this many times the budget in wall time: the backstop for a process that makes no progress at all.
WALL_BACKSTOP_FACTOR = 20.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used (Linux ``/proc``); None where unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return None


def default_workers() -> int:
    """Worker processes to use: the CPU cores this process may run on (at least 1, at most 16)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The worker must import this very r1lab, even when it runs from a source tree on sys.path.
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    env[MEMORY_ENV] = str(WORKER_MEMORY_BYTES)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class _Worker:
    """One ``python -m r1lab.rewards._worker`` process, its pipes and its in-flight items."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "r1lab.rewards._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(),
            close_fds=True,
            bufsize=0,
        )
        self.ready = False
        self.tasks: deque[int] = deque()  # sent, not answered; the head is being worked on
        self.deadline = 0.0  # when to look at the head item's CPU use again (wall clock)
        self.item_wall0 = 0.0  # wall clock and CPU seconds when the head item started
        self.item_cpu0: float | None = None
        self.started = time.monotonic()
        self._buf = b""

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, obj) -> None:
        view = memoryview(json.dumps(obj).encode("ascii") + b"\n")
        while view:  # an unbuffered pipe may take a long message in several writes
            view = view[os.write(self.proc.stdin.fileno(), view) :]

    def read_messages(self) -> list:
        """The complete messages available now (call when the pipe is readable); EOFError at exit."""
        chunk = os.read(self.fileno(), 1 << 16)
        if not chunk:
            raise EOFError("verifier worker exited")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def start_item(self, timeout: float) -> None:
        """The head item starts now: its budget is ``timeout`` CPU seconds of this worker."""
        self.item_wall0 = time.monotonic()
        self.item_cpu0 = process_cpu_seconds(self.proc.pid)
        self.deadline = self.item_wall0 + timeout

    def over_budget(self, timeout: float, now: float) -> bool:
        """At its wall deadline: has the head item used its ``timeout`` CPU seconds? If not (the machine is
        busy and the worker got less than a core), push the deadline back by what is left."""
        cpu = process_cpu_seconds(self.proc.pid)
        if cpu is None or self.item_cpu0 is None:  # no CPU clock here: wall time it is
            return True
        used = cpu - self.item_cpu0
        if used >= timeout or now - self.item_wall0 >= WALL_BACKSTOP_FACTOR * timeout:
            return True
        self.deadline = now + max(0.02, timeout - used)
        return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered
            log.warning("verifier worker %d did not exit after SIGKILL", self.proc.pid)

    def stop(self) -> None:
        # Workers keep no state worth a graceful exit, and sympy's interpreter teardown takes ~0.5 s.
        self.kill()


@dataclass
class _Job:
    """One :meth:`VerifierPool.map` call in flight: the pairs, their results so far, the items not yet sent
    (popped from the end) and the failures to report."""

    pairs: Sequence
    results: list[bool | None]
    timeout: float
    todo: list[int]
    errors: list[str] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)  # items scored wrong because verification failed
    n_errors: int = 0  # failures that are not a time-out (a crash, an exception in the verifier)

    def fail(self, i: int, why: str) -> None:
        self.results[i] = False
        self.failed.add(i)
        self.errors.append(f"item {i}: {why}")
        self.n_errors += not why.startswith("timed out")


class VerifierPool:
    """A fixed set of worker processes that verify (answer, reference) pairs under a deadline each.

    Workers are fresh interpreters (``python -m r1lab.rewards._worker``), so nothing of the caller's
    ``__main__`` runs in them; they take ~1-2 s to import math-verify, once. A worker that passes an
    item's deadline is killed and replaced; its item counts as wrong.

    >>> pool = VerifierPool(n_workers=1)
    >>> pool.map([("\\\\frac{1}{2}", "0.5"), ("3", "\\\\pi")], timeout=5.0)
    [True, False]
    >>> pool.close()
    """

    # Longest wait for a new worker to import math-verify before giving up on it.
    STARTUP_TIMEOUT = 60.0

    def __init__(self, n_workers: int | None = None):
        self.n_workers = n_workers or default_workers()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self.n_timeouts = 0
        self.n_errors = 0  # verification failures that are not a time-out (see verify_answers)
        self.n_restarts = 0

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers."""
        return [w.proc.pid for w in self._workers]

    def _ensure_started(self) -> None:
        while len(self._workers) < self.n_workers:
            self._workers.append(_Worker())

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.n_restarts += 1
        self._workers[self._workers.index(w)] = _Worker()

    def map(
        self, pairs: Sequence[tuple[str | None, str]], *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[bool | None]:
        """Verify each (answer, reference) pair; an item past ``timeout`` CPU seconds counts as False."""
        return self.map_with_failures(pairs, timeout=timeout)[0]

    def map_with_failures(
        self, pairs: Sequence[tuple[str | None, str]], *, timeout: float = DEFAULT_TIMEOUT
    ) -> tuple[list[bool | None], set[int]]:
        """:meth:`map`, and the indices of the items scored False because verification failed (a time-out,
        a crash) rather than because the answer is wrong."""
        timeout = check_timeout(timeout)
        results: list[bool | None] = [False] * len(pairs)
        if not pairs:
            return results, set()
        with self._lock:
            try:
                return self._map(pairs, timeout, results)
            except BaseException:
                # Interrupted (Ctrl-C, an error) with items in flight: their answers would arrive during
                # the next call and be taken for its items. Drop the busy workers; new ones start on use.
                for w in [w for w in self._workers if w.tasks or not w.ready]:
                    w.kill()
                    self._workers.remove(w)
                raise

    def _map(self, pairs, timeout: float, results: list[bool | None]) -> tuple[list[bool | None], set[int]]:
        self._ensure_started()
        job = _Job(pairs, results, timeout, todo=list(range(len(pairs)))[::-1])
        while job.todo or any(w.tasks for w in self._workers):
            self._feed(job)
            self._collect(job, wait(self._workers, timeout=self._time_to_next_deadline()))
            self._expire(job)
        self.n_errors += job.n_errors
        if job.errors:
            log.warning(
                "answer verification failed for %d item(s) (%d not a time-out), scored as wrong; first: %s",
                len(job.errors),
                job.n_errors,
                job.errors[0],
            )
        return results, job.failed

    def _feed(self, job: _Job) -> None:
        """Keep two items per ready worker: the next one waits in the pipe, so a busy machine's scheduling
        delay of this (parent) process does not leave the worker idle."""
        for w in list(self._workers):
            while job.todo and w.ready and len(w.tasks) < PIPELINE_DEPTH:
                i = job.todo.pop()
                try:
                    w.send([i, job.pairs[i][0], job.pairs[i][1], job.timeout * SOFT_TIMEOUT_FRACTION])
                except (OSError, ValueError):
                    job.todo.append(i)
                    self._fail(w, job, "worker pipe closed")
                    break
                if not w.tasks:
                    w.start_item(job.timeout)
                w.tasks.append(i)

    def _time_to_next_deadline(self) -> float | None:
        deadlines = [w.deadline for w in self._workers if w.tasks]
        deadlines += [w.started + self.STARTUP_TIMEOUT for w in self._workers if not w.ready]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _collect(self, job: _Job, ready_workers) -> None:
        """Record the answers of the workers that have written (or mark them ready, or dead)."""
        for w in ready_workers:
            try:
                messages = w.read_messages()
            except (EOFError, OSError, ValueError):
                self._fail(w, job, "worker died")  # killed by the OS, crashed
                continue
            for msg in messages:
                if isinstance(msg, dict):  # the ready handshake
                    w.ready = True
                    continue
                i, result, error = msg
                job.results[i] = result
                if error:
                    job.fail(i, error)
                    self.n_timeouts += error.startswith("timed out")
                if w.tasks and w.tasks[0] == i:
                    w.tasks.popleft()
                    if w.tasks:
                        w.start_item(job.timeout)  # the next item starts now

    def _expire(self, job: _Job) -> None:
        """Replace workers past their item's deadline; a worker that never started is an error."""
        now = time.monotonic()
        for w in list(self._workers):
            if w.tasks and w.deadline <= now and w.over_budget(job.timeout, now):
                self.n_timeouts += 1
                self._fail(w, job, f"timed out after {job.timeout:g} CPU seconds")
            elif not w.ready and w.started + self.STARTUP_TIMEOUT <= now:
                raise RuntimeError(
                    "verifier worker did not start; run `python -m r1lab.rewards._worker` to see why"
                )

    def _fail(self, w: _Worker, job: _Job, why: str) -> None:
        """Replace a failed worker. Its head item is charged with the failure (scored wrong); the items
        queued behind it are retried."""
        if w.tasks:
            head = w.tasks.popleft()
            job.fail(head, why)
            job.todo.extend(reversed(w.tasks))
        self._replace(w)

    def clear_worker_caches(self) -> None:
        """Make every live worker forget its parsed references (keeps the processes warm)."""
        with self._lock:
            for w in list(self._workers):
                if not w.ready or w.tasks:
                    continue
                try:
                    w.send("clear")
                    w.ready = False
                    while not any(isinstance(m, dict) for m in w.read_messages()):
                        pass
                    w.ready = True
                except (EOFError, OSError, ValueError):
                    self._replace(w)

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
# References math-verify has parsed (so an answer with the same text is equal without asking it).
_KNOWN_REFS = _ResultCache(50_000)


# How items were decided since the last reset (benchmarks, debugging): exact fast path, same text as a
# known reference, verdict cache, duplicate inside a batch, sent to math-verify, or no reference.
STATS: Counter = Counter()


def clear_caches() -> None:
    """Forget cached verdicts and known references (benchmarks, tests)."""
    _CACHE.clear()
    _KNOWN_REFS.clear()
    STATS.clear()


def _squash(text: str) -> str:
    return "".join(text.split())


def _clean(text: str) -> str:
    # NUL bytes and lone surrogates (invalid UTF-8 decoded with surrogateescape) are never part of an
    # answer; dropping them keeps pipes, regexes and the LaTeX parser on ordinary text.
    text = text.replace("\x00", "")
    return text.encode("utf-8", "ignore").decode("utf-8", "ignore") if not text.isascii() else text


def check_timeout(timeout) -> float:
    """``timeout`` as a positive, finite number of seconds, else a :class:`UserError` (0, a negative number or
    nan would remove the bound on verification time).

    >>> check_timeout("2.5")
    2.5
    """
    import math

    from r1lab.errors import UserError

    try:
        value = float(timeout)
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise UserError(
            f"verification timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {timeout!r}",
            hint="e.g. --timeout 2 (the default)",
        )
    return value


_ASK_MATH_VERIFY = object()


def _quick_verdict(ans: str | None, ref) -> tuple[object, tuple[str | None, str]]:
    """The verdict of one item when it is decided without math-verify (no usable reference, two plain
    numbers, the text of a reference math-verify already parsed, a cached pair), else
    ``_ASK_MATH_VERIFY``; and the cleaned ``(answer, reference)`` pair."""
    ref_text = _clean(reference_answer("" if ref is None else str(ref)))
    if not ref_text or len(ref_text) > MAX_REFERENCE_CHARS:
        STATS["no_reference"] += 1  # nothing to judge against (an answer is not 10,000 characters long)
        return None, (ans, ref_text)
    ans = None if ans is None else _clean(str(ans)).strip()
    ref_num = simple_rational(ref_text)
    if ref_num is not None:
        # Fast path: a plain-number or integer-fraction reference needs math-verify only for a
        # LaTeX-ish answer; two exact values are compared exactly.
        ans_num = simple_rational(ans) if ans else None
        if not ans or ans_num is not None:
            STATS["fast_path"] += 1
            return bool(ans) and ans_num == ref_num, (ans, ref_text)
    if ans is not None and len(ans) > MAX_VERIFY_CHARS:
        ans = None  # still sent, so an unparseable reference gives None rather than False
    if ans is not None and _KNOWN_REFS.get(ref_text) is True and _squash(ans) == _squash(ref_text):
        # The same text as a reference math-verify has already parsed: equal, no need to ask.
        STATS["same_text"] += 1
        return True, (ans, ref_text)
    cached = _CACHE.get((ans, ref_text))
    if cached is not KeyError:
        STATS["cached"] += 1
        return cached, (ans, ref_text)
    return _ASK_MATH_VERIFY, (ans, ref_text)


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
    timeout = check_timeout(timeout)
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers but {len(references)} references")
    results: list[bool | None] = [None] * len(answers)
    pending: list[int] = []
    pending_pairs: list[tuple[str | None, str]] = []
    for i, (ans, ref) in enumerate(zip(answers, references, strict=True)):
        verdict, pair = _quick_verdict(ans, ref)
        if verdict is _ASK_MATH_VERIFY:
            pending.append(i)
            pending_pairs.append(pair)
        else:
            results[i] = verdict
    if pending:
        # Identical pairs inside one batch are verified once.
        unique = list(dict.fromkeys(pending_pairs))
        STATS["math_verify"] += len(unique)
        STATS["deduplicated"] += len(pending) - len(unique)
        pool = workers or get_pool()
        errors_before = pool.n_errors
        judged, failed = pool.map_with_failures(unique, timeout=timeout)
        # a failure that is not a time-out is counted (STATS["errors"]): eval and `rewards score` report it
        STATS["errors"] += pool.n_errors - errors_before
        verdicts = dict(zip(unique, judged, strict=True))
        failed_pairs = {unique[j] for j in failed}
        for i, key in zip(pending, pending_pairs, strict=True):
            results[i] = verdicts[key]
            if key not in failed_pairs:  # a failure (time-out, crash) is retried next time, not remembered
                _CACHE.put(key, verdicts[key])
            if verdicts[key] is not None:
                _KNOWN_REFS.put(key[1], True)
    return results
