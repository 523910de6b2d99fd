"""Key figures across runs: from run records' findings to one point a day, to inline SVG in the index."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from pathlib import Path

from ccops import archive
from ccops.archive.figures import CHART_DAYS, chart_series, figures
from ccops.archive.svgchart import Series, format_value, line_chart, nice_max

DAY0 = datetime(2026, 11, 1)
DAYS = 10
MiB = 2**20


def write(root: Path, runbook: str, start: datetime, outcome: str, findings: list[dict], duration: float) -> None:
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    stem = f"{runbook}/{start:%Y}/{start:%m}/{stamp}-{runbook}"
    iso = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    record = {"runbook": runbook, "run_id": f"{stamp}-x", "start": iso, "end": iso, "as_of": iso, "outcome": outcome,
              "duration_s": duration, "findings": findings, "counts": {"OK": len(findings)},
              "paths": {"json": stem + ".json", "html": stem + ".html"}}
    path = root / record["paths"]["json"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def f(check: str, value, status: str = "OK") -> dict:
    return {"check": check, "status": status, "summary": f"{check} is {value}", "value": value}


def synthetic_archive(root: Path) -> None:
    """Ten days: a daily run at 06:00, health checks at 00:00 and 12:00, and one failed daily rerun."""
    for k in range(DAYS):
        day = DAY0 + timedelta(days=k)
        write(root, "daily", day + timedelta(hours=6), "ok", [
            f("logs.summary", 2 * k), f("logs.recent_errors", 999),  # logs.summary is preferred
            f("content.published_yesterday", 50 + k), f("activity.agents", 1000 + k),
            f("backup.daily", (100 + k) * MiB), f("host.disk", 42),
        ], duration=60 + k)
        for hour in (0, 12):
            write(root, "health_check", day + timedelta(hours=hour), "ok", [
                f("health.agent_errors", 10 * k + hour), f("health.content", 900 + k + hour),
                f("health.agent_activity", 5000 + hour),
            ], duration=2 + hour / 12)
    # a failed rerun has no findings but counts for durations; an UNKNOWN finding is no figure
    write(root, "daily", DAY0 + timedelta(days=3, hours=9), "failed",
          [f("logs.summary", None, "UNKNOWN"), f("backup.daily", 1, "UNKNOWN")], duration=300)


def test_figures_keep_only_numeric_values_of_charted_checks():
    found = figures([f("logs.summary", 7), f("logs.summary", 8), f("host.disk", 50), f("backup.daily", True),
                     f("activity.agents", "many"), f("health.content", 3, "UNKNOWN"), f("health.agent_errors", 0),
                     "junk", f("content.published_yesterday", float("nan"))])
    assert found == {"logs.summary": 7, "health.agent_errors": 0}
    assert figures(None) == {}


def test_one_point_a_day_from_the_preferred_check_and_the_latest_run(tmp_path):
    synthetic_archive(tmp_path)
    charts = {spec.key: {s.name: s.points for s in series} for spec, series in chart_series(archive.load_summaries(tmp_path))}
    days = [(DAY0 + timedelta(days=k)).date() for k in range(DAYS)]
    assert charts["errors"]["log errors"] == [(d, 2.0 * k) for k, d in enumerate(days)]
    assert charts["errors"]["agent errors"] == [(d, 10.0 * k + 12) for k, d in enumerate(days)]  # the 12:00 run
    # published_yesterday counts the day before its run; the last day only has the health check's 24 h count
    assert charts["content"]["items published"] == (
        [(d - timedelta(days=1), 50.0 + k) for k, d in enumerate(days)] + [(days[-1], 900.0 + 9 + 12)])
    assert charts["executions"]["executions"] == [(d, 1000.0 + k) for k, d in enumerate(days)]
    assert charts["backup"]["backup size"] == [(d, (100.0 + k) * MiB) for k, d in enumerate(days)]
    durations = charts["durations"]
    assert sorted(durations) == ["daily", "health_check"]
    assert durations["daily"][3] == (days[3], 300.0), "the longest run of the day"
    assert durations["daily"][4] == (days[4], 64.0) and durations["health_check"][0] == (days[0], 3.0)


def test_the_index_draws_a_chart_per_figure(tmp_path):
    synthetic_archive(tmp_path)
    archive.rebuild_index(tmp_path)
    page = (tmp_path / "index.html").read_text()
    svgs = {m.group(1): m.group(0) for m in re.finditer(r"<svg id='chart-([a-z]+)'.*?</svg>", page, re.S)}
    assert list(svgs) == ["errors", "content", "executions", "backup", "durations"]
    for svg in svgs.values():
        ET.fromstring(svg)  # well-formed, so browsers draw it inline
    points = re.search(r"<polyline points='([^']+)'", svgs["backup"]).group(1).split()
    assert len(points) == DAYS
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys, reverse=True), "a growing backup climbs (SVG y grows downwards)"
    assert "109 MiB" in svgs["backup"] and ">200 MiB<" in svgs["backup"]  # the axis top, in the data's unit
    assert "backup size 2026-11-10: 109 MiB" in svgs["backup"]  # the point's tooltip
    assert svgs["durations"].count("<polyline") == 2 and ">daily<" in svgs["durations"]
    index = json.loads((tmp_path / "index.json").read_text())
    assert "findings" not in index[0] and index[0]["figures"] == {
        "health.agent_errors": 102, "health.content": 921, "health.agent_activity": 5012}


def test_no_figures_no_charts_but_durations(tmp_path):
    write(tmp_path, "weekly", DAY0, "ok", [f("host.disk", 1)], duration=5)
    page = archive.index_html(archive.load_summaries(tmp_path))
    assert "chart-errors" not in page and "chart-durations" in page
    empty = archive.index_html([])
    assert "<svg" not in empty and "No key figures recorded yet" in empty


def test_charts_show_the_last_year_of_days():
    old = {"runbook": "daily", "start": "2024-01-01T06:00:00Z", "figures": {"logs.summary": 1}}
    new = {"runbook": "daily", "start": "2026-01-01T06:00:00Z", "figures": {"logs.summary": 2}}
    edge_day = date(2026, 1, 1) - timedelta(days=CHART_DAYS - 1)
    edge = {"runbook": "daily", "start": f"{edge_day}T00:00:00Z", "figures": {"logs.summary": 3}}
    charts = dict(chart_series([new, edge, old]))
    errors = next(s for spec, s in charts.items() if spec.key == "errors")
    assert errors[0].points == [(edge_day, 3.0), (date(2026, 1, 1), 2.0)]


def test_chart_scales():
    assert [nice_max(v) for v in (0, 0.3, 1, 7, 12, 26, 2000, 2001)] == [1, 0.5, 1, 10, 20, 50, 2000, 2500]
    assert format_value(5.3 * 2**30, "bytes") == "5.3 GiB" and format_value(1500, "bytes") == "1.5 KiB"
    assert format_value(90, "s") == "90 s" and format_value(300, "s") == "5 min" and format_value(9000, "s") == "2.5 h"
    assert format_value(12345, "count") == "12,345"
    assert line_chart("nothing", [Series("a")]) == ""
    single = line_chart("one", [Series("a", [(date(2026, 1, 1), 4.0)])])
    assert "<circle" in single and "<polyline" not in single and "2026-01-01" in single
    ET.fromstring(single)
