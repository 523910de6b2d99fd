"""Trends from run records: key timings quarter over quarter, capacity history, earlier drills."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from ccops.checks import trends
from ccops.core.context import RunContext
from ccops.core.settings import load_settings

AS_OF = datetime(2026, 11, 28, 9, 0)


def write_record(archive, runbook: str, when: datetime, duration: float, findings=(), outcome="ok") -> None:
    folder = archive / runbook / f"{when:%Y}" / f"{when:%m}"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"runbook": runbook, "run_id": f"{runbook}-{when:%Y%m%d%H%M%S}", "start": when.isoformat() + "Z",
              "duration_s": duration, "outcome": outcome, "findings": list(findings)}
    (folder / f"{when:%Y%m%dT%H%M%SZ}-{runbook}.json").write_text(json.dumps(record))


def test_key_timings_compare_this_quarter_with_the_last(ccops_env):
    archive = ccops_env / "outputs"
    for days_ago, seconds in ((10, 12.0), (40, 14.0), (80, 13.0)):
        write_record(archive, "daily", AS_OF - timedelta(days=days_ago), seconds)
    for days_ago, seconds in ((100, 9.0), (150, 10.0), (170, 11.0)):
        write_record(archive, "daily", AS_OF - timedelta(days=days_ago), seconds)
    write_record(archive, "daily", AS_OF - timedelta(days=5), 999.0, outcome="timed-out")
    write_record(archive, "monthly", AS_OF - timedelta(days=20), 300.0,
                 [{"check": "backup.restore_test", "status": "OK", "summary": "", "value": 42.0}])
    ctx = RunContext(runbook="quarterly", settings=load_settings(), as_of=AS_OF)
    (finding,) = trends.key_timings(ctx)
    table = finding.data.set_index("figure")
    assert table.loc["daily run (s)", "this quarter"] == 13.0
    assert table.loc["daily run (s)", "previous quarter"] == 10.0
    assert table.loc["daily run (s)", "change_pct"] == 30.0
    assert table.loc["restore test (s)", "this quarter"] == 42.0
    assert finding.status.value == "WARNING" and "daily run (s) +30%" in finding.summary


def test_capacity_history_from_snapshots(ccops_env):
    archive = ccops_env / "outputs"
    for week in range(3):
        write_record(archive, "weekly", AS_OF - timedelta(days=7 * week), 60.0, [
            {"check": "capacity.database_bytes", "status": "INFO", "summary": "", "value": 1000 - 100 * week},
            {"check": "capacity.log_bytes", "status": "INFO", "summary": "", "value": 50},
        ])
    history = trends.capacity_history(trends.load_records(archive))
    assert list(history["database_bytes"]) == [800.0, 900.0, 1000.0]
    assert list(history["log_bytes"]) == [50.0, 50.0, 50.0]
    assert history["backup_bytes"].isna().all()


def test_no_archive_is_no_data(ccops_env):
    ctx = RunContext(runbook="quarterly", settings=load_settings(), as_of=AS_OF)
    assert trends.key_timings(ctx)[0].summary.startswith("no data")
