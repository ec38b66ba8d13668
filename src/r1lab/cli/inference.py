"""``r1lab ask`` and ``r1lab chat``: talk to a model, streaming, thinking shown apart from the answer."""

from __future__ import annotations

import argparse
import json
import sys

ASK_DESCRIPTION = """Ask a model one question and stream its reply.

The reply's <think> part is shown dimmed, the rest normally, and the extracted final answer is
highlighted at the end. A model trained by r1lab is asked with the system prompt and reply prefix it
was trained with (its r1lab_prompt.json), any other model with the R1 prompt, unless --system-prompt /
--reply-prefix say otherwise. The prompt itself is never printed back.

examples:
  r1lab ask "What is 12 * 7?" --model runs/demo/sft/model   # a model `make demo` trained
  r1lab ask "What is 12 * 7?" --model smollm2-135m   # the untrained base: prose, often wrong
  r1lab ask "What is 2+2?" --model tiny --json        # one JSON object, for scripts
"""

CHAT_DESCRIPTION = """Chat with a model: each line read from standard input is a user message.

Earlier turns stay in the conversation with their <think> part removed (as DeepSeek-R1 advises);
--no-history makes every line a fresh question. Empty lines are skipped; end with Ctrl-D.

examples:
  r1lab chat --model smollm2-135m
  printf 'What is 2+3?\\nAnd times 4?\\n' | r1lab chat --model tiny --json   # one JSON line per reply
"""


def _add_generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="smollm2-135m", help="model spec: tiny, smollm2-135m, a run's model dir, a .gguf"
    )
    p.add_argument(
        "--system-prompt",
        default=None,
        help="'r1', 'none', or literal text (default: the model's training prompt, else 'r1')",
    )
    p.add_argument(
        "--reply-prefix",
        default=None,
        help="text the reply starts with, e.g. '<think>\\n' (default: the model's own, else none)",
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run a hub model's own code (only for authors you trust)",
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling cut-off (with --temperature > 0)"
    )
    p.add_argument("--max-new-tokens", type=int, default=512, help="reply token budget")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print JSON (no streaming, no colours)")


def register(sub) -> None:
    """Add the ``ask`` and ``chat`` verbs."""
    from r1lab.cli import HelpFormatter, add_common_flags

    p = sub.add_parser(
        "ask", help="ask a model one question", description=ASK_DESCRIPTION, formatter_class=HelpFormatter
    )
    p.add_argument("question", help="the question")
    _add_generation_flags(p)
    add_common_flags(p)
    p.set_defaults(func=run_ask)

    c = sub.add_parser(
        "chat",
        help="chat with a model (reads stdin)",
        description=CHAT_DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    _add_generation_flags(c)
    c.add_argument("--no-history", action="store_true", help="treat every line as a new conversation")
    add_common_flags(c)
    c.set_defaults(func=run_chat)


class StreamPrinter:
    """Prints streamed text with rich: thinking dim, tags dimmer, the answer in the normal style."""

    STYLES = {"think": "dim italic", "tag": "dim cyan", "answer": ""}

    def __init__(self, console) -> None:
        from r1lab.inference import ThinkSplitter

        self.console = console
        self.splitter = ThinkSplitter()

    def start(self, think_prefilled: bool) -> None:
        """Called by ``ask`` before the first chunk: does the reply start inside <think>?"""
        from r1lab.inference import ThinkSplitter

        self.splitter = ThinkSplitter(in_think=think_prefilled)

    def _emit(self, segments) -> None:
        for kind, text in segments:
            self.console.print(
                text, style=self.STYLES[kind], end="", markup=False, highlight=False, soft_wrap=True
            )

    def __call__(self, chunk: str) -> None:
        self._emit(self.splitter.feed(chunk))

    def close(self) -> None:
        self._emit(self.splitter.close())
        self.console.print()


def _print_answer(console, answer) -> None:
    from rich.text import Text

    line = Text()
    if answer.answer is not None:
        line.append("answer: ", style="bold")
        line.append(answer.answer, style="bold black on green")
    else:
        line.append("answer: (none found)", style="bold yellow")
    note = f"  {answer.n_tokens} tokens, {answer.seconds:.1f} s" + (
        ", hit --max-new-tokens" if answer.truncated else ""
    )
    line.append(note, style="dim")
    console.print(line)


def _load(args):
    from r1lab.inference import load_pair

    return load_pair(args.model, trust_remote_code=args.trust_remote_code)


def _ask_one(pair, question: str, args, history, console):
    from r1lab.inference import ask
    from r1lab.prompts import prompt_for

    system_prompt, reply_prefix, _ = prompt_for(args.model, args.system_prompt, args.reply_prefix)
    kwargs = dict(
        system_prompt=system_prompt,
        reply_prefix=reply_prefix,
        history=history,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    if args.json:
        return ask(pair, question, **kwargs)
    printer = StreamPrinter(console)
    answer = ask(pair, question, on_text=printer, on_start=printer.start, **kwargs)
    printer.close()
    _print_answer(console, answer)
    return answer


def run_ask(args: argparse.Namespace) -> int:
    """Handler of ``r1lab ask``."""
    from rich.console import Console

    from r1lab.errors import UserError

    if not args.question.strip():
        raise UserError("the question is empty", hint='r1lab ask "What is 2+2?" --model tiny')
    pair = _load(args)
    answer = _ask_one(pair, args.question, args, None, Console(highlight=False))
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
    return 0


def run_chat(args: argparse.Namespace) -> int:
    """Handler of ``r1lab chat``: one reply per non-empty stdin line."""
    from rich.console import Console

    pair = _load(args)
    console = Console(highlight=False)
    interactive = sys.stdin.isatty()
    history: list[dict[str, str]] = []
    while True:
        if interactive and not args.json:
            console.print("[bold]you>[/bold] ", end="")
        line = sys.stdin.readline()
        if not line:
            break
        question = line.strip()
        if not question:
            continue
        answer = _ask_one(pair, question, args, None if args.no_history else list(history), console)
        if args.json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
        if not args.no_history:
            # The reply without its thinking, as DeepSeek-R1 recommends for multi-turn use.
            history += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer.response},
            ]
    return 0
