"""The archive index: issue 9 target 5 (a full rebuild from 10,000 run records) and issue 17.4 (after one run at 100,000).

A year and more of cron: an hourly health_check, a daily, a weekly and a
daily backup, each record shaped like the runner's (ccops/runbook/runner.py
`_finish`: parameters and their defaults, findings, counts, incident, actions,
alerts, provenance, paths), laid out as the runner lays them out. The baseline
is the floor of any index built "from the run records alone": finding and
json-loading every record, nothing written, measured in the same run.

17.4 times what the runner does after a run: one new record lands in its
month's folder, then rebuild_index (incremental: the state under .index/)
brings the index up to date. The archive's files are dated an hour back
before the state is built, as in an archive not written this second.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchEnv, Result, timed_calls

RECORDS = 10_000
FLEET_RECORDS = 100_000  # issue 17.4: 50 targets x a year of hourly health checks, in round figures
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
    counts = {s: sum(1 for f in findings if f["status"] == s) for s in ("OK", "INFO", "WARNING", "CRITICAL", "UNKNOWN")}
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    base = f"{runbook}/{start:%Y}/{start:%m}/{stamp}-{runbook}"
    at = start.isoformat() + "Z"
    return {
        "runbook": runbook, "run_id": f"{stamp}-{n:08x}", "target": None,
        "parameters": {"as_of": at}, "parameter_defaults": {"part": "all", "config": ""},
        "as_of": at, "start": at, "end": (start + timedelta(seconds=14)).isoformat() + "Z", "duration_s": 14.2,
        "outcome": outcome, "exit_code": {"ok": 0, "warning": 1, "critical": 2, "failed": 3}[outcome],
        "error": "cell 7 raised OperationalError: server closed the connection" if outcome == "failed" else None,
        "findings": findings, "counts": counts, "incident": None, "not_configured": [],
        "undecided": [checks[0]] if status == "UNKNOWN" else [], "actions": [],
        "mode": "scheduled", "user_host": "ccops@ops-1", "host": "ops-1", "ccops_version": "0.1.0",
        "git": {"commit": "f235f2c" * 5 + "abcde", "dirty": False}, "runbook_sha256": "6f10c3db" * 8,
        "alerts": {"notifications": int(status != "OK"), "delivered": ["log"] if status != "OK" else [],
                   "undelivered": [], "held": [], "problems": []},
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


def age(archive_dir: Path, seconds: int = 3600) -> None:
    """Date every file and folder an hour back: an archive not being written to this second."""
    then = time.time() - seconds
    for dirpath, _dirs, files in os.walk(archive_dir):
        for name in files:
            os.utime(os.path.join(dirpath, name), (then, then))
        os.utime(dirpath, (then, then))


def add_run(archive_dir: Path, at: datetime, n: int) -> None:
    """One new health check run, written as the runner writes it (the record last, through a rename)."""
    from ccops import archive

    rec = record("health_check", FINDINGS["health_check"][0], at, n)
    base = archive_dir / rec["paths"]["json"].removesuffix(".json")
    archive.write_files([(base.with_name(base.name + s), "x") for s in (".ipynb", ".html", ".report.html")]
                        + [(base.with_name(base.name + ".json"), json.dumps(rec, indent=1))])


def run(env: BenchEnv) -> list[Result]:
    return [full_rebuild(env), one_run_at_scale(env)]


def full_rebuild(env: BenchEnv) -> Result:
    """9.5: the whole index from 10,000 records, state and month pages included (rebuild_index full=True)."""
    from ccops import archive

    archive_dir = env.root / "archive-bench"
    size = write_records(archive_dir, RECORDS, env.as_of)
    floor_cpu: list[float] = []
    rebuild_cpu: list[float] = []
    floor_s, found, floor_runs = timed_calls(lambda: read_floor(archive_dir), env.repeat, cpu=floor_cpu)
    rebuild_s, index, runs = timed_calls(lambda: archive.rebuild_index(archive_dir, full=True), env.repeat, cpu=rebuild_cpu)
    load = os.getloadavg()[0]
    ok = len(index) == RECORDS and found == RECORDS
    shutil.rmtree(archive_dir, ignore_errors=True)
    return Result("9.5", f"archive index rebuild from {RECORDS:,} run records (full)", rebuild_s, "s",
                  baseline=floor_s, baseline_label="os.walk + json.load of every record", target_text="< 2 s",
                  met=ok and rebuild_s < 2.0, runs=runs, baseline_runs=floor_runs,
                  command="python -m benchmarks --only index  (ccops.archive.rebuild_index(full=True))",
                  notes=(f"{len(index):,} records indexed, {size / 1e6:.0f} MB of records; CPU seconds (median): "
                         f"rebuild {statistics.median(rebuild_cpu):.3f}, floor {statistics.median(floor_cpu):.3f} "
                         f"(ratio {statistics.median(rebuild_cpu) / statistics.median(floor_cpu):.2f}); load average "
                         f"{load:.1f} on {os.cpu_count()} cores (the wall figure grows with it, the CPU ratio much less)"))


def one_run_at_scale(env: BenchEnv) -> Result:
    """17.4: the index brought up to date after one run, in an archive of 100,000 records."""
    from ccops import archive
    from ccops.archive import indexstate

    archive_dir = env.root / "archive-bench-100k"
    env.log(f"  writing {FLEET_RECORDS:,} run records ...")
    size = write_records(archive_dir, FLEET_RECORDS, env.as_of)
    age(archive_dir)
    floor_s, found, floor_runs = timed_calls(lambda: read_floor(archive_dir), env.repeat)
    started = time.perf_counter()
    built = archive.rebuild_index(archive_dir, full=True)
    full_s = time.perf_counter() - started
    env.log(f"  full rebuild of {len(built):,} runs: {full_s:.1f} s")
    added = iter(range(1, 1000))

    def one_run() -> indexstate.IndexedRuns:
        n = next(added)
        add_run(archive_dir, env.as_of + timedelta(hours=n), FLEET_RECORDS + n)
        started = time.perf_counter()
        result = archive.rebuild_index(archive_dir)
        timings.append(time.perf_counter() - started)
        return result  # type: ignore[return-value]

    timings: list[float] = []
    for _ in range(1 + env.repeat):  # the first is a warm-up (imports, templates), not timed
        last = one_run()
    update_runs = timings[1:]
    update_s = statistics.median(update_runs)
    front = (archive_dir / "index.html").stat().st_size
    ok = (found == FLEET_RECORDS and len(last) == FLEET_RECORDS + 1 + env.repeat and not last.update.full
          and last.update.runs_read <= 10)  # the new run, and the few written within RACY_NS before it
    shutil.rmtree(archive_dir, ignore_errors=True)
    return Result("17.4", f"index update after one run at {FLEET_RECORDS:,} records", update_s, "s",
                  baseline=floor_s, baseline_label="os.walk + json.load of every record", target_text="< 2 s",
                  met=ok and update_s < 2.0, runs=update_runs, baseline_runs=floor_runs,
                  command="python -m benchmarks --only index  (one record written, then ccops.archive.rebuild_index)",
                  notes=(f"{FLEET_RECORDS:,} records ({size / 1e6:.0f} MB); per update {last.update.folders_read} "
                         f"folders listed, {last.update.runs_read} records read; front page {front / 1e3:.0f} kB; "
                         f"the full rebuild that built the state: {full_s:.1f} s"))
