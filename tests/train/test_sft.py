"""The SFT stage: loss on the assistant turn only, starts from the model it is given, writes a model."""

import pytest
import torch
from train_helpers import sft_rows

from r1lab.errors import UserError
from r1lab.io import read_jsonl
from r1lab.train.sft import build_sft_trainer, run_sft, to_prompt_completion

SFT = {"name": "sft", "kind": "sft", "max_steps": 2, "per_device_train_batch_size": 2, "save_steps": 1}


def test_only_the_assistant_turn_is_trained_on(tiny_run):
    run = tiny_run(SFT)
    ds = sft_rows(4)
    trainer, tok = build_sft_trainer(
        run.stages[0], run, model_spec="tiny", stage_dir=run.run_dir / "sft", dataset=ds
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    trained = tok.decode(ids[labels != -100])
    answer = ds[0]["completion"][0]["content"]
    # Every trained token belongs to the assistant's reply (plus its end-of-turn token); none to the question.
    assert trained.startswith(answer[:20]) and answer.strip() in trained
    assert ds[0]["prompt"][-1]["content"][:30] not in trained
    assert (labels == -100).sum() > 0


def test_run_sft_writes_model_logs_and_checkpoints(tiny_run, capfd, caplog):
    caplog.set_level(
        "INFO", logger="r1lab"
    )  # outside a terminal the step line is logged (no bar to write on)
    run = tiny_run(SFT)
    out = run_sft(run.stages[0], run, model_spec="tiny", stage_dir=run.run_dir / "sft", dataset=sft_rows(8))
    rows = [r for r in read_jsonl(run.run_dir / "metrics.jsonl") if "loss" in r]
    assert rows and all(r["stage"] == "sft" for r in rows)
    # TRL's metrics dict goes to metrics.jsonl; the console gets one compact line per log event
    console = capfd.readouterr()
    shown = console.out + console.err + caplog.text
    assert "{'loss'" not in shown and "sft step 1/" in shown
    assert (out / "model.safetensors").is_file()
    assert sorted(p.name for p in (run.run_dir / "sft" / "checkpoints").glob("checkpoint-*"))


@pytest.mark.dtype
def test_sft_starts_from_the_given_model(tiny_run, tmp_path):
    """The seed restarted SFT from the base model; here the previous stage's weights are the start."""
    from r1lab.models import load_model

    base, tok = load_model("tiny", dtype="float32")  # training loads fp32 master weights on every CPU
    with torch.no_grad():
        for p in base.parameters():
            p.mul_(0.5)  # a recognisably different "previous stage" model
    prev = tmp_path / "prev"
    base.save_pretrained(prev)
    tok.save_pretrained(prev)
    run = tiny_run(dict(SFT, max_steps=1))
    trainer, _ = build_sft_trainer(
        run.stages[0], run, model_spec=str(prev), stage_dir=run.run_dir / "sft", dataset=sft_rows(2)
    )
    name, param = next(iter(trainer.model.named_parameters()))
    assert torch.allclose(param.detach().cpu(), dict(base.named_parameters())[name].detach().cpu())


def test_examples_must_end_with_an_assistant_turn():
    with pytest.raises(UserError, match="assistant"):
        to_prompt_completion({"messages": [{"role": "user", "content": "hi"}]})


def test_max_length_shorter_than_every_prompt_is_a_user_error(tiny_run):
    """Truncation would leave TRL no completion tokens to train on (torch's "num_samples=0" otherwise)."""
    run = tiny_run({**SFT, "max_length": 8})
    with pytest.raises(UserError, match=r"lost their whole completion to truncation at max_length=8"):
        run_sft(run.stages[0], run, model_spec="tiny", stage_dir=run.run_dir / "sft", dataset=sft_rows(4))
    assert not (run.run_dir / "sft" / "model").exists()


def test_a_checkpoint_at_max_steps_becomes_the_model_without_more_training(tiny_run):
    """Killed after the last checkpoint but before the model was written: the rerun trains no extra step."""
    from safetensors.torch import load_file

    run = tiny_run(SFT)
    stage_dir = run.run_dir / "sft"
    out = run_sft(run.stages[0], run, model_spec="tiny", stage_dir=stage_dir, dataset=sft_rows(8))
    import shutil

    shutil.rmtree(out)
    steps_logged = len([r for r in read_jsonl(run.run_dir / "metrics.jsonl") if "loss" in r])
    again = run_sft(run.stages[0], run, model_spec="tiny", stage_dir=stage_dir, dataset=sft_rows(8))
    assert len([r for r in read_jsonl(run.run_dir / "metrics.jsonl") if "loss" in r]) == steps_logged
    final, ckpt = (
        load_file(again / "model.safetensors"),
        load_file(stage_dir / "checkpoints/checkpoint-2/model.safetensors"),
    )
    assert final.keys() == ckpt.keys() and all(torch.equal(final[k], ckpt[k]) for k in final)
