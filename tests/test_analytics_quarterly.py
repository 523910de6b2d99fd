"""The quarterly reports: agents per ISO week, table growth on an exact line, the disk fill date."""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ccops import analytics
from ccops.core.context import RunContext
from ccops.core.settings import load_settings
from tests.helpers import insert, one

AS_OF = datetime(2026, 11, 20)  # a Friday, midnight: every day before it is whole


def make_ctx(url: str, monkeypatch) -> RunContext:
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


@pytest.fixture
def ctx(make_database, ccops_env, monkeypatch):
    return make_ctx(make_database("ccops"), monkeypatch)




AGENT_SQL = ("INSERT INTO agent_logs (timestamp, agent_name, action, status, execution_time) "
             "VALUES (:t, :a, 'execute', :s, :x)")


def test_agent_audit_per_iso_week_and_bottlenecks(ctx):
    this_monday = datetime(2026, 11, 16)        # ISO week 2026-W47
    last_monday = this_monday - timedelta(days=7)
    times_w46 = [1.0, 2.0, 3.0, 4.0]
    times_w47 = [2.0, 4.0, 8.0]
    rows = [{"t": last_monday + timedelta(hours=5 * i), "a": "AnalysisAgent", "s": "success", "x": x}
            for i, x in enumerate(times_w46)]
    rows += [{"t": this_monday + timedelta(hours=5 * i), "a": "AnalysisAgent", "s": "error" if i == 0 else "success",
              "x": x} for i, x in enumerate(times_w47)]
    rows += [{"t": this_monday + timedelta(hours=i), "a": f"Agent{n}", "s": "error" if i < n else "success",
              "x": float(n)} for n in range(1, 7) for i in range(10)]
    rows += [{"t": AS_OF - timedelta(days=200), "a": "AncientAgent", "s": "error", "x": 1000.0}]
    insert(ctx, AGENT_SQL, rows)

    found = analytics.agent_audit(ctx, days=91)
    audit = one(found, "analytics.agent_audit")
    weekly = audit.data.set_index(["iso_week", "agent_name"])
    assert weekly.loc[("2026-W46", "AnalysisAgent"), "runs"] == 4
    assert weekly.loc[("2026-W46", "AnalysisAgent"), "p95_s"] == pytest.approx(np.percentile(times_w46, 95))
    w47 = weekly.loc[("2026-W47", "AnalysisAgent")]
    assert w47["runs"] == 3 and w47["errors"] == 1 and w47["error_rate"] == pytest.approx(1 / 3)
    assert w47["mean_s"] == pytest.approx(14 / 3) and w47["p95_s"] == pytest.approx(np.percentile(times_w47, 95))
    assert "AncientAgent" not in set(audit.data["agent_name"])
    assert audit.figure is not None

    slowest = one(found, "analytics.bottlenecks_slowest").data
    assert list(slowest["agent_name"]) == ["AnalysisAgent", "Agent6", "Agent5", "Agent4", "Agent3"]
    assert slowest["p95_s"].iloc[0] == pytest.approx(np.percentile(times_w46 + times_w47, 95))
    failing = one(found, "analytics.bottlenecks_failing")
    assert list(failing.data["agent_name"]) == ["Agent6", "Agent5", "Agent4", "Agent3", "Agent2"]
    assert failing.status.value == "WARNING" and failing.value == pytest.approx(0.6)
    assert "5 above 10%" in failing.summary  # Agent1 fails 10%: not above
    assert "AnalysisAgent" not in failing.summary, "1 of 7 (14%) is sixth: only the top 5 are named"


def test_agent_audit_with_a_single_week(ctx):
    insert(ctx, AGENT_SQL, [{"t": AS_OF - timedelta(hours=2), "a": "AnalysisAgent", "s": "success", "x": 1.0}])
    found = analytics.agent_audit(ctx)
    assert "a single week: no trend yet" in one(found, "analytics.agent_audit").summary
    assert one(found, "analytics.bottlenecks_failing").status.value == "OK"


LINEAR_SQL = """
INSERT INTO agent_logs (timestamp, agent_name, action, status, execution_time)
SELECT CAST(:start AS timestamp) + make_interval(days => d, hours => 12, secs => k), 'MarketScannerAgent', 'scan',
       'success', 1.0
FROM generate_series(0, 90) AS d, generate_series(1, 10 + d) AS k
"""


