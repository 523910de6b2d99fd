"""Content analytics: the guide's `weekly_report.py` and the monthly content-performance review.

Every query reads a bounded range of the indexed published_content.published_at
(never created_at, which production does not index). Engagement is reported two
ways because they answer different questions: the average of the posts'
engagement_rate (how a typical post does, the app's own figure) and
interactions per view over all posts (how the audience as a whole responds,
not skewed by a 3-view post at 30 %).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd

from ccops.analytics import abtests
from ccops.analytics._common import Periods, figure, no_data, pct, signed
from ccops.analytics.stats import pct_change, trend
from ccops.core.charts import Chart
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status

SUMMARY_SQL = """
SELECT period, platform, GROUPING(platform) AS is_total,
       count(*) AS posts,
       avg(engagement_rate) AS avg_engagement_rate,
       coalesce(sum(views), 0) AS views, coalesce(sum(likes), 0) AS likes,
       coalesce(sum(comments), 0) AS comments, coalesce(sum(shares), 0) AS shares
FROM (
    SELECT CASE WHEN published_at > :mid THEN 'current' ELSE 'previous' END AS period,
           coalesce(platform, '(none)') AS platform, engagement_rate, views, likes, comments, shares
    FROM published_content
    WHERE published_at > :start AND published_at <= :end
) p
GROUP BY GROUPING SETS ((period, platform), (period))
"""

TOP_SQL = """
SELECT p.id, p.platform, cp.format::text AS format, p.published_at, p.views, p.likes, p.comments, p.shares,
       p.engagement_rate, left(p.content_text, 80) AS text, p.post_url
FROM published_content p
LEFT JOIN content_plans cp ON cp.id = p.content_plan_id
WHERE p.published_at > :start AND p.published_at <= :end
  AND coalesce(p.views, 0) >= :min_views AND p.engagement_rate IS NOT NULL
ORDER BY p.engagement_rate DESC, p.views DESC, p.id
LIMIT :limit
"""

COUNT_SQL = """
SELECT count(*) FROM published_content WHERE published_at > :start AND published_at <= :end
"""

ENGAGEMENT_COLUMNS = """
       count(*) AS posts,
       avg(p.engagement_rate) AS avg_engagement_rate,
       coalesce(sum(p.views), 0) AS views,
       coalesce(sum(coalesce(p.likes, 0) + coalesce(p.comments, 0) + coalesce(p.shares, 0)), 0) AS interactions
"""

BY_SQL = {
    "platform": f"""
SELECT p.platform AS platform, {ENGAGEMENT_COLUMNS}
FROM published_content p
WHERE p.published_at > :start AND p.published_at <= :end
GROUP BY 1 ORDER BY avg_engagement_rate DESC NULLS LAST, 1
""",  # nosec B608 # module constants only, no names or values from the database
    "format": f"""
SELECT coalesce(cp.format::text, '(no plan)') AS format, {ENGAGEMENT_COLUMNS}
FROM published_content p
LEFT JOIN content_plans cp ON cp.id = p.content_plan_id
WHERE p.published_at > :start AND p.published_at <= :end
GROUP BY 1 ORDER BY avg_engagement_rate DESC NULLS LAST, 1
""",  # nosec B608 # module constants only, no names or values from the database
    "asset": f"""
SELECT coalesce(i.asset, '(no insight)') AS asset, {ENGAGEMENT_COLUMNS}
FROM published_content p
LEFT JOIN content_plans cp ON cp.id = p.content_plan_id
LEFT JOIN insights i ON i.id = cp.insight_id
WHERE p.published_at > :start AND p.published_at <= :end
GROUP BY 1 ORDER BY avg_engagement_rate DESC NULLS LAST, 1
""",  # nosec B608 # module constants only, no names or values from the database
}

HEATMAP_SQL = """
SELECT extract(isodow FROM p.published_at)::int AS weekday, extract(hour FROM p.published_at)::int AS hour,
       count(*) AS posts, avg(p.engagement_rate) AS avg_engagement_rate
FROM published_content p
WHERE p.published_at > :start AND p.published_at <= :end
GROUP BY 1, 2 ORDER BY 1, 2
"""

TREND_SQL = """
SELECT floor(extract(epoch FROM (:end - p.published_at)) / 604800)::int AS weeks_ago,
       count(*) AS posts, avg(p.engagement_rate) AS avg_engagement_rate
