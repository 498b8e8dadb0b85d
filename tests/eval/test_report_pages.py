"""The report's charts (matplotlib → inline SVG) and page (Jinja2 template): deterministic, escaped, offline."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.resources import files

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


def _bars() -> str:
    return bar_chart_svg(
        ["raw", "Q:/A: + stop"], {"accuracy": [0.25, 0.75], "stop rate": [0.0, 1.0]}, title="bars"
    )


def test_the_same_data_gives_the_same_bytes_and_no_date():
    assert _bars() == _bars()
    assert "<dc:date>" not in _bars() and "<metadata>" not in _bars() and "<?xml" not in _bars()


def test_every_value_is_shown_on_hover_and_names_are_in_the_picture():
    svg = _bars()
    assert svg.startswith("<svg") and 'aria-label="bars"' in svg
    assert (
        "<title>accuracy · raw: 0.250</title>" in svg
        and "<title>stop rate · Q:/A: + stop: 1.000</title>" in svg
    )
    assert all(f"<!-- {name} -->" in svg for name in ("accuracy", "stop rate", "raw", "Q:/A: + stop", "bars"))


def test_two_charts_on_one_page_share_no_id():
    first, second = _bars(), line_chart_svg(["a", "b"], {"s": [0.5, 0.25]}, title="lines", y_label="y")
    ids = [re.findall(r'\sid="([^"]+)"', svg) for svg in (first, second)]
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])
    for svg, own in zip((first, second), ids, strict=True):  # every reference points inside its own chart
        assert set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg)) <= set(own)
    assert "http://" not in (first + second).replace("http://www.w3.org/2000/svg", "")


def test_points_carry_labels_and_error_bars():
    plain = xy_chart_svg({"a": [(0.0, 0.5), (2.0, 0.7)]}, title="t", x_label="KL", y_label="r", log_x=True)
    rich = xy_chart_svg(
        {"a": [Point(0.0, 0.5, label="base"), Point(2.0, 0.7, label="β=0.1", x_se=0.3, y_se=0.05)]},
        title="t",
        x_label="KL",
        y_label="r",
        log_x=True,
    )
    assert (
        "<!-- base -->" in rich and "<!-- β=0.1 -->" in rich and "<title>a [β=0.1]: (2, 0.7)</title>" in rich
    )
    assert rich.count("<path") > plain.count("<path")  # the error bars
    assert "(log scale)" in plain
    dollars = xy_chart_svg({"a_b": [(1.0, 2.0)]}, title="costs $5, not $x^2$", x_label="x", y_label="y")
    assert "<!-- costs $5, not $x^2$ -->" in dollars  # labels as written, never parsed as TeX
    errors = line_chart_svg(["1", "2"], {"s": [0.5, 0.6]}, title="t", y_label="y", errors={"s": [0.1, None]})
    assert errors.count("<path") > line_chart_svg(
        ["1", "2"], {"s": [0.5, 0.6]}, title="t", y_label="y"
    ).count("<path")


def test_charts_without_data_are_empty():
    assert curve_svg([], {"loss": []}, title="t") == ""
    assert curve_svg([1.0, 2.0], {"loss": [None, None]}, title="t") == ""
    assert xy_chart_svg({"a": []}, title="t", x_label="x", y_label="y") == ""
    sparse = curve_svg([1.0, 2.0, 3.0], {"loss": [1.0, 0.5, 0.25], "eval_loss": [None, 0.7, None]}, title="t")
    assert (
        "<title>loss at step 3: 0.25</title>" in sparse
        and "<title>eval_loss at step 2: 0.7</title>" in sparse
    )


def test_tables_format_and_escape_cells():
    table = table_html(["a<b", "n"], [["<script>", 1.23456], [None, 3]])
    assert "<th>a&lt;b</th>" in table and "&lt;script&gt;" in table and "<script>" not in table
    assert (
        '<td class="number">1.235</td>' in table
        and "<td>–</td>" in table
        and '<td class="number">3</td>' in table
    )
    assert '<td class="number">4e-05</td>' in table_html(["lr"], [[4e-05]])  # not 0.000
    examples = examples_html(["Why?"], {"raw": ["line one\n\n  <b>two</b>"]})
    assert "<pre>line one\n\n  &lt;b&gt;two&lt;/b&gt;</pre>" in examples and "<th>raw</th>" in examples


def test_page_escapes_texts_keeps_bodies_and_lists_pending_sections(tmp_path):
    sections = [Section("A & B", "x < y", table_html(["c"], [[1]]) + _bars())]
    path = write_report(
        tmp_path / "report.html", title="<demo>", meta="m", sections=sections, pending=["Conditioning", "RL"]
    )
    page = path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # written atomically, nothing left over
    assert (
        "<title>&lt;demo&gt;</title>" in page and "<h2>A &amp; B</h2>" in page and "<p>x &lt; y</p>" in page
    )
    assert "<table>" in page and page.count("<svg") == 1
    assert "Still running: Conditioning, RL." in page and page.count('class="placeholder"') == 2
    assert 'http-equiv="refresh"' in page
    done = write_report(tmp_path / "report.html", title="t", meta="m", sections=sections).read_text()
    assert (
        "Still running" not in done
        and "refresh" not in done
        and "placeholder" not in done.split("</style>")[1]
    )


def test_the_template_is_package_data_and_pyplot_is_never_imported():
    assert (files("steering.eval") / "templates" / "report.html.j2").is_file()
    code = (
        "import sys; from steering.eval.report import bar_chart_svg; bar_chart_svg(['a'], {'s': [0.5]}, title='t'); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
