"""A run and its stages, as plain dataclasses read from a recipe YAML plus command-line overrides.

A recipe has run-level fields (name, model, data sources, ...) and a list of ``stages``. Each stage has a
``kind`` (grpo, sft, rs, eval, inference), a few r1lab fields (data, rewards, ...), and, for the training
kinds, any field of TRL's ``GRPOConfig`` / ``SFTConfig`` under its own TRL name, passed through unchanged:

    name: seed
    model: smollm2-135m
    stages:
      - {name: grpo, kind: grpo, rewards: [accuracy, format], learning_rate: 1.0e-6, num_generations: 4}
      - {name: sft, kind: sft, data: builtin}

Everything is validated here, before any model loads (unknown fields with close matches, TRL's batch-size
rule, reward names, data sources, stage references), and every problem is a :class:`UserError` that names the
file, the stage and the field, and says how to fix it.

>>> cfg = RunConfig.from_dict({"name": "x", "model": "tiny", "stages": [{"name": "g", "kind": "grpo",
...     "num_generations": 2, "per_device_train_batch_size": 2}]})
>>> cfg.stages[0].args["num_generations"]
2
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1lab.distributed import launched_world_size
from r1lab.errors import UserError
from r1lab.io import parse_yaml, read_yaml

log = logging.getLogger(__name__)

KINDS = ("grpo", "sft", "rs", "eval", "inference")
TRAINING_KINDS = ("grpo", "sft")


def _field(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING):
    """A dataclass field with its help text in ``metadata`` (as TRL's configs do); ``--help`` prints it."""
    return field(default=default, default_factory=factory, metadata={"help": help})


@dataclass
class StageConfig:
    """One stage of a run. ``args`` holds TRL trainer fields (grpo/sft only), passed through unchanged."""

    name: str = _field(help="the stage's name: its folder under the run, and --<name>.<field> overrides")
    kind: str = _field(help="grpo, sft, rs (rejection sampling), eval or inference")
    model: str | None = _field(None, "model to start from (default: the previous training stage's output)")
    data: str | None = _field(
        None,
        "data source: builtin[:opts], a hub name, a local file, or stage:<rs stage> (default: run's data)",
    )
    split: str = _field("train", "dataset split to read")
    columns: dict[str, str] = _field(
        help="column names that override layout detection: {question: q, answer: a, solution: s, messages: m}",
        factory=dict,
    )
    on_bad_row: str = _field("error", "a bad data row: error (stop, naming it) or skip (count and drop it)")
    n: int | None = _field(None, "number of examples/prompts to use (default: all)")
    rewards: list[str] = _field(help="grpo: reward functions", factory=lambda: ["accuracy", "format"])
    reward_params: dict[str, Any] = _field(help="grpo: reward parameters, e.g. {max_len: 512}", factory=dict)
    rollout_engine: str = _field(
        "auto",
        "grpo: who generates: auto (r1lab's decoder unless vLLM is on), r1lab, or trl (model.generate)",
    )
    rollout_dtype: str = _field(
        "auto",
        "grpo: dtype rollouts decode in: auto (the learner's own precision; a bf16 copy only for an fp32 "
        "learner on a CPU with native bf16), float32, bf16, or int8 (a quantized copy); the loss corrects "
        "for a precision other than training's",
    )
    share_prompt_forward: bool = _field(
        True,
        "grpo: run each prompt once for all its completions in the loss (exact; faster on CPUs, so used there "
        "only: on a GPU the per-row loss measured faster)",
    )
    dynamic_sampling: bool = _field(
        False,
        "grpo: drop groups whose rewards have zero spread and draw more prompts until the batch is full "
        "(DAPO's dynamic sampling, verl's filter_groups)",
    )
    dynamic_sampling_metric: str = _field(
        "total",
        "grpo: the reward whose spread counts: total (the weighted sum) or one of the stage's rewards",
    )
    dynamic_sampling_max_rounds: int = _field(
        4, "grpo: at most this many generation rounds per batch; then train on what was kept"
    )
    pass_rate_file: str | None = _field(
        None, "grpo: a JSONL of per-problem pass rates (r1lab data pass-rate) for pass_rate_band / curriculum"
    )
    pass_rate_band: list[float] | None = _field(
        None, "grpo: keep problems whose pass rate is in [low, high], e.g. [0.1, 0.9] (needs pass_rate_file)"
    )
    curriculum: str = _field(
        "none",
        "grpo: none (shuffled) or easy_to_hard (by pass rate from pass_rate_file, else the built-in task's level)",
    )
    num_samples: int = _field(4, "rs: completions per prompt (K); eval: samples per problem")
    temperature: float | None = _field(None, "rs/eval/inference: sampling temperature (default: greedy)")
    max_new_tokens: int = _field(256, "rs/eval/inference: token budget of each completion")
    batch_size: int = _field(64, "rs/eval: sequences decoded together")
    max_per_prompt: int = _field(1, "rs: keep at most this many accepted completions per prompt")
    questions: list[str] = _field(
        help="inference: questions asked of the base and the final model", factory=list
    )
    evaluate: bool = _field(True, "measure held-out accuracy/format after this training stage")
    keep_checkpoints: bool = _field(
        False, "keep checkpoints/ once the stage is done (default: deleted when its final model is saved)"
    )
    args: dict[str, Any] = _field(help="TRL trainer fields (GRPOConfig / SFTConfig names)", factory=dict)

    @property
    def trains(self) -> bool:
        """A training stage (grpo, sft): it writes a model that later stages start from."""
        return self.kind in TRAINING_KINDS


STAGE_FIELDS = {f.name for f in dataclasses.fields(StageConfig)} - {"args"}


def annotate_yaml(text: str) -> str:
    """The resolved recipe's YAML with each r1lab field's help as a trailing comment (``--dry-run``); TRL's
    fields are left bare. Block-scalar text (a multi-line system prompt) is never touched.

    >>> print(annotate_yaml("eval_n: 8\\nstages:\\n- name: g\\n  kind: grpo\\n  beta: 0.0\\n"))
    eval_n: 8  # held-out problems per before/after measurement; 0 turns it off
    stages:  # the stages, in order
    - name: g  # the stage's name: its folder under the run, and --<name>.<field> overrides
      kind: grpo  # grpo, sft, rs (rejection sampling), eval or inference
      beta: 0.0
    """
    import re

    helps = [
        {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
        for cls in (RunConfig, StageConfig)
    ]
    out, in_stages = [], False
    for line in text.splitlines():
        # Only keys can carry a comment: run fields at column 0, stage fields as "- key:" at column 0 or
        # "key:" at column 2 under `stages:`. Continuation lines of a multi-line value are always indented
        # deeper than their key, so they are never matched.
        m = re.match(r"^(- |  )?([A-Za-z_][A-Za-z0-9_]*):( .*)?$", line)
        if m and not m.group(1):
            in_stages = m.group(2) == "stages"
        value = (m.group(3) or "").strip() if m else ""
        # a quoted value continued on the next lines, or a block scalar: a comment would land inside it
        open_value = (
            value[:1] in ("'", '"') and (len(value) < 2 or value[-1] != value[0]) or value[:1] in "|>"
        )
        if m and (not m.group(1) or in_stages) and not (value and open_value):
            help_text = helps[bool(m.group(1))].get(m.group(2))
            if help_text:
                line += f"  # {help_text}"
        out.append(line)
    return "\n".join(out)


def fields_help(cls: type, names: set[str] | None = None) -> str:
    """The fields of ``cls`` (RunConfig / StageConfig) with their help and defaults, one per line, for
    ``--help``; ``names`` picks some. TRL's own fields are documented by TRL.

    >>> print(fields_help(StageConfig, {"n", "split"}))
      split                  dataset split to read (default: train)
      n                      number of examples/prompts to use (default: all)
    """
    lines = []
    for f in dataclasses.fields(cls):
        if (names is not None and f.name not in names) or f.name in ("args", "stages", "source"):
            continue
        text = f.metadata.get("help", "")
        if f.default is not dataclasses.MISSING and f.default is not None and "default:" not in text:
            text += f" (default: {f.default})"
        elif f.default_factory is not dataclasses.MISSING and f.default_factory():
            text += f" (default: {f.default_factory()})"
        lines.append(f"  {f.name:<22} {text}")
    return "\n".join(lines)


# r1lab stage fields that mean something only for some kinds (others are rejected so typos surface).
_DATA_FIELDS = {"name", "kind", "model", "data", "split", "n", "columns", "on_bad_row"}
_SAMPLING_FIELDS = {"num_samples", "temperature", "max_new_tokens", "batch_size"}
KIND_FIELDS = {
    "grpo": _DATA_FIELDS
    | {
        "rewards",
        "reward_params",
        "evaluate",
        "keep_checkpoints",
        "rollout_engine",
        "rollout_dtype",
        "share_prompt_forward",
        "dynamic_sampling",
        "dynamic_sampling_metric",
        "dynamic_sampling_max_rounds",
        "pass_rate_file",
        "pass_rate_band",
        "curriculum",
    },
    "sft": _DATA_FIELDS | {"evaluate", "keep_checkpoints"},
    "rs": _DATA_FIELDS | _SAMPLING_FIELDS | {"max_per_prompt", "evaluate"},
    "eval": _DATA_FIELDS | _SAMPLING_FIELDS,
    "inference": {"name", "kind", "model", "questions", "temperature", "max_new_tokens"},
}


@dataclass
class RunConfig:
    """A whole run: where it writes, which model it starts from, and its stages in order."""

    name: str = _field("run", "run name: outputs go to output_dir/name")
    model: str = _field("smollm2-135m", "model spec: tiny, smollm2-135m, a .gguf, a local dir, a hub id")
    output_dir: str = _field("runs", "where runs go")
    seed: int = _field(0, "random seed (data order, sampling, training)")
    system_prompt: str | None = _field("r1", "'r1' (DeepSeek-R1's prompt), 'none', or literal text")
    # "<think>\n" makes the R1 format reachable for a small model; rewards and evaluation score the whole
    # reply (prefix + completion).
    reply_prefix: str | None = _field(
        None, "text every reply starts with, written into every prompt (GRPO, evaluation, rs, inference)"
    )
    data: str = _field("builtin", "training data of stages without their own")
    eval_data: str = _field(
        "builtin", "held-out problems for the before/after measurements (its test split; a file as is)"
    )
    eval_n: int = _field(32, "held-out problems per before/after measurement; 0 turns it off")
    eval_max_new_tokens: int = _field(256, "token budget of each held-out completion")
    eval_batch_size: int = _field(64, "sequences decoded together in held-out measurements")
    dtype: str = _field("auto", "weights dtype: auto, float32, bfloat16, float16")
    device: str = _field("auto", "auto, cpu or cuda")
    lora: Any = _field(None, "train LoRA adapters: true (r=16, all linear layers) or peft.LoraConfig fields")
    save_adapter: bool = _field(False, "with LoRA, also save the adapter alone (stage/model/adapter/)")
    gradient_checkpointing: bool = _field(False, "recompute activations in the backward pass (less memory)")
    trust_remote_code: bool = _field(False, "run a hub model's own code (only for authors you trust)")
    report: bool = _field(True, "write report.html at the end")
    stages: list[StageConfig] = _field(help="the stages, in order", factory=list)
    source: str | None = _field(None, "the recipe file it came from (for messages)")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @classmethod
    def from_dict(cls, data: dict, *, source: str | None = None) -> RunConfig:
        """Build from a parsed recipe (no validation against TRL; see :func:`validate`)."""
        where = source or "recipe"
        if not isinstance(data, dict):
            raise UserError(f"{where}: a recipe must be a mapping of fields", hint="see recipes/seed.yaml")
        data = _open_r1_names(copy.deepcopy(data), RUN_ALIASES, where)
        raw_stages = data.pop("stages", None) or []
        _spread_to_stages(data, raw_stages)
        run_fields = {f.name for f in dataclasses.fields(cls)} - {"stages", "source"}
        unknown = [k for k in data if k not in run_fields]
        if unknown:
            raise UserError(
                f"{where}: unknown run field {unknown[0]!r}",
                hint=_close_hint(unknown[0], run_fields | {"stages"}),
            )
        run = cls(**data, source=source)
        if not isinstance(raw_stages, list):
            raise UserError(
                f"{where}: 'stages' must be a list", hint="write `stages:` then `- name: ...` items"
            )
        for i, raw in enumerate(raw_stages):
            run.stages.append(_stage_from_dict(raw, f"{where}: stages[{i}]"))
        if "eval_data" not in data and run.eval_n > 0:
            _follow_training_data(run)
        return run

    def to_dict(self) -> dict:
        """A plain dict (the resolved recipe written to ``runs/<name>/config.yaml``)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("stages", "source")
        }
        out["stages"] = []
        for s in self.stages:
            d = {"name": s.name, "kind": s.kind}
            for k in sorted(KIND_FIELDS[s.kind] - {"name", "kind"}):
                d[k] = copy.deepcopy(getattr(s, k))
            d.update(copy.deepcopy(s.args))
            out["stages"].append(d)
        return out


# TRL / open-r1 names (their scripts' arguments and recipe keys) for r1lab's own fields.
RUN_ALIASES = {"model_name_or_path": "model", "dataset_name": "data", "torch_dtype": "dtype"}
STAGE_ALIASES = {"reward_funcs": "rewards", "dataset_train_split": "split"}
# Names TRL users pass that r1lab handles differently, and what to do instead.
EXPLAINED = {
    "resume_from_checkpoint": "r1lab resumes by itself: run the same command again and an interrupted stage "
    "continues from its last complete checkpoint (a finished stage is kept); drop resume_from_checkpoint",
    "attn_implementation": "r1lab loads every model with transformers' default attention (sdpa where "
    "available) and has no setting for it; drop attn_implementation",
    "dataset_config": "r1lab picks the config of the hub datasets it knows by itself (openai/gsm8k: main); "
    "for another config, save it as a file (datasets.load_dataset(NAME, CONFIG, split='train')"
    ".to_json('train.jsonl')) and pass --data train.jsonl",
}


def _open_r1_names(data: dict, aliases: dict[str, str], where: str) -> dict:
    """``data`` with TRL/open-r1 names renamed to r1lab's (``model_name_or_path`` -> ``model``) and the
    names r1lab handles its own way explained (a :class:`UserError` saying what to do instead).

    >>> _open_r1_names({"model_name_or_path": "tiny", "reward_funcs": "accuracy format"}, RUN_ALIASES, "r")
    {'reward_funcs': 'accuracy format', 'model': 'tiny'}
    """
    for name, ours in aliases.items():
        if name in data:
            if ours in data:
                raise UserError(f"{where}: both {name!r} and {ours!r} given", hint=f"keep one ({ours})")
            data[ours] = data.pop(name)
    if "dataset_config" in data:
        config = data.pop("dataset_config")
        from r1lab.data.sources import known_source

        known = known_source(str(data.get("data") or ""))
        if config is not None and not (known and known.config == config):
            raise UserError(f"{where}: dataset_config {config!r}", hint=EXPLAINED["dataset_config"])
    for name in set(EXPLAINED) & set(data):
        raise UserError(f"{where}: {name} is not an r1lab setting", hint=EXPLAINED[name])
    return data


def _spread_to_stages(data: dict, stages: list) -> None:
    """Stage settings given at the top of a flat open-r1 style recipe (``reward_funcs``,
    ``dataset_train_split``) go to every stage they apply to that does not set its own."""
    for name, ours in STAGE_ALIASES.items():
        for key in (name, ours if ours != "split" else None):
            if key is None or key not in data:
                continue
            value = data.pop(key)
            kinds = ("grpo",) if ours == "rewards" else ("grpo", "sft", "rs")
            for stage in stages:
                if isinstance(stage, dict) and stage.get("kind") in kinds:
                    if not any(k in stage for k in (name, ours)):
                        stage[ours] = value


def _follow_training_data(run: RunConfig) -> None:
    """No eval_data given: held-out problems follow the training data (its test split, or the last eval_n
    rows of a plain file, which training then leaves out), so a run on the user's data is measured on it."""
    from r1lab.data.load import heldout_of

    split = heldout_of(run.data, run.eval_n)
    if split is None:
        return
    if split[1] != run.data:
        log.info("held-out problems: %s (training reads %s)", split[1], split[0])
    run.data, run.eval_data = split


def _stage_from_dict(raw: Any, where: str) -> StageConfig:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: a stage must be a mapping", hint="e.g. `- {name: grpo, kind: grpo}`")
    aliases = {k: v for k, v in {**RUN_ALIASES, **STAGE_ALIASES}.items() if v != "dtype"}  # dtype: run-wide
    raw = _open_r1_names(dict(raw), aliases, where)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise UserError(
            f"{where}: stage kind {kind!r} is not one of {', '.join(KINDS)}",
            hint=_close_hint(str(kind), set(KINDS)) or "set `kind:`",
        )
    name = raw.get("name") or kind
    raw["name"] = str(name)
    where = f"{where} ({name})"
    # Fields r1lab knows for this kind; for grpo/sft everything else is a TRL field (checked in validate),
    # which is also how TRL's own `temperature` etc. reach GRPOConfig.
    own = {k: raw.pop(k) for k in list(raw) if k in KIND_FIELDS[kind]}
    if raw and kind not in TRAINING_KINDS:
        bad = next(iter(raw))
        if bad in STAGE_FIELDS:
            raise UserError(
                f"{where}: field {bad!r} does not apply to a {kind} stage",
                hint=f"{kind} stages take: {', '.join(sorted(KIND_FIELDS[kind] - {'name', 'kind'}))}",
            )
        raise UserError(
            f"{where}: unknown field {bad!r} for a {kind} stage",
            hint=_close_hint(bad, KIND_FIELDS[kind]) or f"it takes: {', '.join(sorted(KIND_FIELDS[kind]))}",
        )
    if isinstance(own.get("rewards"), str):  # "accuracy,format" or TRL's "accuracy format"
        own["rewards"] = [r for r in own["rewards"].replace(",", " ").split() if r]
    if isinstance(own.get("questions"), str):
        own["questions"] = [own["questions"]]
    return StageConfig(**own, args=raw)


def _close_hint(name: str, choices) -> str | None:
    close = difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}?" if close else None


# ------------------------------------------------------------------------------------------ loading


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None
) -> RunConfig:
    """Read a recipe YAML (or start empty) and apply overrides; does not validate (see :func:`validate`).

    ``overrides`` is a list of ``key=value`` strings (``"model=tiny"``, ``"grpo.learning_rate=1e-6"``: a
    stage is addressed by its name) or a dict of the same keys. Values are parsed as YAML scalars.
    """
    data: dict = {}
    source = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"recipe not found: {path}", hint=_recipe_hint(p))
        source = str(p)
        data = read_yaml(p) or {}  # safe: no duplicate keys, no alias bombs, UTF-8 or a clear error
        if not isinstance(data, dict):
            raise UserError(
                f"{p}: a recipe must be a mapping of fields, not a {type(data).__name__}",
                hint="start with `name:`, `model:` and `stages:` (see recipes/seed.yaml)",
            )
    if overrides:
        keys = {
            k.replace("-", "_")
            for k in (overrides if isinstance(overrides, dict) else (o.split("=", 1)[0] for o in overrides))
        }
        if "data" in keys and "eval_data" not in keys:
            data.pop("eval_data", None)  # the user's own data: held-out problems follow it, not the recipe's
        data = apply_overrides(data, overrides, source=source or "recipe")
    return RunConfig.from_dict(data, source=source)


