"""Agent performance: the guide's `analyze_agent_performance.py --last-week` and the quarterly audit.

Mean execution time hides the slow tail an operator feels (a publishing run
that sometimes takes a minute), so the reports use p50/p95/max, computed by
PostgreSQL with percentile_cont (linear interpolation, the same as
numpy.percentile's default) over a bounded range of the indexed
agent_logs.timestamp. Each week is compared with the week before, because
"slow" only means something against the agent's own normal.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd

from ccops.analytics._common import Periods, figure, no_data, pct, signed
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status

PERIOD_SQL = """
SELECT agent_name,
       CASE WHEN "timestamp" > :mid THEN 'current' ELSE 'previous' END AS period,
       count(*) AS runs,
       count(*) FILTER (WHERE status = 'error') AS errors,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY execution_time) AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY execution_time) AS p95_s,
       max(execution_time) AS max_s
FROM agent_logs
WHERE "timestamp" > :start AND "timestamp" <= :end
GROUP BY 1, 2
"""

WEEKLY_SQL = """
SELECT date_trunc('week', "timestamp") AS week, agent_name,
       count(*) AS runs,
       count(*) FILTER (WHERE status = 'error') AS errors,
       avg(execution_time) AS mean_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY execution_time) AS p95_s
FROM agent_logs
WHERE "timestamp" > :start AND "timestamp" <= :end
GROUP BY 1, 2
ORDER BY 1, 2
"""

OVERALL_SQL = """
SELECT agent_name, count(*) AS runs,
       count(*) FILTER (WHERE status = 'error') AS errors,
       avg(execution_time) AS mean_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY execution_time) AS p95_s,
       max(execution_time) AS max_s
FROM agent_logs
WHERE "timestamp" > :start AND "timestamp" <= :end
GROUP BY 1
"""


def _error_rate(errors: pd.Series, runs: pd.Series) -> pd.Series:
    runs = runs.astype(float)
    return errors.astype(float) / runs.where(runs > 0)


def performance_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per agent: this period, the period before, and the change between them.

    An agent that ran only in the previous period stays in the table with 0
    runs: an agent that stopped is the change an operator most needs to see.
    """
    current = frame[frame["period"] == "current"].drop(columns="period")
    previous = frame[frame["period"] == "previous"][["agent_name", "runs", "errors", "p95_s"]]
    previous = previous.rename(columns={"runs": "prev_runs", "errors": "prev_errors", "p95_s": "prev_p95_s"})
    table = current.merge(previous, on="agent_name", how="outer").sort_values("agent_name").reset_index(drop=True)
    for column in ("runs", "errors", "prev_runs", "prev_errors"):
        table[column] = table[column].fillna(0).astype(int)
    for column in ("p50_s", "p95_s", "max_s", "prev_p95_s"):
        table[column] = table[column].astype(float)
    table["error_rate"] = _error_rate(table["errors"], table["runs"])
    table["prev_error_rate"] = _error_rate(table["prev_errors"], table["prev_runs"])
    table["runs_change"] = table["runs"] - table["prev_runs"]
    table["error_rate_change"] = table["error_rate"] - table["prev_error_rate"]
    table["p95_delta_s"] = table["p95_s"] - table["prev_p95_s"]
    table["p95_change_pct"] = table["p95_delta_s"] / table["prev_p95_s"].where(table["prev_p95_s"] > 0) * 100
    columns = ["agent_name", "runs", "errors", "error_rate", "p50_s", "p95_s", "max_s", "prev_runs",
               "prev_error_rate", "prev_p95_s", "runs_change", "error_rate_change", "p95_delta_s", "p95_change_pct"]
    return table[columns]


