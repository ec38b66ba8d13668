"""Issue #24, user experience third round: reruns that say what changed, TRL and open-r1 habits, progress
everywhere, built-in data that means what it says."""

import json
import re

import pytest
import yaml

from r1lab.cli import main
from r1lab.config import RunConfig
from r1lab.pipeline import changed_settings

GRPO_ON_TINY = [
    "--model", "tiny", "--n", "4", "--num_generations", "2", "--per_device_train_batch_size", "2",
    "--max_completion_length", "8", "--eval_n", "0",
]  # fmt: skip


def _err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("r1lab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err  # one line, no traceback
    return lines[0]


# ------------------------------------------------------------------------------ 1. reruns


def test_1_a_rerun_with_other_settings_stops_before_any_work_and_restart_starts_over(
    tmp_path, r1lab_cache, capsys, monkeypatch
):
    import r1lab.pipeline as pipeline

    run_dir = tmp_path / "g"
    assert main(["grpo", *GRPO_ON_TINY, "--output_dir", str(run_dir), "--max_steps", "2"]) == 0
    model = run_dir / "grpo" / "model" / "model.safetensors"
    made = model.stat().st_mtime_ns
    record = (run_dir / "config.yaml").read_text()
    capsys.readouterr()

    real_prepare = pipeline._prepare_models
    monkeypatch.setattr(pipeline, "_prepare_models", lambda run: pytest.fail("a model was resolved"))
    rerun = ["grpo", *GRPO_ON_TINY, "--output_dir", str(run_dir), "--max_steps", "1", "--eval_n", "2"]
    assert main(rerun) == 2
    err = _err(capsys)
    assert "grpo.max_steps: 2 -> 1" in err and "eval_n: 0 -> 2" in err
    assert "--name" in err and "--restart" in err
    assert main([*rerun, "--dry-run"]) == 0  # a dry run does no work: it says what a real run would do
    assert "a real run would stop" in capsys.readouterr().err
    assert (run_dir / "config.yaml").read_text() == record  # the record still matches the model
    assert model.stat().st_mtime_ns == made

    monkeypatch.setattr(pipeline, "_prepare_models", real_prepare)
    assert main([*rerun[:-2], "--eval_n", "0", "--restart"]) == 0  # starts over: the record is the new one
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["stages"][0]["max_steps"] == 1
    assert model.stat().st_mtime_ns != made
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in steps) == 1  # the old run's log went with it


def test_1_stages_that_have_not_started_may_change_and_an_interrupted_one_may_change_length(tmp_path):
    def recipe(**grpo):
        stages = [{"name": "grpo", "kind": "grpo", "max_steps": 4, **grpo}, {"name": "sft", "kind": "sft"}]
        return RunConfig.from_dict(
            {"name": "r", "output_dir": str(tmp_path), "model": "tiny", "stages": stages}
        )

    old = recipe()
    old.run_dir.mkdir(parents=True)
    (old.run_dir / "config.yaml").write_text(yaml.safe_dump(old.to_dict()))
    assert changed_settings(old) == []
    (old.run_dir / "grpo").mkdir()  # grpo started (interrupted): sft has not
    new = recipe()
    new.stages[1].args["learning_rate"] = 1e-3
    new.stages[0].args["max_steps"] = 8
    assert changed_settings(new) == []
    new.stages[0].args["learning_rate"] = 1e-3
    assert changed_settings(new) == ["grpo.learning_rate: None -> 0.001"]
    (old.run_dir / "summary.json").write_text(
        json.dumps({"name": "r", "stages": [{"name": "grpo", "status": "done"}]})
    )
    new.stages[0].args.pop("learning_rate")
    assert changed_settings(new) == ["grpo.max_steps: 4 -> 8"]  # finished: its length is settled
    new.seed = 3
    assert "seed: 0 -> 3" in changed_settings(new)


# ------------------------------------------------------------------------------ 2. missing data


@pytest.mark.parametrize("verb", ["sft", "grpo"])
@pytest.mark.parametrize("dry", [True, False])
def test_2_a_missing_data_file_is_one_line_and_exit_2(verb, dry, tmp_path, capsys):
    argv = [
        verb,
        "--model",
        "tiny",
        "--data",
        str(tmp_path / "nope.jsonl"),
        "--output_dir",
        str(tmp_path / "r"),
    ]
    assert main(argv + (["--dry-run"] if dry else [])) == 2
    assert "data file not found" in _err(capsys)
    assert main(["run", "--data", "nope.jsonl", "--model", "tiny", "--dry-run"]) == 2
    assert "nope.jsonl" in _err(capsys)


