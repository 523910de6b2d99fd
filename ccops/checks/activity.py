"""Agent activity: who ran, who failed, and who went quiet.

The guide's morning check prints one number (agent executions in 24 h). One
number hides the failure operators actually meet: a single agent that stopped
while the others keep the total up. So ccops compares each agent with its own
cadence over the past week: an agent silent for much longer than its usual
interval is a WARNING even when the platform as a whole looks busy. Both
queries read a bounded range of the indexed `agent_logs.timestamp`.

An agent that stopped more than a week ago has no row in that week, so a check
built on the week alone forgets it exactly when it matters most. So every agent
that ran in the last `agent_lookback_days` (90), and every agent named in
`thresholds.expected_agents` (empty: the class names FACTS.md lists), is looked
up by name: silent longer than `agent_silence_critical_days` (7) is CRITICAL
"silent since ...". The names come from a skip scan of the agent_name index and
each last run from one bounded max(), so this stays cheap on 10M+ rows. An agent
of the default list that never ran in the lookback is only INFO: the list is the
app's documentation, not this deployment's configuration; a configured list
makes it CRITICAL.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.db import query_df, scalar
from ccops.core.findings import Finding, Status, worst

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

# Every agent name ever logged, one index probe per name (a "loose index scan"), not a scan of the table.
AGENT_NAMES_SQL = """
WITH RECURSIVE names(name) AS (
    (SELECT agent_name FROM agent_logs ORDER BY agent_name LIMIT 1)
    UNION ALL
    SELECT (SELECT a.agent_name FROM agent_logs a WHERE a.agent_name > names.name ORDER BY a.agent_name LIMIT 1)
    FROM names WHERE names.name IS NOT NULL
)
SELECT name FROM names WHERE name IS NOT NULL
"""

LAST_RUN_SQL = """
SELECT max("timestamp") FROM agent_logs
WHERE agent_name = :name AND "timestamp" > :since AND "timestamp" <= :as_of
"""

# The agent class names the app writes to agent_logs.agent_name (FACTS.md: "Meaning of the columns").
KNOWN_AGENTS = (
    "MarketScannerAgent", "AnalysisAgent", "ContentStrategistAgent", "ContentCreationAgent", "PublishingAgent",
    "EngagementAgent", "ImageGenerationAgent", "AnalyticsAgent", "ConversionAgent", "ExclusiveContentAgent",
    "CommunityModeratorAgent", "ABTestingAgent", "PerformanceAnalyticsAgent", "StrategyTuningAgent",
    "FeedbackLoopCoordinator", "OnboardingAgent",
)

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


def absent_agents(conn, as_of, seen: set[str], expected: list[str],
                  lookback_days: int) -> tuple[pd.DataFrame, list[str]]:
    """Agents not seen in the baseline week: (those that ran within the lookback, with their last run;
    the expected names that did not run at all in it)."""
    names = [str(n) for n in query_df(conn, AGENT_NAMES_SQL)["name"]]
    candidates = sorted((set(names) | set(expected)) - seen)
    since = as_of - timedelta(days=lookback_days)
    rows, unseen = [], []
    for name in candidates:
        last = scalar(conn, LAST_RUN_SQL, name=name, since=since, as_of=as_of)
        if last is None:
            if name in expected:
                unseen.append(name)
            continue
        rows.append({"agent_name": name, "last_seen": pd.Timestamp(last),
                     "silent_for_min": round((as_of - last).total_seconds() / 60, 1)})
    return pd.DataFrame(rows, columns=["agent_name", "last_seen", "silent_for_min"]), unseen


def silence_finding(table: pd.DataFrame, long_silent: pd.DataFrame, unseen: list[str], configured: bool,
                    limits) -> Finding:
    """One finding for every kind of silence: stopped for longer than the critical days (CRITICAL), gone
    quiet for longer than its own cadence allows (WARNING), and expected but never seen (INFO, or
    CRITICAL for a configured list)."""
    silence = limits.agents.silence_critical_days
    recent = table[table["silent"]][["agent_name", "usual_interval_min", "last_seen", "silent_for_min"]]
    frames = [f for f in (recent, long_silent) if not f.empty]
    silent = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["agent_name", "usual_interval_min", "last_seen", "silent_for_min"])
    silent["critical"] = silence.beyond(silent["silent_for_min"], silence.limit(Status.CRITICAL) * 24 * 60)
    parts, status = [], Status.OK
    for row in silent.sort_values("silent_for_min", ascending=False).itertuples():
        if row.critical:
            parts.append(f"{row.agent_name} silent since {pd.Timestamp(row.last_seen):%Y-%m-%d %H:%M} UTC "
                         f"({row.silent_for_min / 1440:.1f} days)")
            status = Status.CRITICAL
        else:
            usual = f", usually every {row.usual_interval_min:.0f} min" if pd.notna(row.usual_interval_min) else ""
            parts.append(f"{row.agent_name} (silent {row.silent_for_min / 60:.1f} h{usual})")
            status = worst([status, Status.WARNING])
    if unseen:
        where = "thresholds.expected_agents" if configured else "the app's agent list (FACTS.md)"
        parts.append(f"no run in the last {limits.agents.lookback_days} days by {', '.join(unseen)} "
                     f"(named in {where})")
        status = worst([status, Status.CRITICAL if configured else Status.INFO])
    if not parts:
        return Finding("activity.silent_agents", Status.OK,
                       "every agent ran within its usual interval, and none seen in the last "
                       f"{limits.agents.lookback_days} days has stopped", 0)
    count = len(silent) + (len(unseen) if configured else 0)
    lead = f"{len(silent)} agent(s) stopped running: " if len(silent) else ""
    return Finding("activity.silent_agents", status, lead + "; ".join(parts), count, 0,
                   data=silent.reset_index(drop=True))


@check("activity.agents")
def agent_activity(ctx: RunContext) -> list[Finding]:
    """Executions, errors and warnings per agent in the last 24 h, and agents gone silent."""
    params = {
        "as_of": ctx.as_of,
        "day_ago": ctx.as_of - timedelta(hours=24),
        "week_ago": ctx.as_of - timedelta(days=BASELINE_DAYS),
        "burst": BURST_ERRORS_PER_HOUR,
    }
    limits = ctx.settings.thresholds
    configured = bool(limits.agents.expected)
    with ctx.db() as conn:
        frame = query_df(conn, PER_AGENT_SQL, **params)
        bursts = query_df(conn, BURST_SQL, **params)
        expected = list(limits.agents.expected) or list(KNOWN_AGENTS)
        long_silent, unseen = absent_agents(conn, ctx.as_of, set(frame["agent_name"]), expected,
                                            int(limits.agents.lookback_days))
    if frame.empty and long_silent.empty:
        return [Finding("activity.agents", Status.WARNING,
                        f"no data: no agent ran in the {limits.agents.lookback_days} days before as_of", 0)]
    table = agent_table(frame, ctx.as_of, limits.agents.silence_factor)
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
    found.append(silence_finding(table, long_silent, unseen, configured, ctx.settings.thresholds))
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
