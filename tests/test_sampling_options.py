"""The GRPO stage's dynamic sampling and pass-rate/curriculum options: every bad value is a UserError at
config validation (exit 2 from the CLI, before any model loads); `r1lab data pass-rate` writes counts
equal to a direct count of the judged samples; a pass-rate band and an easy-to-hard order select and
order a stage's problems."""

from __future__ import annotations

import pytest

from r1lab.config import RunConfig, validate
from r1lab.errors import UserError
from r1lab.io import read_jsonl, write_jsonl


def _run(**stage):
    base = {"name": "g", "kind": "grpo", "num_generations": 2, "per_device_train_batch_size": 2}
    base.update(stage)
    return RunConfig.from_dict({"name": "t", "model": "tiny", "stages": [base]})


def _error(**stage) -> str:
    with pytest.raises(UserError) as info:
        validate(_run(**stage))
    return str(info.value)


def test_good_options_validate(tmp_path):
    rates = write_jsonl(tmp_path / "r.jsonl", [{"problem": "q", "pass_rate": 0.5}])
    stage = validate(
        _run(
            dynamic_sampling=True,
            dynamic_sampling_metric="accuracy",
            dynamic_sampling_max_rounds=3,
            pass_rate_file=str(rates),
            pass_rate_band=[0.1, 0.9],
            curriculum="easy_to_hard",
        )
    ).stages[0]
    assert stage.dynamic_sampling and stage.dynamic_sampling_metric == "accuracy"
    assert "dynamic_sampling" not in stage.args  # r1lab fields, not passed to TRL


@pytest.mark.parametrize(
    ("stage", "fragment"),
    [
        (
            {"dynamic_sampling_metric": "acuracy"},
            "dynamic_sampling_metric 'acuracy' is not one of total, accuracy",
        ),
        ({"dynamic_sampling_max_rounds": 0}, "dynamic_sampling_max_rounds must be >= 1"),
        ({"dynamic_sampling_max_rounds": "many"}, "dynamic_sampling_max_rounds must be a whole number"),
        ({"dynamic_sampling": "yes please"}, "dynamic_sampling must be true or false"),
        ({"curriculum": "hard_first"}, "curriculum 'hard_first' is not one of none, easy_to_hard"),
        ({"pass_rate_band": [0.9, 0.1], "pass_rate_file": "x"}, "pass_rate_band must be [low, high]"),
        ({"pass_rate_band": [0, 2], "pass_rate_file": "x"}, "pass_rate_band must be [low, high]"),
        ({"pass_rate_band": [0.1, 0.9]}, "pass_rate_band needs pass_rate_file"),
        ({"pass_rate_file": "no/such.jsonl", "curriculum": "easy_to_hard"}, "pass_rate_file not found"),
        ({"pass_rate_file": "no/such.jsonl"}, "pass_rate_file is set but nothing uses it"),
        ({"curriculum": "easy_to_hard", "shuffle_dataset": True}, "shuffle_dataset is true"),
    ],
)
def test_bad_values_are_user_errors(stage, fragment):
    assert fragment in _error(**stage)


def test_whole_groups_per_process_counts_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    # 2 processes x 2 rows = 4 = one group of 4 split over two processes: TRL accepts it, filtering cannot
    stage = {"num_generations": 4, "per_device_train_batch_size": 2}
    validate(_run(**stage))
    assert "does not hold whole groups" in _error(dynamic_sampling=True, **stage)
    validate(_run(dynamic_sampling=True, num_generations=4, per_device_train_batch_size=4))


def test_cli_refuses_bad_options_with_exit_2_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import r1lab.pipeline as pipeline
    from r1lab.cli import main

    monkeypatch.setattr(pipeline, "_prepare_models", lambda run: pytest.fail("a model was resolved"))
    args = ["run", "--config", "seed", "--model", "tiny", "--output-dir", str(tmp_path)]
    assert main([*args, "--grpo.dynamic_sampling_metric", "nope"]) == 2
    assert "dynamic_sampling_metric 'nope'" in capsys.readouterr().err
    assert main([*args, "--grpo.pass_rate_band", "[0.2, 0.1]", "--grpo.pass_rate_file", "x"]) == 2
    assert "pass_rate_band" in capsys.readouterr().err


