"""The demo page's last section: the whole pipelines (`steer run recipes/*.toml`) and links to their reports."""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from steering.eval.report import Section

# (recipe file, what it runs) — the run folder is runs/<stem>, as `steer run` names it.
RECIPES = (
    (
        "recipes/instruct.toml",
        "InstructGPT from the base alone: harvest → SFT → judge → reward model → RL → eval",
    ),
    ("recipes/constitution.toml", "Constitutional AI: critique → revision → SL-CAI → RLAIF → harmlessness"),
    ("recipes/dual.toml", "prompt + adapter on the user's notes + quoting slots"),
    ("recipes/prompt-as-reward.toml", "the prompt as a reward, trained with RL"),
)


def recipes_section(report: Path, runs: Path = Path("runs")) -> Section:
    """One row per recipe: its command, and a link to runs/NAME/report.html when a run has written one."""
    rows = []
    for file, what in RECIPES:
        page = runs / Path(file).stem / "report.html"
        if page.is_file():
            href = escape(os.path.relpath(page.resolve(), report.resolve().parent))
            shown = f'<a href="{href}">{escape(str(page))}</a>'
        else:
            shown = "not run yet"
        rows.append(
            f"<tr><td><code>steer run {escape(file)}</code></td><td>{escape(what)}</td><td>{shown}</td></tr>"
        )
    body = "<table><thead><tr><th>command</th><th>pipeline</th><th>report</th></tr></thead><tbody>" + "".join(
        rows
    )
    return Section(
        "Whole pipelines (recipes)",
        "Each recipe runs its steps in order into runs/NAME, caches each step, and writes its own page "
        "(docs/recipes.md). Add --quick for a toy-size run in minutes.",
        body + "</tbody></table>",
    )
