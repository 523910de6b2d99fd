"""Charts of findings (issue 15.5): errors per hour, engagement and capacity drawn with axis labels and thresholds.

A Chart is a spec on a Finding; the picture is drawn from the finding's table when
the finding is displayed (an inline PNG <img> in the notebook, .html and
.report.html) and never reaches the run record. The SVG rendering keeps its text
as text, so the labels and threshold values drawn can be read back here.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ccops import analytics
from ccops.checks import logs as log_checks
from ccops.checks import trends
from ccops.core import findings
from ccops.core.charts import Chart
from ccops.core.context import RunContext
from ccops.core.findings import Finding, Findings, Status
from ccops.core.settings import load_settings
from ccops.runbook.runner import _finding_dicts
from tests.helpers import insert, one

AS_OF = datetime(2026, 11, 20, 18, 0, 0)
WHERE = "src.agents.base_agent:run"


def svg_text(chart: Chart, data: pd.DataFrame) -> str:
    """Every text the SVG draws (svg.fonttype none keeps labels as <text> elements)."""
    svg = chart.render(data, "svg").decode("utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    return " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))


def images(html: str) -> list[str]:
    return re.findall(r"<img [^>]*>", html)


def hourly(errors: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"hour": pd.date_range("2026-11-20 00:00", periods=len(errors), freq="h"),
                         "errors": pd.Series(errors, dtype="int64")})


ERRORS_CHART = Chart(x="hour", y="errors", kind="bar", title="Errors per hour", x_label="hour (UTC)",
                     y_label="errors / hour", thresholds={"warning": 5, "critical": 10})


def test_a_finding_with_a_chart_shows_one_png_with_its_axes_and_limits() -> None:
    finding = Finding("logs.errors_per_hour", Status.CRITICAL, "worst hour had 12", 12, 10,
                      data=hourly([0, 1, 6, 12] + [0] * 20), chart=ERRORS_CHART)
    html = Findings([finding])._repr_html_()
    [img] = images(html)
    assert 'src="data:image/png;base64,' in img
    assert "errors / hour by hour (UTC)" in img and "warning 5, critical 10" in img  # alt text names axes and limits
    png = Chart.render(ERRORS_CHART, finding.data)
    assert png.startswith(b"\x89PNG") and len(png) < 60_000  # 7 x 2.5 in at 90 dpi: a small picture
    drawn = svg_text(ERRORS_CHART, finding.data)
    for text in ("hour (UTC)", "errors / hour", "Errors per hour", "warning 5", "critical 10"):
        assert text in drawn, (text, drawn)
    assert "Nov 20" in drawn and "08:00" in drawn, drawn  # UTC times for people, the day at midnight
    # the threshold lines are drawn dashed at their values
    figure = ERRORS_CHART.figure(finding.data)
    dashed = [line for line in figure.axes[0].lines if line.get_linestyle() == "--"]
    assert sorted(line.get_ydata()[0] for line in dashed) == [5.0, 10.0]
    assert len(figure.axes[0].patches) == 24


def test_no_data_no_chart_and_no_figures_left_open() -> None:
    import matplotlib.pyplot as plt

    empty = Finding("logs.errors_per_hour", Status.OK, "no data", 0, 5, data=hourly([]), chart=ERRORS_CHART)
    none = Finding("logs.errors_per_hour", Status.OK, "no data", 0, 5, chart=ERRORS_CHART)
    wrong = Finding("x", Status.OK, "a table without the chart's columns", data=pd.DataFrame({"a": [1]}),
                    chart=ERRORS_CHART)
    assert images(Findings([empty, none, wrong])._repr_html_()) == []
    assert findings.evidence_html(none) == ""
    for _ in range(5):
        Findings([Finding("c", Status.OK, "s", data=hourly([1, 2, 3]), chart=ERRORS_CHART)])._repr_html_()
    assert plt.get_fignums() == []  # nothing registered with pyplot: nothing stays open
    with pytest.raises(ValueError, match="axis labels"):
        Chart(x="hour", y="errors", x_label="hour (UTC)")


def test_the_run_record_keeps_no_image(tmp_path: Path) -> None:
    finding = Finding("logs.errors_per_hour", Status.WARNING, "s", 6, 5, data=hourly([6, 1]), chart=ERRORS_CHART)
    Findings([finding])._repr_html_()
    lines = tmp_path / "findings.jsonl"
    findings.record([finding], lines)
    text = lines.read_text()
    recorded = findings.read_recorded(lines)
    record = json.dumps(_finding_dicts(recorded, findings.assess(recorded)))
    for blob in (text, record):
        assert "base64" not in blob and "PNG" not in blob and "<svg" not in blob and "chart" not in blob
    assert json.loads(text)["value"] == 6 and json.loads(text)["rows"] == 2
    assert ERRORS_CHART.to_dict() == {"kind": "bar", "x": "hour", "y": ["errors"], "title": "Errors per hour",
                                      "x_label": "hour (UTC)", "y_label": "errors / hour",
                                      "thresholds": {"warning": 5.0, "critical": 10.0}}


# --- the real checks -------------------------------------------------------------------------------


def rec(ts: datetime, level: str, message: str) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S} | {level:<8} | {WHERE} - {message}\n"


def test_errors_per_hour_is_drawn_against_the_settings_limits(ccops_env: Path, monkeypatch) -> None:
    log_dir = ccops_env / "app-logs"
    log_dir.mkdir()
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    lines = [rec(datetime(2026, 11, 20, 9, 0, 0) + timedelta(minutes=m), "INFO", "PublishingAgent posted")
             for m in range(0, 60, 10)]
    lines += [rec(datetime(2026, 11, 20, 10, i, 0), "ERROR", f"AnalysisAgent failed: attempt {i}") for i in range(7)]
    lines += [rec(datetime(2026, 11, 20, 14, 30, 0), "ERROR", "PublishingAgent failed")]
    (log_dir / "content_creator_2026-11-20.log").write_text("".join(lines))
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)
    per_hour = one(log_checks.error_review(ctx), "logs.errors_per_hour")
    thresholds = ctx.settings.thresholds
    assert per_hour.status == Status.WARNING and per_hour.value == 7
    assert per_hour.chart.thresholds == {"warning": thresholds.errors_per_hour_warning,
                                         "critical": thresholds.errors_per_hour_critical}
    [img] = images(Findings([per_hour])._repr_html_())
    assert "error records / hour by hour (UTC)" in img
    drawn = svg_text(per_hour.chart, per_hour.data)
    assert "hour (UTC)" in drawn and "error records / hour" in drawn
    assert f"warning {thresholds.errors_per_hour_warning:g}" in drawn
    assert f"critical {thresholds.errors_per_hour_critical:g}" in drawn
    assert per_hour.figure is None  # one picture per finding


def test_errors_per_hour_without_a_whole_hour_draws_nothing(ccops_env: Path, monkeypatch) -> None:
    log_dir = ccops_env / "app-logs"
    log_dir.mkdir()
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    (log_dir / "content_creator_2026-11-20.log").write_text(rec(datetime(2026, 11, 20, 17, 0), "INFO", "up"))
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)
    per_hour = one(log_checks.error_review(ctx, hours=0), "logs.errors_per_hour")
    assert per_hour.summary.startswith("no data") and per_hour.data.empty, str(per_hour)
    assert images(Findings([per_hour])._repr_html_()) == []


POST_SQL = ("INSERT INTO published_content (content_plan_id, platform, content_text, published_at, views, likes, "
            "comments, shares, engagement_rate) VALUES (1, 'twitter', 'x', :t, :views, 1, 0, 0, :rate)")


def db_ctx(url: str, monkeypatch) -> RunContext:
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


def test_engagement_trend_is_drawn_per_week(make_database, ccops_env, monkeypatch) -> None:
    ctx = db_ctx(make_database("production"), monkeypatch)
    insert(ctx, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) "
                "VALUES (1, :t, 'BREAKOUT', 'BTC', 0.8, '{}')", {"t": AS_OF - timedelta(days=60)})
    insert(ctx, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES (1, 1, 'twitter', 'THREAD')", {})
    rates = [0.010, 0.012, 0.020, 0.018]  # weeks 3, 2, 1, 0 before as_of
    insert(ctx, POST_SQL, [{"t": AS_OF - timedelta(days=7 * (3 - i), hours=5), "views": 100, "rate": r}
                           for i, r in enumerate(rates)])
    trend = one(analytics.engagement_breakdown(ctx, days=30, weeks=8), "analytics.engagement_trend")
    assert trend.status == Status.OK and len(trend.data) == 4
    [img] = images(Findings([trend])._repr_html_())
    assert "average engagement rate (%) by week ending (UTC)" in img
    drawn = svg_text(trend.chart, trend.data)
    assert "week ending (UTC)" in drawn and "average engagement rate (%)" in drawn
    assert "earlier weeks' average 1.4" in drawn  # (1.0 + 1.2 + 2.0) / 3 %, the summary's comparison
    figure = trend.chart.figure(trend.data)
    [line] = [x for x in figure.axes[0].lines if x.get_linestyle() == "-"]
    assert list(line.get_ydata()) == pytest.approx([r * 100 for r in rates])  # drawn in %


def test_engagement_trend_without_posts_draws_nothing(make_database, ccops_env, monkeypatch) -> None:
    ctx = db_ctx(make_database("production"), monkeypatch)
    trend = one(analytics.engagement_breakdown(ctx, days=30, weeks=8), "analytics.engagement_trend")
    assert trend.summary.startswith("no data")
    assert images(Findings([trend])._repr_html_()) == []


def write_record(archive: Path, start: datetime, database_bytes: int) -> None:
    folder = archive / "weekly" / f"{start:%Y}" / f"{start:%m}"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"runbook": "weekly", "start": f"{start:%Y-%m-%dT%H:%M:%S}Z", "outcome": "ok",
              "findings": [{"check": "capacity.database_bytes", "status": "INFO", "summary": "database",
                            "value": database_bytes}]}
    (folder / f"{start:%Y%m%dT%H%M%S}Z-weekly.json").write_text(json.dumps(record))


def test_database_size_is_drawn_over_the_archived_days(make_database, ccops_env, monkeypatch) -> None:
    for name in ("logs", "backups"):
        (ccops_env / name).mkdir()
    monkeypatch.setenv("CCOPS_LOG_DIR", str(ccops_env / "logs"))
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    ctx = db_ctx(make_database("production"), monkeypatch)
    archive = ctx.settings.archive_dir
    write_record(archive, AS_OF - timedelta(days=14), 8_000_000)
    write_record(archive, AS_OF - timedelta(days=7), 9_000_000)
    write_record(archive, AS_OF + timedelta(days=7), 1)  # after as_of: not part of this report
    found = trends.capacity_snapshot(ctx)
    size = one(found, "capacity.database_bytes")
    history = size.data
    assert [f"{d:%Y-%m-%d}" for d in history["date"]] == ["2026-11-06", "2026-11-13", "2026-11-20"]
    assert list(history["database_bytes"])[:2] == [8e6, 9e6] and history["database_bytes"].iloc[-1] == size.value
    [img] = images(Findings(found)._repr_html_())
    assert "database size (MB) by day (UTC)" in img
    drawn = svg_text(size.chart, history)
    assert "day (UTC)" in drawn and "database size (MB)" in drawn and "Nov 13" in drawn
    [line] = size.chart.figure(history).axes[0].lines
    assert list(line.get_ydata())[:2] == pytest.approx([8.0, 9.0])  # MB
