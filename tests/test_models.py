import time
from pathlib import Path

import pytest
import torch

from r1lab.errors import UserError
from r1lab.models import load_model, lora_config, pick_dtype, resolve_model

MSGS = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "What is 2+3?"},
    {"role": "assistant", "content": "<think>2+3=5</think><answer>5</answer>"},
]


def test_tiny_is_deterministic_and_cached(r1lab_cache):
    m1, tok = load_model("tiny")
    path = resolve_model("tiny")
    assert path.startswith(str(r1lab_cache))
    m2, _ = load_model("tiny")
    for (n, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), n
    assert 100_000 < sum(p.numel() for p in m1.parameters()) < 2_000_000
    assert tok.padding_side == "left" and tok.pad_token is not None


def test_tiny_tokenizer_roundtrips_and_masks_assistant(r1lab_cache):
    _, tok = load_model("tiny")
    text = tok.apply_chat_template(MSGS, tokenize=False)
    assert tok.decode(tok(text)["input_ids"]) == text
    out = tok.apply_chat_template(MSGS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    kept = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(kept) == MSGS[2]["content"] + "<|im_end|>"
    # tags are single tokens, so the format is learnable by a tiny model
    assert len(tok("<think>")["input_ids"]) == 1


def test_tiny_generates_and_stops_at_im_end(r1lab_cache):
    model, tok = load_model("tiny")
    enc = tok.apply_chat_template(MSGS[:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] <= enc["input_ids"].shape[1] + 8
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


def test_smollm2_from_gguf_converts_once_and_generates():
    # Uses the default cache on purpose: the ~30 s conversion is shared with every later run.
    path = resolve_model("smollm2-135m")
    start = time.time()
    model, tok = load_model("smollm2-135m")
    assert time.time() - start < 30  # a cached HF checkpoint, not a second dequantization
    assert resolve_model("smollm2-135m") == path
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert "{% generation %}" in tok.chat_template
    enc = tok.apply_chat_template(MSGS[:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert tok.decode(out[0, enc["input_ids"].shape[1] :]).strip()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("", "empty model spec"),
        ("./nope/model", "model path not found"),
        ("nope.gguf", "GGUF file not found"),
        ("some-org/some-model-that-is-not-cached", "HF_HUB_OFFLINE=1"),
    ],
)
def test_bad_specs_fail_fast_with_a_fix(spec, needle, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(UserError, match=needle):
        resolve_model(spec)
    assert time.time() - start < 5


def test_dir_without_config_is_rejected(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_model(str(tmp_path))


@pytest.mark.dtype
@pytest.mark.parametrize("native", ["1", "0"])
def test_cpu_bf16_decision_can_be_forced_and_drives_the_defaults(monkeypatch, native):
    """R1LAB_CPU_BF16 forces the CPU-bf16 decision: inference weights and the trainer's autocast follow it;
    training weights stay fp32 either way."""
    from r1lab.config import RunConfig
    from r1lab.models import cpu_has_fast_bf16
    from r1lab.train.common import trl_defaults

    monkeypatch.setenv("R1LAB_CPU_BF16", native)
    on = native == "1"
    assert cpu_has_fast_bf16() is on
    assert pick_dtype("cpu", "auto") == (torch.bfloat16 if on else torch.float32)
    assert pick_dtype("cpu", "auto", for_training=True) == torch.float32
    run = RunConfig.from_dict(
        {"name": "x", "model": "tiny", "device": "cpu", "stages": [{"name": "g", "kind": "grpo"}]}
    )
    assert trl_defaults(run.stages[0], run, Path("out"))["bf16"] is on


def test_dtype_and_lora_choices():
    assert pick_dtype("cpu", "auto", for_training=True) == torch.float32
    assert pick_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(UserError, match="unknown dtype"):
        pick_dtype("cpu", "int3")
    assert lora_config(False) is None
    assert lora_config(True).r == 16
    assert lora_config({"r": 4}).r == 4
    with pytest.raises(UserError, match="bad lora"):
        lora_config({"nonsense": 1})


def test_lora_wraps_model(r1lab_cache):
    model, _ = load_model("tiny", lora={"r": 2}, for_training=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert 0 < trainable < total / 5