def bundled_recipes() -> list[str]:
    """The names of the recipes shipped with r1lab (``seed``, ``r1``, ...), from the package itself."""
    return sorted(p.stem for p in (Path(__file__).parent / "recipes").glob("*.yaml"))


def _recipe_hint(path: Path) -> str:
    """A did-you-mean for a recipe that is not there, else the list of bundled recipes."""
    names = bundled_recipes()
    close = difflib.get_close_matches(path.stem, names, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"the bundled recipes are {', '.join(names)} (--config NAME or a path to a .yaml)"


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it: ``1e-6`` -> float, ``true`` -> bool, ``[a, b]`` -> list;
    a mapping only when written in braces.

    >>> parse_value("1e-6"), parse_value("[1, 2]"), parse_value("x.jsonl:rows=-5:"), parse_value("{a: 1}")
    (1e-06, [1, 2], 'x.jsonl:rows=-5:', {'a': 1})
    """
    try:
        value = parse_yaml(text, "command-line value")
    except UserError as err:
        if "not valid YAML" in err.message:
            return text
        raise
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text  # "data.jsonl:rows=-500:" is a source string, not a one-key mapping
    # YAML 1.1 reads "1e-6" as a string; users mean a number.
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict, overrides: list[str] | dict, *, source: str = "recipe") -> dict:
    """Return a copy of the recipe dict with dotted overrides applied (see :func:`load_config`)."""
    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else (_split_override(o) for o in overrides)
    stages = data.setdefault("stages", []) or []
    data["stages"] = stages
    for key, value in items:
        value = parse_value(value) if isinstance(value, str) else value
        key = key.replace("-", "_")
        if "." not in key:
            data[RUN_ALIASES.get(key, key)] = value
            continue
        stage_name, field_name = key.split(".", 1)
        field_name = STAGE_ALIASES.get(field_name, RUN_ALIASES.get(field_name, field_name))
        matches = [
            s for s in stages if isinstance(s, dict) and (s.get("name") or s.get("kind")) == stage_name
        ]
        if not matches:
            names = [str(s.get("name") or s.get("kind")) for s in stages if isinstance(s, dict)]
            raise UserError(
                f"override --{key}: {source} has no stage named {stage_name!r}",
                hint=f"stages are: {', '.join(names) or '(none)'}",
            )
        matches[0][field_name] = value
    return data


def _split_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise UserError(
            f"override {text!r} has no value", hint="write key=value, e.g. grpo.learning_rate=1e-6"
        )
    key, value = text.split("=", 1)
    return key.strip().lstrip("-"), value


# --------------------------------------------------------------------------------------- validation


def trl_config_class(kind: str):
    """TRL's config dataclass for a training stage kind."""
    if kind == "grpo":
        from trl import GRPOConfig

        return GRPOConfig
    if kind == "sft":
        from trl import SFTConfig

        return SFTConfig
    raise ValueError(kind)


def validate(run: RunConfig) -> RunConfig:
    """Check a run before any model loads; raise :class:`UserError` with the fix for the first problem."""
    where = run.source or "recipe"
    check_names(run)
    check_field_types(run, where)
    for stage in run.stages:
        check_field_types(stage, f"{where}: stage {stage.name!r}")
    check_numbers(run)
    if not run.stages:
        raise UserError(
            f"{where}: the run has no stages", hint="add a `stages:` list (see recipes/seed.yaml)"
        )
    if not str(run.model or "").strip():
        raise UserError(f"{where}: no model", hint="set `model:` or pass --model tiny|smollm2-135m|<path>")
    if run.eval_n < 0:
        raise UserError(f"{where}: eval_n must be >= 0", hint="0 turns before/after metrics off")
    seen: dict[str, StageConfig] = {}
    for i, stage in enumerate(run.stages):
        here = f"{where}: stage {stage.name!r}"
        if stage.name in seen:
            raise UserError(f"{here}: duplicate stage name", hint="give each stage a unique `name:`")
        if stage.n is not None and stage.n < 1:
            raise UserError(f"{here}: n must be >= 1", hint="or leave it out to use all examples")
        if stage.kind in TRAINING_KINDS:
            _validate_trl_args(stage, here)
        if stage.kind == "grpo":
            _validate_rewards(stage, here)
            _validate_rollouts(stage, here)
            _validate_dynamic_sampling(stage, here)
            _validate_curriculum(stage, here)
        if stage.kind == "rs":
            if stage.num_samples < 1 or stage.max_per_prompt < 1:
                raise UserError(
                    f"{here}: num_samples and max_per_prompt must be >= 1", hint="e.g. num_samples: 4"
                )
        if stage.kind == "inference" and not stage.questions:
            stage.questions = [DEFAULT_QUESTION]
        _validate_data(stage, run, seen, here, i)
        seen[stage.name] = stage
    return run


DEFAULT_QUESTION = "Tom has 3 apples and buys 5 more. How many apples does he have now?"


_TYPE_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list",
    "dict": "a mapping",
}


