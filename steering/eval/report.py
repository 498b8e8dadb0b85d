"""A self-contained HTML report: sections of tables, charts (inline SVG) and examples side by side.

The page is rendered from the packaged Jinja2 template `templates/report.html.j2` with autoescaping on:
titles and texts are escaped; a section's `body` is HTML that the caller built from the helpers here
(`table_html`, `examples_html`, the charts of `steering.eval.plots`, re-exported below) and is inserted as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from steering.errors import InvalidArgument
from steering.eval.plots import Point, bar_chart_svg, curve_svg, line_chart_svg, xy_chart_svg
from steering.paths import atomic_write_text, writing

__all__ = [
    "Point",
    "Section",
    "bar_chart_svg",
    "curve_svg",
    "examples_html",
    "line_chart_svg",
    "table_html",
    "write_report",
    "xy_chart_svg",
]

REFRESH_SECONDS = 30  # a page with sections still running reloads itself this often


@dataclass(frozen=True)
class Section:
    """One block of the report: a heading, a paragraph, then HTML (a table, a plot, examples)."""

    title: str
    text: str
    body: str


@dataclass(frozen=True)
class Cell:
    """A table cell as shown: its text, and whether it is a number (aligned right)."""

    text: str
    number: bool


@cache
def environment() -> Environment:
    """The Jinja2 environment over the packaged templates (autoescape on, undefined names are errors)."""
    return Environment(
        loader=PackageLoader("steering.eval", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def cell(value: object) -> Cell:
    """None as "–", floats with three decimals (two significant digits below 0.001, so a learning rate of
    4e-05 does not read 0.000), anything else as `str` (escaped by the template)."""
    if value is None:
        return Cell("–", number=False)
    if isinstance(value, float):
        tiny = value != 0 and abs(value) < 1e-3
        return Cell(f"{value:.2g}" if tiny else f"{value:.3f}", number=True)
    return Cell(str(value), number=isinstance(value, int) and not isinstance(value, bool))


def table_html(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A table: one header row of `columns`, then `rows` (cells formatted by `cell`)."""
    shown = [[cell(value) for value in row] for row in rows]
    return environment().get_template("table.html.j2").render(columns=columns, rows=shown)


def examples_html(prompts: Sequence[str], columns: Mapping[str, Sequence[str]]) -> str:
    """One row per prompt, one column per technique, texts shown verbatim (whitespace kept)."""
    return environment().get_template("examples.html.j2").render(prompts=prompts, columns=columns)


def render_report(*, title: str, meta: str, sections: Sequence[Section], pending: Sequence[str] = ()) -> str:
    """The page's HTML text (see `write_report`)."""
    shown = [Section(s.title, s.text, Markup(s.body)) for s in sections]  # bodies are ours: HTML as is
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=title, meta=meta, sections=shown, pending=list(pending), refresh_seconds=REFRESH_SECONDS
        )
    )


def write_report(
    path: Path, *, title: str, meta: str, sections: Sequence[Section], pending: Sequence[str] = ()
) -> Path:
    """Write the report atomically; it has no external resources (opens offline).

    Args:
        path: where to write the page (`report.html`).
        title, meta: the page's heading and the line under it (model, machine, time).
        sections: the finished sections, in order.
        pending: titles of sections still running: named in a note at the top and shown as placeholders
            after the finished ones; while any are pending the page reloads itself every 30 s.

    Raises:
        InvalidArgument: `path` is a directory or cannot be written (nothing is left behind).
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(
            f"the report's path {path} is a directory",
            received=str(path),
            fix=f"write to {path / 'report.html'}",
        )
    text = render_report(title=title, meta=meta, sections=sections, pending=pending)
    with writing(path, what="the report", fix="choose a path in a writable folder (--out)"):
        atomic_write_text(path, text)
    return path
