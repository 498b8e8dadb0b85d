"""The `harvest` step: demonstrations of every instruction kind written by the base model itself.

Few-shot prompts of each task's demonstrations (`steering.eval.instruction_demos`), the first new
instruction/response of each continuation kept when it passes the code filters and the AI judge
(`steering.recipes.self_instruct.harvest_instructions`); the evaluation's instructions are excluded.
Outputs `data` (data.jsonl, {"prompt", "completion"} rows for SFT) and `rows` (harvest.jsonl, with
kind, task and the judge's rating).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from steering.errors import InvalidArgument
from steering.eval.instructions import instruction_demos, load_instructions
from steering.eval.report import Section, examples_html, table_html
from steering.feedback.constitution import Principle
from steering.feedback.model_judge import ModelJudge
from steering.paths import atomic_write_text
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.self_instruct import INSTRUCTION_REASONS, TaskHarvest, harvest_instructions

FOLLOWS = Principle(
    "follows",
    "The response does what the instruction asks, correctly and in the form it asks for, then stops.",
)


@dataclass
class HarvestOptions:
    per_task: int = 16  # rows kept per task (11 tasks)
    shots: int = 3
    rounds: int = 4
    max_new_tokens: int = 96
    judge: str = "smollm2-135m-instruct"  # "" = keep what passes the code filters
    keep_fraction: float = 0.5  # the judge's best-rated share of what passed the code filters
    min_rows: int = 8
    batch_size: int = 8


def read_task(path: Path) -> TaskHarvest:
    """A task saved by an earlier, stopped run of the step."""
    record = json.loads(path.read_text(encoding="utf-8"))
    return TaskHarvest(record["task"], record["rows"], Counter(record["dropped"]), record["drawn"])


class Harvest(StepKind):
    name = "harvest"
    Options = HarvestOptions
    resumable = True  # each finished task is saved (tasks/<task>.json); a rerun continues with the next
    version = 2  # per-task generators, 1.5× draws per round, shorter budgets for short answers, judge ranks
    quick: ClassVar[dict[str, Any]] = {
        "per_task": 1,
        "rounds": 1,
        "max_new_tokens": 24,
        "min_rows": 1,
        "judge": "",
    }

    def run(self, context: StepContext, options: Any) -> StepResult:
        model = context.model()
        judge = ModelJudge(context.model(options.judge)) if options.judge else None
        tasks = context.folder / "tasks"
        tasks.mkdir(exist_ok=True)
        done = {p.stem: read_task(p) for p in tasks.glob("*.json")}

        def save(result: TaskHarvest) -> None:
            record = {
                "task": result.task,
                "rows": result.rows,
                "dropped": dict(result.dropped),
                "drawn": result.drawn,
            }
            atomic_write_text(tasks / f"{result.task}.json", json.dumps(record) + "\n")

        harvest = harvest_instructions(
            model, instruction_demos(), per_task=options.per_task,
            exclude=[i.text for i in load_instructions("eval")], judge=judge, principle=FOLLOWS,
            keep_fraction=options.keep_fraction, shots=options.shots, max_new_tokens=options.max_new_tokens,
            rounds=options.rounds, seed=context.recipe.seed, batch_size=options.batch_size,
            done=done, on_task=save,
            progress=lambda finished, total: context.progress(finished, total, "harvesting (tasks)"),
        )  # fmt: skip
        if len(harvest.rows) < options.min_rows:
            raise InvalidArgument(
                f"the base model's continuations left only {len(harvest.rows)} demonstrations after the filters",
                received={task: dict(counts) for task, counts in harvest.dropped.items()},
                fix='raise rounds or max_new_tokens, raise keep_fraction, or set judge = ""',
            )
        data = "".join(
            json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in harvest.rows
        )
        atomic_write_text(context.folder / "data.jsonl", data)
        atomic_write_text(
            context.folder / "harvest.jsonl", "".join(json.dumps(r) + "\n" for r in harvest.rows)
        )
        kept = Counter(r["task"] for r in harvest.rows)
        metrics: dict[str, Any] = {"kept": len(harvest.rows), "drawn": harvest.drawn}
        metrics["kept_by_task"] = dict(kept)
        metrics["dropped"] = {task: dict(counts) for task, counts in harvest.dropped.items()}
        return StepResult(metrics, {"data": "data.jsonl", "rows": "harvest.jsonl"})

    def report(self, record: StepRecord) -> list[Section]:
        dropped = record.metrics.get("dropped", {})
        kept = record.metrics.get("kept_by_task", {})
        rows = [
            [task, kept.get(task, 0), *[counts.get(r, 0) for r in INSTRUCTION_REASONS]]
            for task, counts in dropped.items()
        ]
        table = table_html(["task", "kept", *INSTRUCTION_REASONS], rows)
        lines = record.output("rows").read_text(encoding="utf-8").splitlines()
        shown = [json.loads(line) for line in lines[:: max(1, len(lines) // 12)]][:12]
        examples = examples_html(
            [r["prompt"] for r in shown], {"harvested response": [r["completion"] for r in shown]}
        )
        text = f"{record.metrics.get('kept')} demonstrations kept of {record.metrics.get('drawn')} continuations; drops per filter:"
        return [Section(f"{record.name} (harvest)", text, table + examples)]
