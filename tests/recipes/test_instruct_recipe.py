"""`steer run recipes/instruct.toml --quick` end to end on gemma-270m, then again (everything cached)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "instruct.toml"


def _steer(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "steering", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


@pytest.mark.integration
def test_the_instruct_recipe_runs_end_to_end_and_then_is_cached(tmp_path: Path) -> None:
    out = tmp_path / "instruct"
    first = _steer("run", str(RECIPE), "--quick", "--out", str(out))
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    steps = ["harvest", "sft", "sample", "judge", "rm", "rl", "eval", "probe"]
    records = {s: json.loads((out / "steps" / s / "step.json").read_text()) for s in steps}
    # The RL policy was trained on top of the SFT adapter: one stacked LoRA, loadable on the base.
    rl_meta = json.loads((out / "steps/rl/run/adapter/steering.json").read_text())
    assert rl_meta["stacked_on"]["path"].endswith("steps/sft/run/adapter")
    stages = records["eval"]["metrics"]["stages"]
    assert list(stages) == ["base", "@sft", "@rl", "chat:smollm2-135m-instruct"]
    for name, stage in stages.items():
        assert set(stage["scores"]) == {"factual", "format", "writing"}, name
        assert 0.0 <= stage["scores"]["writing"]["empty_rate"] <= 1.0
    assert "kl_to_base" in stages["@rl"] and "kl_to_base" not in stages["chat:smollm2-135m-instruct"]
    assert 0.0 <= stages["@sft"]["win_rate_vs_previous"] <= 1.0
    judged = records["judge"]["metrics"]
    assert judged["judged"] > 0 and 0 <= judged["decided_by_checks"] <= judged["judged"]
    assert set(records["probe"]["metrics"]["policies"]) == {"sft", "rl"}
    page = (out / "report.html").read_text()
    assert "recipe: instruct" in page and "eval (eval)" in page and "not run yet" not in page
    again = _steer("run", str(RECIPE), "--quick", "--out", str(out))
    assert again.returncode == 0 and "0 step(s) ran, 8 cached" in again.stdout


def test_bad_recipe_input_exits_2_with_one_paragraph(tmp_path: Path) -> None:
    for args, message in (
        (["run", str(RECIPE), "sft.epoch=3", "--out", str(tmp_path / "a")], "has no option 'epoch'"),
        (["run", str(tmp_path / "missing.toml")], "does not exist"),
        (["run", str(RECIPE), "--from", "nope", "--out", str(tmp_path / "b")], "has no step 'nope'"),
    ):
        result = _steer(*args, timeout=120)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr


def test_the_judge_steps_checks_score_known_instructions_and_pass_on_the_rest() -> None:
    """`checks = "instructions"`: both packaged sets are scored by their code checks; any other prompt is
    left to the model judge (None), where the RL reward `instructions` refuses it."""
    from steering.eval.instructions import load_instructions, reply_checks
    from steering.recipes.pipeline.steps.judge import instruction_checks

    checks = instruction_checks("instructions")
    for split in ("train", "eval"):
        instruction = load_instructions(split)[0]
        assert checks(instruction.text + " ", "Lima.") == reply_checks(instruction, "Lima.")
    assert checks("Tell me anything.", "Lima.") is None
