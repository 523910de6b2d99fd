"""The quarterly disaster-recovery drill: recover onto a machine-like blank slate and time it.

The guide's drill is a list ("stop all services, restore from backup, verify
all data intact, test all functionality, document time to recover"). ccops
runs it for real without touching production: a fresh backup (the same
verified backup the nightly job makes), restored into a brand-new private
PostgreSQL cluster (ccops.core.localpg, as a replacement server would be), every
table's row count checked against the backup's manifest, the health check run
against the restored copy at the backup's own instant, and the cluster
destroyed afterwards. Time to recover and age of the recovered data are the
figures the archive keeps, so the next drill can be compared with this one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ccops.core import localpg
from ccops.core.context import RunContext, check
from ccops.core.db import connect, dispose_all
from ccops.core.findings import Finding, Status


@dataclass
class DrillResult:
    backup: str
    backup_taken_at: datetime
    steps: list[dict[str, Any]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    health_line: str = ""
    cluster_removed: bool = False

    @property
    def recovery_s(self) -> float:
        """Time to recover: new server up, data restored and checked (not the backup itself)."""
        return round(sum(s["seconds"] for s in self.steps if s["step"] != "fresh backup"), 2)

    @property
    def ok(self) -> bool:
        return all(s["ok"] for s in self.steps) and all(c["ok"] for c in self.counts) and self.cluster_removed


def _timed(result: DrillResult, step: str, action: Any) -> Any:
    started = time.monotonic()
    try:
        value = action()
        result.steps.append({"step": step, "ok": True, "seconds": round(time.monotonic() - started, 2), "detail": str(value)})
        return value
    except Exception as exc:
        result.steps.append({"step": step, "ok": False, "seconds": round(time.monotonic() - started, 2),
                             "detail": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)})
        raise


def run_drill(settings: Any, as_of: datetime) -> DrillResult:
    from ccops import backup
    from ccops.checks.health import run_health

    fresh = backup.create_backup(settings)
    if not fresh.verified:
        raise RuntimeError(f"the fresh backup failed verification: {fresh.reason}")
    taken = datetime.fromisoformat(fresh.manifest["start"].replace("Z", ""))
    result = DrillResult(Path(fresh.path).name, taken)
    result.steps.append({"step": "fresh backup", "ok": True, "seconds": round(fresh.duration_s, 2),
                         "detail": f"{Path(fresh.path).name}, verified"})
    root = Path(tempfile.mkdtemp(prefix="drill-", dir=_drill_parent(settings)))
    cluster = localpg.Cluster(root / "pg")
    try:
        _timed(result, "new server", lambda: cluster.start() and "PostgreSQL started on a new private cluster")
        database = fresh.manifest.get("database") or "content_creator"
        url = _timed(result, "create database", lambda: cluster.create_database(database))

        def restore() -> str:
            # through the backup engine, which reads every format it writes (a .dump.zst through zstd);
            # owners are kept where the new server has the roles, else --no-owner
            return backup.load_dump(Path(fresh.path), url, 2)

        _timed(result, "restore", restore)

        def verify() -> str:
            with connect(url, statement_timeout_ms=3_600_000) as conn:
                actual = backup.exact_row_counts(conn)
            expected = fresh.manifest["row_counts"]
            result.counts = [{"table": t, "expected": expected.get(t), "restored": actual.get(t),
                              "ok": expected.get(t) == actual.get(t)} for t in sorted(set(expected) | set(actual))]
            bad = [c["table"] for c in result.counts if not c["ok"]]
            if bad:
                raise RuntimeError(f"row counts differ in {', '.join(bad)}")
            return f"all {len(result.counts)} tables have the manifest's row counts"

        _timed(result, "verify row counts", verify)
        report = _timed(result, "health check", lambda: run_health(settings, as_of=taken, database_url=url))
        result.health_line = report.line()
    finally:
        dispose_all()
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)
        result.cluster_removed = not root.exists()
    return result


def _drill_parent(settings: Any) -> str:
    parent = Path(settings.home) / "drills"
    parent.mkdir(parents=True, exist_ok=True)
    return str(parent)


@check("drill.recovery")
def dr_drill(ctx: RunContext, enabled: bool = True) -> list[Finding]:
    """Recover the platform's data onto a new server, check it, time it, tear it down."""
    if not enabled:
        return [Finding("drill.recovery", Status.INFO, "skipped: run_drill is False")]
    result = run_drill(ctx.settings, ctx.as_of)
    steps = pd.DataFrame(result.steps)
    age_h = max(0.0, round((ctx.as_of - result.backup_taken_at).total_seconds() / 3600, 2))
    status = Status.OK if result.ok else Status.CRITICAL
    failed = [s for s in result.steps if not s["ok"]]
    summary = (f"recovered {result.backup} onto a new server in {result.recovery_s:.1f} s; "
               f"{sum(c['ok'] for c in result.counts)} of {len(result.counts)} tables verified; "
               f"health of the copy: {result.health_line}; drill cluster removed: {result.cluster_removed}")
    if failed:
        summary = f"drill failed at {failed[0]['step']}: {failed[0]['detail']}"
    return [
        Finding("drill.recovery", status, summary, result.recovery_s, data=steps),
        Finding("drill.data_age", Status.INFO, f"the recovered data is {age_h:.2f} h old (the backup's instant)", age_h,
                data=pd.DataFrame(result.counts)),
    ]


@check("drill.history")
def earlier_drills(ctx: RunContext) -> Finding:
    """This drill against earlier ones from the archive: is recovery getting slower?"""
    from ccops.checks.trends import earlier_drills as history

    table = history(ctx.settings.archive_dir)
    current = next((f for f in reversed(ctx.findings) if f.check == "drill.recovery"), None)
    if table.empty:
        return Finding("drill.history", Status.INFO, "no earlier drill in the archive: this one is the baseline")
    previous = pd.to_numeric(table["recovery_s"], errors="coerce").dropna()
    if current is None or current.value is None or previous.empty:
        return Finding("drill.history", Status.INFO, f"{len(table)} earlier drills archived", data=table)
    median = float(previous.median())
    change = 100 * (float(current.value) - median) / median if median else 0.0
    level = ctx.settings.thresholds.backup.drill_slower_pct
    status = level.grade(change)
    return Finding("drill.history", status, f"recovery took {current.value:.1f} s against a median of {median:.1f} s "
                   f"over {len(previous)} earlier drills ({change:+.0f}%)", round(change, 1), level.first, data=table)
