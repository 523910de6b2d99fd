"""The conversion funnel and the money it brings: DMs sent -> opened -> clicked -> converted, members, MRR.

The funnel is a cohort: the DMs *sent* in the window, followed through every
later stage that happened by as_of (so a DM sent on Sunday and opened on
Monday still counts as opened, and a report for a past as_of does not see
the future). conversion_attempts and subscriptions have no timestamp index in
production, but they grow by a few rows a day, so a sequential scan is cheap.

Money: "new paying members" are subscriptions created in the window whose
status is active or past_due (past_due still intends to pay); "new revenue"
is the monthly amount of those created in the window that are active.
MRR at an instant T is the monthly amount of every subscription active at T:
created by T and either active now (not cancelled by T) or cancelled after
T. Statuses are the current ones, so a subscription that went unpaid after T
is not in a past MRR; amounts are summed as stored, in their own currency.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ccops.analytics._common import Periods, as_float, figure, no_data, pct, signed
from ccops.analytics.stats import pct_change, safe_ratio
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status

FUNNEL_SQL = """
SELECT CASE WHEN sent_at > :mid THEN 'current' ELSE 'previous' END AS period,
       count(*) AS sent,
       count(*) FILTER (WHERE opened_at <= :end) AS opened,
       count(*) FILTER (WHERE clicked_at <= :end) AS clicked,
       count(*) FILTER (WHERE converted_at <= :end) AS converted
FROM conversion_attempts
WHERE sent_at > :start AND sent_at <= :end
GROUP BY 1
"""

# Active at :t (see the module docstring); shared with the cost analysis.
ACTIVE_AT = """created_at <= :t AND (
    (status = 'active' AND (cancelled_at IS NULL OR cancelled_at > :t))
    OR (status = 'cancelled' AND cancelled_at > :t))"""

MRR_SQL = f"SELECT count(*) AS members, coalesce(sum(amount), 0) AS mrr FROM subscriptions WHERE {ACTIVE_AT}"  # nosec B608 # module constants only, no names or values from the database

NEW_MEMBERS_SQL = """
SELECT CASE WHEN created_at > :mid THEN 'current' ELSE 'previous' END AS period,
       count(*) FILTER (WHERE status IN ('active', 'past_due')) AS new_paying_members,
       coalesce(sum(amount) FILTER (WHERE status = 'active'), 0) AS new_revenue
FROM subscriptions
WHERE created_at > :start AND created_at <= :end
GROUP BY 1
"""

STAGES = ("sent", "opened", "clicked", "converted")


def funnel_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per stage: counts this period and the period before, the step rate from the stage before."""
    by_period = frame.set_index("period").reindex(["current", "previous"]).fillna(0)
    rows = []
    for index, stage in enumerate(STAGES):
        now, before = int(by_period.loc["current", stage]), int(by_period.loc["previous", stage])
        prior = STAGES[index - 1] if index else None
        rows.append({
            "stage": stage, "count": now, "prev_count": before, "change_pct": pct_change(now, before),
            "step_rate": safe_ratio(now, by_period.loc["current", prior]) if prior else math.nan,
            "prev_step_rate": safe_ratio(before, by_period.loc["previous", prior]) if prior else math.nan,
            "rate_from_sent": safe_ratio(now, by_period.loc["current", "sent"]),
        })
    return pd.DataFrame(rows)


def _funnel_figure(table: pd.DataFrame):
    fig = figure(8, 3.2)
    ax = fig.subplots()
    y = np.arange(len(table))
    widest = max(1, int(table["count"].max()))
    ax.barh(y, table["count"], left=(widest - table["count"]) / 2, color="#2c7fb8")
    for row in table.itertuples():
        rate = "" if math.isnan(row.step_rate) else f"  ({pct(row.step_rate, 1)} of previous step)"
        ax.text(widest / 2, row.Index, f"{row.stage}: {row.count}{rate}", ha="center", va="center",
                color="white" if row.count > widest * 0.4 else "black", fontsize="small")
    ax.set_yticks(y, table["stage"])
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_title("Conversion funnel: DMs sent in the period")
    return fig


@check("analytics.conversion_funnel")
def conversion_funnel(ctx: RunContext, days: float = 7) -> list[Finding]:
    """DMs sent -> opened -> clicked -> converted with step rates; new paying members, new revenue and MRR."""
    periods = Periods.back_from(ctx.as_of, days)
    with ctx.db() as conn:
        funnel = query_df(conn, FUNNEL_SQL, **periods.params())
        members = query_df(conn, NEW_MEMBERS_SQL, **periods.params())
        mrr_now = query_df(conn, MRR_SQL, t=periods.end).iloc[0]
        mrr_before = query_df(conn, MRR_SQL, t=periods.mid).iloc[0]
    found: list[Finding] = []
    if funnel.empty:
        found.append(no_data("analytics.conversion_funnel", f"no conversion DM sent in the {2 * days:g} days before as_of"))
    else:
        table = funnel_table(funnel)
        sent, converted = int(table.loc[0, "count"]), int(table.loc[3, "count"])
        summary = (f"{sent} DMs sent in the last {days:g} days ({signed(table.loc[0, 'change_pct'], 0)}): "
                   + ", ".join(f"{r.stage} {r.count} ({pct(r.step_rate, 1)})" for r in table.iloc[1:].itertuples())
                   + f"; {pct(table.loc[3, 'rate_from_sent'], 1)} of sent converted")
        found.append(Finding("analytics.conversion_funnel", Status.OK if sent else Status.INFO, summary, converted,
                             data=table, figure=_funnel_figure(table)))
    by_period = members.set_index("period").reindex(["current", "previous"]) if not members.empty else None
    mrr, prev_mrr = as_float(mrr_now["mrr"]), as_float(mrr_before["mrr"])
    if by_period is None and int(mrr_now["members"]) == 0 and int(mrr_before["members"]) == 0:
        found.append(no_data("analytics.revenue", "no paying member, now or in the period before"))
        return found

    def pick(column: str, period: str) -> float:
        if by_period is None:
            return 0.0
        value = as_float(by_period.loc[period, column])
        return 0.0 if math.isnan(value) else value

    rows = [
        ("new paying members", pick("new_paying_members", "current"), pick("new_paying_members", "previous")),
        ("new revenue (monthly amount)", pick("new_revenue", "current"), pick("new_revenue", "previous")),
        ("active members at period end", float(mrr_now["members"]), float(mrr_before["members"])),
        ("MRR at period end", mrr, prev_mrr),
    ]
    table = pd.DataFrame(rows, columns=["metric", "value", "prev_value"])
    table["change"] = table["value"] - table["prev_value"]
    table["change_pct"] = [pct_change(n, o) for n, o in zip(table["value"], table["prev_value"], strict=True)]
    summary = (f"{int(rows[0][1])} new paying members in the last {days:g} days (before: {int(rows[0][2])}), "
               f"new revenue {rows[1][1]:,.2f}/month; MRR {mrr:,.2f} ({signed(pct_change(mrr, prev_mrr), 1)} "
               f"vs {prev_mrr:,.2f} {days:g} days earlier) from {int(mrr_now['members'])} members")
    status = Status.INFO if prev_mrr > 0 and mrr < prev_mrr else Status.OK  # a fall is news, not an outage
    found.append(Finding("analytics.revenue", status, summary, mrr, data=table))
    return found
