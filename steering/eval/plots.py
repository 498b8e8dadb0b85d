"""Charts for reports: matplotlib figures rendered to inline SVG, deterministic and self-contained.

Each function draws one chart on a `matplotlib.figure.Figure` made without pyplot (no GUI backend is ever
selected, no global figure list is touched) and returns the SVG text, ready to be placed in an HTML page:
text is drawn as paths (the page looks the same without the fonts), ids are hashed with a fixed salt and
prefixed per chart (two charts on one page never share an id), no date or creator is written, and every
marked point carries a `<title>` (the browser shows its value on hover).
"""

from __future__ import annotations

import hashlib
import html
import io
import math
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import matplotlib
from cycler import cycler
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
WIDTH = 7.5  # inches: 540 pt, 720 CSS pixels, the width of the page's text column

# rcParams applied only while one chart is drawn and saved (matplotlib's global settings are left alone).
STYLE: dict[RcKeyType, Any] = {
    "svg.hashsalt": "steering-report",  # ids from a fixed salt: the same data gives the same bytes
    "svg.fonttype": "path",
    "text.parse_math": False,  # labels are shown as written: "$5" is not TeX
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.prop_cycle": cycler(color=COLOURS),
    "grid.color": "#e6e6e6",
    "legend.frameon": False,
    "legend.fontsize": 9,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
}
NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


class Point(NamedTuple):
    """One point of `xy_chart_svg`: a plain `(x, y)` pair works too.

    Attributes:
        x, y: the coordinates.
        label: written next to the point (e.g. the strength of a control); "" for none.
        x_se, y_se: standard errors, drawn as ±1 error bars; None for none.
    """

    x: float
    y: float
    label: str = ""
    x_se: float | None = None
    y_se: float | None = None


class Tooltips:
    """Hover texts of one chart: each artist gets an id, and its SVG group a `<title>` after rendering."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, artist: Artist, text: str) -> None:
        gid = f"tip{len(self.texts)}"
        artist.set_gid(gid)
        self.texts[gid] = text


@contextmanager
def chart(*, height: float, title: str) -> Iterator[tuple[Figure, Axes]]:
    """A titled figure with one axes, drawn under `STYLE`; cleared when the block ends."""
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH, height), layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title)
        try:
            yield figure, axes
        finally:
            figure.clear()


def render(figure: Figure, *, title: str, tooltips: Tooltips | None = None) -> str:
    """The figure as inline SVG text (call inside `chart`, whose style must still be in force)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.08, metadata=NO_METADATA)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # no XML declaration or DOCTYPE inside HTML
    svg = svg.replace(' xmlns:xlink="http://www.w3.org/1999/xlink"', "").replace("xlink:href=", "href=")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(title)}" ', 1)
    for gid, text in (tooltips.texts if tooltips else {}).items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(text)}</title>', 1)
    prefix = "c" + hashlib.sha256(svg.encode()).hexdigest()[:8] + "-"
    svg = re.sub(r'(\sid=")', rf"\g<1>{prefix}", svg)
    return re.sub(r'(href="#|url\(#)', rf"\g<1>{prefix}", svg)


def not_none(values: Sequence[float | None]) -> list[float]:
    """None as NaN (matplotlib draws nothing there)."""
    return [math.nan if v is None else float(v) for v in values]


def legend_below(figure: Figure, axes: Axes, *, columns: int) -> None:
    """The legend under the plot, outside the data (constrained layout makes room for it)."""
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=max(1, min(columns, len(handles))))


def bar_chart_svg(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    y_label: str = "",
    errors: Mapping[str, Sequence[float | None]] | None = None,
) -> str:
    """Grouped bars: one group per technique, one bar per metric (y from 0 to at least 1).

    Args:
        groups: the x labels, one per group.
        series: metric name -> one value per group.
        title, y_label: texts of the chart.
        errors: metric name -> one standard error per group (None: no bar); drawn as ±1 error bars.
    """
    with chart(height=3.4, title=title) as (figure, axes):
        tips = Tooltips()
        width = 0.8 / max(len(series), 1)
        labelled = len(groups) * len(series) <= 24  # few bars: each shows its value
        for s, (name, values) in enumerate(series.items()):
            positions = [g - 0.4 + width * (s + 0.5) for g in range(len(groups))]
            spread = not_none(errors[name]) if errors and name in errors else None
            bars = axes.bar(positions, values, width * 0.92, label=name, yerr=spread, capsize=2.5)
            for group, bar, value in zip(groups, bars, values, strict=True):
                tips.add(bar, f"{name} · {group}: {value:.3f}")
            if labelled:
                axes.bar_label(bars, fmt="%.2f", fontsize=7, padding=1.5, color="#444")
        wrap = max(10, 60 // max(len(groups), 1))
        axes.set_xticks(range(len(groups)), [textwrap.fill(g, wrap) for g in groups])
        axes.grid(axis="x", visible=False)
        top = max([1.0, *(float(v) for vs in series.values() for v in vs)])
        axes.set_ylim(0, top * (1.08 if labelled else 1.02))
        axes.set_ylabel(y_label)
        legend_below(figure, axes, columns=4)
        return render(figure, title=title, tooltips=tips)


def line_chart_svg(
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    errors: Mapping[str, Sequence[float | None]] | None = None,
) -> str:
    """Lines over evenly spaced, labelled x positions, y in [0, 1]; None leaves that point out.

    Args:
        x_labels: the label of each x position.
        series: name -> one value (or None) per x position.
        title, y_label: texts of the chart.
        errors: name -> one standard error (or None) per x position, drawn as ±1 error bars.
    """
    with chart(height=3.6, title=title) as (figure, axes):
        tips = Tooltips()
        for s, (name, values) in enumerate(series.items()):
            colour = COLOURS[s % len(COLOURS)]
            kept = [(i, float(v)) for i, v in enumerate(values) if v is not None]
            xs, ys = [i for i, _ in kept], [v for _, v in kept]
            axes.plot(xs, ys, marker="o", color=colour, label=name)
            for i, v in kept:
                (dot,) = axes.plot([i], [v], marker="o", linestyle="", color=colour)
                tips.add(dot, f"{name} at {x_labels[i]}: {v:.3f}")
            spread = errors.get(name) if errors else None
            if spread:
                yerr = not_none([spread[i] for i in xs])
                axes.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor=colour, capsize=2.5)
        axes.set_xticks(range(len(x_labels)), x_labels)
        axes.set_ylim(-0.03, 1.03)
        axes.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        axes.set_ylabel(y_label)
        legend_below(figure, axes, columns=2)
        return render(figure, title=title, tooltips=tips)


