"""Content and engagement: what was published, and how it did against the recent norm.

The guide's morning check counts `created_at > now - 1 day`, which is neither
"yesterday" nor indexed. ccops counts the calendar day before as_of by the
indexed `published_at`, per platform, against the average of the seven days
before it, and names any day of the last week without content at all. The
evening check compares today-so-far with the same hours of the previous seven
days, so an evening report is not alarmed by a day that is only half over.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from ccops.core import charts
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status

AVERAGE_DAYS = 7

DAILY_BY_PLATFORM_SQL = """
SELECT date_trunc('day', published_at) AS day, platform, count(*) AS published
FROM published_content
WHERE published_at >= :since AND published_at < :until
GROUP BY 1, 2
"""


def _per_day_count(table: str, column: str, alias: str) -> str:
    """Rows of `table` in each day's window, from one scan bucketed by day.

    community_users.first_seen and subscriptions.created_at have no index in
    production, so each is read once rather than once per day compared.
    """
    return f"""SELECT CAST(:today AS date) - CAST({column} AS date) AS n, count(*) AS {alias}
    FROM {table}
    WHERE {column} >= :today - make_interval(days => :days) AND {column} < :as_of
      AND {column} - date_trunc('day', {column}) < :as_of - :today
    GROUP BY 1"""  # nosec B608 # table and column are module constants (DAILY_ENGAGEMENT_SQL below)


DAILY_ENGAGEMENT_SQL = f"""
WITH days AS (
    SELECT generate_series(0, :days) AS n
), windows AS (
    SELECT n, :today - make_interval(days => n) AS start,
           :today - make_interval(days => n) + (:as_of - :today) AS stop
    FROM days
), users AS (
    {_per_day_count("community_users", "first_seen", "new_users")}
), subs AS (
    {_per_day_count("subscriptions", "created_at", "new_subscriptions")}
)
SELECT w.n AS days_ago, w.start::date AS day,
       (SELECT count(*) FROM published_content p
         WHERE p.published_at >= w.start AND p.published_at < w.stop) AS posts,
       (SELECT coalesce(sum(coalesce(likes, 0) + coalesce(comments, 0) + coalesce(shares, 0)), 0)
          FROM published_content p
         WHERE p.published_at >= w.start AND p.published_at < w.stop) AS interactions,
       (SELECT avg(engagement_rate) FROM published_content p
         WHERE p.published_at >= w.start AND p.published_at < w.stop) AS avg_engagement_rate,
       coalesce(u.new_users, 0) AS new_users,
       coalesce(s.new_subscriptions, 0) AS new_subscriptions
FROM windows w
LEFT JOIN users u ON u.n = w.n
LEFT JOIN subs s ON s.n = w.n
ORDER BY w.n
"""  # nosec B608 # built from module constants only


def day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _platform_table(frame: pd.DataFrame, yesterday: datetime) -> pd.DataFrame:
    """Yesterday's count per platform beside the average of the AVERAGE_DAYS before it."""
    if frame.empty:
        return pd.DataFrame(columns=["platform", "yesterday", "avg_7d", "share_of_avg"])
    frame = frame.assign(day=pd.to_datetime(frame["day"]))
    is_yesterday = frame["day"] == pd.Timestamp(yesterday)
    before = frame[~is_yesterday].groupby("platform")["published"].sum() / AVERAGE_DAYS
    current = frame[is_yesterday].groupby("platform")["published"].sum()
    table = pd.DataFrame({"yesterday": current, "avg_7d": before}).fillna(0)
    table["yesterday"] = table["yesterday"].astype(int)
    table["avg_7d"] = table["avg_7d"].round(1)
    table["share_of_avg"] = (table["yesterday"] / table["avg_7d"].where(table["avg_7d"] > 0)).round(2)
    return table.reset_index(names="platform").sort_values("platform").reset_index(drop=True)