def _expected_types(annotation: str) -> set[str] | None:
    """The plain types a field annotation allows (``"int | None"`` -> {"int", "None"}); None if any."""
    kinds = set()
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    for part in text.replace("typing.", "").replace("Optional[", "").replace("]", "").split("|"):
        base = part.strip().split("[")[0]
        if base in ("Any", "object", "Union", "Literal"):
            return None
        kinds.add(base)
    return kinds


def coerce_field(name: str, value: Any, annotation: str, where: str) -> Any:
    """``value`` if it fits ``annotation`` (ints for floats, numeric strings such as YAML's ``1e-5`` for
    floats), else a :class:`UserError` naming the field.

    >>> coerce_field("learning_rate", "1e-5", "float", "recipe")
    1e-05
    >>> coerce_field("max_steps", "abc", "int", "recipe")
    Traceback (most recent call last):
    r1lab.errors.UserError: recipe: max_steps must be a whole number, got 'abc' (str) (fix the field's value)
    """
    kinds = _expected_types(annotation)
    if kinds is None or ("None" in kinds and value is None):
        return value
    if "bool" in kinds and isinstance(value, bool):
        return value
    if not isinstance(value, bool):
        if "int" in kinds and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            return int(value) if "float" not in kinds else value
        if "float" in kinds:
            if isinstance(value, int | float):
                return value  # an int is a fine float (and TRL reads save_steps: 5 as steps, 0.5 as a ratio)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
    if "str" in kinds and isinstance(value, str):
        return value
    if "list" in kinds and isinstance(value, list):
        return value
    if "dict" in kinds and isinstance(value, dict):
        return value
    if not kinds & {"int", "float", "bool", "str", "list", "dict"}:
        return value  # a type r1lab does not check (an enum, a class)
    wanted = " or ".join(_TYPE_NAMES[k] for k in sorted(kinds) if k in _TYPE_NAMES)
    raise UserError(
        f"{where}: {name} must be {wanted}, got {value!r} ({type(value).__name__})",
        hint="fix the field's value",
    )


