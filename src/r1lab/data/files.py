"""Local data files: JSONL, JSON, CSV and Parquet, read with errors that name the file and line;
and local dataset directories (a hub snapshot, a ``save_to_disk`` folder, or a folder of split files).

Each reader yields ``(where, row)`` pairs, ``where`` being e.g. ``"data.jsonl line 7"`` (1-based
lines for text formats, 0-based ``row`` indices for JSON arrays and Parquet), so any later
complaint about a row can say exactly where it is. Malformed files — truncated JSONL, text that is
not UTF-8, a non-object row, an empty file — raise :class:`r1lab.errors.UserError`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from r1lab.errors import UserError
from r1lab.io import jsonl_lines

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
Rows = Iterator[tuple[str, dict]]


def is_data_file(source: str) -> bool:
    """Whether ``source`` names a local data file by its suffix (it may not exist yet)."""
    return Path(source).suffix.lower() in SUFFIXES


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a BOM is dropped); a decoding error names the line and byte."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(
            f"cannot read {path}: {err.strerror or err}", hint="check the path and its permissions"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path} line {line}: not valid UTF-8 (byte {data[err.start]:#04x} at offset {err.start})",
            hint="re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 in > out",
        ) from None


def read_jsonl(path: Path) -> Rows:
    """Rows of a JSON Lines file; blank lines are ignored."""
    text = _read_text(path)
    count = 0
    for line in jsonl_lines(text):
        if line.error is not None:
            truncated = line.last and not text.endswith("\n")
            raise UserError(
                f"{path} line {line.number}: invalid JSON ({line.error.msg} at column {line.error.colno})"
                + (" - the file looks truncated" if truncated else ""),
                hint="each line must be one JSON object; fix or delete that line",
            ) from None
        if not isinstance(line.value, dict):
            raise UserError(
                f"{path} line {line.number}: expected a JSON object, got {type(line.value).__name__}",
                hint='each line must look like {"question": ..., "answer": ...}',
            )
        count += 1
        yield f"{path.name} line {line.number}", line.value
    if count == 0:
        raise UserError(f"{path} has no rows", hint="the file is empty; check the path or regenerate it")


def read_json(path: Path) -> Rows:
    """Rows of a JSON file: a list of objects, ``{"data"|"rows"|<split>: [...]}``, or columns
    (``{"question": [...], "answer": [...]}``)."""
    text = _read_text(path)
    if not text.strip():
        raise UserError(f"{path} has no rows", hint="the file is empty; check the path or regenerate it")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path} line {err.lineno}: invalid JSON ({err.msg} at column {err.colno})",
            hint="if it has one object per line, name it .jsonl",
        ) from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1 and all(isinstance(r, dict) for r in lists[0]):
            data = lists[0]
        elif lists and len(lists) == len(data) and len({len(v) for v in lists}) == 1:
            names = list(data)
            data = [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
        else:
            raise UserError(
                f"{path}: a JSON object must hold one list of rows or equal-length columns",
                hint='use a list of objects: [{"question": ..., "answer": ...}, ...]',
            )
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of row objects, got {type(data).__name__}")
    if not data:
        raise UserError(f"{path} has no rows", hint="the list is empty")
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise UserError(f"{path} row {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path.name} row {i}", row


def read_csv(path: Path) -> Rows:
    """Rows of a CSV file with a header line; empty cells become missing values."""
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if not header:
            raise UserError(f"{path} has no rows", hint="the file is empty; it needs a header line and rows")
        count = 0
        for row in reader:
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):
                # DictReader puts extra fields in a list under the key None and fills missing ones with None.
                got = sum(1 for k, v in row.items() if k is not None and v is not None) + len(
                    row.get(None) or []
                )
                raise UserError(
                    f"{path} line {line}: {got} fields but the header has {len(header)}",
                    hint="quote fields that contain commas or newlines",
                )
            count += 1
            yield f"{path.name} line {line}", {k: (v if v != "" else None) for k, v in row.items()}
    except csv.Error as err:
        raise UserError(f"{path} line {reader.line_num}: malformed CSV ({err})") from None
    if count == 0:
        raise UserError(f"{path} has a header but no rows")


def read_parquet(path: Path) -> Rows:
    """Rows of a Parquet file (read with pyarrow, which ``datasets`` depends on)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path}: not a readable Parquet file ({err})") from None
    if table.num_rows == 0:
        raise UserError(f"{path} has no rows")
    for i, row in enumerate(table.to_pylist()):
        yield f"{path.name} row {i}", row


READERS = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".json": read_json,
    ".csv": read_csv,
    ".parquet": read_parquet,
}


def read_rows(path: str | Path) -> Rows:
    """``(where, row)`` pairs of a local data file, chosen by suffix.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = p.write_text('{"question": "2+2?", "answer": "#### 4"}\\n')
    >>> list(read_rows(p))
    [('d.jsonl line 1', {'question': '2+2?', 'answer': '#### 4'})]
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"{path}: unknown data file type {path.suffix!r}", hint="use " + ", ".join(SUFFIXES))
    if not path.is_file():
        raise UserError(f"data file not found: {path}", hint="check the path")
    return reader(path)


_SPLIT_NAMES = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}


def split_files(directory: Path, split: str) -> list[Path]:
    """The data files of ``split`` in a folder tree: names like ``train.jsonl``,
    ``train-00000-of-00002.parquet`` or ``data/test-*.parquet`` (a hub snapshot's layout).

    All shards must sit in one folder; when several folders match (gsm8k's ``main/`` and
    ``socratic/``), the error asks for the one meant.
    """
    prefixes = _SPLIT_NAMES.get(split, (split,))
    found = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        and any(p.name.lower() == f"{x}{p.suffix.lower()}" or p.name.lower().startswith((f"{x}-", f"{x}_", f"{x}."))
                for x in prefixes)
    )  # fmt: skip
    if not found:
        raise UserError(
            f"no {split!r} split files in {directory}",
            hint=f"expected e.g. {directory}/{split}.jsonl or {directory}/data/{split}-00000-of-00001.parquet; "
            "or pass a file path",
        )
    parents = sorted({p.parent for p in found})
    if len(parents) > 1:
        raise UserError(
            f"{directory} has {split!r} files in several folders: {', '.join(str(p) for p in parents)}",
            hint="pass the folder (or file) you mean",
        )
    return found


def read_dir(directory: str | Path, split: str) -> Rows:
    """``(where, row)`` pairs of ``split`` from a local dataset folder: a ``save_to_disk`` folder
    (loaded with ``datasets.load_from_disk``) or a tree of split files (see :func:`split_files`)."""
    directory = Path(directory)
    if (directory / "dataset_dict.json").is_file() or (directory / "state.json").is_file():
        import datasets

        ds = datasets.load_from_disk(str(directory))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise UserError(f"{directory} has no {split!r} split (it has: {', '.join(ds)})")
            ds = ds[split]
        return ((f"{directory.name} {split} row {i}", row) for i, row in enumerate(ds))
    return (pair for path in split_files(directory, split) for pair in read_rows(path))
