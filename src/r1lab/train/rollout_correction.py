"""Importance-sampling correction for rollouts decoded at another precision than the learner trains at.

When rollouts sample from a bf16 or int8 copy of the policy, the tokens come from a distribution ``q`` that
is not the learner's ``p``; a policy gradient estimated from them is biased unless each token's loss is
weighted by ``p / q``. TRL has that machinery for vLLM (``vllm_importance_sampling_correction``, its four
modes and clip bounds; the ratio multiplies the per-token loss in ``GRPOTrainer._compute_loss``), and this
module computes the same ratio for r1lab's decoder from TRL's own fields.

The difference is where the learner's log-probabilities come from. TRL runs an extra no-grad forward of the
whole generation batch at generation time to get them. With one policy iteration per generation batch those
are exactly the loss forward's own log-probabilities, detached, so r1lab computes the ratio inside the loss
from that forward (see ``R1labGRPOTrainer._compute_loss``) and costs no forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


@dataclass(frozen=True)
class Correction:
    """TRL's importance-sampling settings (``GRPOConfig.vllm_importance_sampling_*``)."""

    mode: str = "sequence_mask"
    clip_min: float | None = None
    clip_max: float | None = 3.0

    @classmethod
    def from_args(cls, args) -> Correction:
        return cls(
            mode=args.vllm_importance_sampling_mode,
            clip_min=args.vllm_importance_sampling_clip_min,
            clip_max=args.vllm_importance_sampling_clip_max,
        )

    def describe(self) -> str:
        """``sequence_mask, ratio in [0, 3]`` style summary for the run log."""
        low = "-inf" if self.clip_min is None and "mask" in self.mode else self.clip_min or 0
        high = "inf" if self.clip_max is None else f"{self.clip_max:g}"
        return f"{self.mode}, ratio kept in [{low}, {high}]"


def importance_ratio(learner_logps, sampling_logps, mask, correction: Correction):
    """``(ratio, clipped)``: the weight of each token's loss and which tokens the bounds truncated or masked.

    ``learner_logps`` / ``sampling_logps`` are ``(B, T)`` log-probabilities of the sampled tokens under the
    learner and under the distribution they were drawn from; ``mask`` marks real completion tokens. Token
    modes give a ``(B, T)`` ratio ``exp(learner - sampling)``; sequence modes a ``(B, 1)`` ratio of the
    summed log-ratio. ``*_truncate`` clamps to ``[clip_min, clip_max]``; ``*_mask`` sets ratios outside it to
    0. ``clipped`` is ``(B, T)`` booleans (a sequence mode marks every real token of an affected sequence).
    Identical log-probabilities give a ratio of exactly 1.

    >>> import torch
    >>> ratio, clipped = importance_ratio(torch.tensor([[0.0, -2.0]]), torch.tensor([[-1.5, -1.0]]),
    ...                                   torch.tensor([[1, 1]]), Correction("token_truncate", 0.5, 3.0))
    >>> [round(x, 3) for x in ratio[0].tolist()], clipped[0].tolist()
    ([3.0, 0.5], [True, True])
    """
    import torch

    if correction.mode not in MODES:
        raise ValueError(f"vllm_importance_sampling_mode must be one of {MODES}, got {correction.mode!r}")
    real = mask.bool()
    # padding (and a token whose sampling log-prob is unknown) contributes no correction: ratio exactly 1
    diff = torch.nan_to_num((learner_logps - sampling_logps) * mask, nan=0.0)
    per_sequence = correction.mode.startswith("sequence")
    ratio = torch.exp(diff.sum(dim=-1, keepdim=True) if per_sequence else diff)
    low = -math.inf if correction.clip_min is None else correction.clip_min
    high = math.inf if correction.clip_max is None else correction.clip_max
    outside = (ratio < low) | (ratio > high)
    if correction.mode.endswith("truncate"):
        ratio = ratio.clamp(min=correction.clip_min, max=correction.clip_max)
    else:
        ratio = ratio.masked_fill(outside, 0.0)
    clipped = (outside.expand_as(real) if per_sequence else outside) & real
    return ratio, clipped


def mismatch_stats(learner_logps, sampling_logps, mask, ratio, clipped) -> dict[str, tuple]:
    """Per-batch summaries as ``{metric: (value tensor, reduction across processes)}``, under TRL's names
    where TRL has one (``sampling/...``) plus the share of tokens the bounds truncated or masked."""
    import torch

    real = mask.bool()
    delta = (learner_logps - sampling_logps).abs()[real & ~torch.isnan(sampling_logps)]
    zero = torch.zeros((), device=mask.device)
    kept = ratio.flatten() if ratio.shape[-1] == 1 else ratio[real]
    ratio_summary = (kept.min(), kept.mean(), kept.max()) if kept.numel() else (zero, zero, zero)
    return {
        "sampling/sampling_logp_difference/mean": (delta.mean() if delta.numel() else zero, "mean"),
        "sampling/sampling_logp_difference/max": (delta.max() if delta.numel() else zero, "max"),
        "sampling/importance_sampling_ratio/min": (ratio_summary[0], "min"),
        "sampling/importance_sampling_ratio/mean": (ratio_summary[1], "mean"),
        "sampling/importance_sampling_ratio/max": (ratio_summary[2], "max"),
        "sampling/importance_sampling_ratio/clipped": (
            clipped.sum() / real.sum().clamp(min=1) if real.any() else zero,
            "mean",
        ),
    }


def precision_mismatch(weights_dtype, rollout_dtype, *, autocast: str | None) -> str | None:
    """Why rollouts sample from another distribution than the learner's forward, or None when they run the
    same numerics (``rollout_dtype`` None: the training weights themselves, without autocast).

    >>> import torch
    >>> precision_mismatch(torch.float32, None, autocast=None) is None
    True
    >>> precision_mismatch(torch.float32, torch.int8, autocast=None)
    'rollouts decode in int8, the learner in float32'
    >>> precision_mismatch(torch.float32, torch.bfloat16, autocast="bf16")
    'rollouts decode in bfloat16, the learner in float32 with bf16 autocast'
    """
    rollout = rollout_dtype or weights_dtype
    if rollout == weights_dtype and autocast is None:
        return None
    learner = _name(weights_dtype) + (f" with {autocast} autocast" if autocast else "")
    return f"rollouts decode in {_name(rollout)}, the learner in {learner}"


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")
