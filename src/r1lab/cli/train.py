"""``r1lab run`` (a whole recipe) and ``r1lab grpo|sft|rs`` (one stage).

Any recipe field can be overridden on the command line: run-level fields as ``--model tiny``, stage fields
as ``--<stage>.<field> value`` (a stage is addressed by its name), e.g. ``--grpo.learning_rate 1e-6``.
For the one-stage verbs, ``--<field> value`` sets a field of that stage directly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

BUNDLED_RECIPES = Path(__file__).resolve().parents[1] / "recipes"

RUN_DESCRIPTION = """Run a recipe's stages in order (default: recipes/seed.yaml, GRPO -> SFT -> inference).

Everything the run makes goes under OUTPUT_DIR/NAME (runs/<name>/): the resolved config, each stage's
model, metrics.jsonl, samples.jsonl, TensorBoard logs, summary.json and report.html. Running the same
command again skips finished stages and resumes an interrupted one from its last complete checkpoint; with
other settings it stops and lists what changed (use a new --name, or --restart to start over).

Override any field: run-level as --field value, a stage's as --<stage>.<field> value (TRL field names).

examples:
  r1lab run                                              # recipes/seed.yaml on smollm2-135m
  r1lab run --config recipes/r1-zero.yaml --model tiny --name z0 --grpo.max_steps 5
  r1lab run --config r1 --model tiny --grpo1.learning_rate 1e-5 --eval_n 8
  r1lab run --config recipes/seed.yaml --name demo --dry-run   # validate and print the resolved recipe