# ------------------------------------------------------------------------------ 5. --output_dir


def test_5_output_dir_is_the_run_folder_of_a_one_stage_verb(tmp_path, capsys):
    assert main(["grpo", "--model", "tiny", "--output_dir", str(tmp_path / "x"), "--dry-run"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["name"] == "x" and out["output_dir"] == str(tmp_path)  # the model goes to x/grpo/model
    assert main(["grpo", "--model", "tiny", "--output-dir", str(tmp_path), "--name", "n", "--dry-run"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert (out["name"], out["output_dir"]) == ("n", str(tmp_path))  # with --name: OUTPUT_DIR/NAME


# ------------------------------------------------------------------------------ 6. flag spellings


def test_6_both_spellings_work_on_every_verb_and_an_unknown_flag_gets_a_suggestion(capsys, monkeypatch):
    import r1lab.cli.evaluate as cli_eval

    seen = {}
    monkeypatch.setattr(cli_eval, "run_eval", lambda args: seen.update(vars(args)) or 0)
    from r1lab.cli import build_parser

    args = build_parser().parse_args(
        ["eval", "--model", "tiny", "--data", "builtin", "--max_new_tokens", "64"]
    )
    assert args.max_new_tokens == 64
    args = build_parser().parse_args(["eval", "--model", "tiny", "--data", "builtin", "--n_samples=3"])
    assert args.n_samples == 3
    assert main(["eval", "--model", "tiny", "--data", "builtin", "--max_new_tokns", "64"]) == 2
    assert "did you mean --max-new-tokens?" in _err(capsys)
    assert main(["grpo", "--model", "tiny", "--max-steps", "3", "--dry_run", "--on_bad_row", "skip"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 3" in out and "on_bad_row: skip" in out
    try:
        main(["eval", "--help"])
    except SystemExit:
        pass
    assert "--max-new-tokens" in capsys.readouterr().out  # help shows one spelling


# ------------------------------------------------------------------------------ 7. TRL / open-r1 names


def _dry(capsys, argv) -> dict:
    assert main([*argv, "--dry-run"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_7_open_r1_recipe_names_and_trl_arguments_are_accepted(tmp_path, capsys):
    recipe = tmp_path / "open-r1.yaml"
    recipe.write_text(
        "model_name_or_path: tiny\ndataset_name: builtin:level=1\nreward_funcs: [accuracy, tag_count]\n"
        "dataset_train_split: validation\nstages:\n- {name: g, kind: grpo}\n- {name: s, kind: sft}\n"
    )
    out = _dry(capsys, ["run", "--config", str(recipe)])
    assert (out["model"], out["data"]) == ("tiny", "builtin:level=1")
    assert (
        out["stages"][0]["rewards"] == ["accuracy", "tag_count"] and out["stages"][0]["split"] == "validation"
    )
    assert out["stages"][1]["split"] == "validation"
    assert main(["run", "--config", str(recipe), "--dry-run", "--g.reward_funcs", "accuracy", "format"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["stages"][0]["rewards"] == ["accuracy", "format"]

    out = _dry(capsys, ["grpo", "--model", "tiny", "--reward_funcs", "accuracy", "format", "tag_count"])
    assert out["stages"][0]["rewards"] == ["accuracy", "format", "tag_count"]
    out = _dry(capsys, ["sft", "--model", "tiny", "--dataset_train_split", "validation"])
    assert out["stages"][0]["split"] == "validation"
    out = _dry(capsys, ["grpo", "--model", "tiny", "--reward_funcs", "accuracy format"])  # one string too
    assert out["stages"][0]["rewards"] == ["accuracy", "format"]


@pytest.mark.parametrize(
    "flag, value, says",
    [
        ("--resume_from_checkpoint", "true", "run the same command again"),
        ("--attn_implementation", "sdpa", "default attention"),
        ("--dataset_config", "main", "pass --data train.jsonl"),
    ],
)
def test_7_trl_names_r1lab_handles_its_own_way_are_explained(flag, value, says, capsys):
    for verb in ("grpo", "run"):
        assert main([verb, "--model", "tiny", flag, value, "--dry-run"]) == 2
        err = _err(capsys)
        assert says in err and "fsdp_config" not in err and "must be a string" not in err


# ------------------------------------------------------------------------------ 8. SFT on question/answer data


@pytest.mark.parametrize("skip", [[], ["--on-bad-row", "skip"]])
def test_8_sft_on_question_answer_data_says_what_sft_needs(skip, tmp_path, capsys):
    from r1lab.io import write_jsonl

    data = tmp_path / "qa.jsonl"
    write_jsonl(data, [{"prompt": f"What is {i} + 3?", "target": str(i + 3)} for i in range(20)])
    argv = [
        "sft",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--question-col",
        "prompt",
        "--answer-col",
        "target",
    ]
    assert main([*argv, *skip, "--dry-run"]) == 2
    err = _err(capsys)
    assert "--solution-col" in err and "r1lab rs" in err and "r1lab grpo" in err
    assert "--on-bad-row skip" not in err  # skipping would drop every row


# ------------------------------------------------------------------------------ 3, 4. progress


def test_3_the_held_out_check_has_a_bar_with_eta_in_a_terminal_and_its_own_time_in_the_table(
    monkeypatch, capsys
):
    from rich.console import Console

    from r1lab.inference import progress
    from r1lab.pipeline import summary_tables

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: a terminal
    with progress("measuring base", 4) as on_progress:
        for done in range(5):
            on_progress(done)
    err = capsys.readouterr().err
    assert "measuring base" in err and "eta" in err and "4/4" in err

    summary = {
        "name": "g",
        "base_seconds": 35.0,
        "stages": [{"name": "grpo", "kind": "grpo", "status": "done", "seconds": 73.0,
                    "train_seconds": 3.0, "eval_seconds": 70.0, "metrics_after": {"accuracy": 0.0}}],
    }  # fmt: skip
    console = Console(record=True, width=120)
    for table in summary_tables(summary):
        console.print(table)
    text = console.export_text()
    assert "3s + 70s check" in text and "held-out checks: 105s in all (the base model's: 35s)" in text
    assert "--eval_n 0 skips them" in text


def test_4_eval_outside_a_terminal_prints_periodic_progress_lines(tmp_path, r1lab_cache, capsys, monkeypatch):
    import r1lab.inference as inference

    real = inference.progress_log
    monkeypatch.setattr(
        inference, "progress_log", lambda label, total, every=30.0: real(label, total, every=0)
    )
    argv = ["eval", "--model", "tiny", "--data", "builtin", "--limit", "3", "--max_new_tokens", "4",
            "--batch_size", "1", "--out", str(tmp_path / "e")]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "eval: 1/3" in err and "left" in err and "eval: 3/3" in err


# ------------------------------------------------------------------------------ 9. console noise


def test_9_one_sft_step_reads_only_its_rows_and_prints_no_bars_into_a_pipe(tmp_path, r1lab_cache, capsys):
    argv = ["sft", "--model", "tiny", "--output_dir", str(tmp_path / "s"), "--max_steps", "1", "--eval_n", "0",
            "--per_device_train_batch_size", "4", "--report", "false"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "SFT on 4 examples" in err  # 1 step x 4 rows, not the built-in task's 5,000
    assert "Map" not in err and "Tokenizing" not in err and "it/s" not in err and "\r" not in err


# ------------------------------------------------------------------------------ 10. built-in data and small mismatches

_NUMBER_WORDS = {"half": 2, "a third": 3, "a quarter": 4, "a fifth": 5, "a sixth": 6, "a seventh": 7}
_MULTIPLE_WORDS = {"doubles": 2, "triples": 3, "quadruples": 4}


def _sentence_regex(template: str) -> re.Pattern:
    """A template as a regex; its operand (the first number, a fraction or a multiple) is the group ``v``."""
    out, have_v = [], False
    for part in re.split(r"(\{\w+\})", template):
        name = part[1:-1] if part.startswith("{") else None
        if name is None:
            out.append(re.escape(part))
        elif name in ("a", "b", "k", "d", "age", "frac", "mult") and not have_v:
            inner = {"frac": r"half|a third|a quarter|a fifth|a sixth|a seventh|1/\d+",
                     "mult": r"doubles|triples|quadruples|becomes \d+ times as large"}.get(name, r"\d+")  # fmt: skip
            out.append(f"(?P<v>{inner})")
            have_v = True
        else:
            out.append(r"[^.?]+?")
    return re.compile("".join(out) + r"(?: |$)")


def _operand(text: str) -> int:
    digits = re.search(r"\d+", text)
    return _NUMBER_WORDS.get(text) or _MULTIPLE_WORDS.get(text) or int(digits.group())


def _answer_from_the_words(question: str, scenario: dict) -> int | None:
    """Read a built-in question as a reader would: its opening value, then each sentence's operation."""
    from r1lab.data.synthetic import DISTRACTORS

    opens = [_sentence_regex(t) for t in scenario["open"]]
    steps = [(op, _sentence_regex(t)) for op in "+-*/" for t in scenario[op]]
    extras = [(None, _sentence_regex(t)) for t in DISTRACTORS]
    asks = [_sentence_regex(t) for t in scenario["ask"]]
    m = next((m for r in opens if (m := r.match(question))), None)
    if m is None:
        return None
    total, pos = int(m.group("v")), m.end()
    while pos < len(question):
        if any(r.fullmatch(question, pos) for r in asks):
            return total
        hit = next(((op, m) for op, r in steps + extras if (m := r.match(question, pos))), None)
        if hit is None:
            return None
        op, m = hit
        pos = m.end()
        if op is not None:
            v = _operand(m.group("v"))
            total = {"+": total + v, "-": total - v, "*": total * v, "/": total // v}[op]
    return None


def test_10_every_built_in_template_says_what_its_answer_computes():
    """Each built-in question, read sentence by sentence (which operation its words name, on which number),
    gives its answer; the closing questions never assume the direction of the last step ("left" after an
    addition was wrong); every template is seen."""
    from r1lab.data.synthetic import SCENARIOS, make_problems

    used = set()
    for level in (1, 2, 3, 4, 5):
        for split in ("train", "test"):
            for p in make_problems(150, level=level, split=split, seed=level):
                scenario = next(
                    s for s in SCENARIOS.values() if _answer_from_the_words(p["problem"], s) is not None
                )
                assert _answer_from_the_words(p["problem"], scenario) == int(p["answer"]), p["problem"]
                used |= {t for part in scenario.values() if isinstance(part, tuple) for t in part
                         if _sentence_regex(t).search(p["problem"])}  # fmt: skip
    every = {t for s in SCENARIOS.values() for k, part in s.items() if k != "unit" for t in part}
    assert every <= used, every - used
    for scenario in SCENARIOS.values():
        for ask in scenario["ask"]:
            assert not re.search(r"\b(left|remain|still)\b", ask), ask


def test_10_small_mismatches_recipe_names_builtin_options_and_yaml_errors(tmp_path, capsys):
    from r1lab.config import bundled_recipes

    assert main(["run", "--config", "seedd", "--dry-run"]) == 2
    assert "did you mean seed?" in _err(capsys)
    assert main(["run", "--config", "nothing-like-it", "--dry-run"]) == 2
    err = _err(capsys)
    assert "gsm8k" in bundled_recipes() and all(name in err for name in bundled_recipes())

    assert main(["data", "preview", "builtin:lvl=1"]) == 2
    assert "level=0-5" in _err(capsys)
    assert main(["data", "preview", "builtin:level=0", "--n", "1"]) == 0  # what the hint says works
    capsys.readouterr()

    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\nmodel: tiny\nstages: [{name: g, kind: grpo}\nseed: 1\n")
    assert main(["run", "--config", str(recipe), "--dry-run"]) == 2
    err = _err(capsys)
    assert "line 4, column 1" in err and "the line: `seed: 1`" in err and "flow sequence at line 3" in err


def test_readme_commands_parse_and_ask_shows_a_trained_model():
    """Every `r1lab VERB ...` the README shows parses with today's flags; its `ask` example asks a trained
    model (the base one answers 12 * 7 wrongly, which the README says next to it)."""
    import shlex
    from pathlib import Path

    from r1lab.cli import VERB_MODULES, build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    verbs = {"run", "grpo", "sft", "rs", "eval", "ask", "chat", "rewards", "data", "report"}
    assert len(VERB_MODULES) == 6
    parser = build_parser()
    checked = 0
    for argv in (shlex.split(c) for c in re.findall(r"`(r1lab [^`]+)`", readme)):
        if len(argv) > 1 and argv[1] in verbs and "--help" not in argv:
            parser.parse_args(argv[1:])
            checked += 1
    assert checked >= 15
    table_ask = re.search(r"\| `ask` \|.*`(r1lab ask [^`]+)`", readme).group(1)
    assert "runs/demo/sft/model" in table_ask and "often wrong" in readme


def test_1_a_record_from_before_a_new_field_existed_is_not_a_change(tmp_path):
    run = RunConfig.from_dict(
        {"name": "r", "output_dir": str(tmp_path), "model": "tiny", "stages": [{"name": "g", "kind": "grpo"}]}
    )
    record = run.to_dict()
    del record["stages"][0]["share_prompt_forward"], record["eval_batch_size"]  # fields an older r1lab lacked
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.yaml").write_text(yaml.safe_dump(record))
    (run.run_dir / "g").mkdir()
    assert changed_settings(run) == []
    run.stages[0].share_prompt_forward = False
    assert changed_settings(run) == ["g.share_prompt_forward: None -> False"]
