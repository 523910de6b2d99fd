"""A/B tests: each variant against its control, with a significance a reviewer can recompute by hand.

The app stores cumulative counters per variant (impressions, clicks,
engagement_count, conversion_count). Which counter is "success" depends on
what the test varies, and the choice is written in every row (`metric`):

- variables about the offer or the call to action (cta, offer, discount,
  price, conversion, upsell) are judged on conversion_count / impressions:
  a DM offer that is opened more but converts less is not better;
- variables about links or clicks (click, link, ctr) on clicks / impressions;
- everything else (hooks, formats, posting times, media, hashtags) on
  engagement_count / impressions, the app's own notion of engagement.

The test is the pooled two-proportion z-test, two-sided, at the configured
confidence (settings [analytics] confidence, default 0.95). An arm with
fewer than `min_impressions` impressions is never called significant: with
a few dozen impressions a single click swings the rate by percent points.
The counters are the current ones, not those at as_of; as_of only decides
which tests had started.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ccops.analytics._common import figure, no_data, pct, signed
from ccops.analytics.settings import confidence_setting
from ccops.analytics.stats import lift, two_proportion_z_test
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status

MIN_IMPRESSIONS = 100
TOO_FEW = "not significant (too few impressions)"

METRIC_WORDS = (
    ("conversion_count", ("conversion", "cta", "offer", "discount", "price", "pricing", "upsell")),
    ("clicks", ("click", "link", "ctr")),
)

VARIANTS_SQL = """
SELECT t.id AS test_id, t.test_name, t.status::text AS status, t.variable_being_tested AS variable,
       t.platform, t.started_at, t.completed_at, t.winning_variant_id,
       v.id AS variant_id, v.variant_name, coalesce(v.is_control, false) AS is_control,
       coalesce(v.impressions, 0) AS impressions, coalesce(v.clicks, 0) AS clicks,
       coalesce(v.engagement_count, 0) AS engagement_count, coalesce(v.conversion_count, 0) AS conversion_count
FROM ab_tests t
JOIN ab_test_variants v ON v.test_id = t.id
WHERE (t.started_at IS NULL OR t.started_at <= :end)
  AND (CAST(:start AS timestamp) IS NULL OR t.completed_at IS NULL OR t.completed_at > :start)
ORDER BY t.id, v.id
"""


def metric_for(variable: str | None) -> str:
    """The counter a test is judged on, from what it varies (see the module docstring)."""
    words = (variable or "").lower()
    for metric, markers in METRIC_WORDS:
        if any(marker in words for marker in markers):
            return metric
    return "engagement_count"


def _verdict(row: dict[str, Any], control: dict[str, Any] | None, alpha: float, min_impressions: int) -> dict[str, Any]:
    metric = row["metric"]
    out: dict[str, Any] = {"control_rate": math.nan, "lift": math.nan, "z": math.nan, "p_value": math.nan,
                           "significant": False}
    if row["is_control"]:
        return {**out, "control_rate": row["rate"], "verdict": "control"}
    if control is None:
        return {**out, "verdict": "no control variant: cannot compare"}
    out["control_rate"] = control["rate"]
    out["lift"] = lift(row["rate"], control["rate"])
    if row[metric] > row["impressions"] or control[metric] > control["impressions"]:
        return {**out, "verdict": f"invalid: more {metric} than impressions"}
    if min(row["impressions"], control["impressions"]) < max(min_impressions, 1):
        return {**out, "verdict": TOO_FEW}
    z, p = two_proportion_z_test(control[metric], control["impressions"], row[metric], row["impressions"])
    out.update(z=z, p_value=p)
    if p < alpha:
        return {**out, "significant": True, "verdict": "significant: " + ("better" if z > 0 else "worse") + " than control"}
    return {**out, "verdict": "not significant"}


def results_table(frame: pd.DataFrame, confidence: float, min_impressions: int) -> pd.DataFrame:
    """One row per variant with its rate, lift over the test's control, z, p and verdict."""
    alpha = 1 - confidence
    rows: list[dict[str, Any]] = []
    for _, group in frame.groupby("test_id", sort=True):
        records = group.to_dict("records")
        metric = metric_for(records[0]["variable"])
        for record in records:
            record["metric"] = metric
            record["rate"] = record[metric] / record["impressions"] if record["impressions"] else math.nan
        controls = [r for r in records if r["is_control"]]
        control = controls[0] if controls else None
        for record in records:
            if record["is_control"] and control is not None and record is not control:
                record["is_control"] = False  # a second "control" is judged like any variant
            rows.append({**record, **_verdict(record, control, alpha, min_impressions)})
    table = pd.DataFrame(rows)
    table["app_winner"] = table["winning_variant_id"].notna() & (table["winning_variant_id"] == table["variant_id"])
    columns = ["test_id", "test_name", "status", "variable", "metric", "variant_id", "variant_name", "is_control",
               "impressions", "clicks", "engagement_count", "conversion_count", "rate", "control_rate", "lift",
               "z", "p_value", "significant", "verdict", "app_winner", "started_at", "completed_at"]
    return table[columns]