# ------------------------------------------------------------------------------- r1lab data pass-rate


class Canned:
    """Completions that answer right on a fixed pattern: row i's sample j is right when (i + j) % 3 == 0."""

    def __call__(self, model, prompts, *, n_samples, on_progress=None, **settings):
        from r1lab.data.formatting import question_of
        from r1lab.inference import Completion

        comps = []
        for p in prompts:
            question = question_of(p)
            row = []
            for j in range(n_samples):
                said = self.answers[question] if (self.index[question] + j) % 3 == 0 else "-1"
                text = f"<think>\nso\n</think>\n<answer>\n{said}\n</answer>"
                row.append(Completion(text=text, n_tokens=5, truncated=False))
            comps.append(row)
        yield list(range(len(prompts))), comps


def test_pass_rate_verb_counts_equal_a_direct_count(tmp_path, monkeypatch, capsys):
    import r1lab.evaluate as evaluate
    from r1lab.cli import main
    from r1lab.data.synthetic import make_problems

    problems = make_problems(6, level=1, seed=0, split="train")
    canned = Canned()
    canned.answers = {p["problem"]: p["answer"] for p in problems}
    canned.index = {p["problem"]: i for i, p in enumerate(problems)}
    monkeypatch.setattr(evaluate, "_hf_batches", canned)
    out = tmp_path / "rates.jsonl"
    data = write_jsonl(
        tmp_path / "d.jsonl", [{"question": p["problem"], "answer": p["answer"]} for p in problems]
    )
    k = 5
    assert main(["data", "pass-rate", str(data), "--model", "tiny", "--k", str(k), "--out", str(out)]) == 0
    rows = list(read_jsonl(out))
    assert [r["problem"] for r in rows] == [p["problem"] for p in problems]
    for i, row in enumerate(rows):
        direct = sum((i + j) % 3 == 0 for j in range(k))
        assert (row["k"], row["passes"], row["pass_rate"]) == (k, direct, direct / k)
    assert "wrote 6 pass rates (k=5)" in capsys.readouterr().out


def test_pass_rate_verb_asks_with_a_recipes_prompt(tmp_path, monkeypatch):
    import r1lab.evaluate as evaluate
    from r1lab.cli import main
    from r1lab.data.synthetic import make_problems

    problems = make_problems(2, level=1, seed=0, split="train")
    canned = Canned()
    canned.answers = {p["problem"]: p["answer"] for p in problems}
    canned.index = {p["problem"]: i for i, p in enumerate(problems)}
    seen = []

    def recording(model, prompts, **kwargs):
        seen.extend(prompts)
        yield from canned(model, prompts, **kwargs)

    monkeypatch.setattr(evaluate, "_hf_batches", recording)
    recipe = tmp_path / "r.yaml"
    recipe.write_text('system_prompt: "Be brief."\nreply_prefix: "<think>\\n"\nstages: []\n')
    args = [
        "data",
        "pass-rate",
        "builtin",
        "--n",
        "2",
        "--model",
        "tiny",
        "--k",
        "2",
        "--config",
        str(recipe),
    ]
    assert main([*args, "--out", str(tmp_path / "r.jsonl")]) == 0
    assert seen and all(p[0] == {"role": "system", "content": "Be brief."} for p in seen)
    assert all(p[-1] == {"role": "assistant", "content": "<think>\n"} for p in seen)


