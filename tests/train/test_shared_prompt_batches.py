"""The shared-prompt log-prob path honours the ``batch_size`` TRL passes when it scores a whole generation
batch (old and reference log-probs): no forward sees more rows than that, and the values still equal TRL's
(issue #23, item 8)."""

from __future__ import annotations

import pytest
import torch
from test_rollouts import make_trainer
from test_shared_prompt import scored_batch

import r1lab.train.shared_prompt as sp

pytestmark = pytest.mark.dtype


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(1, for_training=True)


def _rows_per_forward(model):
    rows = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        rows.append(int(ids.size(0)))

    return rows, model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("batch_size, chunks", [(3, [3, 3, 2]), (4, [4, 4]), (8, [8]), (None, [8])])
def test_shared_prompt_logps_chunk_rows_by_batch_size(lively, tmp_path, monkeypatch, batch_size, chunks):
    trainer = make_trainer(lively, tmp_path, "r1lab", max_completion_length=8)
    ids, mask, keep, cm = scored_batch(trainer)  # 8 rows: 2 prompts x 4, shuffled
    returned = []
    real = sp.shared_prompt_logps
    monkeypatch.setattr(
        sp, "shared_prompt_logps", lambda *a, **k: returned.append(real(*a, **k)) or returned[-1]
    )

    trainer.share_prompt_forward = True
    rows, handle = _rows_per_forward(trainer.model)
    try:
        with torch.no_grad():
            logps, ent, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, ids, mask, keep, batch_size=batch_size, compute_entropy=True
            )
    finally:
        handle.remove()
    # the shared path ran and its tensors are the ones compared below
    assert len(returned) == 1 and returned[0] is not None
    assert logps is returned[0][0] and ent is returned[0][1]
    # each chunk: one prompt forward (one row per distinct prompt in it) and one completion forward
    tails = rows[1::2]
    assert tails == chunks and max(rows) <= (batch_size or 8)
    assert all(r <= 2 for r in rows[0::2])

    trainer.share_prompt_forward = False  # TRL's own path, same batch_size
    with torch.no_grad():
        trl_logps, trl_ent, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, keep, batch_size=batch_size, compute_entropy=True
        )
    torch.testing.assert_close(logps[cm], trl_logps[cm], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ent[cm], trl_ent[cm], rtol=1e-4, atol=1e-4)
