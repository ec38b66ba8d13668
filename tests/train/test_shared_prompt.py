"""GRPO's loss forward with one prompt forward per distinct prompt equals TRL's (values and gradients)."""

from __future__ import annotations

import pytest
import torch
from test_rollouts import make_trainer

from r1lab.train.shared_prompt import prompt_groups

# Depends on the CPU-bf16 decision (models.cpu_has_fast_bf16): `make test` also runs these with it flipped.
pytestmark = pytest.mark.dtype

# Gradients are sums over every token (the tied embedding's rows reach ~60 on this model): two exact paths
# that add in a different order (or attend with another SDPA kernel: the loss uses the math kernel for small
# shapes on a CPU) differ in a rare element near zero by up to a few 1e-5 of the tensor's largest entry
# (measured: 2e-3 against 64). So the absolute tolerance scales with that entry; an error in the
# computation itself would be of the order of the entries.
GRAD_ATOL_OF_MAX = 1e-4


def assert_grads_close(a, b, name):
    atol = max(GRAD_ATOL_OF_MAX * float(b.abs().max()), 1e-6)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=atol, msg=name)


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(1, for_training=True)


def scored_batch(trainer):
    inputs = [trainer.train_dataset[i] for i in range(2) for _ in range(4)]
    trainer.model.train()
    torch.manual_seed(0)
    out = trainer._generate_and_score_completions(inputs)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    # TRL shuffles the generation batch before the loss sees it: a prompt's rows are not adjacent
    perm = torch.tensor([0, 4, 1, 5, 6, 2, 3, 7])
    return ids[perm], mask[perm], out["completion_ids"].size(1), out["completion_mask"][perm].bool()


def logps_and_grads(trainer, ids, mask, keep, shared: bool, monkeypatch):
    import r1lab.train.shared_prompt as sp

    returned = []  # what the shared path returned, each time it ran
    real = sp.shared_prompt_logps
    monkeypatch.setattr(
        sp, "shared_prompt_logps", lambda *a, **k: returned.append(real(*a, **k)) or returned[-1]
    )
    trainer.share_prompt_forward = shared
    trainer.model.zero_grad()
    logps, ent, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, mask, keep, compute_entropy=True
    )
    if shared:  # the values compared are the very tensors the shared path returned, not TRL's fallback
        assert len(returned) == 1 and returned[0] is not None
        assert logps is returned[0][0] and ent is returned[0][1]
    else:
        assert returned == []
    cm = mask[:, -keep:].bool()
    (logps[cm].sum() + 0.1 * ent[cm].sum()).backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return logps.detach(), ent.detach(), grads


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_prompt_forward_equals_trls_values_and_gradients(lively, tmp_path, temperature, monkeypatch):
    trainer = make_trainer(lively, tmp_path, "r1lab", temperature=temperature, max_completion_length=8)
    ids, mask, keep, cm = scored_batch(trainer)
    assert len(prompt_groups(ids[:, :-keep], mask[:, :-keep])[0]) == 2  # 2 prompts x 4 completions
    a_lp, a_ent, a_grads = logps_and_grads(trainer, ids, mask, keep, shared=True, monkeypatch=monkeypatch)
    b_lp, b_ent, b_grads = logps_and_grads(trainer, ids, mask, keep, shared=False, monkeypatch=monkeypatch)
    torch.testing.assert_close(a_lp[cm], b_lp[cm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a_ent[cm], b_ent[cm], rtol=1e-4, atol=1e-4)
    assert a_grads.keys() == b_grads.keys() and a_grads
    for name in a_grads:
        assert_grads_close(a_grads[name], b_grads[name], name)


def test_distinct_prompts_use_trls_path(lively, tmp_path):
    from r1lab.train.shared_prompt import shared_prompt_logps

    trainer = make_trainer(lively, tmp_path, "r1lab", max_completion_length=8)
    ids, mask, keep, _ = scored_batch(trainer)
    rows = [0, 1]  # one row of each prompt: nothing to share
    assert (
        shared_prompt_logps(trainer.model, ids[rows], mask[rows], keep, autocast=trainer.accelerator.autocast)
        is None
    )


def test_rows_of_uneven_length_run_in_groups_without_their_padding(lively, tmp_path, monkeypatch):
    import r1lab.train.shared_prompt as sp

    monkeypatch.setattr(sp, "GROUP_OVERHEAD_TOKENS", 1)  # split even these short rows
    trainer = make_trainer(lively, tmp_path, "r1lab", max_completion_length=8)
    ids, mask, keep, _ = scored_batch(trainer)
    ids, mask = ids.clone(), mask.clone()
    for row, n in enumerate([8, 2, 8, 3, 2, 8, 1, 8]):  # completions that stopped early, right-padded
        mask[row, ids.size(1) - keep + n :] = 0
        ids[row, ids.size(1) - keep + n :] = trainer.processing_class.pad_token_id
    cm = mask[:, -keep:].bool()
    assert len(sp.length_buckets(cm.sum(1).tolist())) > 1  # the shared path really splits the rows
    a_lp, a_ent, a_grads = logps_and_grads(trainer, ids, mask, keep, shared=True, monkeypatch=monkeypatch)
    b_lp, b_ent, b_grads = logps_and_grads(trainer, ids, mask, keep, shared=False, monkeypatch=monkeypatch)
    assert a_lp.shape == b_lp.shape and not a_lp[~cm].any()  # dropped padding is zero, as in TRL's head
    torch.testing.assert_close(a_lp[cm], b_lp[cm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a_ent[cm], b_ent[cm], rtol=1e-4, atol=1e-4)
    assert a_grads.keys() == b_grads.keys() and a_grads
    for name in a_grads:
        assert_grads_close(a_grads[name], b_grads[name], name)


def test_the_loss_attends_with_the_math_kernel_only_for_small_shapes_on_a_cpu():
    from torch.nn.attention import SDPBackend
    from torch.nn.attention import _cur_sdpa_kernel_backends as current

    from r1lab.train.shared_prompt import MATH_ATTENTION_MAX_SCORES, loss_attention

    everything = set(current())
    with loss_attention(torch.device("cpu"), 16, 9, 65, 195):  # the seed recipe's completion forward
        assert current() == [SDPBackend.MATH]
    assert set(current()) == everything
    too_big = MATH_ATTENTION_MAX_SCORES // (9 * 65 * 195) + 1
    with loss_attention(torch.device("cpu"), too_big, 9, 65, 195):
        assert set(current()) == everything
    with loss_attention(torch.device("cuda"), 16, 9, 65, 195):
        assert set(current()) == everything
