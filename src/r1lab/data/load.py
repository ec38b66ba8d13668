"""The public loaders: a source string in, a validated, formatted ``datasets.Dataset`` out.

Source strings
    ``"builtin"``                       the built-in task at level 1 (:mod:`r1lab.data.synthetic`)
    ``"builtin:level=2"``               options after ``:``, comma-separated: ``level=1|1-3|mix``,
    ``"builtin:test,level=1-3,n=200"``  ``n=``, ``seed=``, ``split=`` (or a bare split name)
    ``"openai/gsm8k"``, …               a hub dataset (:mod:`r1lab.data.sources`)
    ``"path/to/file.jsonl"``            a local JSONL/JSON/CSV/Parquet file (:mod:`r1lab.data.files`)
    ``"file.jsonl:rows=:-500"``         some of its rows, by a Python slice over the file's rows in order:
                                        ``rows=-500:`` is the last 500 (a validation slice carved from a
                                        train file), ``rows=:-500`` everything before them
    ``"path/to/folder"``                a local dataset folder: a hub snapshot (``data/train-*.parquet``),
                                        a ``save_to_disk`` folder, or ``train.jsonl``/``test.jsonl`` files

The built-in task's size defaults to :data:`BUILTIN_DEFAULT_N` rows per split when ``n`` is not
given. For files and hub datasets, ``n`` keeps the first ``n`` usable rows (reading stops there).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from r1lab.data import synthetic
from r1lab.data.files import is_data_file, read_dir, read_rows, split_files
from r1lab.data.formatting import eval_row, grpo_row, sft_row
from r1lab.data.layouts import KINDS, Record, detect_layout, extract
from r1lab.data.sources import known_source, load_hub_rows, looks_like_hub_id
from r1lab.data.validate import NO_SOLUTION, SFT_NEEDS, BadRowReport, filter_records, log_skipped
from r1lab.errors import UserError
from r1lab.prompts import resolve_system_prompt

log = logging.getLogger(__name__)

BUILTIN_DEFAULT_N = {"train": 5000, "validation": 500, "test": 500}


@dataclass
class DataInfo:
    """What a load did: where the rows came from, the layout used, and what was skipped."""

    source: str
    split: str
    layout: str
    n_kept: int = 0
    skipped: BadRowReport = field(default_factory=BadRowReport)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source string."""

    kind: str  # "builtin", "file" or "hub"
    target: str
    options: dict[str, str]


def parse_source(source: str) -> SourceSpec:
    """Parse a source string.

    >>> parse_source("builtin:test,level=1-3")
    SourceSpec(kind='builtin', target='builtin', options={'split': 'test', 'level': '1-3'})
    >>> parse_source("data/train.jsonl").kind, parse_source("openai/gsm8k").kind
    ('file', 'hub')
    """
    if not isinstance(source, str) or not source.strip():
        raise UserError(
            "no data source given", hint="use builtin, a hub name like openai/gsm8k, or a file path"
        )
    source = source.strip()
    head, _, rest = source.partition(":")
    if head.lower() == "builtin":
        options: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            if not eq:
                key, value = "split", part
            if key not in ("level", "n", "seed", "split"):
                raise UserError(
                    f"unknown built-in task option {key!r} in {source!r}",
                    hint="options are level=0-5|1-3|mix, n=N, seed=S, split=train|validation|test",
                )
            options[key] = value
        return SourceSpec("builtin", "builtin", options)
    path, _, rows = source.rpartition(":rows=")
    if path and (is_data_file(path) or os.path.isfile(path)):
        _row_slice(rows, source)  # checked now, applied on read
        return SourceSpec("file", path, {"rows": rows})
    if is_data_file(source) or os.path.isfile(source):  # an odd suffix gets a clear error on read
        return SourceSpec("file", source, {})
    if os.path.isdir(source):
        return SourceSpec("dir", source, {})
    if looks_like_hub_id(source):
        return SourceSpec("hub", source, {})
    raise UserError(
        f"unknown data source {source!r}",
        hint="use builtin[:level=N], a hub name like openai/gsm8k, or a .jsonl/.json/.csv/.parquet file",
    )


