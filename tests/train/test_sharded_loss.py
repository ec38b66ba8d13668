"""Where GRPO's shared prompt forward applies, and why it does not under FSDP.

On an H200 under FSDP2 (``make gpu-check``) the shared prompt forward failed in backward with "setStorage ...
storage of size 0": the completion forward's backward reaches the prompt forward's K/V projections through
the KV cache after the layer's own backward has freed its gathered weights. The script below shows the same
on the CPU with torch's ``fully_shard`` (gloo, one process), and that the per-row loss r1lab falls back to
trains there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

from r1lab.compat import parameters_freed_after_forward
from r1lab.train.rollouts import shared_prompt_forward_applies

FULLY_SHARDED = textwrap.dedent(
    """
    import os, socket, torch, torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    ids = torch.randint(0, 64, (2, 10))

    # the per-row loss: one forward over prompt + completion
    model(input_ids=ids).logits[:, 6:].sum().backward()
    print("per-row: trained", all(p.grad is not None for p in model.parameters()))
    model.zero_grad()

    # the shared prompt forward: the prompt's KV cache carries gradients into the completion forward
    cache = DynamicCache(config=config)
    model(input_ids=ids[:, :6], use_cache=True, past_key_values=cache)
    try:
        model(input_ids=ids[:, 6:], past_key_values=cache).logits.sum().backward()
        print("shared: trained")
    except RuntimeError as err:
        print("shared: failed:", str(err).splitlines()[0])
    dist.destroy_process_group()
    """
)


def test_fully_sharded_model_trains_with_the_per_row_loss_only():
    out = subprocess.run([sys.executable, "-c", FULLY_SHARDED], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "per-row: trained True" in out.stdout
    # If torch ever makes this work, shared_prompt_forward_applies may let FSDP share the prompt forward.
    assert "shared: failed: setStorage" in out.stdout, out.stdout


def test_shared_prompt_forward_applies_on_a_plain_cpu_run_only():
    def applies(wanted=True, gc=False, device="cpu", resharded=None):
        return shared_prompt_forward_applies(
            wanted, gradient_checkpointing=gc, device_type=device, resharded=resharded
        )

    assert applies() == (True, None)
    assert applies(wanted=False) == (False, None)  # turned off: nothing to explain
    assert applies(gc=True)[0] is False and "gradient checkpointing" in applies(gc=True)[1]
    off, why = applies(device="cuda", resharded="FSDP")
    assert not off and "FSDP frees" in why
    off, why = applies(device="cuda")
    assert not off and "cuda" in why


def test_sharding_that_frees_weights_after_forward_is_named():
    def trainer(fsdp=False, zero=None):
        plugin = SimpleNamespace(zero_stage=zero) if zero else None
        return SimpleNamespace(
            is_fsdp_enabled=fsdp,
            is_deepspeed_enabled=zero is not None,
            accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)),
        )

    assert parameters_freed_after_forward(trainer()) is None
    assert parameters_freed_after_forward(trainer(fsdp=True)) == "FSDP"
    assert parameters_freed_after_forward(trainer(zero=3)) == "DeepSpeed ZeRO-3"
    assert parameters_freed_after_forward(trainer(zero=2)) is None  # ZeRO-2 keeps whole weights
