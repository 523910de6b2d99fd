"""Monthly cost analysis: the guide's `cost_analysis.py`, from what the agents actually did.

The app records no invoices, but every agent run is a row in agent_logs, and
each agent talks to known APIs. So API cost = billed calls x price per call
(plus, when configured, tokens x price per million tokens from the run's
details), infrastructure is a fixed monthly figure from the settings, and
revenue comes from subscriptions. All of it is configurable in [costs]:

    [costs]
    infrastructure_monthly = 50.0     # server, database, backups: per calendar month
    billed_calls = "all"              # or "successful": runs whose status is not 'error'
    [costs.agent_apis]                # agent -> API(s) each run calls (merged over the defaults)
    EngagementAgent = ["anthropic", "x"]
    [costs.prices]                    # price per call per API (merged over the defaults)
    anthropic = 0.01
    [costs.token_prices.anthropic]    # optional: per million tokens, read from details.tokens_*
    input_per_million = 3.0
    output_per_million = 15.0

Decisions, so a reviewer can follow the figures:
- "all" runs are billed by default: a run that failed after calling the API
  (a publish that timed out, a parse error) was still paid for, so the
  default errs on the side of a higher cost. Set "successful" to count only
  runs that did not end in 'error'.
- An agent without a mapping calls no paid API (API "internal", price 0).
- Revenue of a month is the MRR at the month's end (subscriptions active
  then, see ccops.analytics.funnel), i.e. counted as active at month end, not
  prorated by days. For the current, partial month both revenue and the
  infrastructure cost are scaled by the share of the month elapsed at as_of,
  so its ROI is comparable with full months; API costs are what was used.
- ROI = (revenue - total cost) / total cost; cost per piece = total cost /
  posts published in the month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ccops.analytics._common import add_months, as_float, figure, month_floor, no_data, pct
from ccops.analytics.funnel import MRR_SQL
from ccops.analytics.settings import CostSettings, cost_settings
from ccops.analytics.stats import safe_ratio
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status


def _calls_sql(with_tokens: bool) -> str:
    tokens = ""
    if with_tokens:
        tokens = "".join(
            f""",
       coalesce(sum(CASE WHEN details->>'tokens_{kind}' ~ '^[0-9]+$'
                         THEN (details->>'tokens_{kind}')::bigint END)
                FILTER (WHERE {{billed}}), 0) AS tokens_{kind}"""
            for kind in ("input", "output"))
    return f"""
SELECT date_trunc('month', "timestamp") AS month, agent_name,
       count(*) AS calls,
       count(*) FILTER (WHERE {{billed}}) AS billed_calls{tokens}
