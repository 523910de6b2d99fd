"""Capacity planning for the quarterly review: how fast the tables grow, and when the disk fills.

Growth is measured, not guessed: rows per full UTC day of the largest tables
over the quarter, from their timestamp columns (indexed in production except
community_users.first_seen, a table small enough to scan), with a straight
least-squares line through them. A straight line is what an operator can
check with a ruler on the chart, and over a quarter it is as good as
anything fancier; projections add the fitted daily rows (never negative) for
each future day.

Disk: given a history of bytes (database, logs, backups; the archive's run
records feed it), the same kind of line gives bytes per day, and the disk
holding the backup directory fills when that growth has eaten today's free
space. Without a history the database's size and its tables' rows/day growth
ratio give an estimate (database only; logs and backups not included).
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from psycopg import sql

from ccops.analytics._common import day_floor, figure, no_data
from ccops.analytics.stats import linear_fit
from ccops.core import sqlsafe
from ccops.core.context import RunContext, check
from ccops.core.db import scalar
from ccops.core.findings import Finding, Status

TABLES: dict[str, str] = {
    "agent_logs": "timestamp",
    "published_content": "published_at",
    "user_interactions": "timestamp",
    "community_users": "first_seen",
    "market_data": "timestamp",
}
HORIZONS = (90, 365)
HISTORY_COLUMNS = ("database_bytes", "log_bytes", "backup_bytes")


def projected_added(slope: float, intercept: float, first_day: int, days: int) -> float:
    """Rows the fitted line adds over `days` future days starting at day index `first_day` (rates below 0 count 0)."""
    if days <= 0:
        return 0.0
    xs = np.arange(first_day, first_day + days, dtype=float)
    return float(np.clip(intercept + slope * xs, 0, None).sum())


# psycopg placeholders: {table} and {column} are composed identifiers, %(values)s parameters.
DAILY_ROWS_SQL = """
SELECT date_trunc('day', {column}) AS day, count(*) AS rows
FROM {table} WHERE {column} >= %(start)s AND {column} < %(end)s GROUP BY 1"""
ROWS_UNTIL_SQL = "SELECT count(*) FROM {table} WHERE {column} <= %(as_of)s"
TABLE_SIZE_SQL = "SELECT pg_total_relation_size(CAST(format('%I', CAST(:t AS text)) AS regclass))"


def _names(sql_text: str, table: str, column: str) -> sql.Composed:
    return sql.SQL(sql_text).format(table=sql.Identifier(table), column=sql.Identifier(column))


def _daily(conn: Any, table: str, column: str, start: datetime, end: datetime, days: int) -> pd.Series:
    frame = sqlsafe.query_df(conn, _names(DAILY_ROWS_SQL, table, column), {"start": start, "end": end})
    index = pd.date_range(start, periods=days, freq="D")
    if frame.empty:
        return pd.Series(0, index=index, dtype=float)
    return frame.set_index(pd.to_datetime(frame["day"]))["rows"].astype(float).reindex(index, fill_value=0.0)


def table_growth(conn: Any, as_of: datetime, days: int = 91, horizons: tuple[int, ...] = HORIZONS,
                 tables: dict[str, str] | None = None) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """Per table: rows now, rows per day (mean and fitted), trend, projections; plus the daily series.

    Only full days count: [day(as_of) - days, day(as_of)). Day index 0 is the
    first of them, so day(as_of) is index `days`, the first projected day.
    """
    end = day_floor(as_of)
    start = end - timedelta(days=days)
    rows: list[dict[str, Any]] = []
    series: dict[str, pd.Series] = {}
    for table, column in (tables or TABLES).items():
        daily = _daily(conn, table, column, start, end, days)
        series[table] = daily
        total = int(sqlsafe.scalar(conn, _names(ROWS_UNTIL_SQL, table, column), {"as_of": as_of}))
        size = int(scalar(conn, TABLE_SIZE_SQL, t=table))
        slope, intercept = linear_fit(list(range(days)), list(daily.to_numpy()))
        row: dict[str, Any] = {
            "table": table, "column": column, "rows": total, "size_bytes": size,
            "mean_rows_per_day": float(daily.mean()), "rows_per_day_now": max(0.0, intercept + slope * days),
            "trend_rows_per_day2": slope, "intercept": intercept,
        }
        for horizon in horizons:
            projected = total + projected_added(slope, intercept, days, horizon)
            row[f"rows_in_{horizon}d"] = projected
            row[f"bytes_in_{horizon}d"] = size * projected / total if total else math.nan
        rows.append(row)
    return pd.DataFrame(rows), series


def _human_bytes(value: float) -> str:
    if value != value:
        return "n/a"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{value:,.0f} B"
        value /= 1000
    return f"{value:,.1f} TB"


def _growth_figure(table: pd.DataFrame, series: dict[str, pd.Series], days: int):
    names = list(series)
    fig = figure(11, 2.2 * math.ceil(len(names) / 2) + 0.6)
    axes = np.atleast_1d(fig.subplots(math.ceil(len(names) / 2), 2, squeeze=False)).ravel()
    for ax, name in zip(axes, names, strict=False):
        daily = series[name]
        row = table[table["table"] == name].iloc[0]
        ax.bar(daily.index, daily.to_numpy(), color="#b0b7c3", width=1.0)
        xs = np.arange(days)
        ax.plot(daily.index, row["intercept"] + row["trend_rows_per_day2"] * xs, color="#d7301f")
        ax.set_title(f"{name}: {row['rows_per_day_now']:,.0f} rows/day now", fontsize="small")
        ax.set_xlabel("day (UTC)", fontsize="x-small")
        ax.set_ylabel("rows added / day", fontsize="x-small")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle("Rows per day with the fitted trend")
    return fig


@check("analytics.capacity_growth")
def capacity_growth(ctx: RunContext, days: int = 91, horizons: tuple[int, ...] = HORIZONS) -> list[Finding]:
    """Rows per day of the largest tables over the quarter, the trend, and rows projected 90/365 days out."""
    with ctx.db() as conn:
        table, series = table_growth(conn, ctx.as_of, days, horizons)
    if int(table["rows"].sum()) == 0:
        return [no_data("analytics.capacity_growth", "the tracked tables hold no rows")]
    fig = _growth_figure(table, series, days)
    table = table.drop(columns=["intercept"]).sort_values("rows", ascending=False).reset_index(drop=True)
    longest = max(horizons)
    summary = "; ".join(
        f"{r.table} {r.rows:,} rows, +{r.rows_per_day_now:,.0f}/day now -> {getattr(r, f'rows_in_{longest}d'):,.0f} "
        f"in {longest} days" for r in table.head(2).itertuples())
    return [Finding("analytics.capacity_growth", Status.OK, summary, float(table["rows_per_day_now"].sum()),
                    data=table, figure=fig)]


def disk_of(path: str | os.PathLike[str]) -> Path:
    """The nearest existing directory of path (a backup dir not yet created lives on its parent's disk)."""
    candidate = Path(path).expanduser().resolve()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate


def free_bytes_of(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged writer (the database, the backups) can still use on the disk holding path."""
    stats = os.statvfs(disk_of(path))
    return stats.f_bavail * stats.f_frsize


def history_frame(history: pd.DataFrame) -> pd.DataFrame:
    """date + tracked byte columns (missing ones are 0) + total, sorted by date."""
    if "date" not in history.columns:
        raise ValueError("history needs a 'date' column")
    present = [c for c in HISTORY_COLUMNS if c in history.columns]
    if not present:
        raise ValueError(f"history needs at least one of {', '.join(HISTORY_COLUMNS)}")
    frame = pd.DataFrame({"date": pd.to_datetime(history["date"])})
    for column in HISTORY_COLUMNS:
        values = history[column] if column in history.columns else pd.Series(0.0, index=history.index)
        frame[column] = pd.to_numeric(values, errors="coerce").fillna(0).astype(float)
    frame["total_bytes"] = frame[list(HISTORY_COLUMNS)].sum(axis=1)
    return frame.dropna(subset=["date"]).sort_values("date").reset_index(drop=True)


def _disk_figure(history: pd.DataFrame | None, as_of: datetime, used_now: float, slope: float, free: float,
                 horizon_days: float):
    fig = figure(9, 3.5)
    ax = fig.subplots()
    if history is not None:
        ax.plot(history["date"], history["total_bytes"] / 1e9, "o", label="tracked bytes (history)")
    future = np.array([as_of + timedelta(days=d) for d in np.linspace(0, horizon_days, 50)])  # dates: matplotlib's units
    projected = [(used_now + max(slope, 0) * d) / 1e9 for d in np.linspace(0, horizon_days, 50)]
    ax.plot(future, projected, "--", color="#d7301f", label="projection")
    ax.axhline((used_now + free) / 1e9, color="black", linewidth=1, label="disk full")
    ax.set_xlabel("date (UTC)")
    ax.set_ylabel("tracked bytes (GB)")
    ax.legend(fontsize="small")
    ax.set_title("Disk use: history and projection")
    fig.autofmt_xdate()
    return fig


@check("analytics.capacity_disk")
def capacity_disk_projection(ctx: RunContext, history: pd.DataFrame | None = None,
                             path: str | os.PathLike[str] | None = None, free_bytes: int | None = None,
                             warning_days: float | None = None, critical_days: float | None = None,
                             days: int = 91) -> list[Finding]:
    """When the disk holding `path` (default: the backup directory) fills at the measured growth rate.

    history: rows of (date, database_bytes, log_bytes, backup_bytes), all on
    that disk. free_bytes overrides the statvfs reading (a disk on another
    host, or a test). WARNING when it fills within `warning_days`, CRITICAL
    within `critical_days` (None: thresholds.capacity.days_to_full).
    """
    level = ctx.settings.thresholds.capacity.days_to_full.override(warning_days, critical_days)
    warning_days = level.first
    check_id = "analytics.capacity_disk"
    target = Path(path) if path else (ctx.settings.optional("backup_dir") or Path("/"))
    free = float(free_bytes if free_bytes is not None else free_bytes_of(target))
    frame: pd.DataFrame | None = None
    if history is not None and len(history) > 0:
        frame = history_frame(history)
        if frame["date"].nunique() < 2:
            return [no_data(check_id, f"a single day of disk history ({frame['date'].iloc[0]:%Y-%m-%d}): no trend yet",
                            data=frame)]
        xs = [(d - frame["date"].iloc[0]).total_seconds() / 86400 for d in frame["date"]]
        slope, intercept = linear_fit(xs, list(frame["total_bytes"]))
        used_now = float(frame["total_bytes"].iloc[-1])
        source = f"{len(frame)} history points from {frame['date'].iloc[0]:%Y-%m-%d} to {frame['date'].iloc[-1]:%Y-%m-%d}"
    else:
        with ctx.db() as conn:
            growth, _ = table_growth(conn, ctx.as_of, days, horizons=())
            used_now = float(scalar(conn, "SELECT pg_database_size(current_database())"))
        rows = float(growth["rows"].sum())
        if rows == 0:
            return [no_data(check_id, "no history given and the tracked tables hold no rows to estimate growth from")]
        ratio = float(growth["rows_per_day_now"].sum()) / rows
        slope = used_now * ratio
        source = (f"estimate: database {_human_bytes(used_now)} growing {ratio:.3%} a day with its rows "
                  "(logs and backups not included)")
    days_to_full = free / slope if slope > 0 else math.inf
    # to the second: a fit on exact data may be off by a few ulps, which must not move the date
    fill_date = _round_second(ctx.as_of + timedelta(days=days_to_full)) if days_to_full < 365_000 else None
    table = pd.DataFrame([{
        "path": str(disk_of(target)), "source": source, "used_bytes": used_now, "growth_bytes_per_day": slope,
        "free_bytes": free, "days_to_full": days_to_full, "fill_date": fill_date,
    }])
    horizon = min(days_to_full, 365.0) if math.isfinite(days_to_full) else 365.0
    fig = _disk_figure(frame, ctx.as_of, used_now, slope, free, max(horizon, 1.0))
    where = f"the disk holding {table.loc[0, 'path']} ({_human_bytes(free)} free)"
    if slope <= 0:
        return [Finding(check_id, Status.OK, f"{where} is not filling up: tracked bytes are flat or shrinking ({source})",
                        math.inf, warning_days, data=table, figure=fig)]
    status = level.grade(days_to_full)
    if days_to_full > 3650:
        summary = f"{where} would take more than 10 years to fill at +{_human_bytes(slope)}/day ({source})"
    else:
        summary = (f"{where} fills in {days_to_full:,.0f} days, around {fill_date:%Y-%m-%d}, at "
                   f"+{_human_bytes(slope)}/day ({source})")
    return [Finding(check_id, status, summary, round(days_to_full, 1),
                    level.limit(status), data=table, figure=fig)]


def _round_second(moment: datetime) -> datetime:
    return (moment + timedelta(microseconds=500_000)).replace(microsecond=0)