def heldout_of(data: str, eval_n: int) -> tuple[str, str] | None:
    """``(training source, held-out source)`` for held-out problems that follow the training data: the
    built-in task, a hub dataset or a folder hold theirs (their test split), so both are the source itself;
    a plain file has none, so its last ``eval_n`` rows are held out (at most a fifth of a JSONL file's rows,
    so a small file keeps most of its rows for training) and training reads the rows before them.
    ``None`` when there is nothing to follow (rows already sliced, a file too small, an unknown source).

    >>> heldout_of("builtin:level=2", 32)
    ('builtin:level=2', 'builtin:level=2')
    >>> import tempfile; f = tempfile.NamedTemporaryFile("w", suffix=".jsonl")
    >>> _ = f.write('{"question": "1+1?", "answer": "2"}\\n' * 100); f.flush()
    >>> [s.removeprefix(f.name) for s in heldout_of(f.name, 50)]
    [':rows=:-20', ':rows=-20:']
    """
    try:
        spec = parse_source(data)
    except UserError:
        return None
    if spec.kind != "file":
        return data, data
    if spec.options.get("rows") or eval_n <= 0 or not Path(spec.target).is_file():
        return None  # a missing file is reported, in one line, where the data is checked
    held = eval_n
    if spec.target.endswith(".jsonl"):  # cheap to count; other formats hold out eval_n rows
        with open(spec.target, "rb") as f:
            held = min(eval_n, sum(1 for line in f if line.strip()) // 5)
    if held < 1:
        return None
    return f"{spec.target}:rows=:-{held}", f"{spec.target}:rows=-{held}:"


def _row_slice(text: str, source: str) -> slice:
    """``"-500:"`` -> ``slice(-500, None)``; a :class:`UserError` for anything but ``[start]:[end]``.

    >>> _row_slice(":-500", "x.jsonl:rows=:-500")
    slice(None, -500, None)
    """
    start, sep, end = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start.strip() else None, int(end) if end.strip() else None)
    except ValueError:
        raise UserError(
            f"bad row slice {text!r} in {source!r}",
            hint="write rows=START:END like a Python slice, e.g. rows=-500: (the last 500 rows)",
        ) from None


def _int_option(spec: SourceSpec, key: str, default: int | None) -> int | None:
    if key not in spec.options:
        return default
    try:
        return int(spec.options[key])
    except ValueError:
        raise UserError(f"built-in task option {key}={spec.options[key]!r} is not an integer") from None


def _builtin_records(spec: SourceSpec, split: str, n: int | None, seed: int) -> Iterator[tuple[str, Record]]:
    split = synthetic.canonical_split(spec.options.get("split", split))
    n_opt = _int_option(spec, "n", None)
    asked = n if n is not None else n_opt
    seed = _int_option(spec, "seed", seed)
    level = spec.options.get("level", 1)
    if asked is not None:
        rows = synthetic.make_problems(asked, level=level, seed=seed, split=split)
    else:  # the default size: a level that holds fewer problems (level 0) gives all it has
        rows = []
        try:
            for row in synthetic.iter_problems(level=level, seed=seed, split=split):
                rows.append(row)
                if len(rows) >= BUILTIN_DEFAULT_N[split]:
                    break
        except UserError:
            if not rows:
                raise
    for row in rows:
        rec = Record(
            row["problem"], row["answer"], row["solution"], subject="arithmetic", level=str(row["level"])
        )
        yield row["id"], rec


def _raw_rows(spec: SourceSpec, split: str) -> Iterator[tuple[str, dict]]:
    if spec.kind == "file":
        if "rows" in spec.options:
            return iter(list(read_rows(spec.target))[_row_slice(spec.options["rows"], spec.target)])
        return read_rows(spec.target)
    if spec.kind == "dir":
        return read_dir(spec.target, split)
    rows, _ = load_hub_rows(spec.target, split)
    return rows


