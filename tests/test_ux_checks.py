"""Small UX checks: progress lines where there is no bar, deprecation noise hidden outside --debug, the
eval verb's data flags, and one source of truth for the demo's numbers."""

import json
import logging
import re
import warnings
from pathlib import Path

from r1lab.cli import main, setup_logging
from r1lab.inference import progress_log
from r1lab.io import write_jsonl

ROOT = Path(__file__).parents[1]


def test_progress_log_reports_at_most_every_interval_and_at_the_end(caplog):
    report = progress_log("measuring sft: problems done", 200, every=3600)
    with caplog.at_level(logging.INFO, logger="r1lab.inference"):
        for done in (10, 64, 128, 200, 200):  # the end is said once, however often it is reported
            report(done)
    assert [r.getMessage() for r in caplog.records] == ["measuring sft: problems done: 200/200 (0s)"]


def test_library_deprecation_warnings_are_hidden_outside_debug():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        setup_logging(debug=False)
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
    assert not seen


def test_eval_reads_odd_columns_and_skips_bad_rows_with_its_flags(tmp_path, capsys):
    data = tmp_path / "odd.jsonl"
    rows = [{"q": "What is 2 + 2?", "a": "4"}, {"q": "", "a": "1"}, {"q": "What is 3 + 3?", "a": "6"}]
    write_jsonl(data, rows)
    argv = [
        "eval",
        "--model",
        "tiny",
        "--data",
        str(data),
        "--max-new-tokens",
        "2",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--question-col", "q", "--answer-col", "a"]) == 2  # the empty question, named
    assert "--on-bad-row skip" in " ".join(capsys.readouterr().err.split())
    assert main([*argv, "--question-col", "q", "--answer-col", "a", "--on-bad-row", "skip", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_items"] == 2


def test_the_demo_numbers_have_one_source():
    """README's demo table is what docs/demo.md measured: every percentage and p-value in one is in the other."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| model | seed 0 (`make demo`)") :].split("\n\n")[0]
    demo = (ROOT / "docs" / "demo.md").read_text()
    numbers = set(re.findall(r"\d+\.\d+%", table))
    assert numbers and all(n in demo for n in numbers)


def test_merged_helpers_keep_one_behaviour_where_the_copies_disagreed():
    """#16: one completion-to-text (the rewards'), one question-of-a-prompt, one value parser, one <think>
    pre-fill rule; the inputs where the removed copies answered differently."""
    from r1lab.cli.rewards import _parse_params
    from r1lab.data.formatting import prompt_prefills_think, question_of
    from r1lab.rewards.extract import completion_text

    chat = [{"role": "assistant", "content": "<think>a"}, {"role": "assistant", "content": "</think>b"}]
    assert completion_text(chat) == "<think>a</think>b"  # the report joined with "\n"; rewards see it whole
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]) == "x"
    assert question_of([{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}]) == "q1"
    assert question_of("plain") == "plain"
    assert _parse_params(["cosine.max_len=1e3"]) == {"cosine": {"max_len": 1000.0}}  # a number, as in recipes
    assert prompt_prefills_think("<|im_start|>assistant\n<think>  \n") and not prompt_prefills_think(
        "<think> x"
    )


def test_one_reference_reader_and_one_number_reading_where_the_copies_disagreed():
    """#16: the data loader and the accuracy reward read a reference with one function (r1lab.answers), and
    the majority vote keys a number by the value the verifier would judge, not by its spelling."""
    from r1lab.answers import reference_answer, strip_thousands
    from r1lab.evaluate import majority_vote, normalize_answer
    from r1lab.rewards import reference_answer as rewards_reference

    assert rewards_reference is reference_answer
    assert reference_answer("#### 1,000") == "1000"  # the rewards' copy kept "1,000"
    assert reference_answer("$5$") == "5"  # the rewards' copy kept "$5$"
    assert reference_answer("<answer>7</answer>") == "7"  # the rewards' copy kept the tags
    assert reference_answer("-12,000") == strip_thousands("-12,000") == "-12000"
    assert normalize_answer("18 dollars") == normalize_answer("18.00") == normalize_answer("18")
    assert majority_vote(["18", "19", "18 dollars"], [True, False, True]) == ("18", True)
