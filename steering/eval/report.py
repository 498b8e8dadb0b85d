"""A self-contained HTML report: a metrics table, bar plots as inline SVG, and examples side by side."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from steering.paths import atomic_write_text

_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


@dataclass(frozen=True)
class Section:
    """One block of the report: a heading, a paragraph, then HTML (a table, a plot, examples)."""

    title: str
    text: str
    body: str


def table_html(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.3f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart_svg(groups: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str) -> str:
    """Grouped bars: one group per technique, one bar per metric (values in [0, 1])."""
    width, height, left, bottom, top = 720, 280, 40, 60, 30
    plot_w, plot_h = width - left - 10, height - bottom - top
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" font-size="10">{tick:.2f}</text>')
    for g, group in enumerate(groups):
        x0 = left + g * group_w + group_w * 0.1
        for s, (name, values) in enumerate(series.items()):
            value = max(0.0, min(1.0, float(values[g])))
            bar_h = plot_h * value
            x = x0 + s * bar_w
            colour = _COLOURS[s % len(_COLOURS)]
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w * 0.95:.1f}" '
                f'height="{bar_h:.1f}" fill="{colour}"><title>{html.escape(name)}: {value:.3f}</title></rect>'
            )
        parts.append(
            f'<text x="{x0 + group_w * 0.4:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'font-size="11">{html.escape(group)}</text>'
        )
    for s, name in enumerate(series):
        x = left + s * 150
        colour = _COLOURS[s % len(_COLOURS)]
        parts.append(f'<rect x="{x}" y="{height - 22}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{height - 12}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart_svg(
    x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str, y_label: str
) -> str:
    """Lines over evenly spaced x positions (labelled), values in [0, 1]; None leaves a gap."""
    legend_rows = (len(series) + 1) // 2  # two legend entries per row under the plot
    width, height, left, bottom, top = 720, 284 + 16 * legend_rows, 56, 54 + 16 * legend_rows, 30
    plot_w, plot_h = width - left - 20, height - bottom - top
    step = plot_w / max(len(x_labels) - 1, 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<text x="14" y="{top + plot_h / 2}" font-size="11" transform="rotate(-90 14 {top + plot_h / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" font-size="10">{tick:.2f}</text>')
    for i, label in enumerate(x_labels):
        parts.append(
            f'<text x="{left + i * step:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'font-size="11">{html.escape(label)}</text>'
        )
    for s, (name, values) in enumerate(series.items()):
        colour = _COLOURS[s % len(_COLOURS)]
        points = [
            (left + i * step, top + plot_h * (1 - max(0.0, min(1.0, float(v)))), float(v))
            for i, v in enumerate(values)
            if v is not None
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, v in points:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{html.escape(name)}: {v:.3f}</title></circle>"
            )
        x, y = left + (s % 2) * 330, height - 16 * legend_rows - 6 + 16 * (s // 2)
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{x + 16}" y="{y + 10}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def curve_svg(x: Sequence[float], series: Mapping[str, Sequence[float | None]], *, title: str) -> str:
    """Training curves: lines over numeric x (steps), y scaled to the data's range; None = no point."""
    width, height, left, bottom, top, right = 720, 280, 64, 56, 30, 20
    plot_w, plot_h = width - left - right, height - bottom - top
    values = [float(v) for vs in series.values() for v in vs if v is not None]
    if not x or not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1.0, high + 1.0
    x_low, x_high = min(x), max(x)
    x_span = (x_high - x_low) or 1.0

    def point(xv: float, yv: float) -> tuple[float, float]:
        return left + plot_w * (xv - x_low) / x_span, top + plot_h * (1 - (yv - low) / (high - low))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
    ]
    for k in range(5):
        yv = low + (high - low) * k / 4
        _, y = point(x_low, yv)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>')
    for k in range(5):
        xv = x_low + x_span * k / 4
        xx, _ = point(xv, low)
        parts.append(
            f'<text x="{xx:.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="10">{xv:.0f}</text>'
        )
    for s, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[s % len(_COLOURS)]
        points = [point(float(xv), float(yv)) for xv, yv in zip(x, ys, strict=True) if yv is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for px, py in points if len(points) <= 1 else points[-1:]:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        parts.append(f'<rect x="{left + s * 180}" y="{height - 22}" width="12" height="12" fill="{colour}"/>')
        parts.append(
            f'<text x="{left + s * 180 + 16}" y="{height - 12}" font-size="11">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def xy_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    log_x: bool = False,
) -> str:
    """Points (x, y) per series, joined in order of x; `log_x` spaces x by log10 (x ≤ 0 pinned left)."""
    width, height, left, bottom, top, right = 720, 320, 64, 78, 30, 20
    plot_w, plot_h = width - left - right, height - bottom - top
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    floor = min((x for x, _ in points if x > 0), default=1.0) / 2

    def fx(x: float) -> float:
        return math.log10(max(x, floor)) if log_x else x

    xs, ys = [fx(x) for x, _ in points], [y for _, y in points]
    x_low, x_high, y_low, y_high = min(xs), max(xs), min(ys), max(ys)
    x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * (fx(x) - x_low) / x_span, top + plot_h * (1 - (y - y_low) / y_span)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{html.escape(title)}</text>',
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" text-anchor="middle" font-size="11">'
        f"{html.escape(x_label)}{' (log scale)' if log_x else ''}</text>",
        f'<text x="14" y="{top + plot_h / 2}" font-size="11" transform="rotate(-90 14 {top + plot_h / 2})" '
        f'text-anchor="middle">{html.escape(y_label)}</text>',
    ]
    for k in range(5):
        yv = y_low + y_span * k / 4
        y = top + plot_h * (1 - k / 4)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>')
        xv = x_low + x_span * k / 4
        label = 10**xv if log_x else xv
        parts.append(
            f'<text x="{left + plot_w * k / 4:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'font-size="10">{label:.3g}</text>'
        )
    for s, (name, values) in enumerate(series.items()):
        colour = _COLOURS[s % len(_COLOURS)]
        placed = [(*at(x, y), x, y) for x, y in sorted(values)]
        if len(placed) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in placed)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for px, py, x, y in placed:
            parts.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}">'
                f"<title>{html.escape(name)}: ({x:.3g}, {y:.3g})</title></circle>"
            )
        column, row = s % 4, s // 4
        parts.append(
            f'<rect x="{left + column * 165}" y="{height - 30 + row * 16}" width="10" height="10" fill="{colour}"/>'
        )
        parts.append(
            f'<text x="{left + column * 165 + 14}" y="{height - 21 + row * 16}" font-size="11">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def examples_html(prompts: Sequence[str], columns: Mapping[str, Sequence[str]]) -> str:
    """One row per prompt, one column per technique, texts shown verbatim (whitespace kept)."""
    head = "<th>prompt</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for i, prompt in enumerate(prompts):
        cells = "".join(f"<td><pre>{html.escape(texts[i])}</pre></td>" for texts in columns.values())
        rows.append(f"<tr><td>{html.escape(prompt)}</td>{cells}</tr>")
    return f'<table class="examples"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f3f3f3}pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:320px}
.meta{color:#666;font-size:13px}
"""


def write_report(path: Path, *, title: str, meta: str, sections: Sequence[Section]) -> Path:
    """Write the report atomically; it has no external resources (opens offline)."""
    body = "".join(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p>{s.body}" for s in sections)
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p class='meta'>{html.escape(meta)}</p>{body}</body></html>"
    )
    atomic_write_text(path, document)
    return path