"""

STAGE_DESCRIPTIONS = {
    "grpo": """Run one GRPO stage (TRL GRPOTrainer with r1lab's rewards) as its own run.

Stage fields (rewards, data, n, and any TRL GRPOConfig field) are given as --<field> value.

examples:
  r1lab grpo --model tiny --name g --max_steps 10 --rewards accuracy,format,tag_count
  r1lab grpo --model smollm2-135m --data builtin:level=1 --num_generations 4 --learning_rate 1e-6
  r1lab grpo --model runs/demo/sft/model --name more-rl --beta 0.04 --loss_type dr_grpo
""",
    "sft": """Run one SFT stage (TRL SFTTrainer, loss on the assistant turn only) as its own run.

examples:
  r1lab sft --model tiny --name s --max_steps 50
  r1lab sft --model smollm2-135m --data traces.jsonl --num_train_epochs 1 --learning_rate 2e-5
  r1lab sft --model runs/x/grpo/model --data runs/x/rs/data.jsonl --name polish
""",
    "rs": """Rejection sampling: sample K completions per prompt, keep the correct and well-formatted ones,
write them as SFT data (runs/<name>/rs/data.jsonl) for a later `r1lab sft --data ...`.

examples:
  r1lab rs --model runs/demo/grpo/model --name rs1 --n 64 --num_samples 8
  r1lab rs --model smollm2-135m --data builtin:level=1 --num_samples 4 --max_per_prompt 2
""",
}


def _fields_epilog(kind: str | None) -> str:
    """The r1lab fields a verb accepts as --field value (TRL's own fields are listed in TRL's docs)."""
    from r1lab.config import KIND_FIELDS, STAGE_FIELDS, RunConfig, StageConfig, fields_help

    stage_names = (KIND_FIELDS[kind] if kind else STAGE_FIELDS) - {"name", "kind"}
    where = f"--<field> value (this {kind} stage)" if kind else "--<stage>.<field> value"
    trl = {"grpo": "GRPOConfig", "sft": "SFTConfig"}.get(kind, "GRPOConfig / SFTConfig")
    return (
        "run fields (--field value):\n"
        + fields_help(RunConfig)
        + f"\n\nstage fields ({where}), plus any TRL {trl} field:\n"
        + fields_help(StageConfig, stage_names)
    )


def register(sub) -> None:
    """Add the ``run``, ``grpo``, ``sft`` and ``rs`` verbs."""
    from r1lab.cli import HelpFormatter, add_common_flags
    from r1lab.cli.data import add_column_flags

    p = sub.add_parser(
        "run",
        help="run a recipe: GRPO -> SFT -> inference (resumable)",
        description=RUN_DESCRIPTION,
        epilog=_fields_epilog(None),
        formatter_class=HelpFormatter,
        collect_overrides=True,
        allow_abbrev=False,  # `--n 64` must not turn into `--name 64`
    )
    p.add_argument(
        "--config",
        default="recipes/seed.yaml",
        help="recipe YAML, or the name of a bundled recipe (seed, r1, r1-zero)",
    )
    _run_level_flags(p)
    p.add_argument(
        "--only", default=argparse.SUPPRESS, help="comma-separated stage names to run (others are skipped)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate and print the resolved recipe, run nothing"
    )
    _restart_flag(p)
    add_common_flags(p)
    p.set_defaults(func=_run_handler)

    for kind in ("grpo", "sft", "rs"):
        _register_stage_verb(sub, kind, add_common_flags, add_column_flags, HelpFormatter)


STAGE_VERB_HELP = {
    "grpo": "one GRPO stage",
    "sft": "one SFT stage (assistant-only loss)",
    "rs": "rejection sampling: write SFT data from correct samples",
}


def _register_stage_verb(sub, kind: str, add_common_flags, add_column_flags, HelpFormatter) -> None:
    """A verb that runs one stage of ``kind`` (``r1lab grpo``, ``sft``, ``rs``)."""
    sp = sub.add_parser(
        kind,
        help=STAGE_VERB_HELP[kind],
        description=STAGE_DESCRIPTIONS[kind],
        epilog=_fields_epilog(kind),
        formatter_class=HelpFormatter,
        collect_overrides=True,
        allow_abbrev=False,
    )
    sp.add_argument("--config", default=None, help="take the stage's defaults from this recipe (see --stage)")
    sp.add_argument(
        "--stage", default=None, help=f"which stage of --config to use (the first {kind} if not given)"
    )
    _run_level_flags(sp)
    add_column_flags(sp)
    sp.add_argument(
        "--on-bad-row",
        choices=("error", "skip"),
        default=argparse.SUPPRESS,
        help="stop at a bad data row, or skip it (the stage's on_bad_row)",
    )
    sp.add_argument("--dry-run", action="store_true", help="validate and print the resolved recipe")
    _restart_flag(sp)
    add_common_flags(sp)
    sp.set_defaults(func=_stage_handler, kind=kind)


def _restart_flag(p) -> None:
    p.add_argument(
        "--restart",
        action="store_true",
        help="the run folder was made with other settings: delete its outputs and start over "
        "(without it such a rerun stops and lists what changed)",
    )


def _run_level_flags(p) -> None:
    # SUPPRESS: an absent flag leaves the recipe's value alone (and the help shows no "default: None").
    # The second names are TRL's script arguments (ModelConfig / ScriptArguments), for users coming from TRL.
    none = argparse.SUPPRESS
    p.add_argument("--name", default=none, help="run name: outputs go to OUTPUT_DIR/NAME")
    p.add_argument(
        "--model",
        "--model_name_or_path",
        dest="model",
        default=none,
        help="model spec: tiny, smollm2-135m, a .gguf, a local dir, a hub id",
    )
    p.add_argument(
        "--data",
        "--dataset_name",
        dest="data",
        default=none,
        help="training data: builtin[:level=N], a hub name, or a local file",
    )
    p.add_argument(
        "--output-dir",
        dest="output_dir",
        default=none,
        help="where runs go: OUTPUT_DIR/NAME (the recipe says runs); for grpo/sft/rs without --name, "
        "the run folder itself, as in TRL",
    )
    p.add_argument("--seed", type=int, default=none, help="random seed")
    p.add_argument(
        "--dtype", "--torch_dtype", dest="dtype", default=none, help="weights dtype: auto, float32, bfloat16"
    )
    lora = p.add_argument_group("LoRA (TRL's ModelConfig names)")
    lora.add_argument(
        "--lora",
        "--use_peft",
        dest="lora",
        action="store_true",
        default=none,
        help="train LoRA adapters (merged into the saved model)",
    )
    lora.add_argument("--lora_r", type=int, default=none, help="LoRA rank (default 16); implies --lora")
    lora.add_argument("--lora_alpha", type=int, default=none, help="LoRA alpha (default 32); implies --lora")
    lora.add_argument("--lora_dropout", type=float, default=none, help="LoRA dropout (default 0.05)")
    lora.add_argument(
        "--lora_target_modules", nargs="+", default=none, help="modules to adapt (default: all linear layers)"
    )
    lora.add_argument(
        "--save_adapter",
        action="store_true",
        default=none,
        help="also save the adapter alone, in <stage>/model/adapter/",
    )


def resolve_recipe_path(value: str) -> Path:
    """A recipe path, or a bundled recipe's name (``seed`` -> recipes/seed.yaml): ./recipes first, then the
    recipes shipped inside the package (so a wheel install finds them too)."""
    p = Path(value)
    if p.is_file():
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else f"{value}.yaml"
    for root in (Path.cwd() / "recipes", BUNDLED_RECIPES):
        if (root / name).is_file():
            return root / name
    return p  # load_config reports it as not found


def _run_level_overrides(args) -> list[str]:
    import json

    out = []
    for key in ("name", "model", "data", "output_dir", "seed", "dtype", "lora", "save_adapter"):
        value = getattr(args, key, None)
        if key in ("name", "output_dir") and value is not None:
            value = json.dumps(value)  # a name is the text typed: --name "~" is a folder "~", not YAML's null
        if value is not None:
            out.append(f"{key}={value}")
    peft = {
        field: getattr(args, flag)
        for flag, field in (
            ("lora_r", "r"),
            ("lora_alpha", "lora_alpha"),
            ("lora_dropout", "lora_dropout"),
            ("lora_target_modules", "target_modules"),
        )
        if getattr(args, flag, None) is not None
    }
    if peft:  # LoraConfig fields as a mapping (the rest keep r1lab's defaults)
        out.append(f"lora={json.dumps(peft)}")
    return out


def _run_handler(args) -> int:
    from r1lab.config import load_config

    run = load_config(resolve_recipe_path(args.config), _run_level_overrides(args) + list(args.overrides))
    only = [s.strip() for s in args.only.split(",")] if getattr(args, "only", None) else None
    return _execute(run, dry_run=args.dry_run, only=only, restart=args.restart)


def _stage_handler(args) -> int:
    import dataclasses
    import json

    from r1lab.config import RUN_ALIASES, STAGE_FIELDS, RunConfig, apply_overrides, load_config

    kind = args.kind
    stage_overrides = []
    run_overrides = []
    from r1lab.cli.data import columns_from_args

    run_fields = {f.name for f in dataclasses.fields(RunConfig)} - STAGE_FIELDS
    if columns_from_args(args):
        stage_overrides.append(f"columns={json.dumps(columns_from_args(args))}")
    if getattr(args, "on_bad_row", None):
        stage_overrides.append(f"on_bad_row={args.on_bad_row}")
    for o in args.overrides:
        key = o.split("=", 1)[0].replace("-", "_")
        # --grpo.beta (dotted) and run-level fields (--eval_n) go to the run; the rest to this one stage
        # dataset_config goes with --dataset_name (run-level), which it describes
        to_run = "." in key or key in run_fields or key in RUN_ALIASES or key == "dataset_config"
        (run_overrides if to_run else stage_overrides).append(o)
    if args.config:
        base = load_config(resolve_recipe_path(args.config)).to_dict()
        candidates = [
            s
            for s in base["stages"]
            if (args.stage and s["name"] == args.stage) or (not args.stage and s["kind"] == kind)
        ]
        if not candidates:
            from r1lab.errors import UserError

            raise UserError(
                f"{args.config} has no {'stage ' + args.stage if args.stage else kind + ' stage'}",
                hint="pick one with --stage NAME",
            )
        stage = dict(candidates[0], name=kind)
        base["stages"] = [stage]
    else:
        base = {"name": kind, "stages": [{"name": kind, "kind": kind}]}
    base.setdefault("name", kind)
    if getattr(args, "output_dir", None) is not None and getattr(args, "name", None) is None:
        # TRL's habit: --output_dir is the run's own folder (its model lands in OUTPUT_DIR/<stage>/model)
        folder = Path(args.output_dir).expanduser().resolve()
        args.name, args.output_dir = folder.name, str(folder.parent)
    if getattr(args, "data", None) is not None and not any(o.startswith("eval_data=") for o in run_overrides):
        base.pop("eval_data", None)  # the user's own data: held-out problems follow it
    data = apply_overrides(base, _run_level_overrides(args) + run_overrides)
    data = apply_overrides(data, [f"{kind}.{o}" for o in stage_overrides])

    run = RunConfig.from_dict(data, source=args.config or f"r1lab {kind}")
    if getattr(args, "data", None) is not None:
        run.stages[0].data = run.data  # --data wins over the --config stage's own (minus held-out rows)
    return _execute(run, dry_run=args.dry_run, restart=args.restart)


def _execute(run, *, dry_run: bool, only: list[str] | None = None, restart: bool = False) -> int:
    import logging

    import yaml
    from rich.console import Console

    from r1lab.config import annotate_yaml
    from r1lab.errors import UserError
    from r1lab.pipeline import check, check_rerun, run_pipeline, summary_tables

    console = Console()
    if dry_run:
        check(run)
        try:
            check_rerun(run, restart=restart)
        except UserError as err:  # a dry run does no work: say what a real run would do, print the recipe
            logging.getLogger("r1lab").warning("a real run would stop: %s", err)
        text = yaml.safe_dump(run.to_dict(), sort_keys=False, width=1_000_000)  # unwrapped: valid YAML
        print(annotate_yaml(text))  # each r1lab field's help as a comment
        return 0
    from r1lab import distributed

    summary = run_pipeline(run, only=only, restart=restart)
    if distributed.is_main_process():  # one copy of the tables under accelerate launch
        for table in summary_tables(summary):
            console.print(table)
        console.print(f"run directory: {run.run_dir}", markup=False, highlight=False)
    distributed.shutdown()  # else gloo/nccl abort at exit and the launcher reports a failure
    return 0
