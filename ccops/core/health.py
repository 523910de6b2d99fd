"""The guide's health check (scripts/health_check.py): the rule, as a plain function over one database.

In the foundation because it is asked from two layers: the checks (`ccops health`,
the hourly runbook) and the backup engine, whose restore ends by running it on the
database it just restored. One function, so "healthy" means the same in both.

Same questions as the guide: any agent activity in the last 24 h, any content
published, more than 10 agent errors (see ccops.checks.health for why each
query is written as it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ccops.core.context import describe, parse_as_of
from ccops.core.db import connect
from ccops.core.findings import Finding, Findings, Status, worst
from ccops.core.settings import Settings
from ccops.core.thresholds import Thresholds

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
    level = thresholds.agents.errors_24h
    limit = level.first
    if level.grade(errors) != Status.OK:
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
