"""Agent activity: who ran, who failed, and who went quiet.

The guide's morning check prints one number (agent executions in 24 h). One
number hides the failure operators actually meet: a single agent that stopped
while the others keep the total up. So ccops compares each agent with its own
cadence over the past week: an agent silent for much longer than its usual
interval is a WARNING even when the platform as a whole looks busy. Both
queries read a bounded range of the indexed `agent_logs.timestamp`.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from ccops.context import RunContext, check
from ccops.db import query_df
from ccops.findings import Finding, Status

BASELINE_DAYS = 7
MIN_SILENCE = timedelta(hours=1)  # never call an agent silent for less than an hour
BURST_ERRORS_PER_HOUR = 3

PER_AGENT_SQL = """
SELECT agent_name,
       count(*) FILTER (WHERE "timestamp" > :day_ago) AS executions_24h,
       count(*) FILTER (WHERE "timestamp" > :day_ago AND status = 'error') AS errors_24h,
       count(*) FILTER (WHERE "timestamp" > :day_ago AND status = 'warning') AS warnings_24h,
       count(*) AS runs_7d,
       min("timestamp") AS first_seen_7d,
       max("timestamp") AS last_seen,
       avg(execution_time) FILTER (WHERE "timestamp" > :day_ago) AS mean_seconds_24h
FROM agent_logs
WHERE "timestamp" > :week_ago AND "timestamp" <= :as_of
GROUP BY agent_name
ORDER BY agent_name
"""

BURST_SQL = """
SELECT agent_name, date_trunc('hour', "timestamp") AS hour, count(*) AS errors
FROM agent_logs
WHERE "timestamp" > :day_ago AND "timestamp" <= :as_of AND status = 'error'
GROUP BY 1, 2
HAVING count(*) >= :burst
ORDER BY errors DESC, hour
"""


def agent_table(frame: pd.DataFrame, as_of, silence_factor: float) -> pd.DataFrame:
    """Per agent: 24 h counts, usual interval over the week, silence, and the silent flag."""
    table = frame.copy()
    table["last_seen"] = pd.to_datetime(table["last_seen"])
    table["first_seen_7d"] = pd.to_datetime(table["first_seen_7d"])
    span = (table["last_seen"] - table["first_seen_7d"]).dt.total_seconds()
    runs = table["runs_7d"].astype(float)
    table["usual_interval_min"] = (span / (runs - 1).where(runs > 1)).div(60).round(1)
    table["silent_for_min"] = ((pd.Timestamp(as_of) - table["last_seen"]).dt.total_seconds() / 60).round(1)
    limit = (table["usual_interval_min"] * silence_factor).clip(lower=MIN_SILENCE.total_seconds() / 60)
    table["silent"] = table["usual_interval_min"].notna() & (table["silent_for_min"] > limit)
    table["mean_seconds_24h"] = table["mean_seconds_24h"].astype(float).round(2)
    columns = ["agent_name", "executions_24h", "errors_24h", "warnings_24h", "mean_seconds_24h",
               "usual_interval_min", "last_seen", "silent_for_min", "silent"]
    return table[columns]


@check("activity.agents")
def agent_activity(ctx: RunContext) -> list[Finding]:
    """Executions, errors and warnings per agent in the last 24 h, and agents gone silent."""
    params = {
        "as_of": ctx.as_of,
        "day_ago": ctx.as_of - timedelta(hours=24),
        "week_ago": ctx.as_of - timedelta(days=BASELINE_DAYS),
        "burst": BURST_ERRORS_PER_HOUR,
    }
    with ctx.db() as conn:
        frame = query_df(conn, PER_AGENT_SQL, **params)
        bursts = query_df(conn, BURST_SQL, **params)
    if frame.empty:
        return [Finding("activity.agents", Status.WARNING, f"no data: no agent ran in the {BASELINE_DAYS} days before as_of", 0)]
    table = agent_table(frame, ctx.as_of, ctx.settings.thresholds.agent_silence_factor)
    executions = int(table["executions_24h"].sum())
    errors = int(table["errors_24h"].sum())
    warnings = int(table["warnings_24h"].sum())
    active = int((table["executions_24h"] > 0).sum())
    found = [Finding(
        "activity.agents", Status.OK if executions else Status.CRITICAL,
        f"{executions} executions by {active} of {len(table)} agents in the last 24 h "
        f"({errors} errors, {warnings} warnings)",
        executions, data=table,
    )]
    silent = table[table["silent"]]
    if silent.empty:
        found.append(Finding("activity.silent_agents", Status.OK, "every agent ran within its usual interval", 0))
    else:
        names = ", ".join(
            f"{row.agent_name} (silent {row.silent_for_min / 60:.1f} h, usually every {row.usual_interval_min:.0f} min)"
            for row in silent.itertuples()
        )
        found.append(Finding(
            "activity.silent_agents", Status.WARNING, f"{len(silent)} agent(s) stopped running: {names}",
            len(silent), 0, data=silent.reset_index(drop=True),
        ))
    if bursts.empty:
        found.append(Finding("activity.error_bursts", Status.OK,
                             f"no agent logged {BURST_ERRORS_PER_HOUR}+ errors within one hour", 0, BURST_ERRORS_PER_HOUR))
    else:
        top = bursts.iloc[0]
        hour = pd.Timestamp(top["hour"])
        found.append(Finding(
            "activity.error_bursts", Status.WARNING,
            f"error burst: {top['agent_name']} logged {int(top['errors'])} errors between "
            f"{hour:%H:00} and {hour + pd.Timedelta(hours=1):%H:00} UTC on {hour:%Y-%m-%d}",
            int(top["errors"]), BURST_ERRORS_PER_HOUR, data=bursts,
        ))
    return found