FROM agent_logs
WHERE "timestamp" >= :start AND "timestamp" <= :end
GROUP BY 1, 2
"""  # nosec B608 # module constants only, no names or values from the database


PUBLISHED_SQL = """
SELECT date_trunc('month', published_at) AS month, count(*) AS published
FROM published_content
WHERE published_at >= :start AND published_at <= :end
GROUP BY 1
"""


@dataclass(frozen=True)
class Month:
    start: datetime
    end: datetime  # exclusive end, or as_of for the month in progress
    share: float   # elapsed share of the calendar month

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m}"


def report_months(as_of: datetime, months: int) -> list[Month]:
    """The month of as_of (partial) and the `months - 1` calendar months before it, oldest first."""
    current = month_floor(as_of)
    result = []
    for back in range(max(1, months) - 1, -1, -1):
        start = add_months(current, -back)
        following = add_months(start, 1)
        end = min(following, as_of)
        result.append(Month(start, end, (end - start) / (following - start)))
    return result


def api_usage_table(calls: pd.DataFrame, months: list[Month], cfg: CostSettings) -> pd.DataFrame:
    """Per month and API: calls, billed calls, tokens, and what they cost."""
    rows: list[dict[str, Any]] = []
    labels = {m.start: m.label for m in months}
    for record in calls.to_dict("records"):
        month = labels.get(pd.Timestamp(record["month"]).to_pydatetime())
        for api in cfg.apis_of(record["agent_name"]):
            rows.append({"month": month, "api": api, "agent_name": record["agent_name"],
                         "calls": int(record["calls"]), "billed_calls": int(record["billed_calls"]),
                         "tokens_input": int(record.get("tokens_input") or 0),
                         "tokens_output": int(record.get("tokens_output") or 0)})
    columns = ["month", "api", "agents", "calls", "billed_calls", "price_per_call", "call_cost",
               "tokens_input", "tokens_output", "token_cost", "cost"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["month", "api"], sort=True).agg(
        agents=("agent_name", lambda names: ", ".join(sorted(set(names)))),
        calls=("calls", "sum"), billed_calls=("billed_calls", "sum"),
        tokens_input=("tokens_input", "sum"), tokens_output=("tokens_output", "sum"),
    ).reset_index()
    grouped["price_per_call"] = grouped["api"].map(lambda api: cfg.prices.get(api, 0.0))
    grouped["call_cost"] = grouped["billed_calls"] * grouped["price_per_call"]
    token_in = grouped["api"].map(lambda api: cfg.token_prices.get(api, {}).get("input_per_million", 0.0))
    token_out = grouped["api"].map(lambda api: cfg.token_prices.get(api, {}).get("output_per_million", 0.0))
    grouped["token_cost"] = (grouped["tokens_input"] * token_in + grouped["tokens_output"] * token_out) / 1_000_000
    grouped["cost"] = grouped["call_cost"] + grouped["token_cost"]
    return grouped[columns]


def _cost_figure(table: pd.DataFrame):
    fig = figure(9, 3.5)
    ax = fig.subplots()
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["api_cost"], width=0.4, label="API cost", color="#2c7fb8")
    ax.bar(x - 0.2, table["infrastructure_cost"], width=0.4, bottom=table["api_cost"], label="infrastructure",
           color="#b0b7c3")
    ax.bar(x + 0.2, table["revenue"], width=0.4, label="revenue", color="#1a9850")
    ax.set_xticks(x, [f"{m}{'*' if s < 1 else ''}" for m, s in zip(table["month"], table["elapsed_share"], strict=True)])
    for i, roi in enumerate(table["roi"]):
        if roi == roi:
            ax.annotate(f"ROI {roi:+.0%}", (i, max(table["total_cost"].iloc[i], table["revenue"].iloc[i])),
                        ha="center", va="bottom", fontsize="small")
    ax.set_ylabel("amount per month")
    ax.legend(fontsize="small")
    ax.set_title("Cost and revenue per month (* month in progress, scaled to the elapsed share)")
    return fig


@check("analytics.costs")
def cost_analysis(ctx: RunContext, months: int = 3) -> list[Finding]:
    """API, infrastructure and total cost, cost per piece, revenue and ROI per calendar month."""
    cfg = cost_settings(ctx.settings)
    periods = report_months(ctx.as_of, months)
    params = {"start": periods[0].start, "end": ctx.as_of}
    billed = "true" if cfg.billed_calls == "all" else "status IS DISTINCT FROM 'error'"
    with ctx.db() as conn:
        calls = query_df(conn, _calls_sql(bool(cfg.token_prices)).replace("{billed}", billed), **params)
        published = query_df(conn, PUBLISHED_SQL, **params)
        mrr = [query_df(conn, MRR_SQL, t=m.end).iloc[0] for m in periods]
    if calls.empty and published.empty and all(int(r["members"]) == 0 for r in mrr):
        return [no_data("analytics.costs", f"no agent runs, posts or subscriptions since {periods[0].start:%Y-%m-%d}")]
    usage = api_usage_table(calls, periods, cfg)
    posts = {pd.Timestamp(r["month"]).to_pydatetime(): int(r["published"]) for r in published.to_dict("records")}
    rows = []
    for month, active in zip(periods, mrr, strict=True):
        in_month = usage[usage["month"] == month.label]
        api_cost = float(in_month["cost"].sum())
        infrastructure = cfg.infrastructure_monthly * month.share
        total = api_cost + infrastructure
        revenue = as_float(active["mrr"]) * month.share
        pieces = posts.get(month.start, 0)
        rows.append({
            "month": month.label, "from": month.start, "to": month.end, "elapsed_share": month.share,
            "published": pieces, "api_calls": int(in_month["billed_calls"].sum()), "api_cost": api_cost,
            "infrastructure_cost": infrastructure, "total_cost": total,
            "cost_per_piece": safe_ratio(total, pieces), "active_subscriptions": int(active["members"]),
            "mrr_at_end": as_float(active["mrr"]), "revenue": revenue,
            "roi": safe_ratio(revenue - total, total),
        })
    table = pd.DataFrame(rows)
    latest = table.iloc[-1]
    losing = latest["roi"] == latest["roi"] and latest["roi"] < 0
    summary = (f"{latest['month']} so far ({latest['elapsed_share']:.0%} of the month): cost {latest['total_cost']:,.2f} "
               f"(API {latest['api_cost']:,.2f}), {latest['published']} pieces at {latest['cost_per_piece']:,.3f} each, "
               f"revenue {latest['revenue']:,.2f}, ROI {pct(latest['roi'], 0)}")
    if len(table) > 1:
        before = table.iloc[-2]
        summary += f"; {before['month']}: cost {before['total_cost']:,.2f}, ROI {pct(before['roi'], 0)}"
    if not cfg.infrastructure_configured:
        summary += "; infrastructure cost not configured (costs.infrastructure_monthly), counted as 0"
    found = [Finding("analytics.costs", Status.WARNING if losing else Status.OK, summary,
                     float(latest["roi"]), 0.0, data=table, figure=_cost_figure(table))]
    if not usage.empty:
        top = usage[usage["month"] == latest["month"]].sort_values("cost", ascending=False)
        lead = (f"; the most expensive API in {latest['month']}: {top.iloc[0]['api']} ({top.iloc[0]['cost']:,.2f} for "
                f"{int(top.iloc[0]['billed_calls'])} calls)") if not top.empty else ""
        found.append(Finding("analytics.api_usage", Status.INFO,
                             f"{int(usage['billed_calls'].sum())} billed API calls ({cfg.billed_calls}) over "
                             f"{len(periods)} month(s){lead}", float(usage["cost"].sum()), data=usage))
    return found
