"""Issue 9, target 5 (issue 18 keeps it): rebuilding the archive index from 10,000 run records in under 2 s.

A year and more of cron: an hourly health_check, a daily, a weekly, a
monthly, a few backups and emergency runs, each record shaped like the
runner's (parameters, findings, counts, git, paths). The baseline is the
floor of any index built "from the run records alone": finding and
json-loading every record, nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchEnv, Result, median_call

RECORDS = 10_000
FINDINGS = {  # runbook -> (check ids, every how many hours it runs)
    "health_check": (["health.database", "health.agent_activity", "health.content", "health.agent_errors",
                      "health.activity_by_hour"], 1),
    "daily": (["services.status", "logs.recent_errors", "activity.agents", "content.yesterday",
               "logs.rate_limits", "apis.live_rate_limits", "logs.error_review", "backup.daily",
               "content.engagement_today", "host.disk_space", "host.memory"], 24),
    "weekly": ([f"weekly.step{k}" for k in range(14)], 24 * 7),
    "backup": (["backup.dump", "backup.verify", "backup.retention"], 24),
}
OUTCOMES = ("ok", "ok", "ok", "ok", "warning", "ok", "critical", "ok", "ok", "failed")


def record(runbook: str, checks: list[str], start: datetime, n: int) -> dict[str, Any]:
    outcome = OUTCOMES[n % len(OUTCOMES)]
    status = {"ok": "OK", "warning": "WARNING", "critical": "CRITICAL", "failed": "UNKNOWN"}[outcome]
    findings = [{"check": c, "status": status if k == 0 else "OK",
                 "summary": f"{c}: 1234 agent executions in the last 24 h, last 3 min ago", "value": 1234 + k,
                 "threshold": 10, "rows": 24} for k, c in enumerate(checks)]
    counts = {s: sum(1 for f in findings if f["status"] == s) for s in ("OK", "WARNING", "CRITICAL", "UNKNOWN")}
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    base = f"{runbook}/{start:%Y}/{start:%m}/{stamp}-{runbook}"
    return {
        "runbook": runbook, "run_id": f"{stamp}-{n:08x}",
        "parameters": {"as_of": start.isoformat() + "Z", "part": "all", "config": ""},
        "as_of": start.isoformat() + "Z", "start": start.isoformat() + "Z",
        "end": (start + timedelta(seconds=14)).isoformat() + "Z", "duration_s": 14.2,
        "outcome": outcome, "exit_code": {"ok": 0, "warning": 1, "critical": 2, "failed": 3}[outcome],
        "error": "cell 7 raised OperationalError: server closed the connection" if outcome == "failed" else None,
        "findings": findings, "counts": counts, "ccops_version": "0.1.0",
        "git": {"commit": "f235f2c" * 5 + "abcde", "dirty": False}, "host": "ops-1",
        "paths": {"ipynb": base + ".ipynb", "html": base + ".html", "report_html": base + ".report.html",
                  "json": base + ".json"},
    }


def write_records(archive_dir: Path, n: int, end: datetime) -> int:
    """n run records, newest at `end`, in the runner's layout; returns the bytes written."""
    shutil.rmtree(archive_dir, ignore_errors=True)
    written = 0
    schedule = sorted(((every, name) for name, (_, every) in FINDINGS.items()))
    hour = 0
    count = 0
    while count < n:
        at = end - timedelta(hours=hour)
        for every, name in schedule:
            if hour % every == 0 and count < n:
                rec = record(name, FINDINGS[name][0], at, count)
                path = archive_dir / rec["paths"]["json"]
                path.parent.mkdir(parents=True, exist_ok=True)
                text = json.dumps(rec, indent=1)
                path.write_text(text)
                written += len(text)
                count += 1
        hour += 1
    return written


def read_floor(archive_dir: Path) -> int:
    """Find and parse every record: what any index from the records must at least do."""
    n = 0
    for dirpath, _dirs, files in os.walk(archive_dir):
        for name in files:
            if name.endswith(".json") and not name.startswith("index"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as handle:
                    json.load(handle)
                n += 1
    return n


def run(env: BenchEnv) -> list[Result]:
    from ccops import archive

    archive_dir = env.root / "archive-bench"
    size = write_records(archive_dir, RECORDS, env.as_of)
    floor_s, found = median_call(lambda: read_floor(archive_dir), env.repeat)
    rebuild_s, index = median_call(lambda: archive.rebuild_index(archive_dir), env.repeat)
    ok = len(index) == RECORDS and found == RECORDS
    return [Result("9.5", f"archive index rebuild from {RECORDS:,} run records", rebuild_s, "s", baseline=floor_s,
                   baseline_label="os.walk + json.load of every record", target_text="< 2 s",
                   met=ok and rebuild_s < 2.0,
                   command="python -m benchmarks --only index  (ccops.archive.rebuild_index)",
                   notes=f"{len(index):,} records indexed, {size / 1e6:.0f} MB of records")]
