"""Generation for evaluation and for talking to a model: batched ``generate``, streaming ``ask``.

Batched generation is where evaluation spends its time, so :func:`generate` does what a
one-question-at-a-time ``generate`` loop does not: prompts are sorted by length so a batch holds prompts
of similar size, and r1lab's decoder (:func:`r1lab.decoding.decode_shared_prefix`, also GRPO's rollout
engine) prefills the shared prefix once, each prompt once for its ``n_samples`` completions, and drops
finished rows from the batch. Greedy output is token for token what ``model.generate`` gives each prompt
alone; ``fast_decode=False`` uses ``generate``.

:func:`ask` uses the same system prompt as training (``r1lab.prompts``) and can stream the reply
token by token; :class:`ThinkSplitter` tells the ``<think>`` part of a streamed reply from the
answer part so a terminal can show them differently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from r1lab.answers import ANSWER_CLOSE, ANSWER_OPEN, TAGS, THINK_CLOSE, THINK_OPEN  # noqa: F401 (re-exported)
from r1lab.data.formatting import chat_prompt, prompt_prefills_think, reply_prefix_of  # noqa: F401 (re-exported)
from r1lab.decoding import decode_shared_prefix, eval_mode, fast_decode_supported
from r1lab.errors import UserError
from r1lab.prompts import resolve_system_prompt

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Completion:
    """One generated reply: its text (special tokens removed), how many tokens it took
    (including the end-of-sequence token when there was one), and whether it hit the token budget
    before ending on its own."""

    text: str
    n_tokens: int
    truncated: bool


@dataclass
class Answer:
    """What :func:`ask` returns: the full reply, its thinking and final parts, and the answer
    extracted by the rewards package (the same extraction training and evaluation use)."""

    question: str
    text: str
    thinking: str
    response: str
    answer: str | None
    n_tokens: int
    truncated: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``r1lab ask --json`` prints this)."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


def build_messages(
    question: str, system_prompt: str | None = "r1", history: Messages | None = None
) -> Messages:
    """The chat messages for one question, with the training system prompt by default.

    >>> build_messages("What is 2+2?", system_prompt=None)
    [{'role': 'user', 'content': 'What is 2+2?'}]
    >>> build_messages("Hi", system_prompt="Be brief.")[0]
    {'role': 'system', 'content': 'Be brief.'}
    """
    turns = chat_prompt(question, resolve_system_prompt(system_prompt))  # [system?, user]: one definition
    return turns[:-1] + list(history or []) + turns[-1:]


def render_prompts(tokenizer, prompts: Sequence[Messages]) -> list[str]:
    """Apply the tokenizer's chat template (with the assistant turn opened) to each prompt."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError(
            "the tokenizer has no chat template",
            hint="use an instruct/chat model, or a model saved by r1lab (its tokenizers carry a template)",
        )
    return [_render(tokenizer, list(p)) for p in prompts]


def _render(tokenizer, messages: Messages) -> str:
    """A chat prompt as text: the assistant's turn opened, or continued when the prompt already holds its
    start (a final assistant message, r1lab's ``reply_prefix``)."""
    if messages and messages[-1].get("role") == "assistant":
        return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


# --------------------------------------------------------------------------------------------
# Batched generation
# --------------------------------------------------------------------------------------------


def _stop_ids(model, tokenizer) -> tuple[set[int], int]:
    """The token ids that end a completion (the model's generation config and the tokenizer may each name
    some) and the id that pads a batch (the tokenizer's, else an EOS id)."""
    eos: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        ids = getattr(source, "eos_token_id", None)
        if ids is not None:
            eos.update([ids] if isinstance(ids, int) else list(ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos), 0)
    return eos, pad_id


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict[str, Any]:
    """``generate`` keyword arguments for greedy (``temperature == 0``) or sampled decoding.

    Every sampling knob is set explicitly, so a model's own ``generation_config`` (which may carry
    ``top_k=50`` or a repetition penalty) does not silently change what is measured.

    >>> sampling_kwargs(0.0)["do_sample"]
    False
    >>> sampling_kwargs(0.7)["temperature"]
    0.7
    """
    if temperature < 0:
        raise UserError(f"temperature must be >= 0, got {temperature}", hint="use 0 for greedy decoding")
    if temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}


def _with_prefix(prefix: str, completion: Completion) -> Completion:
    """The whole reply: a prompt's ``reply_prefix`` (already in the prompt) followed by what was generated;
    the token count stays the generated tokens'."""
    if not prefix:
        return completion
    return Completion(
        text=prefix + completion.text, n_tokens=completion.n_tokens, truncated=completion.truncated
    )


