"""The guide's health check (scripts/health_check.py), done so cron can trust it.

Same questions as the guide: any agent activity in the last 24 h, any content
published, more than 10 agent errors. Differences, each deliberate:
- content is counted by `published_content.published_at` (indexed in
  production), not `created_at` (not indexed: a sequential scan of a
  year of content every hour);
- windows end at `as_of` as well as start 24 h before it, so a past hour can
  be checked again and a clock-skewed future row does not count;
- a database that cannot be reached is a finding (CRITICAL, exit 2), not a
  traceback, because that is the outage the hourly check exists to catch.
It is a plain function, no notebook, so `ccops health` stays well under a
second; `runbooks/health_check.ipynb` explains the same checks step by step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ccops.core.context import RunContext, check, describe, parse_as_of
from ccops.core.db import connect, query_df
from ccops.core.findings import Finding, Findings, Status, worst
from ccops.core.settings import Settings, Thresholds

ACTIVITY_SQL = """
SELECT count(*) AS executions,
       count(*) FILTER (WHERE status = 'error') AS errors,
       max("timestamp") AS last_seen
FROM agent_logs
WHERE "timestamp" > :since AND "timestamp" <= :until
"""
CONTENT_SQL = """
SELECT count(*) AS published, max(published_at) AS last_published
FROM published_content
WHERE published_at > :since AND published_at <= :until
"""
HOURLY_SQL = """
SELECT date_trunc('hour', "timestamp") AS hour,
       count(*) AS executions,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'warning') AS warnings
FROM agent_logs
WHERE "timestamp" > :since AND "timestamp" <= :until
GROUP BY 1 ORDER BY 1
"""


@dataclass
class HealthReport:
    """What `ccops health` prints and returns."""

    as_of: datetime
    findings: Findings = field(default_factory=Findings)

    @property
    def status(self) -> Status:
        return worst(f.status for f in self.findings)

    @property
    def issues(self) -> list[str]:
        return [f.summary for f in self.findings if f.status.rank >= Status.WARNING.rank]

    @property
    def healthy(self) -> bool:
        return not self.issues and self.status in (Status.OK, Status.INFO)

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    def line(self) -> str:
        if self.healthy:
            return "HEALTHY"
        if self.issues:
            return "UNHEALTHY: " + "; ".join(self.issues)
        return "UNKNOWN: " + "; ".join(f.summary for f in self.findings if f.status == Status.UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat() + "Z",
            "healthy": self.healthy,
            "status": self.status.value,
            "line": self.line(),
            "findings": [f.to_dict() for f in self.findings],
        }


def evaluate(activity: dict[str, Any], content: dict[str, Any], as_of: datetime, thresholds: Thresholds) -> list[Finding]:
    """Turn the two counts into the guide's verdicts (pure, so thresholds are tested exactly)."""
    found: list[Finding] = []
    executions = int(activity["executions"] or 0)
    errors = int(activity["errors"] or 0)
    if executions == 0:
        found.append(Finding("health.agent_activity", Status.CRITICAL, "No agent activity in last 24 hours", 0, 1))
    else:
        ago = _ago(as_of, activity.get("last_seen"))
        found.append(Finding(
            "health.agent_activity", Status.OK,
            f"{executions} agent executions in last 24 hours, last {ago}", executions, 1,
        ))
    published = int(content["published"] or 0)
    if published == 0:
        found.append(Finding("health.content", Status.CRITICAL, "No content published in last 24 hours", 0, 1))
    else:
        ago = _ago(as_of, content.get("last_published"))
        found.append(Finding(
            "health.content", Status.OK, f"{published} items published in last 24 hours, last {ago}", published, 1,
        ))
    limit = thresholds.agent_errors_24h_max
    if errors > limit:
        found.append(Finding("health.agent_errors", Status.WARNING, f"High error count: {errors} in last 24h", errors, limit))
    else:
        found.append(Finding("health.agent_errors", Status.OK, f"{errors} agent errors in last 24h", errors, limit))
    return found


def _ago(as_of: datetime, when: Any) -> str:
    if when is None:
        return "unknown"
    hours = (as_of - pd.Timestamp(when).to_pydatetime()).total_seconds() / 3600
    return f"{hours * 60:.0f} min ago" if hours < 1 else f"{hours:.1f} h ago"