def check_field_types(obj, where: str) -> None:
    """Check (and coerce, see :func:`coerce_field`) every r1lab field of a RunConfig/StageConfig."""
    for f in dataclasses.fields(obj):
        if f.name in ("stages", "args", "source"):
            continue
        setattr(obj, f.name, coerce_field(f.name, getattr(obj, f.name), f.type, where))
    if isinstance(obj, StageConfig) and obj.kind in TRAINING_KINDS:
        cls = trl_config_class(obj.kind)
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in obj.args.items():
            if key in types:
                obj.args[key] = coerce_field(key, value, types[key], where)


def _validate_trl_args(stage: StageConfig, here: str) -> None:
    cls = trl_config_class(stage.kind)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in stage.args:
        if key not in known:
            hint = _close_hint(key, known | (KIND_FIELDS[stage.kind] - {"name", "kind"}))
            raise UserError(
                f"{here}: unknown field {key!r} (not an r1lab {stage.kind} field nor a TRL {cls.__name__} field)",
                hint=hint or f"see `python -c 'import trl; help(trl.{cls.__name__})'` for valid names",
            )
    max_steps = stage.args.get("max_steps")
    if (
        max_steps is not None
        and max_steps <= 0
        and not (max_steps == -1 and "num_train_epochs" in stage.args)
    ):
        raise UserError(
            f"{here}: max_steps must be >= 1, got {max_steps}",
            hint="or remove it and set num_train_epochs to train by epochs",
        )
    reserved = {"output_dir"}
    for key in reserved & set(stage.args):
        raise UserError(
            f"{here}: {key} is set by r1lab (runs/<name>/<stage>/checkpoints)",
            hint="set the run's `output_dir`/`name` instead",
        )
    if stage.kind == "grpo":
        _validate_grpo_batch(stage, here, cls)


