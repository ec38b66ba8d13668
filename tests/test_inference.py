"""Generation, streaming, thinking/answer splitting, and the ask/chat verbs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1lab.cli import main
from r1lab.errors import UserError
from r1lab.inference import (
    ThinkSplitter,
    build_messages,
    decode_shared_prefix,
    generate,
    make_answer,
    render_prompts,
    sampling_kwargs,
    split_thinking,
    stream_generate,
)
from r1lab.prompts import R1_SYSTEM_PROMPT

# Depends on the CPU-bf16 decision (models.cpu_has_fast_bf16): `make test` also runs these with it flipped.
pytestmark = pytest.mark.dtype


@pytest.fixture(scope="module")
def tiny():
    from r1lab.models import load_model

    return load_model("tiny", dtype="float32")


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(0)


def chat(q: str) -> list[dict]:
    return build_messages(q, system_prompt="Think, then answer.")


QUESTIONS = [
    "What is 1+1?",
    "A shop has 30 apples and sells 12. How many are left?",
    "2*3?",
    "hi",
    "Compute 17 - 9.",
]


# ------------------------------------------------------------------ ThinkSplitter


def _merge(segments):
    out = []
    for kind, text in segments:
        if out and out[-1][0] == kind and kind != "tag":
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


alphabet = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "<", "/", ">", "a", " ", "th", "ink", "4"]
)


@given(st.lists(alphabet, max_size=30).map("".join), st.lists(st.integers(1, 7), min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_splitter_is_independent_of_how_the_stream_is_chunked(text, cuts):
    whole = ThinkSplitter()
    expected = _merge(whole.feed(text) + whole.close())
    s, pos, got = ThinkSplitter(), 0, []
    for n in cuts * (len(text) // max(1, sum(cuts)) + 1):
        if pos >= len(text):
            break
        got += s.feed(text[pos : pos + n])
        pos += n
    got += s.close()
    assert "".join(t for _, t in got) == text  # nothing lost or duplicated
    assert _merge(got) == expected


def test_split_thinking_and_make_answer():
    text = "<think>\n12 apples, 3 eaten: 12-3=9\n</think>\n<answer>9</answer>"
    assert split_thinking(text) == ("12 apples, 3 eaten: 12-3=9", "9")
    a = make_answer("q", text, n_tokens=20, truncated=False, seconds=0.5)
    assert a.thinking.startswith("12 apples") and a.response == "9" and a.answer == "9"
    assert make_answer("q", "no idea", 3, True, 0.1).answer is None


def test_messages_use_the_training_system_prompt_by_default():
    msgs = build_messages("What is 2+2?")
    assert msgs[0] == {"role": "system", "content": R1_SYSTEM_PROMPT}
    assert msgs[-1] == {"role": "user", "content": "What is 2+2?"}
    assert build_messages("x", system_prompt="none") == [{"role": "user", "content": "x"}]


def test_sampling_kwargs_are_explicit():
    assert sampling_kwargs(0) == {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    assert sampling_kwargs(0.7, 0.9) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    with pytest.raises(UserError):
        sampling_kwargs(-1)


# ------------------------------------------------------------------ batched generation on a real model


def test_batched_greedy_generation_matches_one_prompt_at_a_time(lively):
    """Sorting, left padding and batching must not change what greedy decoding produces."""
    model, tok = lively
    prompts = [chat(q) for q in QUESTIONS]
    batched = generate(model, tok, prompts, max_new_tokens=16, batch_size=8)
    single = [generate(model, tok, [p], max_new_tokens=16, batch_size=1)[0] for p in prompts]
    assert [b[0].text for b in batched] == [s[0].text for s in single]
    assert [b[0].n_tokens for b in batched] == [s[0].n_tokens for s in single]


def _reference_greedy(model, tok, prompt_ids, eos, max_new_tokens):
    """``model.generate`` on one unpadded prompt, cut after the first of ``eos``."""
    import torch

    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        eos_token_id=sorted(eos),
        pad_token_id=tok.pad_token_id,
    )
    row = out[0, len(prompt_ids) :].tolist()
    end = next((i for i, t in enumerate(row) if t in eos), len(row) - 1)
    return row[: end + 1]


@pytest.mark.parametrize("system", ["Think, then answer.", None])
def test_shared_prefix_decoding_matches_generate_one_prompt_at_a_time(lively, system):
    """Sharing the prompts' common prefix, padding between prefix and tail, and dropping rows that
    stopped must give exactly what ``model.generate`` gives each prompt alone (greedy, fp32)."""
    import torch

    model, tok = lively
    msgs = [build_messages(q, system_prompt=system) for q in QUESTIONS]
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in render_prompts(tok, msgs)]
    # A random tiny model rarely says EOS; call "EOS" a token it does produce, chosen so that rows stop
    # at different steps (one may never stop), and the batch really shrinks.
    free = decode_shared_prefix(
        model, rows, per_prompt=1, max_new_tokens=12, eos=set(), pad_id=tok.pad_token_id
    )

    def stops(token):
        return {r.index(token) if token in r else None for r in free}

    eos = {next(t for r in free for t in r[1:] if len(stops(t) - {None}) >= 2)}
    model.eval()
    with torch.inference_mode():
        got = decode_shared_prefix(
            model, rows, per_prompt=1, max_new_tokens=12, eos=eos, pad_id=tok.pad_token_id
        )
        want = [_reference_greedy(model, tok, r, eos, 12) for r in rows]
    assert got == want
    assert len({len(r) for r in got}) > 1  # rows stopped at different steps


def test_shared_prefix_sampling_is_seeded_and_near_zero_temperature_is_greedy(lively):
    import torch

    model, tok = lively
    rows = [
        tok(t, add_special_tokens=False)["input_ids"]
        for t in ["<|im_start|>user\nab", "<|im_start|>user\nxyz1"]
    ]
    kw = {"max_new_tokens": 8, "eos": set(), "pad_id": tok.pad_token_id}
    greedy = decode_shared_prefix(model, rows, per_prompt=1, **kw)
    torch.manual_seed(0)
    cold = decode_shared_prefix(model, rows, per_prompt=3, temperature=1e-4, **kw)
    assert cold == [g for g in greedy for _ in range(3)]
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append(decode_shared_prefix(model, rows, per_prompt=3, temperature=1.0, top_p=0.9, **kw))
    assert runs[0] == runs[1] and len(runs[0]) == 6 and all(len(r) == 8 for r in runs[0])
    assert len({tuple(r) for r in runs[0]}) > 2


def test_fast_and_plain_generate_agree(lively):
    model, tok = lively
    prompts = [chat(q) for q in QUESTIONS]
    fast = generate(model, tok, prompts, max_new_tokens=16, batch_size=8)
    plain = generate(model, tok, prompts, max_new_tokens=16, batch_size=8, fast_decode=False)
    assert [[c.text for c in o] for o in fast] == [[c.text for c in o] for o in plain]


def test_samples_per_prompt_budget_and_truncation(tiny):
    model, tok = tiny
    prompts = [chat(q) for q in QUESTIONS[:3]]
    out = generate(model, tok, prompts, n_samples=4, temperature=1.0, max_new_tokens=10, batch_size=8, seed=1)
    assert [len(o) for o in out] == [4, 4, 4]
    flat = [c for o in out for c in o]
    assert all(1 <= c.n_tokens <= 10 for c in flat)
    assert all(c.n_tokens == 10 for c in flat if c.truncated)
    assert len({c.text for c in flat}) > 6  # sampled, not copies
    again = generate(
        model, tok, prompts, n_samples=4, temperature=1.0, max_new_tokens=10, batch_size=8, seed=1
    )
    assert [[c.text for c in o] for o in again] == [[c.text for c in o] for o in out]  # seeded
    greedy = generate(model, tok, prompts[:1], n_samples=3, temperature=0.0, max_new_tokens=10)
    assert len({c.text for c in greedy[0]}) == 1 and len(greedy[0]) == 3
    assert tok.padding_side == "left" and not model.training


def test_streamed_text_equals_generated_text_and_never_echoes_the_prompt(tiny):
    model, tok = tiny
    msgs = chat("What is 1+1?")
    info: dict = {}
    chunks = list(stream_generate(model, tok, msgs, max_new_tokens=16, result=info))
    [[ref]] = generate(model, tok, [msgs], max_new_tokens=16)
    assert len(chunks) > 1  # arrived piece by piece
    assert "".join(chunks) == ref.text
    assert info == {"n_tokens": ref.n_tokens, "truncated": ref.truncated}
    assert "Think, then answer." not in "".join(chunks)


# ------------------------------------------------------------------ CLI


def test_ask_json(capsys):
    assert main(["ask", "What is 1+1?", "--model", "tiny", "--max-new-tokens", "12", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["question"] == "What is 1+1?"
    assert set(data) >= {"text", "thinking", "response", "answer", "n_tokens", "truncated", "seconds"}
    assert 1 <= data["n_tokens"] <= 12
    assert R1_SYSTEM_PROMPT[:40] not in out


def test_ask_streams_without_printing_the_prompt(capsys):
    assert main(["ask", "What is 1+1?", "--model", "tiny", "--max-new-tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert "answer:" in out and "tokens" in out
    assert R1_SYSTEM_PROMPT[:40] not in out and "What is 1+1?" not in out


def test_ask_bad_input_exits_2(capsys):
    assert main(["ask", "  ", "--model", "tiny"]) == 2
    assert main(["ask", "hi", "--model", "/nonexistent/model-dir"]) == 2
    err = capsys.readouterr().err
    assert err.count("r1lab: error:") == 2 and "model path not found" in err


def test_chat_reads_piped_stdin(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "R1LAB_CACHE": os.environ.get("R1LAB_CACHE", "")}
    env = {k: v for k, v in env.items() if v}
    proc = subprocess.run(
        [sys.executable, "-m", "r1lab", "chat", "--model", "tiny", "--max-new-tokens", "8", "--json"],
        input="What is 2+3?\n\nAnd times 4?\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    assert [x["question"] for x in lines] == ["What is 2+3?", "And times 4?"]  # the empty line is skipped


def test_templates_that_open_think_in_the_prompt_start_the_reply_inside_thinking(tiny):
    import copy

    from r1lab.inference import ask

    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.chat_template = tok.chat_template + "{%- if add_generation_prompt %}{{- '<think>\\n' }}{%- endif %}"
    seen = []
    answer = ask((model, tok), "What is 1+1?", max_new_tokens=6, on_start=seen.append)
    assert seen == [True]
    assert split_thinking("a</think>b", think_prefilled=True) == ("a", "b")
    assert (answer.thinking, answer.response) == split_thinking(answer.text, think_prefilled=True)
    s = ThinkSplitter(in_think=True)
    assert s.feed("x</think>y") + s.close() == [("think", "x"), ("tag", "</think>"), ("answer", "y")]
