"""Small file helpers: every write is atomic (temp file + rename), so a killed process never
leaves a half-written file where a reader would trust it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        # backslashreplace: a lone surrogate (valid in a JSON string, not in UTF-8) is written as its JSON
        # escape instead of failing the whole write
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write rows as JSON Lines atomically."""
    return atomic_write_text(
        path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    )


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one row to a JSONL log, flushed to disk. A torn last line (kill -9 mid-write) is
    ignored by :func:`read_jsonl`, so appends are safe to resume from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as f:
        f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class JsonlLine:
    """One non-blank line of JSON Lines text: its 1-based ``number``, the parsed ``value`` (None when the
    line is not JSON, ``error`` then says why) and whether it is the text's ``last`` line (where a kill
    mid-append leaves a torn line)."""

    number: int
    value: Any
    error: json.JSONDecodeError | None
    last: bool


def jsonl_lines(text: str) -> Iterator[JsonlLine]:
    """Parse JSON Lines text line by line. The one JSONL parser: data files (errors that name the line),
    run logs (a torn last line is skipped) and the report (bad lines counted) differ only in what they do
    with a bad line.

    >>> [(x.number, x.value, x.error is not None, x.last) for x in jsonl_lines('{"a": 1}\\n\\n{"b"')]
    [(1, {'a': 1}, False, False), (3, None, True, True)]
    """
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield JsonlLine(number, json.loads(line), None, number == len(lines))
        except json.JSONDecodeError as err:
            yield JsonlLine(number, None, err, number == len(lines))
        except RecursionError:  # "[[[[..." 100,000 deep: not data anyone means, and not a crash either
            err = json.JSONDecodeError("nested too deeply", line, 0)
            yield JsonlLine(number, None, err, number == len(lines))


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = True) -> Iterator[dict]:
    """Yield rows of a JSONL file written by :func:`append_jsonl`; a final line cut short by a
    kill is skipped when ``tolerate_torn_tail``."""
    for line in jsonl_lines(Path(path).read_text(encoding="utf-8")):
        if line.error is not None:
            if tolerate_torn_tail and line.last:
                return
            raise line.error
        yield line.value