def test_pass_rate_verb_on_the_tiny_model_writes_a_rate_per_problem(tmp_path):
    from r1lab.cli import main
    from r1lab.data.pass_rates import read_pass_rates

    out = tmp_path / "r.jsonl"
    args = [
        "data",
        "pass-rate",
        "builtin",
        "--model",
        "tiny",
        "--n",
        "3",
        "--k",
        "2",
        "--max-new-tokens",
        "4",
    ]
    assert main([*args, "--out", str(out), "--work-dir", str(tmp_path / "w")]) == 0
    rows = list(read_jsonl(out))
    assert len(rows) == 3 and all(r["k"] == 2 and r["level"] == "1" for r in rows)
    items = list(read_jsonl(tmp_path / "w" / "items.jsonl"))  # the samples it judged, kept for a resume
    assert sorted(sum(map(bool, i["correct"])) for i in items) == sorted(r["passes"] for r in rows)
    assert len(read_pass_rates(out)) == 3


def test_pass_rate_verb_refuses_bad_flags_with_exit_2(tmp_path, capsys):
    from r1lab.cli import main

    base = ["data", "pass-rate", "builtin", "--model", "tiny"]
    assert main([*base, "--k", "0", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert main([*base, "--temperature", "0", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert main([*base, "--out", str(tmp_path / "r.txt")]) == 2
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ band and curriculum


def test_band_keeps_problems_inside_it_and_curriculum_orders_easy_to_hard(tmp_path, tiny_config):
    from r1lab.train.grpo import grpo_dataset

    run = tiny_config(data="builtin:level=1-3")
    stage = run.stages[0]
    full = grpo_dataset(stage, run)
    problems = list(full["problem"])
    rates = [{"problem": p, "pass_rate": round((i % 5) / 4, 2)} for i, p in enumerate(problems)]
    stage.pass_rate_file = str(write_jsonl(tmp_path / "r.jsonl", rates))
    stage.pass_rate_band = [0.25, 0.75]
    kept = grpo_dataset(stage, run)
    by_problem = {r["problem"]: r["pass_rate"] for r in rates}
    assert {by_problem[p] for p in kept["problem"]} == {0.25, 0.5, 0.75}
    assert len(kept) == sum(0.25 <= r["pass_rate"] <= 0.75 for r in rates)

    stage.curriculum = "easy_to_hard"
    ordered = [by_problem[p] for p in grpo_dataset(stage, run)["problem"]]
    assert ordered == sorted(ordered, reverse=True)  # high pass rate = easy, first


def test_curriculum_by_the_builtin_tasks_level(tiny_config):
    from r1lab.data.load import load_records
    from r1lab.train.grpo import grpo_dataset

    run = tiny_config(data="builtin:level=1-3", curriculum="easy_to_hard")
    ordered = grpo_dataset(run.stages[0], run)
    records, _ = load_records("builtin:level=1-3", kind="grpo", split="train", n=30, seed=0)
    level = {r.problem: int(r.level) for r in records}
    levels = [level[p] for p in ordered["problem"]]
    assert levels == sorted(levels) and len(set(levels)) == 3
    assert sorted(ordered["problem"]) == sorted(level)  # the same problems, reordered


def test_curriculum_without_any_difficulty_is_a_user_error(tmp_path, tiny_config):
    from r1lab.train.grpo import grpo_dataset

    data = write_jsonl(
        tmp_path / "d.jsonl", [{"question": f"{i}+1?", "answer": str(i + 1)} for i in range(4)]
    )
    run = tiny_config(data=str(data), curriculum="easy_to_hard")
    with pytest.raises(UserError, match="needs a difficulty"):
        grpo_dataset(run.stages[0], run)


@pytest.fixture
def tiny_config():
    def make(*, data: str, **stage) -> RunConfig:
        grpo = {
            "name": "grpo",
            "kind": "grpo",
            "n": 30,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
        }
        grpo.update(stage)
        return validate(
            RunConfig.from_dict(
                {
                    "name": "t",
                    "model": "tiny",
                    "data": data,
                    "eval_n": 0,
                    "system_prompt": None,
                    "stages": [grpo],
                }
            )
        )

    return make
