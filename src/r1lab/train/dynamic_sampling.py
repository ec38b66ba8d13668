"""Dynamic sampling for GRPO (DAPO's "dynamic sampling", verl's ``algorithm.filter_groups``): groups whose
rewards have zero spread are dropped, and more prompts are drawn until the batch is full again.

A group whose completions all score the same (all right, all wrong, or all the same format score) has
zero advantage for every completion, so it gives no policy gradient yet costs a full generation and
update. :class:`DynamicSamplingMixin` wraps TRL's ``_generate_and_score_completions``:

1. score the generation batch as TRL does (any rollout engine: r1lab's decoder or TRL's generate/vLLM);
2. keep the groups whose rewards (the weighted total, or one named reward) differ;
3. while the batch is short and fewer than ``max_rounds`` generation rounds have run, draw more prompts
   from the training dataset and go to 1;
4. train on the kept groups: a full batch, or (the cap reached) what it has, which it logs.

Extra prompts come from the training dataset through a stream of its own that depends only on the seed,
the generation index and the round (never on earlier draws), so a run is reproducible and a resumed run
draws the same prompts as an uninterrupted one. Filtering is per process: each process's slice of the
generation batch holds whole groups (checked up front), and every process runs the same number of rounds
(the decision to draw again is collective), so TRL's gathers stay in step.

Logged per generation (TRL's metrics dict: ``metrics.jsonl``, TensorBoard, the console line):
``dynamic_sampling/groups_drawn``, ``/groups_kept``, ``/generation_rounds``, ``/zero_spread_frac`` (before
filtering, over every group drawn) and ``/batch_full`` (0 when the cap cut a step short).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from r1lab.train.rollouts import R1labGRPOTrainer

log = logging.getLogger(__name__)

PREFIX = "dynamic_sampling/"

# TRL's output tensors, by how rows of different generation rounds are padded to one width.
_LEFT_PADDED = ("prompt_ids", "prompt_mask")
_RIGHT_PADDED = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
_PER_ROW = ("advantages",)
_RECOMPUTED = ("num_items_in_batch",)


@dataclass(frozen=True)
class DynamicSampling:
    """The settings: ``metric`` is ``"total"`` (the weighted sum of rewards TRL's advantages use) or one
    reward function (its name in ``trainer.reward_func_names``, or its index); ``max_rounds`` caps the
    generation rounds per generation batch (1: filter only, never draw again)."""

    metric: str | int = "total"
    max_rounds: int = 4


class DynamicSamplingMixin:
    """Put before a ``GRPOTrainer`` subclass: ``class T(DynamicSamplingMixin, R1labGRPOTrainer)``. With
    ``dynamic_sampling=None`` every call goes straight to the trainer underneath."""

    def __init__(self, *args, dynamic_sampling: DynamicSampling | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self._last_rewards = None
        self._short_warned = False
        self._stream_cache: tuple[int, list[int]] | None = None
        if dynamic_sampling is not None:
            self._metric_index = self._check_dynamic_sampling(dynamic_sampling)

    # ------------------------------------------------------------------------------------- set-up

    def _check_dynamic_sampling(self, ds: DynamicSampling) -> int | None:
        """The metric's reward column (None: the total); ValueError for a setup it cannot run."""
        if not isinstance(ds.max_rounds, int) or ds.max_rounds < 1:
            raise ValueError(f"dynamic sampling: max_rounds must be >= 1, got {ds.max_rounds!r}")
        dataset = self.train_dataset
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")) or len(dataset) == 0:
            raise ValueError(
                "dynamic sampling draws extra prompts by index: it needs a non-empty map-style dataset"
            )
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if local % self.num_generations:
            raise ValueError(
                f"dynamic sampling filters whole groups on each process, but a process's generation batch "
                f"({local} rows) does not hold whole groups of {self.num_generations}"
            )
        names = list(self.reward_func_names)
        if ds.metric == "total":
            return None
        if isinstance(ds.metric, int) and 0 <= ds.metric < len(names):
            return ds.metric
        if ds.metric in names:
            return names.index(ds.metric)
        raise ValueError(f"dynamic sampling: metric {ds.metric!r} is not 'total' nor one of {names}")

    # ------------------------------------------------------------------------------ TRL's hooks

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.dynamic_sampling is not None:
            self._last_rewards = rewards  # (rows of every process, reward functions), gathered
        return rewards

    def _generate_and_score_completions(self, inputs):
        if self.dynamic_sampling is None or not self.model.training:
            return super()._generate_and_score_completions(inputs)
        g = self.num_generations
        wanted = len(inputs) // g  # groups this process trains on
        kept: list[dict] = []
        leftovers: list[dict] = []  # zero-spread groups, to round a short batch to a whole split
        n_kept = drawn = zero = 0
        rounds, batch = 0, inputs
        while True:
            rounds += 1
            out = super()._generate_and_score_completions(batch)
            spread = self._group_spread(len(batch))
            drawn += len(spread)
            zero += int((~spread).sum())
            good = [i for i in range(len(spread)) if spread[i]][: wanted - n_kept]
            n_kept += len(good)
            kept.append(_select(out, _rows(good, g)))
            leftovers.append(_select(out, _rows([i for i in range(len(spread)) if not spread[i]], g)))
            spread_rate = (drawn - zero) / drawn
            need = self._collective_max(self._next_draw(wanted - n_kept, spread_rate, wanted))
            if need == 0 or rounds >= self.dynamic_sampling.max_rounds:
                break
            batch = self._extra_inputs(rounds, need)
        short = wanted - n_kept
        output = _concat(kept, self._pad_id())
        if short and n_kept * g % self.args.steps_per_generation or n_kept == 0:
            # TRL splits the batch into steps_per_generation equal slices: top up with zero-advantage rows
            # (zero-spread groups) so no slice is empty and no kept row is cut off.
            output = self._top_up(output, _concat(leftovers, self._pad_id()), n_kept * g)
        output["num_items_in_batch"] = self._num_items(output)
        self._log_round_metrics(drawn, zero, n_kept, rounds, short)
        return output

    # ------------------------------------------------------------------------------------- steps

    def _group_spread(self, n_rows: int) -> torch.Tensor:
        """For each local group of the last scored batch: do its metric's rewards differ?"""
        rewards = self._last_rewards
        start = self.accelerator.process_index * n_rows
        local = rewards[start : start + n_rows].float()
        if self._metric_index is None:
            weights = self.reward_weights.to(local.device).float()
            values = (local * weights.unsqueeze(0)).nansum(dim=1)
            values[torch.isnan(local).all(dim=1)] = torch.nan  # unscorable rows, as TRL treats them
        else:
            values = local[:, self._metric_index]
        return group_has_spread(values.view(-1, self.num_generations).cpu())

    def _next_draw(self, deficit: int, spread_rate: float, wanted: int) -> int:
        """Groups to draw in the next round: enough to fill the deficit at the spread rate seen so far in
        this step, at most a full batch."""
        if deficit <= 0:
            return 0
        if spread_rate <= 0:
            return wanted
        return min(wanted, max(deficit, math.ceil(deficit / spread_rate)))

    def _collective_max(self, value: int) -> int:
        """The largest ``value`` over processes (all of them must draw the same number of rows)."""
        if self.accelerator.num_processes == 1:
            return value
        t = torch.tensor([value], device=self.accelerator.device)
        return int(self.accelerator.gather(t).max())

    def _extra_inputs(self, round_done: int, groups: int) -> list[dict]:
        """``groups`` prompts for the next round, each repeated ``num_generations`` times (as TRL's
        RepeatSampler does), from this process's window of the extra-prompt stream."""
        rows = [dict(self.train_dataset[i]) for i in self._extra_indices(round_done, groups)]
        return [dict(row) for row in rows for _ in range(self.num_generations)]

    def _extra_indices(self, round_done: int, groups: int) -> list[int]:
        """Dataset indices for round ``round_done + 1`` of this generation on this process.

        Each (generation, round, process) owns a fixed window of a stream of the dataset's indices, so the
        draw depends on nothing but those three and the seed. Shuffled training data: the stream is a new
        seeded permutation per pass (its own seed, apart from TRL's sampler). Ordered data
        (``shuffle_dataset: false``, a curriculum): the stream is the dataset's order, and the windows start
        right after the generation batch's own prompts, so extra prompts are the next ones in the order.
        """
        procs, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_window = (
            self.args.per_device_train_batch_size * self.args.steps_per_generation // self.num_generations
        )
        generation = self._generation_index()
        rounds = self.dynamic_sampling.max_rounds - 1
        window = ((round_done - 1) * procs + rank) * per_window
        if self.args.shuffle_dataset:
            start = (generation * rounds * procs) * per_window + window
        else:
            start = (generation + 1) * procs * per_window + window
        return [self._stream(start + j) for j in range(groups)]

    def _generation_index(self) -> int:
        """How many generation batches came before this one; the same on a resumed run (TRL's ``_step``
        restarts at 0 there, ``global_step`` does not)."""
        accumulation = self.args.gradient_accumulation_steps
        micro_step = self.state.global_step * accumulation + self._step % accumulation
        return micro_step // (self.args.steps_per_generation * self.num_iterations)

    def _stream(self, position: int) -> int:
        n = len(self.train_dataset)
        epoch, offset = divmod(position, n)
        if not self.args.shuffle_dataset:
            return offset
        if self._stream_cache is None or self._stream_cache[0] != epoch:
            gen = torch.Generator().manual_seed(_STREAM_SEED + 1_000_003 * self.args.seed + epoch)
            self._stream_cache = (epoch, torch.randperm(n, generator=gen).tolist())
        return self._stream_cache[1][offset]

    def _top_up(self, output: dict, leftovers: dict, n_rows: int) -> dict:
        split = self.args.steps_per_generation
        target = max(split, -(-n_rows // split) * split)
        extra = min(target - n_rows, len(leftovers["advantages"]))
        if extra <= 0:
            return output
        filler = _select(leftovers, range(extra))
        filler["advantages"] = torch.zeros_like(filler["advantages"])  # they are zero already; say so
        return _concat([output, filler], self._pad_id()) if n_rows else filler

    def _num_items(self, output: dict) -> torch.Tensor:
        """TRL's ``num_items_in_batch`` (loss tokens over every process) for the rows kept."""
        mask = output["completion_mask"]
        if output.get("tool_mask") is not None:
            mask = mask * output["tool_mask"]
        return self.accelerator.gather(mask.sum()).sum()

    def _pad_id(self) -> int:
        from r1lab.compat import trainer_tokenizer

        return trainer_tokenizer(self).pad_token_id

    def _log_round_metrics(self, drawn: int, zero: int, kept: int, rounds: int, short: int) -> None:
        counts = torch.tensor([drawn, zero, kept, int(short > 0)], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.gather(counts).view(-1, 4).sum(dim=0)
        drawn, zero, kept, short_procs = (int(x) for x in counts.tolist())
        metrics = self._metrics["train"]
        metrics[PREFIX + "groups_drawn"].append(float(drawn))
        metrics[PREFIX + "groups_kept"].append(float(kept))
        metrics[PREFIX + "generation_rounds"].append(float(rounds))
        metrics[PREFIX + "zero_spread_frac"].append(zero / drawn if drawn else 0.0)
        metrics[PREFIX + "batch_full"].append(0.0 if short_procs else 1.0)
        if short_procs and self.accelerator.is_main_process:
            say = log.warning if not self._short_warned else log.info
            self._short_warned = True
            say(
                "dynamic sampling: step %d reached max_rounds=%d with %d groups of nonzero spread out of %d "
                "drawn; training on those (raise dynamic_sampling_max_rounds, or use easier problems)",
                self.state.global_step + 1,
                self.dynamic_sampling.max_rounds,
                kept,
                drawn,
            )


_STREAM_SEED = 0x5EED_D5  # keeps the extra-prompt stream apart from TRL's sampler, which uses the seed itself


def group_has_spread(grouped: torch.Tensor, tol: float = 1e-6) -> torch.Tensor:
    """For each row of ``(groups, num_generations)`` rewards: do its non-NaN values differ by more than
    ``tol``? (A group with fewer than two scored completions has no spread.)

    >>> group_has_spread(torch.tensor([[1.0, 1.0], [0.0, 1.0], [float("nan"), 1.0]])).tolist()
    [False, True, False]
    """
    nan = torch.isnan(grouped)
    high = torch.where(nan, -torch.inf, grouped).max(dim=1).values
    low = torch.where(nan, torch.inf, grouped).min(dim=1).values
    return ((~nan).sum(dim=1) >= 2) & ((high - low) > tol)


def _rows(groups: list[int], g: int) -> list[int]:
    return [i * g + j for i in groups for j in range(g)]


def _select(output: dict, rows) -> dict:
    """The rows ``rows`` of TRL's output dict (per-row tensors only; scalars are recomputed)."""
    index = torch.tensor(list(rows), dtype=torch.long)
    picked = {}
    for key, value in output.items():
        if key in _RECOMPUTED or value is None:
            continue
        if key not in _LEFT_PADDED + _RIGHT_PADDED + _PER_ROW:
            raise RuntimeError(
                f"dynamic sampling does not know how to filter TRL's batch field {key!r} "
                "(multimodal inputs and tool calls are not supported)"
            )
        picked[key] = value[index.to(value.device)]
    return picked


def _concat(parts: list[dict], pad_id: int) -> dict:
    """Rows of several generation rounds as one batch: prompts left-padded, completions right-padded to
    the widest round (TRL's own padding sides and values)."""
    parts = [p for p in parts if p and len(p["advantages"])] or parts[:1]
    if len(parts) == 1:
        return dict(parts[0])
    out = {}
    for key in parts[0]:
        tensors = [p[key] for p in parts]
        if key in _PER_ROW or tensors[0].dim() == 1:
            out[key] = torch.cat(tensors)
            continue
        width = max(t.size(1) for t in tensors)
        value = pad_id if key in ("prompt_ids", "completion_ids") else 1 if key == "tool_mask" else 0
        left = key in _LEFT_PADDED
        padded = []
        for t in tensors:
            gap = width - t.size(1)
            pad = (gap, 0) if left else (0, gap)
            padded.append(torch.nn.functional.pad(t, pad, value=value) if gap else t)
        out[key] = torch.cat(padded)
    return out


class DynamicSamplingGRPOTrainer(DynamicSamplingMixin, R1labGRPOTrainer):
    """r1lab's GRPO trainer (its rollout engine included) with dynamic sampling: pass
    ``dynamic_sampling=DynamicSampling(...)``; None leaves it exactly ``R1labGRPOTrainer``."""