def _performance_figure(table: pd.DataFrame, max_error_rate: float):
    fig = figure(11, max(3.0, 0.35 * len(table) + 1.5))
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(table))
    left.barh(y - 0.2, table["prev_p95_s"].fillna(0), height=0.4, label="previous period", color="#b0b7c3")
    left.barh(y + 0.2, table["p95_s"].fillna(0), height=0.4, label="this period", color="#2c7fb8")
    left.set_yticks(y, table["agent_name"])
    left.invert_yaxis()
    left.set_xlabel("p95 execution time (s)")
    left.legend(loc="lower right", fontsize="small")
    colours = ["#d7301f" if (r == r and r > max_error_rate) else "#2c7fb8" for r in table["error_rate"]]
    right.barh(y, table["error_rate"].fillna(0) * 100, color=colours)
    right.axvline(max_error_rate * 100, color="#d7301f", linestyle="--", linewidth=1)
    right.set_xlabel("error rate this period (%)")
    fig.suptitle("Agent performance: this period against the one before")
    return fig


@check("analytics.agent_performance")
def agent_performance(ctx: RunContext, days: float = 7, max_error_rate: float | None = None,
                      max_p95_growth: float | None = None) -> list[Finding]:
    """Per agent: runs, errors, p50/p95/max seconds, and the change against the period before.

    WARNING for an agent whose error rate exceeds `max_error_rate` (a
    fraction) or whose p95 grew by more than `max_p95_growth` (a fraction of
    last period's p95); None takes thresholds.agents.error_rate and .p95_growth.
    """
    limits = ctx.settings.thresholds.agents
    error_level = limits.error_rate.override(max_error_rate)
    growth_level = limits.p95_growth.override(max_p95_growth)
    max_error_rate, max_p95_growth = error_level.first, growth_level.first
    periods = Periods.back_from(ctx.as_of, days)
    with ctx.db() as conn:
        frame = query_df(conn, PERIOD_SQL, **periods.params())
    if frame.empty:
        return [no_data("analytics.agent_performance", f"no agent ran in the {days:g} days before as_of or the {days:g} before them")]
    table = performance_table(frame)
    high_errors = error_level.beyond(table["error_rate"])
    slower = growth_level.beyond(table["p95_change_pct"], max_p95_growth * 100)
    table["flag"] = [
        "; ".join(part for part, on in ((f"error rate {pct(r, 1)}", e), (f"p95 {signed(c, 0)}", s)) if on)
        for r, c, e, s in zip(table["error_rate"], table["p95_change_pct"], high_errors, slower, strict=True)
    ]
    flagged = table[high_errors | slower]
    runs, errors = int(table["runs"].sum()), int(table["errors"].sum())
    overall = errors / runs if runs else math.nan
    if runs == 0:
        summary = f"no agent ran in the last {days:g} days ({int(table['prev_runs'].sum())} runs the period before)"
        status = Status.WARNING
    elif flagged.empty:
        summary = (f"{runs} runs by {int((table['runs'] > 0).sum())} agents in the last {days:g} days, error rate "
                   f"{pct(overall, 1)}; no agent above {pct(max_error_rate, 0)} errors or with p95 up more than "
                   f"{max_p95_growth * 100:.0f}%")
        status = Status.OK
    else:
        names = ", ".join(f"{row.agent_name} ({row.flag})" for row in flagged.itertuples())
        summary = f"{len(flagged)} agent(s) need a look: {names}"
        status = Status.WARNING
    return [Finding("analytics.agent_performance", status, summary, len(flagged), max_error_rate,
                    data=table, figure=_performance_figure(table, max_error_rate))]


def _iso_week(week: pd.Timestamp) -> str:
    year, number, _ = week.isocalendar()
    return f"{year}-W{number:02d}"


