"""Charts of findings: a small spec a check attaches to its Finding, drawn from the finding's table.

A check says what to plot (`Chart(x="hour", y="errors", kind="bar", ...)`) and
the finding's `data` DataFrame holds the numbers; the picture is only made
when the finding is displayed (notebook, executed .ipynb, .html and the
code-free .report.html all show the same <img>). The spec is plain data: the
run record keeps at most the spec (`Chart.to_dict`), never image bytes.

Every chart has axis labels; threshold lines are dashed and labelled with their
value; times on the x-axis are UTC, labelled for people (`Nov 20 09:00`).
matplotlib is imported only when a chart is drawn (Agg, no pyplot, so no global
figure registry and nothing left open), so `ccops health` stays fast.
"""

from __future__ import annotations

import base64
import gc
import html
import io
import sys
from dataclasses import dataclass, field
from typing import Any

WIDTH_IN, HEIGHT_IN, DPI = 7.0, 2.5, 90  # one modest chart per finding keeps reports small
KINDS = ("bar", "line")
THRESHOLD_COLOURS = {"warning": "#f0ad4e", "critical": "#d9534f"}
DEFAULT_THRESHOLD_COLOUR = "#555555"
SERIES_COLOURS = ("#2c7fb8", "#7b3294", "#4daf4a", "#e66101")


@dataclass
class Chart:
    """What to plot of a finding's table: columns, kind, words, and the limits to draw.

    y: one column, or several drawn as separate series (lines, or grouped by colour).
    y_scale multiplies the values as drawn (100 for a fraction shown in %).
    thresholds: name -> value in drawn units, each a dashed horizontal line labelled
    "name 5"; bars above a threshold take its colour (warning orange, critical red).
    """

    x: str
    y: str | tuple[str, ...] | list[str]
    kind: str = "bar"
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    y_scale: float = 1.0
    # the frame to plot when it is not the finding's own table (a series beside a summary table)
    source: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"chart kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not self.x_label or not self.y_label:
            raise ValueError("a chart needs both axis labels")
        self.y = (self.y,) if isinstance(self.y, str) else tuple(self.y)
        self.thresholds = {str(k): float(v) for k, v in (self.thresholds or {}).items()}

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-able data (what a run record may keep): no image, no data."""
        return {"kind": self.kind, "x": self.x, "y": list(self.y), "title": self.title,
                "x_label": self.x_label, "y_label": self.y_label, "thresholds": dict(self.thresholds)}

    def describe(self) -> str:
        """One line for people and screen readers: title, axes, limits."""
        text = f"{self.title}: " if self.title else ""
        text += f"{self.y_label} by {self.x_label}"
        if self.thresholds:
            text += "; " + ", ".join(f"{name} {_number(value)}" for name, value in self.thresholds.items())
        return text

    def frame(self, data: Any) -> Any:
        """What is plotted: `source` when the chart carries its own frame, else the finding's data."""
        return self.source if self.source is not None else data

    def plottable(self, data: Any) -> bool:
        """True when the plotted frame has the columns and at least one row."""
        data = self.frame(data)
        return (data is not None and getattr(data, "shape", (0,))[0] > 0
                and all(c in data.columns for c in (self.x, *self.y)))

    def figure(self, data: Any) -> Any:
        """The matplotlib Figure (not registered with pyplot: freed with its last reference)."""
        import pandas as pd

        _import_matplotlib()
        import matplotlib.dates as mdates
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        data = self.frame(data)
        figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axis = figure.add_subplot(1, 1, 1)
        xs = data[self.x]
        is_time = _is_time(xs)
        if is_time:
            xs = _utc_naive(pd.to_datetime(xs))
        width = _bar_width(xs, is_time, len(self.y))
        top = 0.0
        for index, column in enumerate(self.y):
            ys = pd.to_numeric(data[column], errors="coerce").astype(float) * self.y_scale
            top = max(top, float(ys.max(skipna=True)) if ys.notna().any() else 0.0)
            label = column if len(self.y) > 1 else None
            colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
            if self.kind == "bar":
                positions = xs + index * width if len(self.y) > 1 else xs
                colours = [self._bar_colour(v, colour) for v in ys] if len(self.y) == 1 else colour
                axis.bar(positions, ys.fillna(0), width=width, color=colours, label=label,
                         align="edge" if is_time else "center")
            else:
                axis.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, color=colour, label=label)
        for name, value in self.thresholds.items():
            colour = THRESHOLD_COLOURS.get(name.lower(), DEFAULT_THRESHOLD_COLOUR)
            axis.axhline(value, color=colour, linestyle="--", linewidth=1, label=f"{name} {_number(value)}")
            top = max(top, value)
        axis.set_ylim(bottom=min(0.0, axis.get_ylim()[0]), top=top * 1.15 if top > 0 else 1.0)
        axis.set_xlabel(self.x_label, fontsize=8)
        axis.set_ylabel(self.y_label, fontsize=8)
        if self.title:
            axis.set_title(self.title, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.grid(axis="y", color="#e5e5e5", linewidth=0.6)
        axis.set_axisbelow(True)
        if is_time:
            locator = mdates.AutoDateLocator(minticks=3, maxticks=8)
            axis.xaxis.set_major_locator(locator)
            formatter = mdates.ConciseDateFormatter(locator, show_offset=False)
            # years, months, days, hours, minutes, seconds: a day always with its month, midnight as the date
            formatter.formats = ["%Y", "%b %Y", "%b %d", "%H:%M", "%H:%M", "%H:%M:%S"]
            formatter.zero_formats = ["", "%Y", "%b %Y", "%b %d", "%b %d", "%H:%M"]
            axis.xaxis.set_major_formatter(formatter)
        if self.thresholds or len(self.y) > 1:
            axis.legend(fontsize=7, loc="upper left", frameon=False)
        return figure

    def _bar_colour(self, value: float, default: str) -> str:
        over = [(limit, name) for name, limit in self.thresholds.items() if value == value and value > limit]
        if not over:
            return default
        return THRESHOLD_COLOURS.get(max(over)[1].lower(), DEFAULT_THRESHOLD_COLOUR)

    def render(self, data: Any, fmt: str = "png") -> bytes:
        """The chart as PNG or SVG bytes (SVG keeps its text as text, so its labels can be read)."""
        import matplotlib

        figure = self.figure(data)
        buffer = io.BytesIO()
        try:
            with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ccops"}):
                metadata = {"Date": None} if fmt == "svg" else {"Software": None}
                figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
        finally:
            figure.clear()  # drop the artists now; the Figure is in no registry, so nothing stays open
        return buffer.getvalue()

    def html(self, data: Any, name: str = "") -> str:
        """An inline PNG <img> whose alt text names the axes and thresholds; '' when there is nothing to plot."""
        if not self.plottable(data):
            return ""
        encoded = base64.b64encode(self.render(data, "png")).decode("ascii")
        words = html.escape((f"{name}: " if name else "") + self.describe(), quote=True)
        return (f'<figure class="ccops-chart" style="margin:0.4em 0">'
                f'<img alt="{words}" title="{words}" src="data:image/png;base64,{encoded}"/></figure>')


def new_figure(width: float, height: float, **options: Any) -> Any:
    """A bare matplotlib Figure for a step that draws its own picture (no pyplot, freed with its last reference).

    Why here: every figure comes from this module, so a runbook whose import cell
    brought it in is one the kernel's session preloads matplotlib for
    (ccops.runbook.session), and matplotlib itself comes in with the garbage
    collector paused, as for a Chart.
    """
    _import_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), **options)


