"""Trends across runs, read from the archive's run records: the quarterly review's memory.

The guide's quarterly steps ("compare to previous quarter", "analyze growth
trends", "document time to recover") need history that no single run has. The
archive already keeps every run's duration and findings, so this module reads
run records (never notebooks) for: key timings this quarter against the last,
the disk-usage history that capacity planning fits a trend to, and earlier
disaster-recovery drills. `capacity_snapshot` is what puts disk figures into
the records in the first place; the weekly and quarterly runbooks call it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ccops.core.charts import Chart, new_figure
from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Status

QUARTER = timedelta(days=91)
KEY_RUNBOOKS = ("health_check", "daily", "backup", "weekly", "monthly")
KEY_FINDINGS = {  # finding id -> the figure its value holds, in seconds
    "backup.restore_test": "restore test (s)",
    "drill.recovery": "disaster recovery (s)",
}
CAPACITY_FINDINGS = {
    "capacity.database_bytes": "database_bytes",
    "capacity.log_bytes": "log_bytes",
    "capacity.backup_bytes": "backup_bytes",
}


def load_records(archive_dir: Path) -> list[dict[str, Any]]:
    """Every readable run record (with findings), oldest first."""
    from ccops.archive import iter_record_files

    records = []
    for path in iter_record_files(archive_dir):
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("start"):
            records.append(record)
    records.sort(key=lambda r: str(r["start"]))
    return records


def _when(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["start"]).replace("Z", "+00:00")).replace(tzinfo=None)


def timings_table(records: list[dict[str, Any]], as_of: datetime) -> pd.DataFrame:
    """Median figures of completed runs, this quarter against the previous one."""
    rows = []
    for record in records:
        when = _when(record)
        if record.get("outcome") in ("failed", "timed-out") or when > as_of or when <= as_of - 2 * QUARTER:
            continue
        period = "this quarter" if when > as_of - QUARTER else "previous quarter"
        if record.get("runbook") in KEY_RUNBOOKS and record.get("duration_s") is not None:
            rows.append({"figure": f"{record['runbook']} run (s)", "period": period, "value": float(record["duration_s"])})
        for finding in record.get("findings", []):
            label = KEY_FINDINGS.get(finding.get("check"))
            if label and isinstance(finding.get("value"), (int, float)):
                rows.append({"figure": label, "period": period, "value": float(finding["value"])})
    frame = pd.DataFrame(rows, columns=["figure", "period", "value"])
    if frame.empty:
        return pd.DataFrame(columns=["figure", "this quarter", "previous quarter", "runs", "change_pct"])
    table = frame.pivot_table(index="figure", columns="period", values="value", aggfunc="median")
    for column in ("this quarter", "previous quarter"):
        if column not in table:
            table[column] = float("nan")
    table["runs"] = frame[frame["period"] == "this quarter"].groupby("figure").size()
    table["change_pct"] = (100 * (table["this quarter"] - table["previous quarter"]) / table["previous quarter"]).round(1)
    return table[["this quarter", "previous quarter", "runs", "change_pct"]].round(2).reset_index()


@check("trends.timings")
def key_timings(ctx: RunContext, slower_pct: float | None = None) -> Finding:
    """The guide's performance benchmarking: key timings this quarter against the previous one.

    WARNING for a timing slower than thresholds.trends.slower_pct (`slower_pct` overrides it for one call).
    """
    level = ctx.settings.thresholds.trends.slower_pct.override(slower_pct)
    slower_pct = level.first
    table = timings_table(load_records(ctx.settings.archive_dir), ctx.as_of)
    if table.empty:
        return Finding("trends.timings", Status.INFO, f"no data: no completed runs archived in {ctx.settings.archive_dir}")
    compared = table.dropna(subset=["change_pct"])
    slower = compared[level.beyond(compared["change_pct"])]
    figure = _timings_figure(table)
    if compared.empty:
        return Finding("trends.timings", Status.INFO,
                       f"{len(table)} key timings this quarter; no previous quarter in the archive to compare with",
                       data=table, figure=figure)
    if slower.empty:
        return Finding("trends.timings", Status.OK,
                       f"no key timing got more than {slower_pct:g}% slower than last quarter ({len(compared)} compared)",
                       0, slower_pct, data=table, figure=figure)
    names = ", ".join(f"{r.figure} +{r.change_pct:g}%" for r in slower.itertuples())
    return Finding("trends.timings", Status.WARNING, f"slower than last quarter: {names}", len(slower), slower_pct,
                   data=table, figure=figure)


def _timings_figure(table: pd.DataFrame):
    figure = new_figure(8, 0.5 + 0.45 * len(table))
    axis = figure.add_subplot(1, 1, 1)
    positions = range(len(table))
    axis.barh([p + 0.2 for p in positions], table["previous quarter"].fillna(0), height=0.4, color="#c5c5c5", label="previous quarter")
    axis.barh([p - 0.2 for p in positions], table["this quarter"].fillna(0), height=0.4, color="#5b8def", label="this quarter")
    axis.set_yticks(list(positions), table["figure"], fontsize=8)
    axis.set_xlabel("median seconds")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def capacity_history(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per day that recorded capacity figures: date, database_bytes, log_bytes, backup_bytes."""
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        day = _when(record).strftime("%Y-%m-%d")
        for finding in record.get("findings", []):
            column = CAPACITY_FINDINGS.get(finding.get("check"))
            if column and isinstance(finding.get("value"), (int, float)):
                rows.setdefault(day, {"date": day})[column] = float(finding["value"])
    frame = pd.DataFrame(list(rows.values()), columns=["date", *CAPACITY_FINDINGS.values()])
    return frame.sort_values("date").reset_index(drop=True)


