"""The `prompt-reward` step: the prompt as a reward, trained with RL (`recipes/prompt_reward_training.py`).

For each λ, RL with r = λ·Σ_{i∈S} δ(x_i, y_i) and β = 1 trains a policy whose optimum is the soft
target π·exp(r)/Z; the step measures each policy and each target against the prompt's conditional
π(x | x_S = y_S): the share satisfying, KL(conditional ‖ ·), KL(policy ‖ base) — exactly on a tiny
vocabulary (`exact = true`), by sampling otherwise. The experiment `experiments/prompt_reward_rl.py`
as a recipe step: the same settings give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from steering.condition import prompt_as_reward
from steering.eval.report import Section, table_html
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.prompt_reward_training import train_prompt_as_reward

COLUMNS = ("λ", "target: share satisfying", "KL(cond ‖ target)", "policy: share satisfying", "KL(cond ‖ policy)",
           "KL(policy ‖ base)", "KL(policy ‖ target)", "RL steps")  # fmt: skip


@dataclass
class PromptRewardOptions:
    model: str = ""  # "" = the recipe's model
    prompt: str = "Once upon a time"
    spans: dict[str, str] = field(default_factory=lambda: {"1": " there"})  # position → fixed text
    strengths: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0, 8.0])
    max_new_tokens: int = 8
    exact: bool = False
    samples: int = 64
    rl: dict[str, Any] = field(default_factory=dict)  # RLConfig fields (batch_size, epochs, learning_rate, …)


class PromptReward(StepKind):
    name = "prompt-reward"
    Options = PromptRewardOptions
    quick: ClassVar[dict[str, Any]] = {
        "strengths": [0.0, 2.0],
        "samples": 4,
        "rl": {"epochs": 1, "batch_size": 2, "samples_per_prompt": 2},
    }

    def run(self, context: StepContext, options: Any) -> StepResult:
        model = context.model(options.model, dtype="float32")
        spans = {int(position): text for position, text in options.spans.items()}
        context.progress(0, 2, "the soft targets")
        targets = prompt_as_reward(model, options.prompt, spans, options.strengths, max_new_tokens=options.max_new_tokens,
                                   exact=options.exact, n=options.samples)  # fmt: skip
        context.progress(1, 2, "RL at each λ")
        trained = train_prompt_as_reward(
            model, options.prompt, spans, options.strengths, out_dir=context.folder / "runs",
            max_new_tokens=options.max_new_tokens, exact=options.exact, samples=options.samples, rl=options.rl,
        )  # fmt: skip
        rows = [
            {"strength": t.strength, "target_satisfied": g.satisfied, "target_kl_to_conditional": g.kl_to_conditional,
             "policy_satisfied": t.satisfied, "policy_kl_to_conditional": t.kl_to_conditional,
             "policy_kl_to_base": t.kl_to_base, "policy_kl_to_target": t.kl_to_target, "steps": t.steps}
            for g, t in zip(targets, trained, strict=True)
        ]  # fmt: skip
        return StepResult({"points": rows, "model": model.name, "exact": options.exact}, {"runs": "runs"})

    def report(self, record: StepRecord) -> list[Section]:
        rows = [list(point.values()) for point in record.metrics.get("points", [])]
        how = "exact (every completion enumerated)" if record.metrics.get("exact") else "sampled"
        return [
            Section(
                f"{record.name} (prompt as reward, {record.metrics.get('model')})",
                how,
                table_html(COLUMNS, rows),
            )
        ]