def disagreements(table: pd.DataFrame) -> list[str]:
    """Tests whose recorded winner (the app's own call) is not the one this analysis supports.

    This analysis supports the significantly better variant with the highest
    rate, or the control when no variant is significantly better.
    """
    names = []
    for _, arms in table.groupby("test_id", sort=True):
        if not arms["app_winner"].any():
            continue
        better = arms[arms["significant"] & (arms["z"] > 0)].sort_values("rate", ascending=False)
        supported = better.iloc[0] if not better.empty else arms[arms["is_control"]].head(1).squeeze()
        recorded = arms[arms["app_winner"]].iloc[0]
        if isinstance(supported, pd.Series) and not supported.empty and supported["variant_id"] == recorded["variant_id"]:
            continue
        names.append(str(recorded["test_name"]))
    return names


def load_results(conn: Any, as_of: datetime, confidence: float, min_impressions: int = MIN_IMPRESSIONS,
                 since: datetime | None = None) -> pd.DataFrame:
    """Variant results of the tests started by as_of; with `since`, only those still running after it."""
    frame = query_df(conn, VARIANTS_SQL, start=since, end=as_of)
    if frame.empty:
        return frame
    return results_table(frame, confidence, min_impressions)


def results_findings(check_id: str, table: pd.DataFrame, confidence: float) -> Finding:
    """One finding for a set of tests: the significant winners (and losers) named in the summary."""
    tests = table["test_id"].nunique()
    winners = table[table["significant"]]
    too_few = table.loc[table["verdict"] == TOO_FEW, "test_id"].nunique()
    parts = [f"{tests} A/B test(s) at {confidence:.0%} confidence"]
    if winners.empty:
        parts.append("no variant differs significantly from its control")
    else:
        parts.append("significant: " + "; ".join(
            f"{r.test_name}: {r.variant_name} {signed(r.lift * 100 if r.lift == r.lift else math.nan, 1)} "
            f"on {r.metric} ({pct(r.rate)} vs {pct(r.control_rate)}, p={_p(r.p_value)})" for r in winners.itertuples()))
    if too_few:
        parts.append(f"{too_few} test(s) with too few impressions to call")
    no_control = table.loc[table["verdict"].str.startswith("no control"), "test_id"].nunique()
    if no_control:
        parts.append(f"{no_control} test(s) without a control variant")
    differ = disagreements(table)
    if differ:
        parts.append(f"the winner the app recorded is not supported here for: {', '.join(differ)} (see app_winner)")
    return Finding(check_id, Status.OK, ", ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if parts[2:] else ""),
                   len(winners), confidence, data=table, figure=_figure(table))


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 0.0001 else "<0.0001"


def _figure(table: pd.DataFrame):
    tests = list(dict.fromkeys(table["test_id"]))
    cols = min(3, len(tests))
    rows = math.ceil(len(tests) / cols)
    fig = figure(4.0 * cols, 2.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, test_id in zip(axes, tests, strict=False):
        arms = table[table["test_id"] == test_id]
        rates = arms["rate"].fillna(0).to_numpy() * 100
        n = arms["impressions"].to_numpy().astype(float)
        p = arms["rate"].fillna(0).to_numpy()
        err = np.where(n > 0, 1.96 * np.sqrt(p * (1 - p) / np.where(n > 0, n, 1)), 0) * 100
        colours = ["#b0b7c3" if c else ("#1a9850" if s else "#2c7fb8")
                   for c, s in zip(arms["is_control"], arms["significant"], strict=True)]
        ax.bar(range(len(arms)), rates, yerr=err, color=colours, capsize=3)
        ax.set_xticks(range(len(arms)), arms["variant_name"], fontsize="x-small", rotation=15)
        ax.set_title(str(arms["test_name"].iloc[0])[:40], fontsize="small")
        ax.set_ylabel(f"{arms['metric'].iloc[0]} / impressions (%)", fontsize="x-small")
    for ax in axes[len(tests):]:
        ax.set_visible(False)
    fig.suptitle("A/B tests: rate per variant with 95% intervals (grey = control, green = significant)")
    return fig


@check("analytics.ab_tests")
def ab_test_results(ctx: RunContext, confidence: float | None = None,
                    min_impressions: int = MIN_IMPRESSIONS) -> list[Finding]:
    """Every test started by as_of: variants against the control, lift, p-value, and the verdict."""
    level = confidence if confidence is not None else confidence_setting(ctx.settings)
    if not 0 < level < 1:
        raise ValueError(f"confidence must lie between 0 and 1, got {level}")
    with ctx.db() as conn:
        table = load_results(conn, ctx.as_of, level, min_impressions)
    if table.empty:
        return [no_data("analytics.ab_tests", "no A/B test with variants had started by as_of")]
    return [results_findings("analytics.ab_tests", table, level)]
