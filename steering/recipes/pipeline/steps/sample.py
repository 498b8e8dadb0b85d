"""The `sample` step: K answers per instruction from a policy, stored with their books in a feedback database.

The database (`feedback.db`, output `db`; `prompts` = prompts.jsonl, the instructions as RL data) is what people label in `steer annotate` and judges label
in a `judge` step: every pair of a prompt's answers is queued for comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from steering.controls import Adapter
from steering.feedback import FeedbackStore
from steering.feedback.candidates import add_candidates
from steering.paths import atomic_write_text
from steering.recipes.pipeline.contract import StepContext, StepKind, StepResult
from steering.recipes.pipeline.packaged import prompt_set


@dataclass
class SampleOptions:
    adapter: str = ""  # "@sft": the policy that answers ("" = the base)
    prompts: str = "train"  # a prompt set: train, eval, red_team:train, benign:train, a .jsonl; "+" joins
    limit: int = 0  # the first N instructions (0 = all)
    n: int = 4  # answers per instruction
    max_new_tokens: int = 64
    batch_size: int = 8


class Sample(StepKind):
    name = "sample"
    Options = SampleOptions
    quick: ClassVar[dict[str, Any]] = {"limit": 4, "n": 2, "max_new_tokens": 12}

    def run(self, context: StepContext, options: Any) -> StepResult:
        instructions = [text for text, _ in prompt_set(options.prompts, options.limit)]
        adapter = str(context.ref(options.adapter)) if options.adapter else None
        controls = [Adapter(Path(adapter))] if adapter else []
        with FeedbackStore.open(context.folder / "feedback.db") as store:
            candidates = add_candidates(
                store, context.model(), instructions, n=options.n, controls=controls,
                max_new_tokens=options.max_new_tokens, seed=context.recipe.seed, batch_size=options.batch_size,
                source=f"instructions:{options.prompts}", adapter=adapter, kinds=("compare",),
                progress=lambda done: context.progress(done, len(instructions) * options.n, "sampling"),
            )  # fmt: skip
        prompts = "".join(json.dumps({"prompt": text}) + "\n" for text in instructions)
        atomic_write_text(context.folder / "prompts.jsonl", prompts)  # what RL trains on
        samples = candidates.samples
        empty = sum(1 for text in samples.texts if not text.strip())
        metrics = {"prompts": len(instructions), "responses": len(samples.texts), "empty_responses": empty}
        return StepResult(metrics, {"db": "feedback.db", "prompts": "prompts.jsonl"})
