"""Small inline-SVG line charts for the archive index.

The index must open from disk, offline, with nothing but the file itself, and
it is rebuilt after every run: matplotlib would cost a second of import and
write PNGs beside it. A chart here is a few hundred bytes of SVG text: axes
from zero to a round maximum, one polyline per series, a legend, and a
tooltip per point while there are few enough points to hover.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

WIDTH = 560
HEIGHT = 210
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 30, 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
MAX_MARKED_POINTS = 120  # above this, points get no circle/tooltip: the page stays small and the line readable


@dataclass
class Series:
    """One line: (day, value) points, oldest first."""

    name: str
    points: list[tuple[date, float]] = field(default_factory=list)


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above value, so gridlines fall on round numbers."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10 ** exponent
        if candidate >= value * (1 - 1e-9):
            return float(candidate)
    return float(10 ** (exponent + 1))


BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
TIME_UNITS = (("s", 1), ("min", 60), ("h", 3600))


def scale_for(value: float, unit: str) -> tuple[str, float]:
    """(unit name, divisor) that shows value in a readable range: bytes by 1024s, seconds as s/min/h."""
    value = abs(float(value))
    if unit == "bytes":
        for power, name in enumerate(BYTE_UNITS):
            if value < 1024 ** (power + 1) or name == BYTE_UNITS[-1]:
                return name, float(1024 ** power)
    if unit == "s":
        name, divisor = TIME_UNITS[0]
        for candidate, size in TIME_UNITS:
            if value >= 2 * size:
                name, divisor = candidate, size
        return name, float(divisor)
    return "", 1.0


def format_value(value: float, unit: str, scale: tuple[str, float] | None = None) -> str:
    """A value as a reviewer reads it: bytes in KiB/MiB/GiB, seconds in s/min/h, counts with separators.

    `scale` fixes the unit (an axis labels every tick in its top's unit).
    """
    name, divisor = scale or scale_for(value, unit)
    shown = float(value) / divisor
    text = f"{shown:,.0f}" if shown.is_integer() or abs(shown) >= 100 else f"{shown:,.1f}"
    return f"{text} {name}" if name else text


def line_chart(title: str, series: Sequence[Series], unit: str = "count", chart_id: str = "") -> str:
    """An <svg> element: the series against calendar days, y from zero; empty string when there is no point."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return ""
    days = [d for s in drawn for d, _ in s.points]
    first, last = min(days), max(days)
    span = max((last - first).days, 1)
    scale = scale_for(max(v for s in drawn for _, v in s.points), unit)
    top = nice_max(max(v for s in drawn for _, v in s.points) / scale[1]) * scale[1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: date) -> float:
        offset = (day - first).days if last != first else span / 2
        return LEFT + plot_w * offset / span

    def y(value: float) -> float:
        return TOP + plot_h * (1 - max(value, 0.0) / top)

    esc = html.escape
    legend, rows = _legend_layout([s.name for s in drawn])
    height = HEIGHT + 14 * (rows - 1)
    ident = f" id='{esc(chart_id)}'" if chart_id else ""
    out = [
        f"<svg{ident} class='chart' xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' role='img' aria-label='{esc(title)}'>",
        f"<title>{esc(title)}</title>",
        f"<text x='{LEFT}' y='16' class='ct'>{esc(title)}</text>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        gy = y(top * fraction)
        out.append(f"<line x1='{LEFT}' y1='{gy:.1f}' x2='{WIDTH - RIGHT}' y2='{gy:.1f}' class='grid'/>")
        out.append(f"<text x='{LEFT - 4}' y='{gy + 4:.1f}' text-anchor='end' class='ax'>"
                   f"{esc(format_value(top * fraction, unit, scale))}</text>")
    labels = [first] if first == last else [first, last]
    for day in labels:
        anchor = "start" if day == first and first != last else ("end" if first != last else "middle")
        out.append(f"<text x='{x(day):.1f}' y='{HEIGHT - BOTTOM + 14}' text-anchor='{anchor}' class='ax'>"
                   f"{day.isoformat()}</text>")
    marked = sum(len(s.points) for s in drawn) <= MAX_MARKED_POINTS
    for index, s in enumerate(drawn):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in s.points)
        if len(s.points) > 1:
            out.append(f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='1.5'/>")
        if marked or len(s.points) == 1:
            for d, v in s.points:
                out.append(f"<circle cx='{x(d):.1f}' cy='{y(v):.1f}' r='2.5' fill='{colour}'>"
                           f"<title>{esc(s.name)} {d.isoformat()}: {esc(format_value(v, unit))}</title></circle>")
    for index, (s, (lx, ly)) in enumerate(zip(drawn, legend, strict=True)):
        colour = PALETTE[index % len(PALETTE)]
        out.append(f"<rect x='{lx}' y='{ly - 8}' width='9' height='9' fill='{colour}'/>"
                   f"<text x='{lx + 12}' y='{ly}' class='ax'>{esc(s.name)}</text>")
    out.append("</svg>")
    return "".join(out)


def _legend_layout(names: list[str]) -> tuple[list[tuple[int, int]], int]:
    """(x, baseline y) of each legend entry, wrapping to new rows; and the number of rows."""
    spots = []
    lx, row = LEFT, 0
    for name in names:
        width = 24 + 6 * len(name)
        if lx > LEFT and lx + width > WIDTH:
            lx, row = LEFT, row + 1
        spots.append((lx, HEIGHT - 6 + 14 * row))
        lx += width
    return spots, row + 1