@contextmanager
def atomic_dir(final: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``final`` only when the block
    finishes without error. A reader that sees ``final`` sees it complete.

    With ``overwrite=False`` an existing ``final`` wins (another process built the same thing first,
    e.g. a cache entry) and the new copy is discarded."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        follow_umask(tmp)
        if final.exists():
            if not overwrite:
                return
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if overwrite or not final.exists():
                raise
        _fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def follow_umask(root: Path) -> None:
    """Give a tree built in a ``mkdtemp`` folder (0700), or written by a library with ``mkstemp`` (0600),
    the permissions every other file gets."""
    mask = _umask()
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files and folders that atomic writes leave behind when killed, under
    ``root`` (two levels: a run folder and its stage folders). Call it only while holding the run's lock."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for path in [*root.glob(".*.tmp"), *root.glob("*/.*.tmp"), *root.glob("*/*/.*.tmp")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block; if another process holds it,
    raise :class:`~r1lab.errors.UserError` at once. The lock goes with the process (kill -9 included)."""
    import fcntl

    from r1lab.errors import UserError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(
                f"{what} is in use by {holder}",
                hint="wait for it to finish, or use another --name",
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cache_dir(*parts: str) -> Path:
    """r1lab's cache (``$R1LAB_CACHE`` or ``~/.cache/r1lab``), with sub-folders created."""
    root = Path(os.environ.get("R1LAB_CACHE") or Path.home() / ".cache" / "r1lab")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def damaged_weights(directory: str | Path) -> str | None:
    """What is wrong with the ``*.safetensors`` files of a saved model or checkpoint, or None if they are
    whole: each file's header must parse and the file must hold every byte its header promises (a file
    cut short by a full disk or a copy gives itself away here, before a loader fails on it)."""
    import json
    import struct

    for path in sorted(Path(directory).glob("*.safetensors")):
        size = path.stat().st_size
        try:
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > size - 8:
                    return f"{path.name}: header runs past the end of the file"
                header = json.loads(f.read(n))
        except (OSError, struct.error, ValueError, UnicodeDecodeError) as err:
            return f"{path.name}: unreadable header ({err.__class__.__name__})"
        ends = [
            v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
        ]
        if 8 + n + max(ends, default=0) > size:
            return f"{path.name}: truncated ({size} bytes, header needs {8 + n + max(ends, default=0)})"
    return None


def hub_offline(*, datasets_too: bool = False) -> bool:
    """Whether the user turned the Hugging Face hub off (``HF_HUB_OFFLINE``; with ``datasets_too``, also
    ``HF_DATASETS_OFFLINE``), the one reading of those variables in r1lab.

    >>> old = os.environ.get("HF_HUB_OFFLINE"); os.environ["HF_HUB_OFFLINE"] = "yes"
    >>> hub_offline()
    True
    >>> _ = os.environ.pop("HF_HUB_OFFLINE") if old is None else os.environ.update(HF_HUB_OFFLINE=old)
    """
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets_too else ("HF_HUB_OFFLINE",)
    return any(os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on") for n in names)


# Bounds on a YAML document's size once its aliases are expanded: a recipe is a few hundred nodes, and a
# "billion laughs" document (aliases of aliases) is small on disk but expands to an unbounded tree.
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 100_000


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text`` (from ``where``, for messages) safely: plain data only (``yaml.SafeLoader``),
    refusing duplicate keys (YAML lets the last silently win) and documents whose expanded size is
    unreasonable (alias bombs), each with a :class:`~r1lab.errors.UserError` naming the line. Syntax errors
    keep their line and column.

    >>> parse_yaml("a: 1\\nb: [x, y]\\n", "r.yaml")
    {'a': 1, 'b': ['x', 'y']}
    >>> parse_yaml("a: 1\\na: 2\\n", "r.yaml")
    Traceback (most recent call last):
    r1lab.errors.UserError: r.yaml: line 2: duplicate key 'a' (first at line 1) (keep one of them)
    """
    import yaml

    from r1lab.errors import UserError

    class Loader(yaml.SafeLoader):
        def __init__(self, stream):
            super().__init__(stream)
            self.aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > MAX_YAML_ALIASES:
                    mark = self.peek_event().start_mark
                    raise UserError(
                        f"{where}: line {mark.line + 1}: more than {MAX_YAML_ALIASES} YAML aliases (*name)",
                        hint="write the values out; r1lab refuses alias-expanded documents this large",
                    )
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it
                    break
                if first is not None:
                    raise UserError(
                        f"{where}: line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                        f"(first at line {first})",
                        hint="keep one of them",
                    )
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_YAML_NODES:  # checked before constructing: building the expanded tree is the hang
            raise UserError(
                f"{where}: the YAML document expands to more than {MAX_YAML_NODES:,} values",
                hint="a recipe this large is almost certainly an alias bomb; write the values out",
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise UserError(yaml_error_message(err, text, where), hint="fix the syntax") from None
    finally:
        loader.dispose()


def yaml_error_message(err, text: str, where: str) -> str:
    """A PyYAML error as one line: where, line and column, what is wrong, and the offending line itself.

    >>> import yaml
    >>> text = "name: x\\nstages: [a, b\\nmodel: tiny\\n"
    >>> try:
    ...     yaml.safe_load(text)
    ... except yaml.YAMLError as err:
    ...     print(yaml_error_message(err, text, "r.yaml"))
    r.yaml: line 3, column 6: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence at line 2, column 9); the line: `model: tiny`
    """
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return f"{where}: not valid YAML: {' '.join(str(err).split())}"
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        problem += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    lines = text.splitlines()
    line = lines[mark.line].strip() if mark.line < len(lines) else ""
    if not line and context_mark is not None and context_mark.line < len(lines):  # the end of the text
        line = lines[context_mark.line].strip()
    shown = f"; the line: `{line[:120]}`" if line else ""
    return f"{where}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {problem}{shown}"


def _expanded_size(node, memo: dict) -> int:
    """How many nodes ``node`` stands for with every alias expanded (shared nodes counted each time)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a node that contains itself counts once (SafeLoader builds it as a cycle)
        children = node.value if isinstance(node.value, list) else []
        total = 1
        for child in children:
            for item in child if isinstance(child, tuple) else (child,):
                total += _expanded_size(item, memo)
                if total > MAX_YAML_NODES:
                    break
        memo[key] = min(total, MAX_YAML_NODES + 1)
    return memo[key]


def read_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file with :func:`parse_yaml`; a file that is not UTF-8 text is a
    :class:`~r1lab.errors.UserError` naming the file and the first bad byte's offset."""
    from r1lab.errors import UserError

    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise UserError(
            f"{path}: not UTF-8 text: byte {err.start} (line {line}) is 0x{data[err.start]:02x}",
            hint="save the file as UTF-8",
        ) from None
    return parse_yaml(text, str(path))