def _completion(row: Sequence[int], eos: set[int], tokenizer) -> Completion:
    """A generated token row (prompt removed) as a Completion, cut after its first EOS."""
    end = next((i for i, t in enumerate(row) if t in eos), None)
    n = len(row) if end is None else end + 1
    text = tokenizer.decode(list(row[:n]), skip_special_tokens=True)
    return Completion(text=text, n_tokens=n, truncated=end is None)


def iter_generate(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    *,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    fast_decode: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[tuple[list[int], list[list[Completion]]]]:
    """Generate for ``prompts`` batch by batch, yielding ``(prompt_indices, completions)`` as each
    batch finishes (so callers can save progress). See :func:`generate` for the arguments.
    ``on_progress`` gets the number of prompts done (a float: the running batch counts by token steps)
    while a batch decodes, so a progress bar moves even when every prompt fits in one batch.

    ``batch_size`` counts sequences, so a batch holds ``batch_size // n_samples`` prompts (at
    least one). With ``temperature == 0`` the ``n_samples`` completions of a prompt would be
    identical, so the prompt is decoded once and its completion repeated.
    """
    import torch

    if n_samples < 1:
        raise UserError(f"n_samples must be >= 1, got {n_samples}")
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not prompts:
        return
    greedy = temperature == 0
    per_call = 1 if greedy else n_samples
    prompts_per_batch = max(1, batch_size // per_call)
    texts = render_prompts(tokenizer, prompts)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # Longest first: similar lengths share a batch (less padding) and a too-large batch fails at once.
    order = sorted(range(len(texts)), key=lambda i: (-len(ids[i]), i))
    eos, pad_id = _stop_ids(model, tokenizer)
    if not eos:
        logger.warning("the tokenizer has no EOS token: every completion will run to max_new_tokens")
    fast = fast_decode and fast_decode_supported(model)
    decode = dict(max_new_tokens=max_new_tokens, eos=eos, pad_id=pad_id, temperature=temperature, top_p=top_p)
    with eval_mode(model):
        for b, start in enumerate(range(0, len(order), prompts_per_batch)):
            idx = order[start : start + prompts_per_batch]
            torch.manual_seed(seed + b)
            on_step = None
            if on_progress is not None:
                on_step = lambda fraction, done=start, n=len(idx): on_progress(done + fraction * n)  # noqa: E731
            with torch.inference_mode():
                if fast:
                    rows = decode_shared_prefix(
                        model, [ids[i] for i in idx], per_prompt=per_call, on_step=on_step, **decode
                    )
                else:
                    rows = _hf_generate(model, tokenizer, [texts[i] for i in idx], per_call, **decode)
            flat = [_completion(r, eos, tokenizer) for r in rows]
            grouped = [
                [
                    _with_prefix(reply_prefix_of(prompts[i]), c)
                    for c in flat[j * per_call : (j + 1) * per_call]
                ]
                for j, i in enumerate(idx)
            ]
            # Greedy decoding gives every sample of a prompt the same completion: decoded once, repeated.
            yield idx, [g * n_samples for g in grouped] if greedy and n_samples > 1 else grouped


def _hf_generate(
    model, tokenizer, texts: list[str], per_prompt: int, *, max_new_tokens, eos, pad_id, temperature, top_p
) -> list[list[int]]:
    """New token ids of ``per_prompt`` completions of each text by ``model.generate`` (left-padded batch):
    the path for models the shared-prefix decoder does not support."""
    old_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # new tokens follow every prompt
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    enc = {k: v.to(next(model.parameters()).device) for k, v in enc.items()}
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        num_return_sequences=per_prompt,
        use_cache=True,
        pad_token_id=pad_id,
        **sampling_kwargs(temperature, top_p),
    )
    return out[:, enc["input_ids"].shape[1] :].tolist()


def generate(
    model,
    tokenizer,
    prompts: Sequence[Messages],
    *,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    fast_decode: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> list[list[Completion]]:
    """Generate ``n_samples`` completions for each chat prompt, batched; results in prompt order.

    Args:
        model, tokenizer: a causal LM and its tokenizer (``r1lab.models.load_model`` returns both).
        prompts: chat prompts, each a list of ``{"role", "content"}`` messages.
        n_samples: completions per prompt.
        temperature: 0 for greedy decoding, else sampling with this temperature and ``top_p``.
        max_new_tokens: the token budget of each completion.
        batch_size: sequences per ``generate`` call.
        seed: sampling seed (each batch reseeds with ``seed + batch_index``).
        fast_decode: use :func:`decode_shared_prefix` (shared-prefix prefill, a batch that sheds
            finished rows); ``False`` calls ``model.generate`` on the padded batch instead.

    Returns:
        ``result[i][j]`` is the ``j``-th :class:`Completion` of ``prompts[i]``.

    Example::

        model, tok = r1lab.models.load_model("tiny")
        [[c]] = generate(model, tok, [[{"role": "user", "content": "1+1?"}]], max_new_tokens=8)
        c.text, c.n_tokens, c.truncated
    """
    results: list[list[Completion] | None] = [None] * len(prompts)
    for idx, comps in iter_generate(
        model,
        tokenizer,
        prompts,
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        fast_decode=fast_decode,
        on_progress=on_progress,
    ):
        for i, c in zip(idx, comps, strict=True):
            results[i] = c
    return [r if r is not None else [] for r in results]


# --------------------------------------------------------------------------------------------
# Thinking vs answer
# --------------------------------------------------------------------------------------------


class ThinkSplitter:
    """Splits streamed text into ``("think" | "answer" | "tag", text)`` segments.

    Text between ``<think>`` and ``</think>`` is thinking; everything else is answer; the tags
    themselves are ``"tag"`` segments. Tags may arrive cut across chunks: a chunk's tail that could
    be the start of a tag is held back until the next chunk decides it. Joining every segment's
    text gives back the input exactly.

    >>> s = ThinkSplitter()
    >>> s.feed("<thi") + s.feed("nk>2+2 is 4</think><answer>4</answer>") + s.close()
    [('tag', '<think>'), ('think', '2+2 is 4'), ('tag', '</think>'), ('tag', '<answer>'), ('answer', '4'), ('tag', '</answer>')]
    """

    def __init__(self, *, in_think: bool = False) -> None:
        # in_think: the chat template already opened <think> in the prompt (R1-distill style), so
        # the reply starts inside the thinking.
        self.mode = "think" if in_think else "answer"
        self._buf = ""

    def _held_back(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a tag."""
        for n in range(min(len(text), max(map(len, TAGS)) - 1), 0, -1):
            tail = text[-n:]
            if any(tag.startswith(tail) and tag != tail for tag in TAGS):
                return n
        return 0

    def feed(self, chunk: str) -> list[tuple[str, str]]:
        """Consume a chunk; return the segments that are now certain."""
        self._buf += chunk
        out: list[tuple[str, str]] = []
        while True:
            hits = [(self._buf.find(t), t) for t in TAGS if t in self._buf]
            if not hits:
                break
            pos, tag = min(hits)
            if pos:
                out.append((self.mode, self._buf[:pos]))
            out.append(("tag", tag))
            if tag == THINK_OPEN:
                self.mode = "think"
            elif tag == THINK_CLOSE:
                self.mode = "answer"
            self._buf = self._buf[pos + len(tag) :]
        keep = self._held_back(self._buf)
        ready, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
        if ready:
            out.append((self.mode, ready))
        return out

    def close(self) -> list[tuple[str, str]]:
        """Flush what is held back at the end of the stream."""
        rest, self._buf = self._buf, ""
        return [(self.mode, rest)] if rest else []


def progress_log(label: str, total: int, *, every: float = 30.0) -> Callable[[float], None]:
    """An ``on_progress`` callback for places without a progress bar (a pipe, nohup, CI): logs
    ``label: done/total`` with the time so far and the estimated time left, at most every ``every``
    seconds and once at the end.

    >>> report = progress_log("eval: problems", 4, every=3600); report(1); report(4)  # logs "...: 4/4 ..."
    """
    start = time.perf_counter()
    last = [start]

    def report(done: float, _total: int | None = None) -> None:
        now = time.perf_counter()
        if last[0] is None:  # the end was said once already
            return
        if now - last[0] >= every or done >= total:
            last[0] = None if done >= total else now
            elapsed = now - start
            left = f", ~{_duration(elapsed * (total - done) / done)} left" if 0 < done < total else ""
            logger.info("%s: %d/%d (%s%s)", label, int(done), total, _duration(elapsed), left)

    return report


def _duration(seconds: float) -> str:
    """``75.2`` -> ``'1m15s'``, ``4.0`` -> ``'4s'``."""
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@contextmanager
def progress(label: str, total: int, *, every: float = 30.0, disable: bool = False):
    """Yields an ``on_progress(done, total=None)`` callback: a transient rich bar with the estimated time
    left on stderr in a terminal, else (a pipe, nohup, CI) :func:`progress_log`'s periodic lines.
    ``disable`` turns the bar off and keeps the lines."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if disable or not console.is_terminal:
        yield progress_log(label, total, every=every)
        return
    columns = (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done, _total=None: bar.update(task, completed=done)


def split_thinking(text: str, *, think_prefilled: bool = False) -> tuple[str, str]:
    """``(thinking, response)`` of a complete reply, tags removed and whitespace trimmed.

    >>> split_thinking("<think> 3*4=12 </think><answer> 12 </answer>")
    ('3*4=12', '12')
    >>> split_thinking("just 12")
    ('', 'just 12')
    >>> split_thinking("3*4=12</think>12", think_prefilled=True)
    ('3*4=12', '12')
    """
    s = ThinkSplitter(in_think=think_prefilled)
    segments = s.feed(text) + s.close()
    thinking = "".join(t for kind, t in segments if kind == "think").strip()
    response = "".join(t for kind, t in segments if kind == "answer").strip()
    return thinking, response


# --------------------------------------------------------------------------------------------
# ask / stream
# --------------------------------------------------------------------------------------------


def load_pair(model_or_pair, *, dtype: str = "auto", device: str = "auto", trust_remote_code: bool = False):
    """``(model, tokenizer)`` from a spec string (via ``r1lab.models.load_model``) or a pair."""
    if isinstance(model_or_pair, tuple | list) and len(model_or_pair) == 2:
        return tuple(model_or_pair)
    if not isinstance(model_or_pair, str):
        raise TypeError(
            f"expected a model spec string or a (model, tokenizer) pair, got {type(model_or_pair)!r}"
        )
    from r1lab.models import load_model

    return load_model(model_or_pair, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def stream_generate(
    model,
    tokenizer,
    messages: Messages,
    *,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    seed: int = 0,
    result: dict | None = None,
) -> Iterator[str]:
    """Yield the reply to ``messages`` as decoded text chunks while it is generated.

    Generation runs in a thread feeding a ``transformers.TextIteratorStreamer``; the prompt is not
    echoed. When ``result`` is a dict it receives ``n_tokens`` and ``truncated`` at the end.
    """
    import torch
    from transformers import TextIteratorStreamer

    text = render_prompts(tokenizer, [messages])[0]
    device = next(model.parameters()).device
    enc = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    enc = {k: v.to(device) for k, v in enc.items()}
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    eos, pad_id = _stop_ids(model, tokenizer)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            torch.manual_seed(seed)
            with torch.inference_mode():
                box["out"] = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    use_cache=True,
                    pad_token_id=pad_id,
                    streamer=streamer,
                    **sampling_kwargs(temperature, top_p),
                )
        except BaseException as err:  # re-raised in the caller's thread below
            box["error"] = err
            streamer.end()

    model.eval()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield from streamer
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    if result is not None:
        completion = _completion(box["out"][0, enc["input_ids"].shape[1] :].tolist(), eos, tokenizer)
        result.update(n_tokens=completion.n_tokens, truncated=completion.truncated)


def make_answer(
    question: str, text: str, n_tokens: int, truncated: bool, seconds: float, *, think_prefilled: bool = False
) -> Answer:
    """Package a reply: split thinking from response and extract the answer (rewards package)."""
    from r1lab.rewards import extract_answer

    thinking, response = split_thinking(text, think_prefilled=think_prefilled)
    return Answer(
        question=question,
        text=text,
        thinking=thinking,
        response=response,
        answer=extract_answer(text),
        n_tokens=n_tokens,
        truncated=truncated,
        seconds=round(seconds, 3),
    )


def ask(
    model_or_pair,
    question: str,
    *,
    system_prompt: str | None = "r1",
    history: Messages | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    seed: int = 0,
    on_text: Callable[[str], None] | None = None,
    on_start: Callable[[bool], None] | None = None,
    reply_prefix: str | None = None,
) -> Answer:
    """Ask one question; returns an :class:`Answer`. ``reply_prefix`` starts the reply (the run's
    ``reply_prefix``, e.g. ``"<think>\n"``); the returned text includes it.

    Uses the training system prompt (``"r1"``) unless told otherwise. With ``on_text`` the reply
    is streamed: ``on_text`` gets each decoded chunk as it is generated. ``on_start`` is called
    first with whether the chat template already opened ``<think>`` (the reply then starts inside
    the thinking).

    Example::

        a = ask("smollm2-135m", "What is 12 * 7?", max_new_tokens=128)
        print(a.answer)   # the extracted final answer, or None
    """
    if not question or not question.strip():
        raise UserError(
            "the question is empty", hint='pass the question as text, e.g. r1lab ask "What is 2+2?"'
        )
    model, tokenizer = load_pair(model_or_pair)
    messages = build_messages(question, system_prompt, history)
    if reply_prefix:
        messages.append({"role": "assistant", "content": reply_prefix})
    prefilled = prompt_prefills_think(render_prompts(tokenizer, [messages])[0])
    if on_start is not None:
        on_start(prefilled)
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    chunks = []
    for chunk in stream_generate(
        model,
        tokenizer,
        messages,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        result=info,
    ):
        chunks.append(chunk)
        if on_text is not None:
            on_text(chunk)
    seconds = time.perf_counter() - t0
    text = (reply_prefix or "") + "".join(chunks)
    return make_answer(
        question,
        text,
        info["n_tokens"],
        info["truncated"],
        seconds,
        think_prefilled=prefilled and not reply_prefix,
    )