@check("content.published_yesterday")
def published_yesterday(ctx: RunContext) -> list[Finding]:
    """Content published on the calendar day before as_of, per platform, against the 7-day average."""
    yesterday = day_start(ctx.as_of) - timedelta(days=1)
    since = yesterday - timedelta(days=AVERAGE_DAYS)
    with ctx.db() as conn:
        frame = query_df(conn, DAILY_BY_PLATFORM_SQL, since=since, until=yesterday + timedelta(days=1))
    table = _platform_table(frame, yesterday)
    total = int(table["yesterday"].sum()) if not table.empty else 0
    average = float(table["avg_7d"].sum()) if not table.empty else 0.0
    label = f"{yesterday:%Y-%m-%d}"
    low = ctx.settings.thresholds.content.low_share
    if table.empty:
        found = [Finding("content.published_yesterday", Status.WARNING,
                         f"no data: nothing published on {label} nor in the {AVERAGE_DAYS} days before", 0)]
    elif total == 0:
        found = [Finding("content.published_yesterday", Status.CRITICAL,
                         f"nothing published on {label} (7-day average {average:.1f}/day)", 0, average, data=table)]
    elif low.beyond(total, low.first * average):  # thresholds.content.low_share of the usual volume
        share = "half" if low.first == 0.5 else f"{low.first:.0%} of"
        found = [Finding("content.published_yesterday", Status.WARNING,
                         f"{total} items published on {label}, under {share} the 7-day average of {average:.1f}",
                         total, average, data=table)]
    else:
        found = [Finding("content.published_yesterday", Status.OK,
                         f"{total} items published on {label} (7-day average {average:.1f}/day)",
                         total, average, data=table)]
    found.append(_days_without_content(frame, since, yesterday))
    return found


def _days_without_content(frame: pd.DataFrame, since: datetime, last_day: datetime) -> Finding:
    days = pd.date_range(since, last_day, freq="D")
    seen = set(pd.to_datetime(frame["day"])) if not frame.empty else set()
    empty = [d for d in days if d not in seen]
    if not seen:
        return Finding("content.days_without_content", Status.INFO, "no data: no content in the last 8 days", len(empty))
    if not empty:
        return Finding("content.days_without_content", Status.OK, f"content was published on each of the last {len(days)} days", 0)
    names = ", ".join(f"{d:%Y-%m-%d}" for d in empty)
    return Finding("content.days_without_content", Status.WARNING,
                   f"no content at all on {names}", len(empty), 0,
                   data=pd.DataFrame({"day": [d.date() for d in empty]}))


@check("content.engagement_today")
def engagement_today(ctx: RunContext) -> list[Finding]:
    """The guide's evening metrics: today so far against the same hours of the 7 days before."""
    today = day_start(ctx.as_of)
    with ctx.db() as conn:
        frame = query_df(conn, DAILY_ENGAGEMENT_SQL, today=today, as_of=ctx.as_of, days=AVERAGE_DAYS)
    metrics = ["posts", "interactions", "avg_engagement_rate", "new_users", "new_subscriptions"]
    for metric in metrics:
        frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    current = frame[frame["days_ago"] == 0].iloc[0]
    before = frame[frame["days_ago"] > 0]
    rows = []
    for metric in metrics:
        average = before[metric].mean(skipna=True)
        value = current[metric]
        rows.append({
            "metric": metric,
            "today": None if pd.isna(value) else round(float(value), 4),
            "avg_same_hours_7d": None if pd.isna(average) else round(float(average), 4),
            "change_pct": None if pd.isna(value) or pd.isna(average) or average == 0
            else round(100 * (float(value) - float(average)) / float(average), 1),
        })
    table = pd.DataFrame(rows)
    figure = _trend_figure(frame)
    hours = (ctx.as_of - today).total_seconds() / 3600
    posts = int(current["posts"])
    if posts == 0 and before["posts"].sum() == 0:
        return [Finding("content.engagement_today", Status.INFO,
                        "no data: no content today nor on the 7 days before", 0, data=table, figure=figure)]
    rate = current["avg_engagement_rate"]
    rate_text = "n/a" if pd.isna(rate) else f"{100 * float(rate):.2f}%"
    summary = (
        f"today's first {hours:.1f} h: {posts} posts, {int(current['interactions'])} likes+comments+shares, "
        f"engagement rate {rate_text}, {int(current['new_users'])} new users, "
        f"{int(current['new_subscriptions'])} new subscriptions"
    )
    usual_posts = before["posts"].mean()
    status = Status.OK
    if posts == 0 and usual_posts >= 1:
        status = Status.WARNING
        summary += f" (usually {usual_posts:.1f} posts by this hour)"
    return [Finding("content.engagement_today", status, summary, posts, round(float(usual_posts), 1), data=table, figure=figure)]


def _trend_figure(frame: pd.DataFrame):
    ordered = frame.sort_values("day")
    figure = charts.new_figure(9, 2.6)
    labels = [f"{pd.Timestamp(d):%m-%d}" for d in ordered["day"]]
    for index, (metric, colour) in enumerate(
        [("posts", "#5b8def"), ("interactions", "#4caf50"), ("new_users", "#ff9800")], start=1
    ):
        axis = figure.add_subplot(1, 3, index)
        axis.plot(labels, ordered[metric].fillna(0), marker="o", color=colour)
        axis.set_title(f"{metric} (same hours)", fontsize=8)
        axis.tick_params(labelsize=6, axis="x", labelrotation=60)
    figure.tight_layout()
    return figure
