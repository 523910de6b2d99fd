"""Key figures across runs: which findings feed the index's charts, and how they become one point a day.

A reviewer wants the trend, not a run: errors, content and agent executions
per day, the backup's size, and how long each runbook takes. The checks
already measure these (each a 24 h window back from the run's as_of), so the
run record's findings are the data; the index summary keeps only the few
numeric values named here, which keeps index.json small and the charts
buildable from it alone.

Runs are many a day (an hourly health check, a daily, ad-hoc reruns), so each
series is one point per UTC day: the reading of the most preferred check that
day, and of that check the latest run's. `content.published_yesterday`
counts the calendar day before as_of, so its point goes on that day.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from ccops.archive.svgchart import Series, line_chart
from ccops.core.findings import Status, severity_rank

CHART_DAYS = 365  # the charts show the last year of days that have data
WORST_SHOWN = 3
SUMMARY_CHARS = 240
_SHOWN = frozenset({Status.CRITICAL, Status.WARNING, Status.UNKNOWN})  # exact names, as findings spell them


@dataclass(frozen=True)
class Source:
    """A check whose finding value is a figure; day_offset places it on the day it measures."""

    check: str
    day_offset: int = 0


@dataclass(frozen=True)
class SeriesSpec:
    name: str
    sources: tuple[Source, ...]  # most preferred first


@dataclass(frozen=True)
class ChartSpec:
    key: str
    title: str
    unit: str
    series: tuple[SeriesSpec, ...]


CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("errors", "Errors per day (24 h before each run)", "count", (
        SeriesSpec("log errors", (Source("logs.summary"), Source("logs.recent_errors"))),
        SeriesSpec("agent errors", (Source("health.agent_errors"),)),
    )),
    ChartSpec("content", "Content published per day", "count", (
        SeriesSpec("items published", (Source("content.published_yesterday", -1), Source("health.content"))),
    )),
    ChartSpec("executions", "Agent executions per day", "count", (
        SeriesSpec("executions", (Source("activity.agents"), Source("health.agent_activity"))),
    )),
    ChartSpec("backup", "Backup size (the day's backup)", "bytes", (
        SeriesSpec("backup size", (Source("backup.daily"),)),
    )),
)
FIGURE_CHECKS = frozenset(src.check for chart in CHARTS for spec in chart.series for src in spec.sources)


# ---- from one run record to its summary ---------------------------------------------------

def figures(findings: Any) -> dict[str, float]:
    """The numeric values of the charted checks in one run's findings (first finding of a check wins)."""
    found: dict[str, float] = {}
    if not isinstance(findings, list):
        return found
    for finding in findings:
        if not isinstance(finding, dict):
            continue
        check = finding.get("check")
        if check not in FIGURE_CHECKS or check in found or finding.get("status") == "UNKNOWN":
            continue
        value = finding.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[check] = value
    return found


def worst_findings(findings: Any, limit: int = WORST_SHOWN) -> list[dict[str, str]]:
    """The most severe WARNING/CRITICAL/UNKNOWN findings of a run, most severe first, for the latest panel."""
    if not isinstance(findings, list):
        return []
    # a finding a verified recovery resolved is the run's incident (shown on its own), not its present state
    bad = [f for f in findings if isinstance(f, dict) and f.get("status") in _SHOWN and not f.get("resolved_by")]
    bad.sort(key=lambda f: -severity_rank(f["status"]))  # stable: equal severities keep the notebook's order
    return [{"check": str(f.get("check") or ""), "status": f["status"],
             "summary": _clip(str(f.get("summary") or ""))} for f in bad[:limit]]


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 1] + "…"


# ---- from summaries to charts ---------------------------------------------------------------

def run_day(summary: dict[str, Any]) -> date | None:
    """The UTC day a run measured: its as_of, else its start."""
    for key in ("as_of", "start"):
        text = summary.get(key)
        if isinstance(text, str) and text.strip():
            try:
                moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc)
            return moment.date()
    return None


def chart_series(summaries: Iterable[dict[str, Any]]) -> list[tuple[ChartSpec, list[Series]]]:
    """Each chart's series, one point a day; the run-duration chart (longest run of the day per runbook) last."""
    # (chart, series) -> day -> (preference rank, run's as_of, value); lower rank wins, then the later run
    best: dict[tuple[str, str], dict[date, tuple[int, str, float]]] = {}
    durations: dict[str, dict[date, float]] = {}
    for s in summaries:
        day = run_day(s)
        if day is None:
            continue
        when = str(s.get("as_of") or s.get("start") or "")
        values = s.get("figures") or {}
        for chart in CHARTS:
            for spec in chart.series:
                for rank, src in enumerate(spec.sources):
                    if src.check not in values:
                        continue
                    point_day = day + timedelta(days=src.day_offset)
                    days = best.setdefault((chart.key, spec.name), {})
                    held = days.get(point_day)
                    if held is None or rank < held[0] or (rank == held[0] and when >= held[1]):
                        days[point_day] = (rank, when, float(values[src.check]))
                    break
        seconds = s.get("duration_s")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            per_day = durations.setdefault(str(s.get("runbook")), {})
            per_day[day] = max(per_day.get(day, 0.0), float(seconds))
    newest = max([d for days in best.values() for d in days] + [d for days in durations.values() for d in days],
                 default=None)
    if newest is None:
        return []
    since = newest - timedelta(days=CHART_DAYS - 1)
    charts: list[tuple[ChartSpec, list[Series]]] = []
    for chart in CHARTS:
        series = [Series(spec.name, _window(((d, v[2]) for d, v in best.get((chart.key, spec.name), {}).items()), since))
                  for spec in chart.series]
        charts.append((chart, [x for x in series if x.points]))
    duration_spec = ChartSpec("durations", "Run duration (longest run of the day)", "s", ())
    charts.append((duration_spec, [Series(name, _window(days.items(), since)) for name, days in sorted(durations.items())]))
    return [(spec, [x for x in series if x.points]) for spec, series in charts]


def _window(points: Iterable[tuple[date, float]], since: date) -> list[tuple[date, float]]:
    return sorted((d, v) for d, v in points if d >= since)


def charts_html(summaries: list[dict[str, Any]]) -> list[str]:
    """The <svg> of every chart that has data, in CHARTS order then durations."""
    svgs = []
    for spec, series in chart_series(summaries):
        svg = line_chart(spec.title, series, spec.unit, chart_id=f"chart-{spec.key}")
        if svg:
            svgs.append(svg)
    return svgs