def curve_svg(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    x_label: str = "step",
    y_label: str = "",
) -> str:
    """Training curves: lines over numeric x (steps), y scaled to the data; None = no point; "" if no data.

    Series with few points (an eval every N steps) get markers; every series' last point has a tooltip.
    """
    if not x or not any(v is not None for vs in series.values() for v in vs):
        return ""
    with chart(height=3.2, title=title) as (figure, axes):
        tips = Tooltips()
        for s, (name, values) in enumerate(series.items()):
            colour = COLOURS[s % len(COLOURS)]
            kept = [(float(xv), float(v)) for xv, v in zip(x, values, strict=True) if v is not None]
            if not kept:
                continue
            xs, ys = [p[0] for p in kept], [p[1] for p in kept]
            axes.plot(
                xs, ys, color=colour, label=name, marker="o" if len(kept) <= 30 else None, markersize=3.5
            )
            (last,) = axes.plot(xs[-1:], ys[-1:], marker="o", linestyle="", color=colour, markersize=4)
            tips.add(last, f"{name} at {x_label} {xs[-1]:g}: {ys[-1]:.4g}")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if max(x) == min(x):  # one step: whole steps around it, not 0.945 … 1.050
            axes.set_xlim(min(x) - 1, max(x) + 1)
        axes.set_xlabel(x_label)
        drawn = [name for name, values in series.items() if any(v is not None for v in values)]
        axes.set_ylabel(y_label or (drawn[0] if len(drawn) == 1 else ""))
        if len(drawn) > 1:  # one curve is named by its axis label
            legend_below(figure, axes, columns=4)
        return render(figure, title=title, tooltips=tips)


def xy_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float] | Point]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = False,
) -> str:
    """Points (x, y) per series, joined in order of x; "" if there are none.

    Args:
        series: name -> points, each `(x, y)` or a `Point` (with a label and standard errors).
        title, x_label, y_label: texts of the chart.
        log_x: x on a log scale; when some x ≤ 0 (a base model's KL of 0), the scale is linear below the
            smallest positive power of ten (matplotlib's "symlog"), so 0 is drawn where it is.
    """
    points = {
        name: sorted((Point(*p) for p in values), key=lambda p: (p.x, p.y)) for name, values in series.items()
    }
    if not any(points.values()):
        return ""
    with chart(height=4.2, title=title) as (figure, axes):
        tips = Tooltips()
        for s, (name, placed) in enumerate(points.items()):
            colour = COLOURS[s % len(COLOURS)]
            xs, ys = [p.x for p in placed], [p.y for p in placed]
            axes.plot(xs, ys, marker="o", color=colour, label=name, linewidth=1.4)
            for p in placed:
                (dot,) = axes.plot([p.x], [p.y], marker="o", linestyle="", color=colour)
                label = f" [{p.label}]" if p.label else ""
                tips.add(dot, f"{name}{label}: ({p.x:.3g}, {p.y:.3g})")
                if p.label:
                    axes.annotate(
                        p.label, (p.x, p.y), xytext=(4, 4), textcoords="offset points", fontsize=7.5
                    )
            if any(p.x_se is not None or p.y_se is not None for p in placed):
                xerr, yerr = not_none([p.x_se for p in placed]), not_none([p.y_se for p in placed])
                axes.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=colour, alpha=0.6, capsize=2)
        if log_x:
            log_scale(axes, [p.x for placed in points.values() for p in placed])
        axes.set_xlabel(x_label + (" (log scale)" if log_x else ""))
        axes.set_ylabel(y_label)
        legend_below(figure, axes, columns=3)
        return render(figure, title=title, tooltips=tips)


def log_scale(axes: Axes, xs: Sequence[float]) -> None:
    """A log x axis with plain-number ticks; symlog (linear near 0) when some x ≤ 0."""
    positive = [x for x in xs if x > 0]
    if not positive:
        return
    if min(xs) > 0:
        axes.set_xscale("log")
    else:
        axes.set_xscale("symlog", linthresh=10 ** math.floor(math.log10(min(positive))), linscale=0.5)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