def _audit_figure(weekly: pd.DataFrame):
    fig = figure(11, 6.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for agent, rows in weekly.groupby("agent_name"):
        top.plot(rows["week"], rows["p95_s"], marker="o", markersize=3, label=agent)
        bottom.plot(rows["week"], rows["error_rate"] * 100, marker="o", markersize=3, label=agent)
    top.set_ylabel("p95 execution time (s)")
    bottom.set_ylabel("error rate (%)")
    bottom.set_xlabel("ISO week (Monday)")
    top.legend(fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Agents per ISO week")
    return fig


@check("analytics.agent_audit")
def agent_audit(ctx: RunContext, days: float = 91, top: int = 5, max_error_rate: float | None = None) -> list[Finding]:
    """The quarterly audit: each agent per ISO week, and the slowest and most failing agents.

    Weeks are calendar ISO weeks (Monday 00:00 UTC), so the first and last
    week of the window may be partial; their run counts say so. `max_error_rate` None:
    thresholds.agents.error_rate.
    """
    error_level = ctx.settings.thresholds.agents.error_rate.override(max_error_rate)
    max_error_rate = error_level.first
    params = {"start": ctx.as_of - timedelta(days=days), "end": ctx.as_of}
    with ctx.db() as conn:
        weekly = query_df(conn, WEEKLY_SQL, **params)
        overall = query_df(conn, OVERALL_SQL, **params)
    if weekly.empty:
        return [no_data("analytics.agent_audit", f"no agent ran in the {days:g} days before as_of")]
    weekly["week"] = pd.to_datetime(weekly["week"])
    weekly.insert(1, "iso_week", weekly["week"].map(_iso_week))
    weekly["error_rate"] = _error_rate(weekly["errors"], weekly["runs"])
    weekly["mean_s"] = weekly["mean_s"].astype(float)
    weekly["p95_s"] = weekly["p95_s"].astype(float)
    weekly = weekly[["week", "iso_week", "agent_name", "runs", "errors", "error_rate", "mean_s", "p95_s"]]
    n_weeks = weekly["week"].nunique()

    overall["error_rate"] = _error_rate(overall["errors"], overall["runs"])
    for column in ("mean_s", "p95_s", "max_s"):
        overall[column] = overall[column].astype(float)
    slowest = overall.dropna(subset=["p95_s"]).sort_values(["p95_s", "agent_name"], ascending=[False, True]).head(top)
    failing = overall[overall["errors"] > 0].sort_values(["error_rate", "errors", "agent_name"],
                                                         ascending=[False, False, True]).head(top)
    found = [Finding(
        "analytics.agent_audit", Status.OK,
        f"{int(weekly['runs'].sum())} runs by {weekly['agent_name'].nunique()} agents over {n_weeks} ISO week(s)"
        + (" (a single week: no trend yet)" if n_weeks == 1 else ""),
        int(weekly["runs"].sum()), data=weekly.reset_index(drop=True), figure=_audit_figure(weekly),
    )]
    if slowest.empty:
        found.append(no_data("analytics.bottlenecks_slowest", "no execution times recorded"))
    else:
        lead = slowest.iloc[0]
        found.append(Finding(
            "analytics.bottlenecks_slowest", Status.INFO,
            "slowest agents by p95: " + ", ".join(f"{r.agent_name} ({r.p95_s:.1f} s)" for r in slowest.itertuples()),
            float(lead["p95_s"]), data=slowest.reset_index(drop=True),
        ))
    if failing.empty:
        found.append(Finding("analytics.bottlenecks_failing", Status.OK,
                             f"no agent logged an error in the {days:g} days before as_of", 0, max_error_rate))
    else:
        worst = failing.iloc[0]
        above = failing[error_level.beyond(failing["error_rate"])]
        found.append(Finding(
            "analytics.bottlenecks_failing", Status.WARNING if not above.empty else Status.INFO,
            "most failing agents: " + ", ".join(f"{r.agent_name} ({pct(r.error_rate, 1)} of {r.runs} runs)"
                                                for r in failing.itertuples())
            + (f"; {len(above)} above {pct(max_error_rate, 0)}" if not above.empty else ""),
            float(worst["error_rate"]), max_error_rate, data=failing.reset_index(drop=True),
        ))
    return found