def _import_matplotlib() -> None:
    """Import what a chart needs with the garbage collector paused (once per process).

    The import makes some 100,000 objects, all of them kept, and each full
    collection it sets off walks every object the kernel holds by then (pandas,
    sqlalchemy, the run's frames): 0.1-0.3 s of the daily runbook's chart step
    went to collections that could free nothing.
    """
    if "matplotlib.backends.backend_agg" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import matplotlib.backends.backend_agg  # noqa: F401 - imports matplotlib.figure too
        import matplotlib.dates  # noqa: F401
    finally:
        if enabled:
            gc.enable()


def _number(value: float) -> str:
    return f"{value:g}"


def _is_time(values: Any) -> bool:
    kind = getattr(getattr(values, "dtype", None), "kind", "")
    if kind == "M":
        return True
    if kind == "O" and len(values):
        from datetime import date

        return isinstance(values.iloc[0], date)
    return False


def _utc_naive(values: Any) -> Any:
    """Times as naive UTC (ccops' times are naive UTC already; aware ones are converted)."""
    if getattr(values.dt, "tz", None) is not None:
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values


def _bar_width(xs: Any, is_time: bool, series: int) -> Any:
    """Bars fill 85 % of the usual step between x values, split between the series."""
    import pandas as pd

    if not is_time:
        return 0.85 / series
    steps = pd.Series(xs).sort_values().diff().dropna()
    step = steps[steps > pd.Timedelta(0)].median() if not steps.empty else pd.Timedelta(hours=1)
    if pd.isna(step):
        step = pd.Timedelta(hours=1)
    return step * 0.85 / series
