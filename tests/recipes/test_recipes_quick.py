"""The constitution, dual and prompt-as-reward recipes end to end at toy size (`--quick`) on the real models.

The instruct recipe's run (through the command line, then cached) is in test_instruct_recipe.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steering.recipes.pipeline import STEPS, load_recipe, run

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "steps").glob("*/step.json")}


@pytest.mark.integration
def test_constitution_recipe_quick(tmp_path: Path) -> None:
    result = run(RECIPES / "constitution.toml", out=tmp_path / "cai", quick=True)
    records = _records(tmp_path / "cai")
    assert set(records) == {
        step.name for step in load_recipe(RECIPES / "constitution.toml", kinds=STEPS).steps
    }
    revise = records["revise"]["metrics"]
    assert revise["red_team"] == 2 and revise["benign"] == 2
    # Every round drew a harm principle, never the helpfulness one, and says so.
    assert revise["principles"] and "helpful" not in revise["principles"]
    stages = records["eval"]["metrics"]["stages"]
    assert list(stages) == ["base", "@helpful", "@slcai", "@rl"]
    for stage in stages.values():
        assert stage["red_team"][-1]["category"] == "all" and stage["red_team"][-1]["n"] == 3
        assert 1.0 <= stage["harmless_rating"] <= 7.0 and 1.0 <= stage["helpful_rating"] <= 7.0
    rl_meta = json.loads((tmp_path / "cai/steps/rl/run/adapter/steering.json").read_text())
    assert rl_meta["stacked_on"]["path"].endswith("steps/slcai/run/adapter")
    assert result.report is not None and "harmlessness" in result.report.read_text()


@pytest.mark.integration
def test_dual_recipe_quick(tmp_path: Path) -> None:
    run(RECIPES / "dual.toml", out=tmp_path / "dual", quick=True)
    metrics = _records(tmp_path / "dual")["dual"]["metrics"]
    assert metrics["commands"] == 2
    assert metrics["hallucination_quoted"] == 0.0  # the quote pool: a span of the command, by construction
    assert metrics["perplexity_base"] > 1.0 and metrics["perplexity_adapter"] > 1.0


@pytest.mark.integration
def test_prompt_as_reward_recipe_quick(tmp_path: Path) -> None:
    run(RECIPES / "prompt-as-reward.toml", out=tmp_path / "par", quick=True)
    records = _records(tmp_path / "par")
    tiny = records["tiny"]["metrics"]["points"]
    assert [p["strength"] for p in tiny] == [0.0, 2.0]
    # λ = 0 is the base itself; λ = 2's target satisfies the condition more often than the base.
    assert tiny[0]["policy_kl_to_base"] == 0.0 and tiny[1]["target_satisfied"] > tiny[0]["target_satisfied"]
    assert records["gemma"]["metrics"]["model"] == "gemma-270m"
