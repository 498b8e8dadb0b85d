"""`steer demo`: the base model, then each technique side by side, as one HTML report.

One module per section (`prompting`, `tuning`, `pools_and_tweaks`, `conditionals`), each an object
that satisfies `section.DemoSection`; `runner.SECTIONS` lists them in order and `run_demo` runs them,
rewriting `report.html` after each so the first results can be read while the rest runs.
"""

from steering.recipes.demo.prompting import SHORT_COLUMNS, PromptingOutcome
from steering.recipes.demo.runner import SECTIONS, DemoResult, SectionEvent, demo_work_units, run_demo
from steering.recipes.demo.section import DemoContext, DemoScale, DemoSection, SectionOutcome, TechniqueResult

__all__ = [
    "SECTIONS",
    "SHORT_COLUMNS",
    "DemoContext",
    "DemoResult",
    "DemoScale",
    "DemoSection",
    "PromptingOutcome",
    "SectionEvent",
    "SectionOutcome",
    "TechniqueResult",
    "demo_work_units",
    "run_demo",
]