FROM published_content p
WHERE p.published_at > :start AND p.published_at <= :end
GROUP BY 1 ORDER BY 1 DESC
"""

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MIN_POSTS_PER_SLOT = 3  # a slot with one lucky post is not a best slot


def _num(value) -> float:
    return float(value) if value is not None and not (isinstance(value, float) and math.isnan(value)) else math.nan


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per platform and in total: this period, the one before, and the change."""
    frame = frame.copy()
    frame.loc[frame["is_total"] == 1, "platform"] = "all platforms"
    metrics = ["posts", "avg_engagement_rate", "views", "likes", "comments", "shares"]
    current = frame[frame["period"] == "current"].set_index("platform")[metrics]
    previous = frame[frame["period"] == "previous"].set_index("platform")[metrics].add_prefix("prev_")
    table = current.join(previous, how="outer")
    platforms = sorted(p for p in table.index if p != "all platforms") + ["all platforms"]
    table = table.reindex(platforms)
    for column in ("posts", "views", "likes", "comments", "shares"):
        table[column] = table[column].fillna(0).astype(int)
        table[f"prev_{column}"] = table[f"prev_{column}"].fillna(0).astype(int)
    for column in ("avg_engagement_rate", "prev_avg_engagement_rate"):
        table[column] = table[column].astype(float)
    table["posts_change_pct"] = [pct_change(n, o) for n, o in zip(table["posts"], table["prev_posts"], strict=True)]
    table["engagement_change_pct"] = [pct_change(n, o) for n, o in
                                      zip(table["avg_engagement_rate"], table["prev_avg_engagement_rate"], strict=True)]
    return table.reset_index().rename(columns={"index": "platform"})


@check("analytics.content_summary")
def content_summary(ctx: RunContext, days: float = 7) -> list[Finding]:
    """Posts published, average engagement and total views/likes/comments/shares, per platform, vs the period before."""
    periods = Periods.back_from(ctx.as_of, days)
    with ctx.db() as conn:
        frame = query_df(conn, SUMMARY_SQL, **periods.params())
    if frame.empty:
        return [no_data("analytics.content_summary", f"nothing published in the {2 * days:g} days before as_of")]
    table = summary_table(frame)
    total = table[table["platform"] == "all platforms"].iloc[0]
    posts, prev = int(total["posts"]), int(total["prev_posts"])
    if posts == 0:
        status = Status.WARNING
        summary = f"nothing published in the last {days:g} days ({prev} posts the {days:g} days before)"
    else:
        status = Status.OK
        summary = (f"{posts} posts in the last {days:g} days ({signed(total['posts_change_pct'], 0)} vs {prev}), "
                   f"average engagement {pct(total['avg_engagement_rate'])} "
                   f"(before: {pct(total['prev_avg_engagement_rate'])}), {int(total['views']):,} views")
    platforms = table[table["platform"] != "all platforms"]
    fig = figure(10, 3.5)
    left, right = fig.subplots(1, 2)
    x = np.arange(len(platforms))
    left.bar(x - 0.2, platforms["prev_posts"], width=0.4, label="previous period", color="#b0b7c3")
    left.bar(x + 0.2, platforms["posts"], width=0.4, label="this period", color="#2c7fb8")
    left.set_xticks(x, platforms["platform"])
    left.set_ylabel("posts")
    left.legend(fontsize="small")
    right.bar(x - 0.2, platforms["prev_avg_engagement_rate"].fillna(0) * 100, width=0.4, color="#b0b7c3")
    right.bar(x + 0.2, platforms["avg_engagement_rate"].fillna(0) * 100, width=0.4, color="#2c7fb8")
    right.set_xticks(x, platforms["platform"])
    right.set_ylabel("average engagement rate (%)")
    fig.suptitle("Content published and engagement per platform")
    return [Finding("analytics.content_summary", status, summary, posts, data=table, figure=fig)]


