"""Recipe loading, overrides and every validation error (all before any model loads)."""

import pytest

from r1lab.config import RunConfig, apply_overrides, load_config, parse_value, validate
from r1lab.errors import UserError


def _run(**stage):
    base = {"name": "g", "kind": "grpo", "num_generations": 2, "per_device_train_batch_size": 2}
    base.update(stage)
    return RunConfig.from_dict({"name": "t", "model": "tiny", "stages": [base]})


def _error(fn) -> str:
    with pytest.raises(UserError) as info:
        fn()
    return str(info.value)


def test_trl_fields_pass_through_and_stage_fields_stay_ours():
    run = validate(_run(learning_rate=1e-5, beta=0.04, temperature=0.7, rewards="accuracy,format"))
    stage = run.stages[0]
    assert stage.rewards == ["accuracy", "format"]
    assert stage.args == {
        "num_generations": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-5,
        "beta": 0.04,
        "temperature": 0.7,
    }


def test_bundled_recipes_validate(monkeypatch):
    for name in ("seed", "r1", "r1-zero"):
        run = validate(load_config(f"recipes/{name}.yaml"))
        assert run.stages, name
    r1 = load_config("recipes/r1.yaml")
    assert [s.kind for s in r1.stages] == ["sft", "grpo", "rs", "sft", "grpo", "eval"]
    seed = load_config("recipes/seed.yaml")
    assert [s.kind for s in seed.stages] == ["grpo", "sft", "inference"]


def test_dotted_overrides_address_stages_by_name_and_parse_values():
    run = load_config(
        "recipes/r1-zero.yaml",
        [
            "model=tiny",
            "grpo.learning_rate=1e-6",
            "grpo.use_vllm=true",
            "eval_n=4",
            "grpo.rewards=[accuracy]",
        ],
    )
    assert run.model == "tiny" and run.eval_n == 4
    g = run.stage("grpo")
    assert g.args["learning_rate"] == 1e-6 and g.args["use_vllm"] is True and g.rewards == ["accuracy"]
    assert parse_value("1e-6") == 1e-6 and parse_value("3") == 3 and parse_value("none") == "none"


def test_override_of_missing_stage_names_the_stages():
    msg = _error(lambda: apply_overrides({"stages": [{"name": "a", "kind": "sft"}]}, ["b.max_steps=3"]))
    assert "no stage named 'b'" in msg and "stages are: a" in msg


def test_unknown_trl_field_suggests_close_match():
    msg = _error(lambda: validate(_run(learnig_rate=1e-6)))
    assert "'learnig_rate'" in msg and "learning_rate" in msg and "stage 'g'" in msg


def test_unknown_run_field_suggests_close_match():
    msg = _error(lambda: RunConfig.from_dict({"modle": "tiny", "stages": []}))
    assert "'modle'" in msg and "did you mean model" in msg


def test_batch_not_divisible_by_num_generations_says_how_to_fix():
    msg = _error(lambda: validate(_run(per_device_train_batch_size=6, num_generations=4)))
    assert "not divisible by num_generations (4)" in msg
    assert "set num_generations to one of [2, 3, 6]" in msg


def test_gradient_accumulation_counts_toward_generation_batch():
    validate(_run(per_device_train_batch_size=2, gradient_accumulation_steps=2, num_generations=4))


def test_generation_batch_size_rules():
    assert "not both" in _error(lambda: validate(_run(generation_batch_size=4, steps_per_generation=2)))
    assert "not a multiple" in _error(lambda: validate(_run(generation_batch_size=3)))