def _default(cls, name):
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # pragma: no cover
                return f.default_factory()
    return None


def _validate_grpo_batch(stage: StageConfig, here: str, cls) -> None:
    """TRL's generation-batch rule, checked up front with the fix spelled out."""
    a = stage.args
    get = lambda k: a[k] if k in a else _default(cls, k)  # noqa: E731
    bs, ga = int(get("per_device_train_batch_size")), int(get("gradient_accumulation_steps"))
    g = int(get("num_generations"))
    procs = launched_world_size()
    if g < 2:
        raise UserError(
            f"{here}: num_generations={g}, but GRPO needs at least 2 completions per prompt",
            hint="set num_generations: 2 or more",
        )
    gen_bs, steps = a.get("generation_batch_size"), a.get("steps_per_generation")
    if gen_bs is not None and steps is not None:
        raise UserError(
            f"{here}: set generation_batch_size or steps_per_generation, not both", hint="remove one of them"
        )
    if gen_bs is None:
        gen_bs = bs * procs * int(steps if steps is not None else ga)
        how = (
            f"per_device_train_batch_size ({bs}) x processes ({procs}) x "
            f"{'steps_per_generation' if steps is not None else 'gradient_accumulation_steps'} "
            f"({steps if steps is not None else ga}) = {gen_bs}"
        )
    else:
        gen_bs = int(gen_bs)
        how = f"generation_batch_size = {gen_bs}"
        if gen_bs % (bs * procs):
            raise UserError(
                f"{here}: generation_batch_size ({gen_bs}) is not a multiple of the global batch "
                f"({bs} x {procs} processes)",
                hint=f"use a multiple of {bs * procs}",
            )
    if gen_bs % g:
        ok = [k for k in range(2, gen_bs + 1) if gen_bs % k == 0]
        raise UserError(
            f"{here}: {how} is not divisible by num_generations ({g}); every prompt needs all its completions "
            "in one generation batch",
            hint=f"set num_generations to one of {ok} or per_device_train_batch_size to a multiple of {g}",
        )