@check("analytics.top_content")
def top_content(ctx: RunContext, days: float = 7, limit: int = 10, min_views: int | None = None) -> list[Finding]:
    """The best posts of the period by engagement_rate, among posts with at least `min_views` views
    (None: thresholds.engagement.min_views, the floor the high-engagement alert uses too)."""
    min_views = ctx.settings.thresholds.engagement.min_views if min_views is None else min_views
    params = {"start": ctx.as_of - timedelta(days=days), "end": ctx.as_of}
    with ctx.db() as conn:
        table = query_df(conn, TOP_SQL, min_views=min_views, limit=limit, **params)
        published = 0 if not table.empty else int(query_df(conn, COUNT_SQL, **params).iloc[0, 0])
    if table.empty:
        what = (f"none of the {published} posts of the last {days:g} days reached {min_views} views"
                if published else f"nothing published in the last {days:g} days")
        return [no_data("analytics.top_content", what)]
    table["engagement_rate"] = table["engagement_rate"].astype(float)
    best = table.iloc[0]
    fig = figure(10, max(2.5, 0.35 * len(table) + 1))
    ax = fig.subplots()
    labels = [f"#{r.id} {r.platform} {pd.Timestamp(r.published_at):%m-%d %H:%M}" for r in table.itertuples()]
    ax.barh(range(len(table)), table["engagement_rate"] * 100, color="#2c7fb8")
    ax.set_yticks(range(len(table)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("engagement rate (%)")
    ax.set_title(f"Top {len(table)} posts of the last {days:g} days (at least {min_views} views)")
    return [Finding(
        "analytics.top_content", Status.OK,
        f"best post: {pct(best['engagement_rate'])} engagement on {best['platform']} "
        f"({int(best['views']):,} views, {pd.Timestamp(best['published_at']):%Y-%m-%d %H:%M} UTC): {best['text']!r}",
        float(best["engagement_rate"]), min_views, data=table, figure=fig,
    )]


def _rates(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["avg_engagement_rate"] = frame["avg_engagement_rate"].astype(float)
    views = frame["views"].astype(float)
    frame["interactions_per_view"] = frame["interactions"].astype(float) / views.where(views > 0)
    return frame


def _breakdown_finding(check_id: str, key: str, frame: pd.DataFrame, days: float) -> Finding:
    if frame.empty:
        return no_data(check_id, f"nothing published in the last {days:g} days")
    frame = _rates(frame)
    ranked = frame.dropna(subset=["avg_engagement_rate"])
    fig = figure(8, max(2.5, 0.3 * len(frame) + 1))
    ax = fig.subplots()
    ax.barh(range(len(frame)), frame["avg_engagement_rate"].fillna(0) * 100, color="#2c7fb8")
    ax.set_yticks(range(len(frame)), frame[key].astype(str), fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("average engagement rate (%)")
    ax.set_title(f"Engagement by {key}, last {days:g} days")
    if ranked.empty:
        summary = f"{int(frame['posts'].sum())} posts over {len(frame)} {key}(s), none with an engagement rate"
        return Finding(check_id, Status.INFO, summary, 0, data=frame, figure=fig)
    top, bottom = ranked.iloc[0], ranked.iloc[-1]
    summary = (f"best {key}: {top[key]} ({pct(top['avg_engagement_rate'])} over {int(top['posts'])} posts)"
               + (f", weakest: {bottom[key]} ({pct(bottom['avg_engagement_rate'])} over {int(bottom['posts'])} posts)"
                  if len(ranked) > 1 else ""))
    return Finding(check_id, Status.OK, summary, float(top["avg_engagement_rate"]), data=frame, figure=fig)


def heatmap_matrix(frame: pd.DataFrame) -> np.ndarray:
    """7 x 24 average engagement rate (Monday first, UTC hours); nan where nothing was published."""
    matrix = np.full((7, 24), np.nan)
    for row in frame.itertuples():
        matrix[int(row.weekday) - 1, int(row.hour)] = _num(row.avg_engagement_rate)
    return matrix


def _heatmap_finding(frame: pd.DataFrame, days: float) -> Finding:
    check_id = "analytics.engagement_heatmap"
    if frame.empty:
        return no_data(check_id, f"nothing published in the last {days:g} days")
    frame = frame.copy()
    frame["avg_engagement_rate"] = frame["avg_engagement_rate"].astype(float)
    frame.insert(1, "day", frame["weekday"].map(lambda d: WEEKDAYS[int(d) - 1]))
    matrix = heatmap_matrix(frame)
    fig = figure(11, 3.6)
    ax = fig.subplots()
    image = ax.imshow(matrix * 100, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel("hour of publication (UTC)")
    ax.set_title(f"Average engagement rate (%) by weekday and hour, last {days:g} days (blank: no posts)")
    fig.colorbar(image, ax=ax, label="engagement rate (%)")
    eligible = frame[(frame["posts"] >= MIN_POSTS_PER_SLOT) & frame["avg_engagement_rate"].notna()]
    if eligible.empty:
        summary = f"no weekday/hour slot has {MIN_POSTS_PER_SLOT}+ posts yet; see the heatmap"
        return Finding(check_id, Status.INFO, summary, data=frame, figure=fig)
    best = eligible.sort_values(["avg_engagement_rate", "posts"], ascending=False).iloc[0]
    summary = (f"best slot: {best['day']} {int(best['hour']):02d}:00 UTC, {pct(best['avg_engagement_rate'])} over "
               f"{int(best['posts'])} posts (slots with {MIN_POSTS_PER_SLOT}+ posts)")
    return Finding(check_id, Status.OK, summary, float(best["avg_engagement_rate"]), data=frame, figure=fig)


def _trend_finding(frame: pd.DataFrame, ctx: RunContext, weeks: int) -> Finding:
    check_id = "analytics.engagement_trend"
    if frame.empty:
        return no_data(check_id, f"nothing published in the last {weeks} weeks")
    frame = frame.copy()
    frame["avg_engagement_rate"] = frame["avg_engagement_rate"].astype(float)
    frame["week_ending"] = [ctx.as_of - timedelta(weeks=int(n)) for n in frame["weeks_ago"]]
    frame = frame[["weeks_ago", "week_ending", "posts", "avg_engagement_rate"]].reset_index(drop=True)
    points = frame.dropna(subset=["avg_engagement_rate"])
    if len(points) < 2:
        return Finding(check_id, Status.INFO, f"only {len(points)} week(s) with engagement data: no trend yet",
                       len(points), data=frame, chart=_trend_chart(weeks))
    fit = trend([-float(n) for n in points["weeks_ago"]], list(points["avg_engagement_rate"]))  # flat unless beyond noise
    latest = points.iloc[-1]
    earlier = points.iloc[:-1]["avg_engagement_rate"].mean()
    summary = (f"engagement {fit.describe(100, ' pp/week')} over {len(points)} weeks; "
               f"latest week {pct(latest['avg_engagement_rate'])} vs {pct(earlier)} before")
    # the summary's comparison drawn: the earlier weeks' average as a reference line
    return Finding(check_id, Status.OK, summary, fit.slope, data=frame,
                   chart=_trend_chart(weeks, {"earlier weeks' average": round(float(earlier) * 100, 2)}))


def _trend_chart(weeks: int, reference: dict[str, float] | None = None) -> Chart:
    return Chart(x="week_ending", y="avg_engagement_rate", kind="line", y_scale=100, thresholds=reference or {},
                 title=f"Weekly average engagement, last {weeks} weeks (7-day windows ending at as_of)",
                 x_label="week ending (UTC)", y_label="average engagement rate (%)")


@check("analytics.engagement_breakdown")
def engagement_breakdown(ctx: RunContext, days: float = 30, weeks: int = 8,
                         confidence: float | None = None) -> list[Finding]:
    """The monthly content review: engagement by platform, format, asset, weekday x hour, A/B outcomes and trend.

    The A/B part reuses the weekly analysis, limited to tests that ran during
    the window (still active, or completed after its start).
    """
    params = {"start": ctx.as_of - timedelta(days=days), "end": ctx.as_of}
    level = confidence if confidence is not None else abtests.confidence_setting(ctx.settings)
    with ctx.db() as conn:
        parts = {key: query_df(conn, sql, **params) for key, sql in BY_SQL.items()}
        heat = query_df(conn, HEATMAP_SQL, **params)
        trend = query_df(conn, TREND_SQL, start=ctx.as_of - timedelta(weeks=weeks), end=ctx.as_of)
        tests = abtests.load_results(conn, ctx.as_of, level, since=params["start"])
    found = [_breakdown_finding(f"analytics.engagement_by_{key}", key, frame, days) for key, frame in parts.items()]
    found.append(_heatmap_finding(heat, days))
    if tests.empty:
        found.append(no_data("analytics.ab_tests_in_window", f"no A/B test ran in the last {days:g} days"))
    else:
        found.append(abtests.results_findings("analytics.ab_tests_in_window", tests, level))
    found.append(_trend_finding(trend, ctx, weeks))
    return found
