"""The private TRL / transformers APIs r1lab uses (r1lab.compat) still exist with the shapes it relies on.

When one of these fails after `make upgrade`, fix r1lab.compat (and the override it names), not the test."""

import inspect

from r1lab import compat


def test_grpo_trainer_overrides_still_fit():
    assert compat.grpo_override_problems() == []


def test_grpo_trainer_sets_the_attributes_r1lab_reads():
    from trl import GRPOTrainer

    init = inspect.getsource(GRPOTrainer.__init__)
    for name in compat.GRPO_ATTRIBUTES:
        assert f"self.{name} =" in init, name


def test_trainer_private_loaders_exist():
    from transformers import Trainer

    assert callable(getattr(Trainer, "_load_from_checkpoint", None))
    assert "resume_from_checkpoint" in inspect.signature(Trainer._load_from_checkpoint).parameters


def test_dynamic_cache_rebatching_api():
    from transformers import DynamicCache

    for name in ("batch_select_indices", "batch_repeat_interleave"):
        assert callable(getattr(DynamicCache, name, None)), name


def test_the_kv_cache_keyword_is_one_the_model_takes():
    from r1lab.compat import cache_argument
    from r1lab.models import load_model

    model, _ = load_model("tiny")
    assert cache_argument(model) in inspect.signature(type(model).forward).parameters


def test_trls_importance_sampling_branch_can_be_opened_in_the_loss_alone():
    assert compat.vllm_gate_problems() == []


def test_trls_fused_head_still_calls_the_function_r1labs_cpu_head_stands_in_for():
    assert compat.log_prob_head_problems() == ()
