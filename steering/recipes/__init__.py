"""Recipes: whole pipelines and experiments wired from the library's layers.

A recipe composes the methods of `train/`, the samplers of `condition/`, the metrics and pages of
`eval/` and the controls into something a person runs end to end: `steer demo` (`recipes.demo`, the
base model and every technique side by side), self-instruct (the base model writes its own
demonstrations, then an SFT adapter and a soft prompt are tuned on them), the prompt as a reward
trained with RL and measured against the prompt's conditional, RLHF and RLAIF end to end (labels from
the annotation app or an AI judge → reward model → RL, measured on held-out prompts), and the page of a
training run (`steer report RUN`). Recipes may import every layer below them; nothing below imports a recipe, and
`cli/` only parses arguments and prints what a recipe returns.
"""

from steering.recipes.demo import DemoResult, SectionEvent, demo_work_units, run_demo
from steering.recipes.feedback_loop import Labeller, LoopResult, LoopSize, run_feedback_loop
from steering.recipes.prompt_reward_training import TrainedPoint, train_prompt_as_reward
from steering.recipes.run_report import run_report
from steering.recipes.self_instruct import Harvest, SelfTuned, harvest_demonstrations, tune_from_base

__all__ = [
    "DemoResult",
    "Harvest",
    "Labeller",
    "LoopResult",
    "LoopSize",
    "SectionEvent",
    "SelfTuned",
    "TrainedPoint",
    "demo_work_units",
    "harvest_demonstrations",
    "run_demo",
    "run_feedback_loop",
    "run_report",
    "train_prompt_as_reward",
    "tune_from_base",
]
