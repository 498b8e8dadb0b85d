"""Reports open in headless Chromium (Debian's `chromium`, driven by Playwright): every chart is drawn with a
size, legends and points lie inside their chart, the page loads nothing from outside, and no errors appear.

Playwright's own browser download does not work here, so the test uses the system's browser. Without it the
test FAILS (a skipped browser test would read as a pass): install it with `sudo apt-get install -y chromium`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser

from steering.eval.report import (
    Point,
    Section,
    bar_chart_svg,
    curve_svg,
    examples_html,
    line_chart_svg,
    table_html,
    write_report,
    xy_chart_svg,
)

# For each chart: its size, and how far its legend and marked points stick out of it (0 when inside).
MEASURE = """svgs => svgs.map(svg => {
  const box = svg.getBoundingClientRect();
  const parts = [...svg.querySelectorAll('g[id$="-legend_1"], g[id*="-tip"]')];
  const out = parts.map(part => {
    const r = part.getBoundingClientRect();
    return Math.max(box.left - r.left, r.right - box.right, box.top - r.top, r.bottom - box.bottom);
  });
  return {width: box.width, height: box.height, parts: parts.length, out: Math.max(0, ...out)};
})"""


def _open(browser: Browser, path: Path) -> dict[str, Any]:
    """Load `path` and return what the page shows: charts measured, errors, outside requests, texts."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: outside.append(request.url) if request.url != path.as_uri() else None)
    page.goto(path.as_uri(), wait_until="load")
    shown = {
        "charts": page.eval_on_selector_all("svg", MEASURE),
        "errors": errors,
        "outside": outside,
        "pending": page.locator("#pending").all_inner_texts(),
        "placeholders": page.locator(".placeholder").count(),
    }
    page.close()
    return shown


def _assert_drawn(shown: dict[str, Any], *, charts: int) -> None:
    assert len(shown["charts"]) == charts, shown["charts"]
    for chart in shown["charts"]:
        assert chart["width"] > 0 and chart["height"] > 0, chart
        assert chart["parts"] > 0 and chart["out"] <= 1.0, chart  # legend and points inside the picture
    assert shown["errors"] == [] and shown["outside"] == []


def test_a_report_with_every_kind_of_chart_renders(browser, tmp_path):
    frontier = {
        "base model": [Point(0.0, 0.32, y_se=0.04)],
        "bag of words": [Point(0.86, 0.39, "+2", 0.17, 0.04), Point(9.9, 0.78, "+4", 0.8, 0.03)],
        "RL (β)": [Point(0.73, 0.35, "β=0.5"), Point(3.3, 0.64, "β=0.1"), Point(10.8, 0.92, "β=0.02")],
    }
    steps = [float(s) for s in range(1, 41)]
    sections = [
        Section(
            "Prompting",
            "bars and a table",
            table_html(["technique", "accuracy", "KL"], [["raw", 0.1, None], ["Q:/A:", 0.5, 1.25]])
            + bar_chart_svg(
                ["raw", "Q:/A: + stop", "SFT adapter (own demos)"],
                {"accuracy": [0.1, 0.5, 0.4], "stop rate": [0.0, 0.9, 0.8]},
                title="What the prompting techniques change",
            ),
        ),
        Section(
            "Prompt as reward",
            "lines with a gap and error bars",
            line_chart_svg(
                ["0", "1", "2", "∞"],
                {"exact": [0.03, 0.13, 0.39, 1.0], "trained": [0.03, 0.12, 0.38, None]},
                title="target_λ(condition) as λ grows",
                y_label="fraction satisfying",
                errors={"trained": [0.01, 0.02, 0.03, None]},
            ),
        ),
        Section(
            "Training",
            "curves",
            curve_svg(
                steps,
                {
                    "loss": [2.5 * 0.95**s for s in steps],
                    "eval_loss": [2.6 * 0.95**s if s % 10 == 0 else None for s in steps],
                },
                title="loss",
            ),
        ),
        Section(
            "Frontier",
            "reward against KL",
            xy_chart_svg(frontier, title="reward against KL", x_label="KL", y_label="reward", log_x=True),
        ),
        Section(
            "Examples", "side by side", examples_html(["Why?"], {"raw": ["because\n\nQ: and"], "QA": ["so"]})
        ),
    ]
    path = write_report(
        tmp_path / "report.html",
        title="every chart",
        meta="test",
        sections=sections,
        pending=["Conditioning"],
    )
    shown = _open(browser, path)
    _assert_drawn(shown, charts=4)
    assert (
        shown["pending"]
        and "Still running: Conditioning" in shown["pending"][0]
        and shown["placeholders"] == 1
    )


def test_the_page_of_a_tiny_training_run_renders(browser, tmp_path):
    data = tmp_path / "demos.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q: {i}?\nA:", "completion": " yes"}) + "\n" for i in range(8))
    )
    run = tmp_path / "run"
    trained = subprocess.run(
        [sys.executable, "-m", "steering", "train", "sft", f"data={data}", "model=tiny-random", f"out={run}",
         "lora_rank=4", "batch_size=4", "eval_fraction=0.0", "epochs=1"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    reported = subprocess.run(
        [sys.executable, "-m", "steering", "report", str(run)], capture_output=True, text=True, timeout=600
    )
    assert reported.returncode == 0, reported.stderr
    shown = _open(browser, run / "report.html")
    _assert_drawn(shown, charts=3)  # an SFT run logs loss, learning rate and tokens per second
    assert shown["pending"] == [] and shown["placeholders"] == 0


def test_the_page_of_a_recipe_run_renders(browser, tmp_path):
    from steering.recipes.pipeline import run

    data = tmp_path / "demos.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Q: {i}?\nA:", "completion": " yes"}) + "\n" for i in range(8))
    )
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'name = "tiny"\nmodel = "tiny-random"\n'
        f'[[steps]]\nname = "sft"\nkind = "sft"\ndata = "{data}"\nlora_rank = 4\nbatch_size = 4\n'
        "eval_fraction = 0.0\nepochs = 2\n"
        '[[steps]]\nname = "probe"\nkind = "probe"\nadapters = ["@sft"]\nper_category = 1\nsamples = 2\n'
        "max_new_tokens = 4\n"
    )
    result = run(recipe, out=tmp_path / "run")
    assert result.report is not None
    shown = _open(browser, result.report)
    _assert_drawn(shown, charts=1)  # the SFT step's loss curve
    assert shown["pending"] == [] and shown["placeholders"] == 0
    text = result.report.read_text()
    assert "probe: sft on the instruct battery" in text and "mean shift (nats)" in text
