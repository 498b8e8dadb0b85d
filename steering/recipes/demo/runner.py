"""`steer demo`: run the sections in order, writing `report.html` after each one.

The page is readable from the end of the first section on: every write shows the sections done so far
and names the ones still running (`write_report(pending=...)`), so a reader opens it while the rest
trains. `on_section` hears when each section starts and ends (index, name, elapsed time, the report).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from steering.eval import builtin_questions
from steering.eval.report import Section, write_report
from steering.models import LanguageModel
from steering.recipes.demo.conditionals import ConditionalsSection
from steering.recipes.demo.feedback import FeedbackSection
from steering.recipes.demo.pools_and_tweaks import ControlsOutcome, PoolsAndTweaksSection, SentimentRow
from steering.recipes.demo.prompting import PromptingSection
from steering.recipes.demo.recipe_links import recipes_section
from steering.recipes.demo.section import (
    DemoContext,
    DemoScale,
    DemoSection,
    Progress,
    SectionOutcome,
    TechniqueResult,
)
from steering.recipes.demo.tuning import TuningSection

DEMO_MARK = ".steering-demo"  # in a folder `steer demo` wrote: a later run may replace its section folders
# The demo, in the order it runs and the report shows it.
SECTIONS: tuple[DemoSection, ...] = (
    PromptingSection(),
    TuningSection(),
    PoolsAndTweaksSection(),
    ConditionalsSection(),
    FeedbackSection(),
)


@dataclass(frozen=True)
class SectionEvent:
    """A section started (`seconds` and `outcome` None) or finished (its own run time and outcome)."""

    index: int  # 1-based
    total: int
    name: str
    elapsed: float  # since the demo started
    report: Path
    seconds: float | None = None
    outcome: SectionOutcome | None = None


@dataclass(frozen=True)
class DemoResult:
    prompting: list[TechniqueResult]
    label_rows: list[list[object]]
    sentiment: list[SentimentRow]
    report: Path


def run_demo(
    model: LanguageModel,
    *,
    out_dir: Path,
    max_new_tokens: int = 48,
    limit: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    on_section: Callable[[SectionEvent], None] | None = None,
    sections: Sequence[DemoSection] = SECTIONS,
) -> DemoResult:
    """Run every section on the built-in questions, writing `out_dir/report.html` after each.

    The conditioning section trains its tiny-model policies in two spawned processes: in a script, call
    this under `if __name__ == "__main__":` (`steer demo` does).
    """
    questions = builtin_questions()[:limit] if limit else builtin_questions()
    mark = out_dir / DEMO_MARK
    context = DemoContext(
        model, out_dir, questions, limit=limit, max_new_tokens=max_new_tokens, seed=seed, progress=progress,
        owns_out=mark.is_file(),
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    mark.write_text("steer demo writes this folder; a later run replaces its section folders\n")
    report = out_dir / "report.html"
    started = time.time()
    outcomes: list[SectionOutcome] = []
    for index, section in enumerate(sections):
        event = SectionEvent(index + 1, len(sections), section.name, time.time() - started, report)
        if on_section is not None:
            on_section(event)
        began = time.time()
        outcomes.append(section.run(context))
        if not any(later.trains_base for later in sections[index + 1 :]):
            context.float32_copy = None  # no later section trains the model: free the copy
        pending = [later.name for later in sections[index + 1 :]]
        write_demo_report(context, outcomes, report, elapsed=time.time() - started, pending=pending)
        if on_section is not None:
            done = time.time()
            on_section(
                SectionEvent(
                    index + 1, len(sections), section.name, done - started, report, done - began, outcomes[-1]
                )
            )
    controls = next((o for o in outcomes if isinstance(o, ControlsOutcome)), None)
    return DemoResult(
        context.techniques,
        controls.label_rows if controls else [],
        controls.sentiment if controls else [],
        report,
    )


def demo_work_units(
    count: int, max_new_tokens: int, limit: int | None = None, sections: Sequence[DemoSection] = SECTIONS
) -> int:
    """Token slots the demo's progress bar counts, summed over the sections."""
    scale = DemoScale(count, max_new_tokens, limit)
    return sum(section.work_units(scale) for section in sections)


def write_demo_report(
    context: DemoContext,
    outcomes: Sequence[SectionOutcome],
    path: Path,
    *,
    elapsed: float,
    pending: Sequence[str] = (),
) -> Path:
    model = context.model
    meta = (
        f"model {model.name} ({model.dtype}), {len(context.questions)} built-in questions, "
        f"{platform.machine()} {platform.processor() or ''} with {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {elapsed:.0f} s" + (" so far" if pending else "")
    )
    sections: list[Section] = [part for outcome in outcomes for part in outcome.sections()]
    if not pending:
        sections.append(recipes_section(path))
    return write_report(path, title="steering demo", meta=meta, sections=sections, pending=pending)