def test_capacity_growth_on_an_exact_line(ctx):
    # 10 + i rows on day i of the 91 whole days before as_of: 5005 rows, slope 1, intercept 10
    insert(ctx, LINEAR_SQL, {"start": AS_OF - timedelta(days=91)})
    insert(ctx, AGENT_SQL, [{"t": AS_OF + timedelta(hours=1), "a": "Late", "s": "success", "x": 1.0}])
    finding = one(analytics.capacity_growth(ctx, days=91), "analytics.capacity_growth")
    table = finding.data.set_index("table")
    logs = table.loc["agent_logs"]
    assert logs["rows"] == 5005
    assert logs["trend_rows_per_day2"] == pytest.approx(1.0, abs=1e-9)
    assert logs["rows_per_day_now"] == pytest.approx(101.0, abs=1e-6)
    assert logs["mean_rows_per_day"] == pytest.approx(55.0)
    assert logs["rows_in_90d"] == pytest.approx(5005 + sum(10 + x for x in range(91, 181)), abs=1e-6)  # 18100
    assert logs["rows_in_365d"] == pytest.approx(108300, abs=1e-5)
    assert logs["size_bytes"] > 0 and logs["bytes_in_365d"] == pytest.approx(logs["size_bytes"] * 108300 / 5005)
    assert table.loc["published_content", "rows"] == 0 and math.isnan(table.loc["published_content", "bytes_in_90d"])
    assert set(table.index) == {"agent_logs", "published_content", "user_interactions", "community_users", "market_data"}
    assert finding.status.value == "OK" and "agent_logs 5,005 rows, +101/day now -> 108,300 in 365 days" in finding.summary
    assert finding.figure is not None

    # without history: the database's size grows with its rows (101 a day over 5005)
    estimate = one(analytics.capacity_disk_projection(ctx, free_bytes=10**12), "analytics.capacity_disk")
    row = estimate.data.iloc[0]
    assert row["growth_bytes_per_day"] == pytest.approx(row["used_bytes"] * 101 / 5005, rel=1e-9)
    assert row["days_to_full"] == pytest.approx(10**12 / row["growth_bytes_per_day"])
    assert "estimate: database" in row["source"]


def history(totals: list[float], start: datetime = AS_OF - timedelta(days=9)) -> pd.DataFrame:
    """Split each day's total over database, logs and backups."""
    return pd.DataFrame({
        "date": [start + timedelta(days=i) for i in range(len(totals))],
        "database_bytes": [t * 0.5 for t in totals],
        "log_bytes": [t * 0.25 for t in totals],
        "backup_bytes": [t * 0.25 for t in totals],
    })


@pytest.mark.parametrize("free, status, days", [
    (45e9, "WARNING", 45), (20e9, "CRITICAL", 20), (200e9, "OK", 200), (30e9, "CRITICAL", 30), (90e9, "WARNING", 90),
])
def test_disk_fill_date_on_an_exact_line(ctx, free, status, days):
    grow = history([5e9 + 1e9 * i for i in range(10)])  # exactly 1 GB a day
    finding = one(analytics.capacity_disk_projection(ctx, history=grow, path="/", free_bytes=int(free)),
                  "analytics.capacity_disk")
    row = finding.data.iloc[0]
    assert row["growth_bytes_per_day"] == pytest.approx(1e9, rel=1e-12)
    assert row["used_bytes"] == 14e9
    assert finding.value == days
    assert row["fill_date"] == AS_OF + timedelta(days=days)
    assert finding.status.value == status
    assert f"fills in {days} days, around {AS_OF + timedelta(days=days):%Y-%m-%d}" in finding.summary
    assert finding.figure is not None


def test_disk_projection_reads_the_disk_holding_the_path(ctx, tmp_path):
    missing = tmp_path / "not" / "yet" / "backups"
    finding = one(analytics.capacity_disk_projection(ctx, history=history([1e9 * i for i in range(10)]), path=missing),
                  "analytics.capacity_disk")
    row = finding.data.iloc[0]
    stats = os.statvfs(tmp_path)
    assert row["path"] == str(tmp_path.resolve())
    assert row["free_bytes"] == pytest.approx(stats.f_bavail * stats.f_frsize, rel=0.01)
    assert row["days_to_full"] == pytest.approx(row["free_bytes"] / 1e9)


def test_disk_projection_edge_cases(ctx):
    single = one(analytics.capacity_disk_projection(ctx, history=history([5e9]), free_bytes=10**9),
                 "analytics.capacity_disk")
    assert single.status.value == "INFO" and "single day of disk history" in single.summary
    shrinking = one(analytics.capacity_disk_projection(ctx, history=history([9e9, 8e9, 7e9]), free_bytes=10**9),
                    "analytics.capacity_disk")
    assert shrinking.status.value == "OK" and "not filling up" in shrinking.summary
    bad = one(analytics.capacity_disk_projection(ctx, history=pd.DataFrame({"when": [1, 2]})), "analytics.capacity_disk")
    assert bad.status.value == "UNKNOWN" and "date" in bad.summary
    only_db = pd.DataFrame({"date": ["2026-11-01", "2026-11-11"], "database_bytes": [1e9, 2e9]})
    partial = one(analytics.capacity_disk_projection(ctx, history=only_db, free_bytes=int(5e9)), "analytics.capacity_disk")
    assert partial.value == 50 and partial.status.value == "WARNING"
    empty = one(analytics.capacity_disk_projection(ctx, free_bytes=10**9), "analytics.capacity_disk")
    assert empty.status.value == "INFO" and empty.summary.startswith("no data")
