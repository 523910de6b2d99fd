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

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status

# the guide's rule itself is in the foundation: a restore ends by running it on the restored database
from ccops.core.health import (
    ACTIVITY_SQL,
    CONTENT_SQL,
    HealthReport,
    evaluate,
    health_findings,
    run_health,
)
from ccops.core.thresholds import Thresholds

__all__ = ["ACTIVITY_SQL", "CONTENT_SQL", "HOURLY_SQL", "HealthReport", "activity_by_hour", "agent_activity",
           "content_published", "database_reachable", "evaluate", "health_findings", "run_health"]

HOURLY_SQL = """
SELECT date_trunc('hour', "timestamp") AS hour,
       count(*) AS executions,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'warning') AS warnings
FROM agent_logs
WHERE "timestamp" > :since AND "timestamp" <= :until
GROUP BY 1 ORDER BY 1
"""


# ---- notebook steps ------------------------------------------------------------

def _guide_findings(ctx: RunContext) -> list[Finding]:
    """The guide's checks, queried once per run and shared by the notebook's three steps."""
    return ctx.cached(_read_guide)


def _read_guide(ctx: RunContext) -> list[Finding]:
    return health_findings(ctx.settings, ctx.as_of)


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
    # imported here, not at the top: system down and recovery use this module's other steps, which draw
    # nothing, and a runbook that imported ccops.core.charts has matplotlib preloaded (ccops.runbook.session)
    from ccops.core.charts import new_figure

    figure = new_figure(9, 3.2)
    axis = figure.add_subplot(1, 1, 1)
    labels = [h.strftime("%H:00") for h in frame["hour"]]
    axis.bar(labels, frame["executions"], color="#8fb3d9", label="executions")
    axis.bar(labels, frame["errors"], color="#d9534f", label="errors")
    per_hour = thresholds.logs.errors_per_hour
    for part, colour in (("warning", "#f0ad4e"), ("critical", "#d9534f")):
        if getattr(per_hour, part) is not None:
            axis.axhline(getattr(per_hour, part), color=colour, linestyle="--", linewidth=1, label=f"errors/h {part}")
    axis.set_ylabel("per hour (UTC)")
    axis.tick_params(axis="x", labelrotation=90, labelsize=7)
    axis.legend(fontsize=7, loc="upper left")
    axis.set_title("Agent executions and errors, last 24 h")
    figure.tight_layout()
    return figure
