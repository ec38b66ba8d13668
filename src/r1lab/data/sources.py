"""Named hub datasets and their real column layouts, loaded with ``datasets.load_dataset``.

=================================  ==========  ===========================================  ===========
name                               config      columns used                                 splits
=================================  ==========  ===========================================  ===========
``AI-MO/NuminaMath-TIR``           default     problem, solution (last ``\\boxed{}``)        train, test
``openai/gsm8k``                   main        question, answer (``#### n``)                train, test
``HuggingFaceH4/MATH-500``         default     problem, answer, solution, subject, level    test
``bespokelabs/Bespoke-Stratos-17k`` default    system, conversations (ShareGPT)             train
``HuggingFaceH4/Bespoke-Stratos-17k`` default  messages                                     train
``open-r1/OpenR1-Math-220k``       default     problem, answer; messages for SFT            train
=================================  ==========  ===========================================  ===========

Any other ``org/name`` is tried as a hub dataset with detected columns. Offline
(``HF_HUB_OFFLINE=1``, or the hub unreachable) a dataset not in the local ``datasets`` cache
raises :class:`~r1lab.errors.UserError` at once, saying how to use a local copy instead.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

from r1lab.errors import UserError
from r1lab.io import hub_offline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubSource:
    """A known hub dataset: its config, splits, and column names per kind (``grpo``/``sft``/``eval``)."""

    hub_id: str
    config: str | None
    splits: tuple[str, ...]
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    note: str = ""


_QA = {"question": "problem", "answer": "answer"}
SOURCES: dict[str, HubSource] = {
    s.hub_id.lower(): s
    for s in (
        HubSource(
            "AI-MO/NuminaMath-TIR", None, ("train", "test"),
            {k: {"question": "problem", "solution": "solution"} for k in ("grpo", "sft", "eval")},
            "the seed project's GRPO data",
        ),
        HubSource(
            "openai/gsm8k", "main", ("train", "test"),
            {k: {"question": "question", "answer": "answer"} for k in ("grpo", "sft", "eval")},
        ),
        HubSource(
            "HuggingFaceH4/MATH-500", None, ("test",),
            {"grpo": _QA, "eval": {**_QA, "subject": "subject", "level": "level"},
             "sft": {**_QA, "solution": "solution"}},
        ),
        HubSource(
            "bespokelabs/Bespoke-Stratos-17k", None, ("train",),
            {k: {"messages": "conversations", "system": "system"} for k in ("grpo", "sft", "eval")},
            "the seed project's SFT data",
        ),
        HubSource(
            "HuggingFaceH4/Bespoke-Stratos-17k", None, ("train",),
            {k: {"messages": "messages"} for k in ("grpo", "sft", "eval")},
        ),
        HubSource(
            "open-r1/OpenR1-Math-220k", "default", ("train",),
            {"grpo": _QA, "eval": _QA, "sft": {"messages": "messages"}},
        ),
    )
}  # fmt: skip


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def looks_like_hub_id(source: str) -> bool:
    """``org/name`` (hub naming rules) that is not a local path.

    >>> looks_like_hub_id("openai/gsm8k"), looks_like_hub_id("a/b/c"), looks_like_hub_id("x")
    (True, False, False)
    """
    return bool(_HUB_ID.match(source)) and not os.path.exists(source)


def known_source(source: str) -> HubSource | None:
    """The :class:`HubSource` for a name (case-insensitive), or ``None``."""
    return SOURCES.get(source.lower())


def _offline_hint(source: str, config: str | None, split: str) -> str:
    args = f"{source!r}, {config!r}" if config else repr(source)
    return (
        f"on a machine with internet run `hf download {source} --repo-type dataset --local-dir DIR` "
        f"(or datasets.load_dataset({args}, split={split!r}).to_json('{split}.jsonl')), copy DIR (or the "
        f"file) here and pass its path instead, e.g. --data DIR; or use the offline built-in task: --data builtin"
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so an unreachable hub fails in seconds, not after
    ``datasets``' ~50 s of retries."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return hub_offline(datasets_too=True)


def load_hub_rows(source: str, split: str) -> tuple[Iterator[tuple[str, dict]], int]:
    """``((where, row) pairs, number of rows)`` of a hub dataset split.

    With ``HF_HUB_OFFLINE=1`` only the local ``datasets`` cache is used; online, an unreachable
    hub is detected with a 3-second connection check before ``load_dataset`` is called.
    """
    import datasets

    known = known_source(source)
    hub_id = known.hub_id if known else source
    config = known.config if known else None
    if known and split not in known.splits:
        raise UserError(
            f"{hub_id} has no {split!r} split (it has: {', '.join(known.splits)})",
            hint=f"pass --split {known.splits[0]}",
        )
    env_offline = _offline() or datasets.config.HF_HUB_OFFLINE
    # datasets reads its offline flag at import; when the hub is down we flip it for this call, so
    # a cached copy still loads and a missing one fails at once instead of after retries.
    patch_offline = not env_offline and not _hub_reachable()
    try:
        if patch_offline:
            datasets.config.HF_HUB_OFFLINE = True
        ds = datasets.load_dataset(hub_id, config, split=split)
    except (ConnectionError, OSError) as err:
        reason = "offline mode (HF_HUB_OFFLINE=1)" if env_offline else "the hub cannot be reached"
        raise UserError(
            f"cannot load hub dataset {hub_id!r} split {split!r}: {reason} and no cached copy ({type(err).__name__})",
            hint=_offline_hint(hub_id, config, split),
        ) from None
    except ValueError as err:
        raise UserError(f"cannot load hub dataset {hub_id!r} split {split!r}: {err}") from None
    finally:
        if patch_offline:
            datasets.config.HF_HUB_OFFLINE = False

    def rows() -> Iterator[tuple[str, dict]]:
        for i, row in enumerate(ds):
            yield f"{hub_id} {split} row {i}", row

    return rows(), len(ds)
