"""The guide's health check (scripts/health_check.py): the rule, as a plain function over one database.

In the foundation because it is asked from two layers: the checks (`ccops health`,
the hourly runbook) and the backup engine, whose restore ends by running it on the
database it just restored. One function, so "healthy" means the same in both.

Same questions as the guide: any agent activity in the last 24 h, any content
published, more than 10 agent errors (see ccops.checks.health for why each
query is written as it is).

Cron runs it every hour, so the query path is light: psycopg straight, with
the same session ccops.core.db gives every check (read only, statement and
lock timeouts, its application_name and marker), and no pandas or SQLAlchemy
imported (tests/test_health_imports.py keeps it so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ccops.core.context import describe, parse_as_of
from ccops.core.db import application_name, libpq_url, marked, normalize_url, session_settings
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
    if not isinstance(when, datetime):  # the driver gives datetimes; a caller may pass text, read as pandas does
        import pandas as pd

        when = pd.Timestamp(when).to_pydatetime()
    hours = (as_of - when).total_seconds() / 3600
    return f"{hours * 60:.0f} min ago" if hours < 1 else f"{hours:.1f} h ago"


def health_findings(settings: Settings, as_of: datetime, database_url: str | None = None) -> list[Finding]:
    """The guide's checks in two indexed queries; an unreachable database is one CRITICAL finding."""
    since = as_of - timedelta(hours=24)
    try:
        url = database_url or settings.resolved_database_url()
        activity, content = _read_counts(url, {"since": since, "until": as_of},
                                         settings.statement_timeout_ms, settings.lock_timeout_ms)
    except Exception as exc:  # noqa: BLE001 - every failure here is the finding
        reason = _reason(exc)
        if not reason.startswith("database unreachable"):
            reason = f"database unreachable: {reason}"
        return [Finding("health.database", Status.CRITICAL, reason)]
    return [Finding("health.database", Status.OK, "database reachable"), *evaluate(activity, content, as_of, settings.thresholds)]


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def _pyformat(sql: str) -> str:
    """`:name` (how ACTIVITY_SQL and CONTENT_SQL are written, for SQLAlchemy's text()) as psycopg's `%(name)s`."""
    return _NAMED.sub(r"%(\1)s", sql)


def _read_counts(url: str, params: dict[str, Any], statement_timeout_ms: int,
                 lock_timeout_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two rows, in one read-only transaction set up as ccops.core.db.connect sets up every check's."""
    if not normalize_url(url).startswith("postgresql+psycopg://"):  # not PostgreSQL: SQLAlchemy says what is wrong
        return _read_counts_engine(url, params, statement_timeout_ms, lock_timeout_ms)
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(libpq_url(url), connect_timeout=5, application_name=application_name(),
                         row_factory=dict_row) as conn:
        with conn.transaction():
            for statement in session_settings(True, statement_timeout_ms, lock_timeout_ms):
                conn.execute(marked(statement))
            activity = conn.execute(marked(_pyformat(ACTIVITY_SQL)), params).fetchone()
            content = conn.execute(marked(_pyformat(CONTENT_SQL)), params).fetchone()
    if activity is None or content is None:  # aggregates without GROUP BY: one row, always
        raise RuntimeError("health: a count query returned no row")
    return dict(activity), dict(content)


def _read_counts_engine(url: str, params: dict[str, Any], statement_timeout_ms: int,
                        lock_timeout_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from sqlalchemy import text

    from ccops.core.db import connect

    with connect(url, statement_timeout_ms=statement_timeout_ms, lock_timeout_ms=lock_timeout_ms) as conn:
        activity = dict(conn.execute(text(ACTIVITY_SQL), params).mappings().one())
        content = dict(conn.execute(text(CONTENT_SQL), params).mappings().one())
    return activity, content


def _reason(exc: BaseException) -> str:
    """The line describe() gives for the same failure under SQLAlchemy (which wraps psycopg's errors by name)."""
    import psycopg

    if isinstance(exc, psycopg.Error):
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        return f"database unreachable: {first}" if isinstance(exc, psycopg.OperationalError) else first
    return describe(exc)


def run_health(settings: Settings, as_of: str | datetime | None = None, database_url: str | None = None) -> HealthReport:
    """`ccops health`: the report, not printed; the CLI prints .line() and exits .exit_code."""
    when = parse_as_of(as_of)
    return HealthReport(as_of=when, findings=Findings(health_findings(settings, when, database_url)))