def directory_bytes(path: Path) -> int:
    path = Path(path)
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@check("capacity.snapshot")
def capacity_snapshot(ctx: RunContext) -> list[Finding]:
    """Today's database, log and backup sizes, recorded so later quarters can fit a trend."""
    from ccops.core.db import scalar

    with ctx.db() as conn:
        database = int(scalar(conn, "SELECT pg_database_size(current_database())"))
    logs = directory_bytes(ctx.settings.effective_log_dir)
    backups = directory_bytes(ctx.settings.effective_backup_dir)
    history = database_history(load_records(ctx.settings.archive_dir), ctx.as_of, database)
    return [
        Finding("capacity.database_bytes", Status.INFO, f"database: {database / 2**20:,.1f} MiB", database,
                data=history, chart=database_chart(history)),
        Finding("capacity.log_bytes", Status.INFO, f"logs: {logs / 2**20:,.1f} MiB in {ctx.settings.effective_log_dir}", logs),
        Finding("capacity.backup_bytes", Status.INFO, f"backups: {backups / 2**20:,.1f} MiB in {ctx.settings.effective_backup_dir}", backups),
    ]


def database_history(records: list[dict[str, Any]], as_of: datetime, database_bytes: int) -> pd.DataFrame:
    """The database size of every archived day up to as_of's day, and today's (date as a day, UTC)."""
    history = capacity_history(records)
    today = as_of.strftime("%Y-%m-%d")
    earlier = history[(history["date"] < today) & history["database_bytes"].notna()]
    frame = pd.DataFrame({"date": pd.to_datetime([*earlier["date"], today]),
                          "database_bytes": [*earlier["database_bytes"].astype(float), float(database_bytes)]})
    return frame.reset_index(drop=True)


def database_chart(history: pd.DataFrame) -> Chart:
    """Database size per day in MB or GB, whichever reads better for the largest day."""
    largest = float(history["database_bytes"].max()) if len(history) else 0.0
    unit, scale = ("GB", 1e-9) if largest >= 1e9 else ("MB", 1e-6)
    return Chart(x="date", y="database_bytes", kind="line", y_scale=scale,
                 title="Database size per day (archived capacity snapshots and today)",
                 x_label="day (UTC)", y_label=f"database size ({unit})")


def disk_projection(ctx: RunContext, path: str | None = None) -> list[Finding]:
    """Capacity planning: the disk-fill date from the archive's capacity history (or the database alone)."""
    from ccops import analytics

    history = capacity_history(load_records(ctx.settings.archive_dir))
    return analytics.capacity_disk_projection(ctx, history=history if len(history) >= 2 else None, path=path)


def earlier_drills(archive_dir: Path) -> pd.DataFrame:
    """Time to recover and data age of every archived disaster-recovery drill."""
    rows = []
    for record in load_records(archive_dir):
        found = {f.get("check"): f for f in record.get("findings", [])}
        if "drill.recovery" in found:
            rows.append({"date": record["start"][:10], "outcome": record.get("outcome"),
                         "recovery_s": found["drill.recovery"].get("value"),
                         "data_age_h": (found.get("drill.data_age") or {}).get("value")})
    return pd.DataFrame(rows, columns=["date", "outcome", "recovery_s", "data_age_h"])