def _validate_rewards(stage: StageConfig, here: str) -> None:
    if not stage.rewards:
        raise UserError(f"{here}: no rewards", hint="e.g. rewards: [accuracy, format]")
    from r1lab.rewards import REWARDS

    for name in stage.rewards:
        if name not in REWARDS:
            hint = _close_hint(name, set(REWARDS)) or f"available: {', '.join(sorted(REWARDS))}"
            raise UserError(f"{here}: unknown reward {name!r}", hint=hint)
    weights = stage.args.get("reward_weights")
    if weights is not None and len(weights) != len(stage.rewards):
        raise UserError(
            f"{here}: {len(weights)} reward_weights for {len(stage.rewards)} rewards",
            hint="give one weight per reward, in the same order",
        )


def _validate_rollouts(stage: StageConfig, here: str) -> None:
    engines = ("auto", "r1lab", "trl")
    if stage.rollout_engine not in engines:
        raise UserError(
            f"{here}: rollout_engine {stage.rollout_engine!r} is not one of {', '.join(engines)}",
            hint="auto uses r1lab's decoder (TRL's vLLM path when use_vllm is on)",
        )
    dtypes = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8")
    if stage.rollout_dtype not in dtypes:
        raise UserError(
            f"{here}: rollout_dtype {stage.rollout_dtype!r} is not one of {', '.join(dtypes)}",
            hint="auto decodes in bf16 on CPUs with native bf16, else in the model's dtype",
        )


