"""A recipe run's report.html: the steps side by side, then each step's own section (its kind draws it)."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path

import torch

from steering.eval.report import Section, table_html, write_report
from steering.recipes.pipeline.contract import StepKind, StepRecord
from steering.recipes.pipeline.spec import Recipe


def headline(record: StepRecord) -> str:
    """A step's few scalar metrics in one line (the overview's last column)."""
    scalars = [
        (k, v) for k, v in record.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in scalars[:6])


def write_pipeline_report(
    recipe: Recipe, folder: Path, records: Mapping[str, StepRecord], kinds: Mapping[str, type[StepKind]]
) -> Path:
    """Write FOLDER/report.html from the finished steps; unfinished ones are listed as pending."""
    overview = [
        [spec.name, spec.kind, f"{records[spec.name].seconds:.0f}" if spec.name in records else "–",
         headline(records[spec.name]) if spec.name in records else "not run yet"]
        for spec in recipe.steps
    ]  # fmt: skip
    total = sum(record.seconds for record in records.values())
    sections = [
        Section(
            "steps",
            f"{recipe.description} — {len(records)} of {len(recipe.steps)} steps finished, "
            f"{total / 60:.1f} min of compute (cached steps count the time they took when they ran).",
            table_html(["step", "kind", "seconds", "headline"], overview),
        )
    ]
    for spec in recipe.steps:
        if spec.name in records:
            sections.extend(kinds[spec.kind]().report(records[spec.name]))
    pending = [spec.name for spec in recipe.steps if spec.name not in records]
    meta = (
        f"recipe {recipe.path} · model {recipe.model} · seed {recipe.seed} · {platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    return write_report(folder / "report.html", title=f"recipe: {recipe.name}", meta=meta, sections=sections,
                        pending=pending)  # fmt: skip
