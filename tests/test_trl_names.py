"""Users coming from TRL keep their argument names: ``--model_name_or_path``, ``--dataset_name``,
``--use_peft``, ``--lora_r``, ``--lora_alpha``, ``--torch_dtype``; ``--save_adapter`` keeps the LoRA adapter
beside the merged model; a stage verb's ``--help`` lists r1lab's fields."""

import json

from r1lab.cli import main


def test_trl_argument_names_train_and_save_the_adapter_too(tmp_path, r1lab_cache, capsys):
    argv = [
        "sft", "--model_name_or_path", "tiny", "--dataset_name", "builtin:level=1", "--torch_dtype", "float32",
        "--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--save_adapter",
        "--output-dir", str(tmp_path), "--name", "s", "--max_steps", "1", "--n", "4",
        "--per_device_train_batch_size", "2", "--eval_n", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    model = tmp_path / "s" / "sft" / "model"
    adapter = json.loads((model / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    config = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert config["stages"][0]["status"] == "done"
    assert (model / "model.safetensors").is_file()  # the merged model, loadable without peft
    merged = json.loads((model / "config.json").read_text())
    assert "lora" not in json.dumps(merged).lower()


def test_stage_verb_help_lists_r1lab_fields(capsys):
    try:
        main(["grpo", "--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    for field in ("rewards", "reward_params", "share_prompt_forward", "eval_n", "reply_prefix", "--lora_r"):
        assert field in out
    assert "max_per_prompt" not in out  # an rs field, not a grpo one