def _validate_dynamic_sampling(stage: StageConfig, here: str) -> None:
    """Dynamic sampling's fields, and that each process's generation batch holds whole groups (filtering is
    per process)."""
    metrics = ("total", *stage.rewards)
    if stage.dynamic_sampling_metric not in metrics:
        raise UserError(
            f"{here}: dynamic_sampling_metric {stage.dynamic_sampling_metric!r} is not one of {', '.join(metrics)}",
            hint="total (the weighted sum TRL's advantages use) or one of the stage's rewards",
        )
    if stage.dynamic_sampling_max_rounds < 1:
        raise UserError(
            f"{here}: dynamic_sampling_max_rounds must be >= 1, got {stage.dynamic_sampling_max_rounds}",
            hint="1 filters without drawing again; 3-5 is typical (verl's max_num_gen_batches)",
        )
    if not stage.dynamic_sampling:
        return
    cls = trl_config_class("grpo")
    a = stage.args
    get = lambda k: a[k] if k in a else _default(cls, k)  # noqa: E731
    bs, g = int(get("per_device_train_batch_size")), int(get("num_generations"))
    if a.get("generation_batch_size") is not None:
        local = int(a["generation_batch_size"]) // launched_world_size()
    else:
        steps = a.get("steps_per_generation")
        local = bs * int(steps if steps is not None else get("gradient_accumulation_steps"))
    if local % g:
        raise UserError(
            f"{here}: dynamic sampling keeps or drops whole groups on each process, but a process's "
            f"generation batch ({local} rows) does not hold whole groups of num_generations ({g})",
            hint=f"make per_device_train_batch_size x steps_per_generation a multiple of {g}",
        )


CURRICULA = ("none", "easy_to_hard")


def _validate_curriculum(stage: StageConfig, here: str) -> None:
    if stage.curriculum not in CURRICULA:
        raise UserError(
            f"{here}: curriculum {stage.curriculum!r} is not one of {', '.join(CURRICULA)}",
            hint="easy_to_hard orders problems by pass rate (pass_rate_file) or by the built-in task's level",
        )
    band = stage.pass_rate_band
    if band is not None:
        if (
            len(band) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in band)
            or not 0 <= band[0] <= band[1] <= 1
        ):
            raise UserError(
                f"{here}: pass_rate_band must be [low, high] with 0 <= low <= high <= 1, got {band!r}",
                hint="e.g. pass_rate_band: [0.1, 0.9] keeps problems the model solves sometimes, not always",
            )
        if not stage.pass_rate_file:
            raise UserError(
                f"{here}: pass_rate_band needs pass_rate_file",
                hint="write one with `r1lab data pass-rate --model M --data D --out rates.jsonl`",
            )
    if stage.pass_rate_file and band is None and stage.curriculum == "none":
        raise UserError(
            f"{here}: pass_rate_file is set but nothing uses it",
            hint="add pass_rate_band: [low, high] and/or curriculum: easy_to_hard",
        )
    if stage.pass_rate_file and not Path(stage.pass_rate_file).is_file():
        raise UserError(
            f"{here}: pass_rate_file not found: {stage.pass_rate_file}",
            hint="write it with `r1lab data pass-rate`, or check the path",
        )
    if stage.curriculum != "none" and stage.args.get("shuffle_dataset"):
        raise UserError(
            f"{here}: curriculum {stage.curriculum} orders the problems, but shuffle_dataset is true",
            hint="remove shuffle_dataset (r1lab turns it off for a curriculum)",
        )


def _validate_data(stage: StageConfig, run: RunConfig, seen: dict, here: str, index: int) -> None:
    src = stage.data
    if src is None or stage.kind == "inference":
        return
    if src.startswith("stage:"):
        ref = src.split(":", 1)[1]
        if ref not in seen:
            later = [s.name for s in run.stages[index + 1 :]]
            why = "runs later" if ref in later else "does not exist"
            raise UserError(
                f"{here}: data {src!r} refers to stage {ref!r}, which {why}",
                hint="refer to an earlier rs stage by name",
            )
        if seen[ref].kind != "rs":
            raise UserError(
                f"{here}: data {src!r} refers to a {seen[ref].kind} stage",
                hint="only rs (rejection sampling) stages write data; refer to one of those",
            )
        return
    path = src.rpartition(":rows=")[0] or src  # a row slice of a file: the file must exist
    if _looks_like_path(path) and not Path(path).exists():
        raise UserError(f"{here}: data file not found: {src}", hint="check the path, or use data: builtin")


def _looks_like_path(src: str) -> bool:
    return src.startswith((".", "/", "~")) or Path(src).suffix in (".jsonl", ".json", ".csv", ".parquet")


# ------------------------------------------------------------------------------ names and numbers

