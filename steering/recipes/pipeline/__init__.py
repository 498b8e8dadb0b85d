"""Recipes as files: `steer run RECIPE.toml` runs named steps in order, each cached by its key.

`spec.py` reads the TOML, `contract.py` is what a step kind writes (and what the runner derives),
`steps/` holds the kinds (`STEPS`), `runner.py` runs them in a run folder, `report.py` writes its
report.html. See docs/recipes.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from steering.recipes.pipeline.contract import StepContext, StepKind, StepRecord, StepResult
from steering.recipes.pipeline.report import write_pipeline_report
from steering.recipes.pipeline.runner import Event, RunResult, run_recipe
from steering.recipes.pipeline.spec import Recipe, StepSpec, load_recipe
from steering.recipes.pipeline.steps import STEPS


def run(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    out: str | Path | None = None,
    quick: bool = False,
    from_step: str | None = None,
    events: Callable[[Event], None] | None = None,
) -> RunResult:
    """Read the recipe at `path` and run it into `out` (default runs/NAME, runs/NAME-quick with `quick`)."""
    recipe = load_recipe(path, overrides, kinds=STEPS)
    folder = Path(out) if out else Path("runs") / (recipe.name + ("-quick" if quick else ""))
    return run_recipe(
        recipe, folder, kinds=STEPS, quick=quick, from_step=from_step, events=events,
        write_report=lambda r, f, records: write_pipeline_report(r, f, records, STEPS),
    )  # fmt: skip


__all__ = [
    "STEPS",
    "Event",
    "Recipe",
    "RunResult",
    "StepContext",
    "StepKind",
    "StepRecord",
    "StepResult",
    "StepSpec",
    "load_recipe",
    "run",
    "run_recipe",
]