def load_records(
    source: str,
    *,
    kind: str,
    split: str = "train",
    n: int | None = None,
    seed: int = 0,
    columns: dict[str, str] | None = None,
    on_bad_row: str = "error",
) -> tuple[list[Record], DataInfo]:
    """Validated :class:`Record` s of ``source`` for ``kind`` (grpo, sft, eval; ``any`` checks only
    the question) and a :class:`DataInfo`. The loaders below format these; ``r1lab data preview``
    shows them."""
    if kind not in (*KINDS, "any"):
        raise UserError(f"unknown data kind {kind!r}; use one of {', '.join(KINDS)}")
    if n is not None and n < 0:
        raise UserError(f"n must be >= 0, got {n}")
    spec = parse_source(source)
    if spec.kind == "builtin":
        split_name = synthetic.canonical_split(spec.options.get("split", split))
        info = DataInfo(source, split_name, "builtin (problem/answer/solution)")
        pairs = _builtin_records(spec, split_name, n, seed)
    else:
        raw = _raw_rows(spec, split)
        first = next(raw, None)
        if first is None:
            raise UserError(f"{source} ({split}) has no rows")
        known = known_source(spec.target) if spec.kind == "hub" else None
        cols = dict(known.columns.get(kind, {})) if known and not columns else {}
        cols.update(columns or {})
        try:
            layout = detect_layout(first[1], kind=kind, columns=cols)
        except UserError as err:  # detected on the first row: say which one it was
            raise UserError(f"{first[0]}: {err.message}", hint=err.hint) from None
        # A file has no splits: it *is* the split the caller asked for.
        info = DataInfo(source, "file" if spec.kind == "file" else split, layout.name)
        pairs = ((where, extract(row, layout)) for where, row in itertools.chain([first], raw))
    records = list(
        itertools.islice(filter_records(pairs, kind, on_bad_row=on_bad_row, report=info.skipped), n)
    )
    log_skipped(info.skipped, f"{source} ({info.split})")
    if not records:
        raise UserError(
            f"no usable rows in {source} ({info.split})"
            + (f": all {info.skipped.total} were skipped" if info.skipped.total else ""),
            hint=SFT_NEEDS
            if set(info.skipped.counts) == {NO_SOLUTION}
            else "check the file and the column names (--question-col / --answer-col, or a stage's columns:)",
        )
    info.n_kept = len(records)
    return records, info


def check_source(
    source: str,
    *,
    kind: str | None = None,
    split: str | None = None,
    columns: dict[str, str] | None = None,
    n: int | None = None,
    on_bad_row: str = "error",
) -> int | None:
    """Raise :class:`UserError` now if ``source`` cannot be loaded later; cheap enough to run for
    every stage of a recipe before any model loads. Returns how many usable rows it holds (up to ``n``
    for the built-in task), or ``None`` when that is unknown (a hub dataset).

    * built-in: the options (level, split, n, seed) are checked, and with ``n`` that the task has that
      many distinct problems (level 0 runs out after ~1,300);
    * a file: it is read and every row checked (for ``kind`` when given, else only that each row
      has a question), so a bad row stops the run before training, not hours into it;
    * a hub name: offline, the local ``datasets`` cache must hold it; online nothing is fetched.

    Pass the stage's ``kind`` (grpo, sft, eval; rs reads like grpo) and ``split`` for the full
    check; without ``split`` a folder or hub dataset only needs one of train/test/validation.

    >>> check_source("builtin:level=2")
    >>> check_source("builtin:level=9")
    Traceback (most recent call last):
    ...
    r1lab.errors.UserError: bad built-in task level '9' (use a level 0-5 (0: bare arithmetic), a range like 1-3, a list like 1,3, or 'mix')
    """
    spec = parse_source(source)
    if split is None:
        split = _first_split(spec)
    if spec.kind == "builtin":
        synthetic.canonical_split(spec.options.get("split", split))
        synthetic.parse_levels(spec.options.get("level", 1))
        _int_option(spec, "n", None)
        _int_option(spec, "seed", 0)
        if n:  # generating is cheap (~0.1 ms a problem); running out is the error this catches
            return len(load_records(source, kind=kind or "grpo", split=split, n=n)[0])
        return None
    if spec.kind in ("file", "dir"):
        return len(
            load_records(source, kind=kind or "any", split=split, columns=columns, on_bad_row=on_bad_row)[0]
        )
    if _hub_offline():
        load_hub_rows(spec.target, split)
    return None


def _first_split(spec: SourceSpec) -> str:
    """The split to check when the caller did not say: train, else whichever a folder/hub has."""
    if spec.kind == "hub" and known_source(spec.target):
        return known_source(spec.target).splits[0]
    if spec.kind == "dir":
        for name in synthetic.SPLITS:
            try:
                split_files(Path(spec.target), name)
                return name
            except UserError:
                continue
    return "train"


