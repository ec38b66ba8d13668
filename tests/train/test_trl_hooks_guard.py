"""r1lab's GRPO hooks are checked against the installed TRL when a trainer is built (full signatures, the
attributes they read, TRL's private imports); on any mismatch both hooks fall back to TRL's own methods
with one log line. The dependency is capped at the tested minor versions (issue #23, item 7)."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

import pytest
from test_rollouts import make_trainer, prompt_batch
from trl import GRPOTrainer

from r1lab import compat

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lively(redrawn_tiny):
    return redrawn_tiny(0, for_training=True)


def test_the_installed_trl_fits_the_full_signatures():
    for name, expected in compat.GRPO_HOOK_SIGNATURES.items():
        assert compat.signature_text(getattr(GRPOTrainer, name)) == expected


def test_a_matching_trl_keeps_r1labs_hooks(lively, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="r1lab.train.rollouts"):
        trainer = make_trainer(lively, tmp_path, "r1lab")
    assert compat.grpo_hook_problems(trainer) == []
    assert trainer.rollout_engine == "r1lab"
    assert "_generate_single_turn" not in vars(trainer)
    assert not [r for r in caplog.records if "r1lab's hooks do not fit" in r.getMessage()]


def _new_trailing_parameter(sig: str) -> str:
    return sig[:-1] + ", new_flag=None)"


def _new_default(sig: str) -> str:
    return sig.replace("batch_size=None", "batch_size=8")


@pytest.mark.parametrize(
    "kind, name, value",
    [
        # the old check (leading parameter names only) passed both of these
        ("signature", "_generate_single_turn", _new_trailing_parameter),
        ("signature", "_get_per_token_logps_and_entropies", _new_default),
        ("attribute", "eos_token_ids_v2", None),
        ("import", "trl.extras.profiling", "profiling_context_v2"),
    ],
)
def test_a_trl_that_does_not_fit_falls_back_to_trls_own_hooks(
    lively, tmp_path, caplog, monkeypatch, kind, name, value
):
    # The tables say what r1lab was written against; changing them stands for a TRL that changed.
    if kind == "signature":
        monkeypatch.setitem(compat.GRPO_HOOK_SIGNATURES, name, value(compat.GRPO_HOOK_SIGNATURES[name]))
    elif kind == "attribute":
        monkeypatch.setattr(compat, "GRPO_HOOK_ATTRIBUTES", (*compat.GRPO_HOOK_ATTRIBUTES, name))
    else:
        monkeypatch.setitem(compat.GRPO_HOOK_IMPORTS, name, value)
    with caplog.at_level(logging.WARNING, logger="r1lab.train.rollouts"):
        trainer = make_trainer(lively, tmp_path, "r1lab")
    lines = [r.getMessage() for r in caplog.records if "r1lab's hooks do not fit" in r.getMessage()]
    assert len(lines) == 1, lines
    assert trainer.rollout_engine == "trl" and not trainer.share_prompt_forward
    for hook in compat.GRPO_HOOK_SIGNATURES:
        assert getattr(trainer, hook).__func__ is getattr(GRPOTrainer, hook)  # TRL's own, not r1lab's
    # and TRL's generation runs end to end on this trainer
    ids = prompt_batch(trainer, n_prompts=1, copies=2)
    completion_ids, _ = trainer._generate_single_turn(ids, None, {}, 2)
    assert len(completion_ids) == 2 and all(isinstance(t, int) for t in completion_ids[0])


def test_private_trl_imports_live_in_compat():
    """No module but r1lab.compat imports from TRL's private modules (trl.extras, trl.models, trl.trainer.*)."""
    private = re.compile(r"^\s*(from|import) trl\.(extras|models|trainer)\b", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "src" / "r1lab").rglob("*.py")
        if p.name != "compat.py" and private.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def _minor_cap(spec: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=[0-9.]+,<([0-9]+)\.([0-9]+)", spec.replace(" ", ""))
    return (m.group(1), f"{m.group(2)}.{int(m.group(3)) - 1}") if m else None


@pytest.mark.parametrize("package", ["trl", "transformers"])
def test_dependency_capped_at_the_tested_minor(package):
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if re.match(rf"{package}\b", d) and not d.startswith(f"{package}-"))
    tested = next(
        line.split("==")[1].strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.startswith(f"{package}==")
    )
    cap = _minor_cap(spec)
    assert cap is not None, f"{spec}: not capped below the next minor version"
    assert cap == (package, ".".join(tested.split(".")[:2])), (spec, tested)
