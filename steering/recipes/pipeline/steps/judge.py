"""The `judge` step: an AI judge labels a copy of a feedback database under a written constitution.

The database of the step it names (`db = "@sample"`) is copied into this step's folder (SQLite's
backup: a consistent copy even while `steer annotate` writes to the original) and every pair of a
prompt's answers is judged in both shown orders, for each principle; people's labels already in the
database stay and are exported with the judge's. With `checks = "instructions"` (or a JSONL of
instructions) the code checks of `steering.eval.instructions` decide every pair they tell apart — an
empty reply, a broken format, a wrong accepted answer — and the model judge the rest
(`ChecksFirstJudge`). Output `db`; metrics: how many labels the checks decided, and swap consistency and
position bias, the numbers that say how far to trust the labels, overall and per principle (with
how many of each principle's labels were decisive: which principle drove the labels).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from steering.errors import InvalidArgument
from steering.eval.instructions import InstructionReward, load_instructions, read_instructions
from steering.eval.report import Section, table_html
from steering.feedback import FeedbackStore
from steering.feedback.checked_judge import Checks, ChecksFirstJudge
from steering.feedback.constitution import load_constitution
from steering.feedback.judge_storage import judge_store
from steering.feedback.model_judge import ModelJudge
from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.packaged import packaged_file


@dataclass
class JudgeOptions:
    db: str = ""  # "@sample"
    constitution: str = "helpful"  # a packaged constitution (helpful, harmless) or a TOML file
    judge: str = "smollm2-135m-instruct"
    checks: str = ""  # "instructions" (the packaged sets), a .jsonl of instructions, or "" (the judge alone)
    batch_size: int = 8


def instruction_checks(spec: str) -> Checks:
    """The code checks of the instructions named by `spec`, keyed by their text; None for other prompts."""
    if spec == "instructions":
        known = [i for split in ("train", "eval") for i in load_instructions(split)]
    elif spec.endswith(".jsonl"):
        known = read_instructions(spec)
    else:
        raise InvalidArgument(
            f"unknown checks {spec!r}",
            received=spec,
            fix='use checks = "instructions" (the packaged instruction sets), a .jsonl of instructions, or ""',
        )
    return InstructionReward(known).checks


class Judge(StepKind):
    name = "judge"
    Options = JudgeOptions
    quick: ClassVar[dict[str, Any]] = {}

    def run(self, context: StepContext, options: Any) -> StepResult:
        checks = instruction_checks(options.checks) if options.checks else None  # bad input fails first
        source = context.ref(options.db)
        target = context.folder / "feedback.db"
        partial = context.folder / "feedback.db.partial"
        with sqlite3.connect(source) as src, sqlite3.connect(partial) as dst:
            src.backup(dst)
        partial.replace(target)
        constitution = load_constitution(packaged_file(options.constitution, "toml"))
        judge: ModelJudge | ChecksFirstJudge = ModelJudge(
            context.model(options.judge), batch_size=options.batch_size
        )
        if checks is not None:
            judge = ChecksFirstJudge(checks, judge, checks_name=Path(options.checks).stem)
        with FeedbackStore.open(target) as store:
            summary = judge_store(
                store, judge, constitution, kind="pairwise", batch_size=options.batch_size,
                seed=context.recipe.seed, progress=lambda done, total: context.progress(done, total, "judging"),
            )  # fmt: skip
        metrics: dict[str, Any] = {"judged": summary.judged, "constitution": constitution.digest}
        if isinstance(judge, ChecksFirstJudge):
            metrics["decided_by_checks"] = judge.decided_by_checks
        metrics |= {"swap_consistency": summary.mean(summary.consistent)}
        metrics |= {
            "position_bias": summary.mean(summary.p_first) - 0.5,
            "label_mass": summary.mean(summary.label_mass),
        }
        metrics["principles"] = {
            pid: {
                "labels": row["judged"],
                "swap_consistency": row["consistent"] / row["judged"],
                "position_bias": row["p_first"] / row["judged"] - 0.5,
                "decisive": row["decisive"],
            }
            for pid, row in summary.by_principle.items()
        }
        return StepResult(metrics, {"db": "feedback.db"})

    def report(self, record: StepRecord) -> list[Section]:
        sections = super().report(record)
        rows = [
            [
                pid,
                row["labels"],
                row["decisive"],
                f"{row['swap_consistency']:.2f}",
                f"{row['position_bias']:+.2f}",
            ]
            for pid, row in record.metrics.get("principles", {}).items()
        ]
        if rows:
            table = table_html(
                ["principle", "labels", "decisive (|P − ½| ≥ 0.25)", "swap consistency", "position bias"],
                rows,
            )
            sections.append(
                Section(f"{record.name}: labels per principle", "Which principle drove the labels.", table)
            )
        return sections