# A run or stage name is a folder name: letters, digits, "_", "-" (and "." inside a run name), nothing a
# shell, a path or a dotted --<stage>.<field> override would read another way. Checked without loading
# TRL, so the CLI can refuse a bad name (and take the run's lock) before any heavy import.
MAX_NAME_CHARS = 100
RUN_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
STAGE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def check_names(run: RunConfig) -> None:
    """Refuse a run or stage name that is not a plain folder name (``..``, a slash, a NUL byte, 300
    characters), so every path r1lab writes stays inside ``output_dir/name``.

    >>> check_names(RunConfig(name="a/b"))
    Traceback (most recent call last):
    r1lab.errors.UserError: recipe: bad run name 'a/b' (use letters, digits, _, - and ., up to 100 characters, e.g. --name demo)
    """
    where = run.source or "recipe"
    hint = f"use letters, digits, _, - and ., up to {MAX_NAME_CHARS} characters, e.g. --name demo"
    if not isinstance(run.name, str) or not _plain_name(run.name, RUN_NAME_RE):
        raise UserError(f"{where}: bad run name {run.name!r}", hint=hint)
    if not isinstance(run.output_dir, str) or not run.output_dir.strip() or "\x00" in run.output_dir:
        raise UserError(f"{where}: bad output_dir {run.output_dir!r}", hint="a folder path, e.g. runs")
    for stage in run.stages:
        if not isinstance(stage.name, str) or not _plain_name(stage.name, STAGE_NAME_RE):
            raise UserError(
                f"{where}: bad stage name {stage.name!r}",
                hint=f"use letters, digits, _ and -, up to {MAX_NAME_CHARS} characters, e.g. grpo1",
            )


def _plain_name(name: str, pattern: re.Pattern) -> bool:
    return len(name) <= MAX_NAME_CHARS and pattern.fullmatch(name) is not None and name not in (".", "..")


# Ranges of r1lab's numeric fields (inclusive; None: unbounded). Counts are capped where a larger value can
# only be a typo (1e20 problems), which would otherwise fail deep inside a loader.
BIG = 10**9
RUN_RANGES = {
    "seed": (0, 2**32 - 1),
    "eval_n": (0, BIG),
    "eval_max_new_tokens": (1, BIG),
    "eval_batch_size": (1, BIG),
}
STAGE_RANGES = {
    "n": (1, BIG),
    "num_samples": (1, BIG),
    "temperature": (0, None),
    "max_new_tokens": (1, BIG),
    "batch_size": (1, BIG),
    "max_per_prompt": (1, BIG),
}
# TRL fields r1lab knows the sense of; any other numeric TRL field must still be finite, and a whole
# number at most 2**53 (a larger one came from a float such as 1e20).
TRL_RANGES = {
    "learning_rate": (0, None),
    "weight_decay": (0, None),
    "max_grad_norm": (0, None),
    "warmup_ratio": (0, 1),
    "warmup_steps": (0, None),
    "num_train_epochs": (0, None),
    "max_steps": (None, BIG),  # -5 and 0 get their own message
    "per_device_train_batch_size": (1, BIG),
    "per_device_eval_batch_size": (1, BIG),
    "gradient_accumulation_steps": (1, BIG),
    "logging_steps": (0, None),
    "save_steps": (0, None),
    "save_total_limit": (0, None),
    "beta": (0, None),
    "epsilon": (0, None),
    "epsilon_high": (0, None),
    "temperature": (0, None),
    "top_p": (0, 1),
    "top_k": (0, None),
    "min_p": (0, 1),
    "repetition_penalty": (0, None),
    "num_generations": (1, BIG),  # 1 gets its own message (GRPO needs 2)
    "num_iterations": (1, BIG),
    "generation_batch_size": (1, BIG),
    "steps_per_generation": (1, BIG),
    "max_completion_length": (1, BIG),
    "max_prompt_length": (1, BIG),
    "max_length": (1, BIG),
    "seed": (0, 2**32 - 1),
}
MAX_EXACT_INT = 2**53


def check_numbers(run: RunConfig) -> None:
    """Refuse numbers that are not finite or out of range, and lists whose items have the wrong type, in
    r1lab's fields and the TRL fields a stage passes through, before any model loads.

    >>> check_numbers(RunConfig(eval_n=10**20))
    Traceback (most recent call last):
    r1lab.errors.UserError: recipe: eval_n must be between 0 and 1000000000, got 100000000000000000000 (fix the field's value)
    """
    where = run.source or "recipe"
    for name, bounds in RUN_RANGES.items():
        _check_number(name, getattr(run, name), bounds, where)
    for stage in run.stages:
        here = f"{where}: stage {stage.name!r}"
        for name, bounds in STAGE_RANGES.items():
            _check_number(name, getattr(stage, name), bounds, here)
        for name, value in stage.args.items():
            _check_number(name, value, TRL_RANGES.get(name, (None, None)), here)
        for name in ("questions", "rewards"):
            items = getattr(stage, name)
            listed = items if isinstance(items, list) else []
            bad = [q for q in listed if not isinstance(q, str) or not q.strip()]
            if bad:
                raise UserError(
                    f"{here}: {name} must be a list of non-empty strings, got {bad[0]!r} ({type(bad[0]).__name__})",
                    hint="fix the field's value",
                )
        for name in ("reward_weights",):
            for w in stage.args.get(name) or []:
                if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(w):
                    raise UserError(
                        f"{here}: {name} must be finite numbers, got {w!r}", hint="e.g. [1.0, 0.5]"
                    )


def _check_number(name: str, value: Any, bounds: tuple, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return  # None, a string TRL reads itself ("linear"), or a type checked elsewhere
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: {name} must be a finite number, got {value}", hint="fix the field's value")
    low, high = bounds
    if isinstance(value, int) and high is None and abs(value) > MAX_EXACT_INT:
        high = MAX_EXACT_INT
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            want = f"between {low} and {high}"
        else:
            want = f">= {low}" if low is not None else f"<= {high}"
        raise UserError(f"{where}: {name} must be {want}, got {value!r}", hint="fix the field's value")