def _hub_offline() -> bool:
    import datasets

    return bool(datasets.config.HF_HUB_OFFLINE)


def _to_dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_list(rows)


def load_grpo_dataset(
    source: str,
    *,
    split: str = "train",
    n: int | None = None,
    system_prompt: str | None = "r1",
    seed: int = 0,
    columns: dict[str, str] | None = None,
    on_bad_row: str = "error",
    reply_prefix: str | None = None,
):
    """A GRPO dataset: ``prompt`` ([system, user] messages, plus ``reply_prefix`` as the start of the
    assistant's turn when given), ``solution`` (reference answer), ``problem`` (the question text).

    ``columns`` overrides detected column names (``{"question": ..., "answer": ...}``);
    ``on_bad_row="skip"`` drops unusable rows (counted in a warning) instead of raising.

    >>> ds = load_grpo_dataset("builtin:level=1", n=2)
    >>> ds.column_names, ds[0]["prompt"][0]["role"]
    (['prompt', 'solution', 'problem'], 'system')
    """
    records, _ = load_records(
        source, kind="grpo", split=split, n=n, seed=seed, columns=columns, on_bad_row=on_bad_row
    )
    prompt = resolve_system_prompt(system_prompt)
    return _to_dataset(
        [grpo_row(r.problem, r.answer, _system(r, system_prompt, prompt), reply_prefix) for r in records]
    )


def load_sft_dataset(
    source: str,
    *,
    split: str = "train",
    n: int | None = None,
    system_prompt: str | None = "r1",
    seed: int = 0,
    columns: dict[str, str] | None = None,
    on_bad_row: str = "error",
    strip_think_prefix: bool = False,
):
    """An SFT dataset: ``messages`` = [system, user, assistant], the assistant turn being the
    reasoning trace in R1 form (``<think>…</think><answer>…</answer>``).

    ``system_prompt="source"`` keeps a dataset's own system prompt (Bespoke-Stratos has one).
    ``strip_think_prefix=True`` drops a leading ``<think>`` from assistant turns, for chat
    templates that already put it in the generation prompt (see
    :func:`r1lab.data.formatting.template_prefills_think`).

    >>> ds = load_sft_dataset("builtin", n=1, system_prompt=None)
    >>> [m["role"] for m in ds[0]["messages"]], ds[0]["messages"][1]["content"].startswith("<think>")
    (['user', 'assistant'], True)
    """
    records, _ = load_records(
        source, kind="sft", split=split, n=n, seed=seed, columns=columns, on_bad_row=on_bad_row
    )
    prompt = resolve_system_prompt(system_prompt) if system_prompt != "source" else None
    return _to_dataset(
        [
            sft_row(
                r.problem, r.trace, _system(r, system_prompt, prompt), strip_think_prefix=strip_think_prefix
            )
            for r in records
        ]
    )


def load_eval_dataset(
    source: str,
    *,
    split: str = "test",
    n: int | None = None,
    system_prompt: str | None = "r1",
    seed: int = 0,
    columns: dict[str, str] | None = None,
    on_bad_row: str = "error",
    reply_prefix: str | None = None,
):
    """An evaluation dataset: ``prompt``, ``solution``, ``problem``, ``subject``, ``level``
    (``""`` when the source does not say). Defaults to the ``test`` split. ``reply_prefix`` as in
    :func:`load_grpo_dataset`.

    >>> ds = load_eval_dataset("builtin", n=3)
    >>> ds.column_names
    ['prompt', 'solution', 'problem', 'subject', 'level']
    """
    records, _ = load_records(
        source, kind="eval", split=split, n=n, seed=seed, columns=columns, on_bad_row=on_bad_row
    )
    prompt = resolve_system_prompt(system_prompt)
    return _to_dataset(
        [
            eval_row(
                r.problem,
                r.answer,
                _system(r, system_prompt, prompt),
                subject=r.subject,
                level=r.level,
                reply_prefix=reply_prefix,
            )
            for r in records
        ]
    )


def _system(rec: Record, requested: str | None, resolved: str | None) -> str | None:
    """The row's system prompt: its own for ``"source"`` (falling back to R1), else ``resolved``."""
    if requested == "source":
        return rec.system or resolve_system_prompt("r1")
    return resolved
