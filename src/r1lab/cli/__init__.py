"""The ``r1lab`` command.

Each verb lives in its own module under ``r1lab.cli`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code). Verb modules import heavy libraries (torch, transformers) only inside
their handlers, so ``r1lab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import logging
import os
import sys

from r1lab import __version__
from r1lab.errors import UserError

# Order here is the order in `r1lab --help`: the pipeline first, then its parts.
VERB_MODULES = [
    "r1lab.cli.train",  # run, grpo, sft, rs
    "r1lab.cli.evaluate",  # eval
    "r1lab.cli.inference",  # ask, chat
    "r1lab.cli.rewards",  # rewards score|audit
    "r1lab.cli.data",  # data preview|make-synthetic
    "r1lab.cli.report",  # report
]

EPILOG = """examples:
  r1lab run --config recipes/seed.yaml             # GRPO -> SFT -> inference test (the default pipeline)
  r1lab eval --model runs/demo/sft/model --data builtin:test --limit 50
  r1lab ask "What is 12 * 7?" --model runs/demo/sft/model
  r1lab rewards score completions.jsonl --rewards accuracy,format
  r1lab data preview builtin --n 3
  r1lab report runs/demo
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps examples in descriptions/epilogs as written and shows a flag's default, unless its help already
    says it or there is nothing to show (None, a switch that is off)."""

    def _get_help_string(self, action):
        nothing = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if nothing or "default" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


class VerbParser(argparse.ArgumentParser):
    """The parser of each verb. With ``collect_overrides=True`` (``run`` and the one-stage verbs) unknown
    ``--key value`` / ``--key=value`` options become recipe overrides (``--field`` for a run-level field or a
    one-stage verb's stage field, ``--stage.field``) instead of errors; the keys are checked against the
    recipe and TRL later, with suggestions."""

    def __init__(self, *args, collect_overrides: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.collect_overrides = collect_overrides

    def parse_known_args(self, args=None, namespace=None):
        args = [self._own_spelling(a) for a in (sys.argv[1:] if args is None else args)]
        namespace, rest = super().parse_known_args(args, namespace)
        if not self.collect_overrides:
            unknown = [a for a in rest if a.startswith("--")]
            if unknown:
                raise UserError(f"{self.prog}: unknown option {unknown[0]}", hint=self._suggest(unknown[0]))
            return namespace, rest
        overrides, left = list(getattr(namespace, "overrides", None) or []), []
        i = 0
        while i < len(rest):
            tok = rest[i]
            if not (tok.startswith("--") and len(tok) > 2):
                left.append(tok)
                i += 1
            elif "=" in tok:
                overrides.append(tok[2:])
                i += 1
            elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                values = list(itertools.takewhile(lambda t: not t.startswith("--"), rest[i + 1 :]))
                # several values (TRL's `--reward_funcs accuracy format`) make a list
                value = values[0] if len(values) == 1 else json.dumps(values)
                overrides.append(f"{tok[2:]}={value}")
                i += 1 + len(values)
            else:
                overrides.append(f"{tok[2:]}=true")  # a bare flag means true
                i += 1
        namespace.overrides = overrides
        return namespace, left

    def _own_spelling(self, token: str) -> str:
        """``--max_new_tokens`` -> ``--max-new-tokens`` where only the other spelling is a flag of this verb
        (and the other way round): TRL's underscores and r1lab's dashes both work on every verb."""
        if not token.startswith("--") or len(token) < 3:
            return token
        flag, eq, value = token.partition("=")
        if flag in self._option_string_actions:
            return token
        for other in (flag[:2] + flag[2:].replace("_", "-"), flag[:2] + flag[2:].replace("-", "_")):
            if other in self._option_string_actions:
                return other + eq + value
        return token

    def _suggest(self, token: str) -> str:
        import difflib

        flags = [f for f in self._option_string_actions if f.startswith("--")]
        close = difflib.get_close_matches(token.split("=", 1)[0], flags, n=1, cutoff=0.6)
        return f"did you mean {close[0]}?" if close else f"see {self.prog} --help"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1lab",
        description="Train small language models to reason about math, DeepSeek-R1 style.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"r1lab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=VerbParser)
    for name in VERB_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every verb accepts after its name (``r1lab eval --debug``)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def setup_logging(debug: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        # Logs go to stderr so stdout stays clean for results (`--json` output is piped into scripts).
        handlers=[
            RichHandler(console=Console(stderr=True), show_path=debug, rich_tracebacks=debug, markup=False)
        ],
        force=True,
    )
    if not debug and _launched_rank() > 0:  # under accelerate launch: rank 0 tells the story, once
        logging.getLogger().setLevel(logging.WARNING)
    if not sys.stderr.isatty():
        _no_library_bars()
    if not debug:
        # transformers' "Loading weights" bars (read from the hub's setting at import) clutter every verb;
        # training keeps its own progress bar (the Trainer's), which this does not touch.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        for noisy in ("httpx", "urllib3", "filelock", "datasets", "transformers", "torch", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # Deprecation notices (FutureWarning) from the libraries' own code, such as transformers renaming
        # gradient_checkpointing, say nothing a user of the CLI can act on; --debug shows them.
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)


def _no_library_bars() -> None:
    """No progress bars from datasets (map, tokenizing), the hub or transformers (saving shards): outside a
    terminal each update is a line of its own in a pipe, a log or CI. A library imported already read its
    setting at import, so it is told directly."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _launched_rank() -> int:
    """This process's global rank under a launcher (torchrun / accelerate launch), else 0."""
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _tolerate_unencodable_output() -> None:
    """Print text that cannot be encoded (a lone surrogate from a JSONL file) as an escape, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a stream that cannot change mid-flight keeps its setting
                pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``r1lab`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    _tolerate_unencodable_output()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = bool(getattr(args, "debug", False))
        setup_logging(debug)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        if os.environ.get("HF_HUB_OFFLINE") is None and getattr(args, "offline", False):
            os.environ["HF_HUB_OFFLINE"] = "1"
        return int(args.func(args) or 0)
    except UserError as err:
        if debug:
            raise
        print(f"r1lab: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("r1lab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
