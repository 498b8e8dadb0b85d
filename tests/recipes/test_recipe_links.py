"""The demo's recipes section links the reports that exist and says which recipes have not run."""

from __future__ import annotations

from pathlib import Path

from steering.recipes.demo.recipe_links import RECIPES, recipes_section


def test_links_point_from_the_demo_page_to_the_recipe_reports(tmp_path: Path) -> None:
    (tmp_path / "runs/dual").mkdir(parents=True)
    (tmp_path / "runs/dual/report.html").write_text("<p>dual</p>")
    section = recipes_section(tmp_path / "report/report.html", runs=tmp_path / "runs")
    assert '<a href="../runs/dual/report.html">' in section.body
    assert section.body.count("not run yet") == len(RECIPES) - 1
    for file, _ in RECIPES:
        assert (Path(__file__).resolve().parents[2] / file).is_file(), file  # every linked recipe ships
