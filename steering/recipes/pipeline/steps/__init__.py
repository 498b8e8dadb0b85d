"""The step kinds a recipe may use, by name: one file each, one line here (see ../contract.py)."""

from __future__ import annotations

from steering.recipes.pipeline.contract import StepKind
from steering.recipes.pipeline.steps.dual import Dual
from steering.recipes.pipeline.steps.evaluate import Evaluate
from steering.recipes.pipeline.steps.harmlessness import Harmlessness
from steering.recipes.pipeline.steps.harvest import Harvest
from steering.recipes.pipeline.steps.judge import Judge
from steering.recipes.pipeline.steps.notes import Notes
from steering.recipes.pipeline.steps.probe import Probe
from steering.recipes.pipeline.steps.prompt_reward import PromptReward
from steering.recipes.pipeline.steps.revise import Revise
from steering.recipes.pipeline.steps.sample import Sample
from steering.recipes.pipeline.steps.training import train_kind

# fmt: off
STEPS: dict[str, type[StepKind]] = {
    "harvest": Harvest,
    "sft": train_kind("sft", {"epochs": 1, "max_steps": 2, "batch_size": 4, "eval_fraction": 0.0}),
    "sample": Sample,
    "judge": Judge,
    "reward-model": train_kind("reward-model", {"epochs": 1, "max_steps": 2, "batch_size": 4, "eval_fraction": 0.0}),
    "dpo": train_kind("dpo", {"epochs": 1, "max_steps": 2, "batch_size": 4, "eval_fraction": 0.0}),
    "rl": train_kind("rl", {"max_steps": 2, "batch_size": 2, "samples_per_prompt": 2, "max_new_tokens": 8}),
    "eval": Evaluate,
    "probe": Probe,
    "revise": Revise,
    "harmlessness": Harmlessness,
    "notes": Notes,
    "dual": Dual,
    "prompt-reward": PromptReward,
}
# fmt: on