def test_world_size_enters_the_rule(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    msg = _error(lambda: validate(_run(per_device_train_batch_size=2, num_generations=4)))
    assert "processes (3)" in msg


def test_num_generations_below_two():
    assert "at least 2" in _error(lambda: validate(_run(num_generations=1, per_device_train_batch_size=1)))


def test_unknown_reward_name():
    msg = _error(lambda: validate(_run(rewards=["acuracy"])))
    assert "unknown reward 'acuracy'" in msg and "accuracy" in msg


def test_reward_weights_length():
    msg = _error(lambda: validate(_run(rewards=["accuracy", "format"], reward_weights=[1.0])))
    assert "1 reward_weights for 2 rewards" in msg


def test_bad_kind_and_misplaced_fields():
    assert "kind 'gpro'" in _error(lambda: _run(kind="gpro"))
    bad = {"name": "t", "stages": [{"name": "e", "kind": "eval", "rewards": ["accuracy"]}]}
    assert "does not apply to a eval stage" in _error(lambda: RunConfig.from_dict(bad))
    typo = {"name": "t", "stages": [{"name": "r", "kind": "rs", "num_sample": 3}]}
    assert "did you mean num_samples" in _error(lambda: RunConfig.from_dict(typo))


def test_duplicate_stage_names():
    data = {"name": "t", "stages": [{"name": "a", "kind": "sft"}, {"name": "a", "kind": "sft"}]}
    assert "duplicate stage name" in _error(lambda: validate(RunConfig.from_dict(data)))


def test_stage_data_references():
    later = {
        "name": "t",
        "stages": [{"name": "s", "kind": "sft", "data": "stage:rs"}, {"name": "rs", "kind": "rs"}],
    }
    assert "which runs later" in _error(lambda: validate(RunConfig.from_dict(later)))
    not_rs = {
        "name": "t",
        "stages": [{"name": "a", "kind": "sft"}, {"name": "b", "kind": "sft", "data": "stage:a"}],
    }
    assert "only rs" in _error(lambda: validate(RunConfig.from_dict(not_rs)))
    validate(
        RunConfig.from_dict(
            {
                "name": "t",
                "stages": [{"name": "r", "kind": "rs"}, {"name": "s", "kind": "sft", "data": "stage:r"}],
            }
        )
    )


def test_missing_data_file(tmp_path):
    msg = _error(lambda: validate(_run(data=str(tmp_path / "nope.jsonl"))))
    assert "data file not found" in msg


def test_missing_recipe_and_bad_yaml(tmp_path):
    assert "recipe not found" in _error(lambda: load_config(tmp_path / "x.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [\n")
    assert "not valid YAML" in _error(lambda: load_config(bad))


def test_reserved_output_dir_and_remove_unused_columns(tmp_path):
    assert "set by r1lab" in _error(lambda: validate(_run(output_dir="/tmp/x")))
    from r1lab.train.common import build_trl_args

    run = _run(remove_unused_columns=True)
    validate(run)
    msg = _error(lambda: build_trl_args(run.stages[0], run, tmp_path))
    assert "solution" in msg


def test_trl_late_errors_become_user_errors(tmp_path):
    from r1lab.pipeline import check

    run = _run(vllm_importance_sampling_clip_min=2.0, vllm_importance_sampling_clip_max=1.0)
    run.output_dir = str(tmp_path)
    msg = _error(lambda: check(run))
    assert "TRL rejects" in msg and "vllm_importance_sampling_clip_min" in msg


def test_to_dict_round_trips():
    run = load_config("recipes/r1.yaml")
    again = RunConfig.from_dict(run.to_dict())
    assert again.to_dict() == run.to_dict()


def test_epochs_set_by_the_user_are_not_cut_short_by_r1labs_default_steps(tmp_path):
    """TRL's semantics: max_steps wins only when the user sets it (it was 20 steps = 0.16 epoch)."""
    from r1lab.train.common import build_trl_args

    def args(**fields):
        run = RunConfig.from_dict(
            {"name": "x", "model": "tiny", "stages": [{"name": "s", "kind": "sft", **fields}]}
        )
        return build_trl_args(run.stages[0], run, tmp_path)

    assert args(num_train_epochs=1).max_steps == -1 and args(num_train_epochs=1).num_train_epochs == 1
    assert args(num_train_epochs=1, max_steps=5).max_steps == 5
    assert args().max_steps == 20  # neither set: r1lab's small CPU budget


@pytest.mark.parametrize("recipe", ["seed", "r1", "r1-zero"])  # gsm8k reads ../shared: test_gsm8k_recipe
def test_dry_run_prints_each_fields_help_as_a_comment_and_stays_valid_yaml(recipe, capsys):
    """#16: fields carry help; `--dry-run` shows it, and what it prints still loads as the same recipe."""
    import yaml

    from r1lab.cli import main
    from r1lab.config import load_config

    assert main(["run", "--config", recipe, "--model", "tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "eval_n: " in out and "# held-out problems per before/after measurement" in out
    assert yaml.safe_load(out) == load_config(f"recipes/{recipe}.yaml", ["model=tiny"]).to_dict()