def health_findings(settings: Settings, as_of: datetime, database_url: str | None = None) -> list[Finding]:
    """The guide's checks in two indexed queries; an unreachable database is one CRITICAL finding."""
    since = as_of - timedelta(hours=24)
    try:
        url = database_url or settings.resolved_database_url()
        with connect(url, statement_timeout_ms=settings.statement_timeout_ms,
                     lock_timeout_ms=settings.lock_timeout_ms) as conn:
            params = {"since": since, "until": as_of}
            activity = dict(conn.execute(_text(ACTIVITY_SQL), params).mappings().one())
            content = dict(conn.execute(_text(CONTENT_SQL), params).mappings().one())
    except Exception as exc:  # noqa: BLE001 - every failure here is the finding
        reason = describe(exc)
        if not reason.startswith("database unreachable"):
            reason = f"database unreachable: {reason}"
        return [Finding("health.database", Status.CRITICAL, reason)]
    return [Finding("health.database", Status.OK, "database reachable"), *evaluate(activity, content, as_of, settings.thresholds)]


def _text(sql: str):
    from sqlalchemy import text

    return text(sql)


def run_health(settings: Settings, as_of: str | datetime | None = None, database_url: str | None = None) -> HealthReport:
    """`ccops health`: the report, not printed; the CLI prints .line() and exits .exit_code."""
    when = parse_as_of(as_of)
    return HealthReport(as_of=when, findings=Findings(health_findings(settings, when, database_url)))


# ---- notebook steps ------------------------------------------------------------

def _guide_findings(ctx: RunContext) -> list[Finding]:
    """The guide's checks, queried once per run and shared by the notebook's three steps."""
    if "health_findings" not in ctx.state:
        ctx.state["health_findings"] = health_findings(ctx.settings, ctx.as_of)
    return ctx.state["health_findings"]


@check("health.database")
def database_reachable(ctx: RunContext) -> list[Finding]:
    """Step 1: can we reach the database at all (everything else depends on it)."""
    return [f for f in _guide_findings(ctx) if f.check == "health.database"]


@check("health.agent_activity")
def agent_activity(ctx: RunContext) -> list[Finding]:
    """Step 2: agent executions and errors in the 24 h before as_of."""
    return [f for f in _guide_findings(ctx) if f.check in ("health.agent_activity", "health.agent_errors")]


@check("health.content")
def content_published(ctx: RunContext) -> list[Finding]:
    """Step 3: content published in the 24 h before as_of (by published_at)."""
    return [f for f in _guide_findings(ctx) if f.check == "health.content"]


@check("health.activity_by_hour")
def activity_by_hour(ctx: RunContext) -> Finding:
    """Step 4: executions and errors per hour, so a gap or a burst is visible at a glance."""
    since, until = ctx.window(24)
    with ctx.db() as conn:
        rows = query_df(conn, HOURLY_SQL, since=since, until=until)
    last_hour = (pd.Timestamp(until) - pd.Timedelta(microseconds=1)).floor("h")
    hours = pd.date_range(pd.Timestamp(since).floor("h"), last_hour, freq="h")
    frame = pd.DataFrame({"hour": hours})
    if not rows.empty:
        rows["hour"] = pd.to_datetime(rows["hour"])
        frame = frame.merge(rows, on="hour", how="left")
    for column in ("executions", "errors", "warnings"):
        if column not in frame:
            frame[column] = 0
        frame[column] = frame[column].fillna(0).astype(int)
    silent = int((frame["executions"] == 0).sum())
    figure = _hourly_figure(frame, ctx.settings.thresholds)
    if rows.empty:
        return Finding("health.activity_by_hour", Status.INFO, "no data: no agent executions in the last 24 h", 0, data=frame, figure=figure)
    status = Status.OK if silent == 0 else Status.WARNING
    summary = (
        "agents ran in every hour of the last 24 h"
        if silent == 0
        else f"{silent} of the last {len(frame)} hours had no agent execution at all"
    )
    return Finding("health.activity_by_hour", status, summary, silent, 0, data=frame, figure=figure)


def _hourly_figure(frame: pd.DataFrame, thresholds: Thresholds):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2))
    axis = figure.add_subplot(1, 1, 1)
    labels = [h.strftime("%H:00") for h in frame["hour"]]
    axis.bar(labels, frame["executions"], color="#8fb3d9", label="executions")
    axis.bar(labels, frame["errors"], color="#d9534f", label="errors")
    axis.axhline(thresholds.errors_per_hour_warning, color="#f0ad4e", linestyle="--", linewidth=1, label="errors/h warning")
    axis.axhline(thresholds.errors_per_hour_critical, color="#d9534f", linestyle="--", linewidth=1, label="errors/h critical")
    axis.set_ylabel("per hour (UTC)")
    axis.tick_params(axis="x", labelrotation=90, labelsize=7)
    axis.legend(fontsize=7, loc="upper left")
    axis.set_title("Agent executions and errors, last 24 h")
    figure.tight_layout()
    return figure
