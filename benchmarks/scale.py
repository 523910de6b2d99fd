"""A production-sized Content Creator: a year of data in PostgreSQL, a month of loguru logs.

FACTS.md says to plan for a year at 1,000+ posts a day and 10,000+ users:
~400k published_content, 10M+ agent_logs and user_interactions, a database of
a few GB, a few GB of logs a month. The benchmarks need exactly that, built in
minutes, so:

- every table is filled by one `INSERT ... SELECT ... FROM generate_series`
  (no row leaves the server), two tables at a time on two connections;
- the secondary indexes (the `ix_*` ones ccops.core.schema creates, i.e. the
  production ones) are dropped before loading and recreated from their own
  `pg_get_indexdef` text afterwards, so the end state has exactly the
  production indexes (primary keys and unique constraints stay throughout);
- foreign keys stay declared but their triggers are skipped while loading
  (`session_replication_role = replica`): the ids are computed to be
  consistent, and the smoke test checks there are no orphans;
- `VACUUM (ANALYZE)` at the end, as autovacuum would have left production:
  planner statistics and a visibility map that allows index-only scans.

Data follows the app's shape: agent names from FACTS.md at their schedule's
frequencies, status mix ~95/4/1 success/warning/error, ids in time order over
the year ending at `as_of`, posts on X and Telegram with lognormal views,
interactions by a skewed population of users on recent posts.

Logs: one loguru file per UTC day (`content_creator_YYYY-MM-DD.log`, the days
before `as_of`'s rotated to `.log.zip`), with DEBUG/INFO chatter, INFO lines
that mention "error" (which `grep -i error` miscounts), multi-line tracebacks
and lists. A few day templates are generated once and stamped with each
day's date, so a gigabyte is written at disk speed; the true counts by level
are known from the templates and returned (and kept in a manifest).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ccops.demo import catalog as cat
from ccops.demo.applog import LEVELS, LogRecord, _set_mtime, _zip_bytes, format_record, log_name, traceback_lines

GENERATOR_VERSION = 2  # bump when the data changes: a cached build of another version is rebuilt
AS_OF = datetime(2026, 11, 1, 12, 0, 0)  # fixed, so a cached build stays valid and figures repeat
SPAN = timedelta(days=365)
BENCH_DB = "content_creator"

# Rows at scale 1.0: the four tables the issue names, and the rest sized to a year of the app.
BASE_ROWS: dict[str, int] = {
    "agent_logs": 10_000_000,
    "published_content": 400_000,
    "user_interactions": 10_000_000,
    "community_users": 100_000,
    "insights": 100_000,
    "content_plans": 400_000,  # one plan per published post
    "ab_tests": 200,
    "ab_test_variants": 400,  # control + one variant per test
    "subscriptions": 8_000,
    "conversion_attempts": 40_000,
    "exclusive_content": 3_000,
    "moderation_actions": 20_000,
    "market_data": 70_080,  # 8 assets hourly for a year
    "sentiment_data": 70_080,
    "news_articles": 20_000,
    "performance_snapshots": 365,
}

def row_counts(scale: float = 1.0) -> dict[str, int]:
    """Rows per table at `scale` (every table keeps at least one row; plans match posts)."""
    counts = {name: max(1, round(n * scale)) for name, n in BASE_ROWS.items()}
    counts["content_plans"] = counts["published_content"]
    counts["ab_test_variants"] = 2 * counts["ab_tests"]
    counts["subscriptions"] = min(counts["subscriptions"], counts["community_users"])
    return counts


# ---- the database ------------------------------------------------------------------------

def _agent_arrays() -> dict[str, Any]:
    """Per-agent arrays for SQL: names, actions, median/sigma run time, messages, and a pick table.

    `pick` has 1000 slots filled in proportion to each agent's run frequency (1/interval),
    so `pick[1 + floor(random() * 1000)]` draws an agent with an O(1) int[] subscript.
    """
    agents = cat.AGENTS
    freq = [2.0 / (a.interval[0] + a.interval[1]) for a in agents]
    total = sum(freq)
    slots: list[int] = []
    for k, f in enumerate(freq):
        slots += [k + 1] * round(1000 * f / total)
    slots = (slots + [1] * 1000)[:1000]
    return {
        "names": [a.name for a in agents],
        "actions": [a.action for a in agents],
        "medians": [a.median_s for a in agents],
        "sigmas": [a.sigma for a in agents],
        "errors": [cat.ERRORS.get(a.name, ("RuntimeError: agent failed",))[0] for a in agents],
        "warnings": [cat.WARNINGS.get(a.name, ("slow response",))[0].format(**WARNING_VALUES) for a in agents],
        "pick": slots,
    }


def _ts(i: str, n: str, jitter: str = "random()") -> str:
    """SQL: the i-th of n instants spread evenly over the year before as_of (ids in time order)."""
    return f"(%(as_of)s::timestamp - make_interval(secs => %(span)s * ({n} - {i} + {jitter}) / {n}))"


WARNING_VALUES = {"secs": 12, "asset": "BTC", "conf": "0.55", "n": 3, "test": "hook_style"}
ASSET_PICK = [k + 1 for k, w in enumerate(cat.ASSET_WEIGHTS.values()) for _ in range(w)]  # 100 slots


def table_sql(counts: dict[str, int]) -> dict[str, str]:
    """One INSERT ... SELECT per table; parameters are bound by `_params`."""
    c = counts
    stride = max(1, c["community_users"] // c["subscriptions"])
    paid_tier = "(ARRAY['BASIC','BASIC','BASIC','BASIC','BASIC','BASIC','PREMIUM','PREMIUM','PREMIUM','VIP'])[1 + ({k}) % 10]"
    asset = "(%(assets)s::text[])[(%(asset_pick)s::int[])[1 + floor(random() * 100)::int]]"
    gauss = "(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))"
    return {
        "agent_logs": f"""
INSERT INTO agent_logs (id, "timestamp", agent_name, action, status, details, error_message, execution_time, created_at)
SELECT i, ts, (%(names)s::text[])[a], (%(actions)s::text[])[a], st,
       ('{{"run_id": ' || i || ', "items": ' || (i % 50) || '}}')::json,
       CASE st WHEN 'error' THEN (%(errors)s::text[])[a] WHEN 'warning' THEN (%(warnings)s::text[])[a] END,
       round(((%(medians)s::float8[])[a] * exp((%(sigmas)s::float8[])[a] * g))::numeric, 3)::float8,
       ts
FROM (SELECT i, {_ts('i', c['agent_logs'])} AS ts,
             (%(pick)s::int[])[1 + floor(random() * 1000)::int] AS a,
             CASE WHEN r < 0.95 THEN 'success' WHEN r < 0.99 THEN 'warning' ELSE 'error' END AS st,
             {gauss} AS g
      FROM (SELECT i, random() AS r FROM generate_series(1, {c['agent_logs']}) AS i) s) t""",
        "insights": f"""
INSERT INTO insights (id, "timestamp", type, asset, confidence, details, supporting_data_ids, is_published,
                      is_exclusive, created_at)
SELECT i, ts, (%(insight_types)s::text[])[1 + i % 7]::insighttype, {asset}, round((0.6 + 0.4 * random())::numeric, 3),
       ('{{"summary": "signal ' || i || '", "timeframe": "4h"}}')::json, NULL, true, random() < 0.1, ts
FROM (SELECT i, {_ts('i', c['insights'])} AS ts FROM generate_series(1, {c['insights']}) AS i) s""",
        "content_plans": f"""
INSERT INTO content_plans (id, "timestamp", insight_id, platform, format, priority, scheduled_for, status, created_at)
SELECT i, pub - interval '40 minutes', 1 + ((i - 1)::bigint * {c['insights']} / {c['content_plans']})::int,
       CASE WHEN i % 10 < 7 THEN 'twitter' ELSE 'telegram' END,
       (CASE WHEN i % 10 >= 7 THEN 'TELEGRAM_MESSAGE' WHEN i % 5 = 0 THEN 'THREAD' ELSE 'SINGLE_TWEET' END)::contentformat,
       (ARRAY['high','medium','low'])[1 + i % 3], pub, 'published', pub - interval '40 minutes'
FROM (SELECT i, {_ts('i', c['content_plans'], '0.5')} AS pub FROM generate_series(1, {c['content_plans']}) AS i) s""",
        "published_content": f"""
INSERT INTO published_content (id, content_plan_id, platform, content_text, media_urls, post_url, post_id,
                               published_at, views, likes, comments, shares, engagement_rate,
                               ab_test_variant_id, created_at)
SELECT i, i, platform,
       '$' || a || ' update #' || i || ': volume up ' || (i % 90) || '% vs the 7d average, watching the next level closely. #Crypto',
       CASE WHEN i % 4 = 0 THEN ('["https://cdn.example.com/img/' || i || '.png"]')::json END,
       CASE WHEN platform = 'twitter' THEN 'https://x.com/cc/status/' || (1800000000000000000 + i)
            ELSE 'https://t.me/ccsignals/' || i END,
       (1800000000000000000 + i)::text, pub, views, likes, comments, shares,
       round(((likes + comments + shares)::numeric / greatest(views, 1)), 4)::float8,
       CASE WHEN i % 10 = 0 THEN 1 + (i / 10) % {c['ab_test_variants']} END,
       pub - interval '1 minute' * (1 + floor(random() * 30))
FROM (SELECT i, pub, platform, a, views,
             floor(views * 0.03 * random())::int AS likes, floor(views * 0.004 * random())::int AS comments,
             floor(views * 0.006 * random())::int AS shares
      FROM (SELECT i, {_ts('i', c['published_content'], '0.5')} AS pub,
                   CASE WHEN i % 10 < 7 THEN 'twitter' ELSE 'telegram' END AS platform, {asset} AS a,
                   least(floor(exp(7 + 1.1 * {gauss})), 2000000000)::int AS views
            FROM generate_series(1, {c['published_content']}) AS i) s) t""",
        "ab_tests": f"""
INSERT INTO ab_tests (id, test_name, hypothesis, variable_being_tested, insight_id, asset, platform, status,
                      winning_variant_id, confidence_level, improvement_percentage, started_at, completed_at, created_at)
SELECT i, 'test_' || i, 'Variant B lifts engagement', (ARRAY['hook_style','posting_time','emoji_density','thread_length'])[1 + i % 4],
       1 + (i - 1) % {c['insights']}, {asset}, CASE WHEN i % 3 = 0 THEN 'telegram' ELSE 'twitter' END,
       (CASE WHEN ts < %(as_of)s::timestamp - interval '14 days' THEN 'COMPLETED' ELSE 'ACTIVE' END)::teststatus,
       NULL, round((0.8 + 0.19 * random())::numeric, 3), round((random() * 30)::numeric, 2),
       ts, CASE WHEN ts < %(as_of)s::timestamp - interval '14 days' THEN ts + interval '14 days' END, ts
FROM (SELECT i, {_ts('i', c['ab_tests'])} AS ts FROM generate_series(1, {c['ab_tests']}) AS i) s""",
        "ab_test_variants": f"""
INSERT INTO ab_test_variants (id, test_id, variant_name, is_control, variant_config, impressions, clicks,
                              engagement_count, conversion_count, click_through_rate, engagement_rate,
                              conversion_rate, sample_size, created_at)
SELECT k, (k + 1) / 2, CASE WHEN k % 2 = 1 THEN 'control' ELSE 'variant_b' END, k % 2 = 1,
       ('{{"variant": ' || k || '}}')::json, imp, clicks, eng, conv,
       round(clicks::numeric / imp, 4)::float8, round(eng::numeric / imp, 4)::float8, round(conv::numeric / imp, 5)::float8,
       imp, %(as_of)s::timestamp - SPAN_PLACEHOLDER
FROM (SELECT k, imp, floor(imp * 0.02 * random())::int AS clicks, floor(imp * 0.04 * random())::int AS eng,
             floor(imp * 0.002 * random())::int AS conv
      FROM (SELECT k, 1000 + floor(random() * 50000)::int AS imp
            FROM generate_series(1, {c['ab_test_variants']}) AS k) s) t""".replace(
            "SPAN_PLACEHOLDER", "make_interval(secs => %(span)s * (1 - k::float8 / " + str(c["ab_test_variants"]) + "))"),
        "community_users": f"""
INSERT INTO community_users (id, twitter_id, twitter_username, telegram_id, telegram_username, discord_id,
                             discord_username, email, tier, subscription_status, total_interactions,
                             last_interaction, engagement_score, conversion_dm_sent, conversion_dm_sent_at,
                             conversion_dm_opened, conversion_dm_clicked, first_seen, converted_at,
                             created_at, updated_at)
SELECT u, (1000000000000 + u)::text, 'user_' || u,
       CASE WHEN u % 3 = 0 THEN (5000000000 + u)::text END, CASE WHEN u % 3 = 0 THEN 'tg_user_' || u END,
       CASE WHEN u % 10 = 0 THEN (900000000000000000 + u)::text END, CASE WHEN u % 10 = 0 THEN 'dc_user_' || u END,
       CASE WHEN u % 4 = 0 OR paid THEN 'member' || u || '@example.com' END,
       (CASE WHEN paid THEN {paid_tier.format(k='u / ' + str(stride))} ELSE 'FREE' END)::usertier,
       CASE WHEN paid THEN 'active' ELSE 'inactive' END,
       floor(random() * 400)::int, %(as_of)s::timestamp - make_interval(secs => random() * 86400 * 30),
       round((random() * 100)::numeric, 2)::float8, paid OR u % 7 = 0,
       CASE WHEN paid OR u % 7 = 0 THEN first_seen + interval '3 days' END, paid OR u % 14 = 0, paid,
       first_seen, CASE WHEN paid THEN first_seen + interval '5 days' END, first_seen, first_seen
FROM (SELECT u, {_ts('u', c['community_users'])} AS first_seen,
             (u % {stride} = 0 AND u / {stride} <= {c['subscriptions']}) AS paid
      FROM generate_series(1, {c['community_users']}) AS u) s""",
        "subscriptions": f"""
INSERT INTO subscriptions (id, user_id, stripe_customer_id, stripe_subscription_id, stripe_payment_intent_id, tier,
                           status, amount, currency, current_period_start, current_period_end, trial_end,
                           cancel_at_period_end, cancelled_at, cancellation_reason, created_at, updated_at)
SELECT s, s * {stride}, 'cus_' || lpad(s::text, 14, '0'), 'sub_' || lpad(s::text, 14, '0'), 'pi_' || s,
       tier::usertier, CASE WHEN s % 20 = 0 THEN 'cancelled' WHEN s % 50 = 1 THEN 'past_due' ELSE 'active' END,
       CASE tier WHEN 'BASIC' THEN 9.99 WHEN 'PREMIUM' THEN 29.99 ELSE 99.0 END, 'usd',
       date_trunc('month', %(as_of)s::timestamp), date_trunc('month', %(as_of)s::timestamp) + interval '1 month',
       NULL, s % 20 = 0, CASE WHEN s % 20 = 0 THEN %(as_of)s::timestamp - interval '3 days' END,
       CASE WHEN s % 20 = 0 THEN 'too_expensive' END, created, created
FROM (SELECT s, {paid_tier.format(k='s')} AS tier, {_ts('s', c['subscriptions'])} AS created
      FROM generate_series(1, {c['subscriptions']}) AS s) t""",
        "user_interactions": f"""
INSERT INTO user_interactions (id, user_id, interaction_type, platform, content_id, interaction_metadata,
                               engagement_value, "timestamp")
SELECT i, 1 + floor({c['community_users']} * power(random(), 2))::int,
       (ARRAY['view','view','view','like','like','reply','retweet','click','share','join'])[1 + floor(random() * 10)::int],
       CASE WHEN random() < 0.7 THEN 'twitter' ELSE 'telegram' END,
       nullif(greatest(0, floor(i::numeric * {c['published_content']} / {c['user_interactions']})::int
                          - floor(random() * 20)::int), 0),  -- a post published before, else none
       CASE WHEN i % 50 = 0 THEN '{{"source": "mention"}}'::json END,
       round((random() * 5)::numeric, 2)::float8, {_ts('i', c['user_interactions'])}
FROM generate_series(1, {c['user_interactions']}) AS i""",
        "conversion_attempts": f"""
INSERT INTO conversion_attempts (id, user_id, platform, message_text, discount_code, discount_percentage, sent_at,
                                 opened_at, clicked_at, converted_at, status, created_at)
SELECT i, 1 + (i * 7) % {c['community_users']}, CASE WHEN i % 3 = 0 THEN 'telegram' ELSE 'twitter' END,
       'Hey! Members get real-time signals and the VIP channel. Use PULSE15 for 15% off your first month.',
       'PULSE15', 15, ts, CASE WHEN r < 0.6 THEN ts + interval '2 hours' END,
       CASE WHEN r < 0.2 THEN ts + interval '3 hours' END, CASE WHEN r < 0.05 THEN ts + interval '1 day' END,
       CASE WHEN r < 0.05 THEN 'converted' WHEN r < 0.2 THEN 'clicked' WHEN r < 0.6 THEN 'opened' ELSE 'sent' END, ts
FROM (SELECT i, random() AS r, {_ts('i', c['conversion_attempts'])} AS ts
      FROM generate_series(1, {c['conversion_attempts']}) AS i) s""",
        "exclusive_content": f"""
INSERT INTO exclusive_content (id, insight_id, content_text, platform, min_tier_required, published_at, channel_id,
                               message_id, views, reactions, created_at)
SELECT i, 1 + ((i - 1)::bigint * {c['insights']} / {c['exclusive_content']})::int,
       'VIP: full breakdown #' || i, 'telegram', (ARRAY['BASIC','PREMIUM','VIP'])[1 + i % 3]::usertier,
       ts, '-100123456789', (10000 + i)::text, floor(random() * 3000)::int, floor(random() * 200)::int, ts
FROM (SELECT i, {_ts('i', c['exclusive_content'])} AS ts FROM generate_series(1, {c['exclusive_content']}) AS i) s""",
        "moderation_actions": f"""
INSERT INTO moderation_actions (id, user_id, platform_user_id, action_type, reason, platform, message_content,
                                channel_id, automated, agent_confidence, duration_minutes, expires_at,
                                "timestamp", created_at)
SELECT i, 1 + (i * 13) % {c['community_users']}, (1000000000000 + 1 + (i * 13) % {c['community_users']})::text,
       (ARRAY['delete_message','delete_message','warn','mute','ban'])[1 + i % 5],
       (ARRAY['spam','scam_link','flood','harassment','off_topic'])[1 + i % 5], 'telegram',
       'buy buy buy buy', '-100123456789', i % 9 <> 0, round((0.7 + 0.3 * random())::numeric, 3)::float8,
       CASE WHEN i % 5 = 3 THEN 60 END, CASE WHEN i % 5 = 3 THEN ts + interval '60 minutes' END, ts, ts
FROM (SELECT i, {_ts('i', c['moderation_actions'])} AS ts FROM generate_series(1, {c['moderation_actions']}) AS i) s""",
        "market_data": f"""
INSERT INTO market_data (id, "timestamp", asset, price, volume_24h, price_change_24h, market_cap, raw_data, created_at)
SELECT i, ts, (%(assets)s::text[])[a], round((p * (1 + 0.2 * sin(i / 5000.0)))::numeric, 6)::float8,
       round((v * (0.6 + random()))::numeric, 0)::float8, round((random() * 10 - 5)::numeric, 2)::float8,
       round((p * sup)::numeric, 0)::float8, ('{{"source": "coingecko", "n": ' || i || '}}')::json, ts
FROM (SELECT i, 1 + (i - 1) % 8 AS a, (%(prices)s::float8[])[1 + (i - 1) % 8] AS p,
             (%(volumes)s::float8[])[1 + (i - 1) % 8] AS v, (%(supplies)s::float8[])[1 + (i - 1) % 8] AS sup,
             {_ts('i', c['market_data'], '0.5')} AS ts
      FROM generate_series(1, {c['market_data']}) AS i) s""",
        "sentiment_data": f"""
INSERT INTO sentiment_data (id, "timestamp", platform, asset, sentiment_score, volume, influencer_sentiment,
                            raw_data, created_at)
SELECT i, ts, CASE WHEN i % 2 = 0 THEN 'twitter' ELSE 'reddit' END, (%(assets)s::text[])[1 + (i - 1) % 8],
       round((random() * 2 - 1)::numeric, 3)::float8, floor(random() * 5000)::int,
       round((random() * 2 - 1)::numeric, 3)::float8, NULL, ts
FROM (SELECT i, {_ts('i', c['sentiment_data'], '0.5')} AS ts FROM generate_series(1, {c['sentiment_data']}) AS i) s""",
        "news_articles": f"""
INSERT INTO news_articles (id, title, url, source, published_at, content, summary, sentiment_score,
                           mentioned_assets, created_at)
SELECT i, a || ' climbs ' || (i % 12) || '% as ETF inflows pick up', 'https://news.example.com/a/' || i,
       (ARRAY['CoinDesk','The Block','Decrypt','Cointelegraph','Blockworks'])[1 + i % 5], ts,
       repeat('Markets moved. ', 20), 'Markets moved.', round((random() * 2 - 1)::numeric, 3)::float8,
       ('["' || a || '"]')::json, ts
FROM (SELECT i, {asset} AS a, {_ts('i', c['news_articles'])} AS ts FROM generate_series(1, {c['news_articles']}) AS i) s""",
        "performance_snapshots": f"""
INSERT INTO performance_snapshots (id, snapshot_date, period_type, content_published_count, avg_engagement_rate,
                                   total_impressions, total_clicks, new_followers, total_followers,
                                   follower_growth_rate, new_conversions, total_paying_members, revenue,
                                   conversion_rate, top_performing_format, top_performing_asset,
                                   top_performing_insight_type, avg_insight_confidence, insight_accuracy_rate, created_at)
SELECT i, d, 'daily', 1000 + floor(random() * 200)::int, round((0.02 + random() * 0.02)::numeric, 4)::float8,
       floor(1e6 + random() * 5e5)::int, floor(2e4 + random() * 1e4)::int, floor(random() * 400)::int,
       50000 + i * 150, round((random() * 0.01)::numeric, 4)::float8, floor(random() * 30)::int, 2000 + i * 10,
       round((20000 + random() * 5000)::numeric, 2)::float8, round((random() * 0.02)::numeric, 4)::float8,
       'THREAD', 'BTC', 'BREAKOUT', round((0.7 + random() * 0.2)::numeric, 3)::float8,
       round((0.5 + random() * 0.3)::numeric, 3)::float8, d + interval '5 minutes'
FROM (SELECT i, date_trunc('day', %(as_of)s::timestamp) - make_interval(days => {c['performance_snapshots']} - i) AS d
      FROM generate_series(1, {c['performance_snapshots']}) AS i) s""",
    }


def _params(as_of: datetime) -> dict[str, Any]:
    assets = list(cat.ASSETS)
    return {
        "as_of": as_of,
        "span": SPAN.total_seconds(),
        **_agent_arrays(),
        "assets": assets,
        "asset_pick": ASSET_PICK,
        "prices": [cat.ASSETS[a][1] for a in assets],
        "supplies": [cat.ASSETS[a][2] for a in assets],
        "volumes": [cat.ASSETS[a][3] for a in assets],
        "insight_types": list(cat.INSIGHT_TYPES),
    }


def _connect(url: str):
    import psycopg

    from ccops.core.db import libpq_url

    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10)


def index_definitions(url: str) -> dict[str, str]:
    """Every index of the public schema: name -> CREATE INDEX text (what "the indexes" means here)."""
    with _connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
    return dict(rows)


def _droppable_indexes(conn) -> dict[str, str]:
    """Secondary indexes (not backing a primary key or unique constraint): safe to drop and recreate."""
    rows = conn.execute("""
        SELECT ci.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        JOIN pg_class ci ON ci.oid = i.indexrelid
        JOIN pg_class ct ON ct.oid = i.indrelid
        WHERE ct.relnamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
        ORDER BY 1""").fetchall()
    return dict(rows)


def table_counts(url: str, tables: list[str] | None = None) -> dict[str, int]:
    """Exact row counts (count(*)), for checking a cached build."""
    names = tables or list(BASE_ROWS)
    with _connect(url) as conn:
        return {name: int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]) for name in names}


def database_size(url: str) -> int:
    with _connect(url) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def _escape_percent(sql: str) -> str:
    """Literal `%` (modulo, text) doubled for psycopg; `%(name)s` placeholders left alone."""
    return re.sub(r"%(?!\()", "%%", sql)


def _run_jobs(url: str, jobs: list[tuple[str, str]], params: dict[str, Any] | None, workers: int, log) -> None:
    """Run (label, sql) jobs on `workers` connections, each with the loading settings."""
    def run(job: tuple[str, str]) -> None:
        label, sql = job
        started = time.monotonic()
        with _connect(url) as conn:
            conn.execute("SET session_replication_role = replica")  # FK triggers off while loading
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("SET work_mem = '64MB'")
            conn.execute("SELECT setseed(%s)", [_seed(label)])  # same data on every build
            if params is None:
                conn.execute(sql)
            else:
                conn.execute(_escape_percent(sql), params)
        log(f"  {label}: {time.monotonic() - started:.1f} s")

    if workers <= 1:
        for job in jobs:
            run(job)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, job) for job in jobs]:
            future.result()


def _seed(label: str) -> float:
    """A per-job seed in [-1, 1] that does not depend on Python's hash randomisation."""
    return (sum(ord(ch) * (k + 1) for k, ch in enumerate(label)) % 2000) / 1000.0 - 1.0


def build_database(url: str, scale: float = 1.0, as_of: datetime = AS_OF, workers: int = 2,
                   log=print) -> dict[str, Any]:
    """Create the schema in an empty database and fill it at `scale`; returns counts, time and size.

    The database must be empty (no Content Creator tables). Big tables load on
    `workers` connections at once; the secondary indexes are built after the data.
    """
    from ccops.core import schema

    started = time.monotonic()
    counts = row_counts(scale)
    schema.create_all(url)
    expected_indexes = index_definitions(url)
    with _connect(url) as conn:
        secondary = _droppable_indexes(conn)
        for name in secondary:
            conn.execute(f'DROP INDEX "{name}"')
    sql = table_sql(counts)
    order = sorted(BASE_ROWS, key=lambda name: -counts[name])  # biggest first: best packing on 2 workers
    log(f"loading {sum(counts.values()):,} rows into {len(order)} tables (scale {scale:g})")
    _run_jobs(url, [(name, sql[name]) for name in order], _params(as_of), workers, log)
    with _connect(url) as conn:
        conn.execute("""UPDATE ab_tests SET winning_variant_id = 2 * id
                        WHERE status = 'COMPLETED' AND EXISTS (SELECT 1 FROM ab_test_variants v WHERE v.id = 2 * ab_tests.id)""")
        for name in BASE_ROWS:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                         f"coalesce(max(id), 1), max(id) IS NOT NULL) FROM {name}")
    loaded = time.monotonic()
    log(f"  data loaded in {loaded - started:.1f} s; building {len(secondary)} indexes")
    by_size = sorted(secondary.items(), key=lambda item: -counts.get(_table_of(item[1]), 0))
    _run_jobs(url, [(f"index {name}", ddl) for name, ddl in by_size], None, workers, log)
    indexed = time.monotonic()
    _run_jobs(url, [(f"vacuum {name}", f"VACUUM (ANALYZE) {name}") for name in order], None, workers,
              log=lambda _m: None)
    actual_indexes = index_definitions(url)
    if actual_indexes != expected_indexes:
        raise RuntimeError(f"index set differs from ccops.core.schema's: {sorted(set(actual_indexes) ^ set(expected_indexes))}")
    elapsed = time.monotonic() - started
    size = database_size(url)
    log(f"built in {elapsed:.1f} s (load {loaded - started:.1f}, indexes {indexed - loaded:.1f}, "
        f"vacuum {elapsed - (indexed - started):.1f}); database size {size / 2**30:.2f} GiB")
    return {"version": GENERATOR_VERSION, "scale": scale, "as_of": as_of.isoformat(), "counts": counts,
            "seconds": round(elapsed, 1), "size_bytes": size, "indexes": sorted(actual_indexes)}


def _table_of(indexdef: str) -> str:
    """`CREATE INDEX ix ON public.agent_logs USING ...` -> agent_logs."""
    return indexdef.split(" ON ", 1)[1].split()[0].removeprefix("public.")


# ---- the logs --------------------------------------------------------------------------

TEMPLATE_DAY = date(2000, 1, 1)
TEMPLATE_PREFIX = b"2000-01-01 "
TEMPLATES = 3  # distinct day templates, used in turn
INFO_ERROR_MESSAGES = (
    "AnalyticsAgent collected metrics for {n} posts, 0 errors",
    "Retrying X request after transient error (attempt 2/3)",
    "Error budget for the last hour: {n}% used",
    "Recovered from earlier error in MarketScannerAgent, prices fresh again",
)


@dataclass
class _Template:
    """One synthetic day: its text (dated TEMPLATE_DAY) and, per record, where it ends and what it is."""

    text: bytes
    seconds: list[int]  # second of day of each record, ascending
    ends: list[int]  # byte offset just after each record
    levels: list[str]
    grep_lines: list[int]  # lines of each record that `grep -i error` matches

    def prefix(self, before_second: int) -> int:
        """How many records fall before `before_second` of the day."""
        return bisect.bisect_left(self.seconds, before_second)

    def counts(self, n: int | None = None) -> tuple[Counter, int]:
        n = len(self.levels) if n is None else n
        return Counter(self.levels[:n]), sum(self.grep_lines[:n])


def _records_for_second(rng: random.Random, second: int, agents: list[cat.AgentSpec],
                        weights: list[float]) -> list[LogRecord]:
    ts = datetime.combine(TEMPLATE_DAY, datetime.min.time()) + timedelta(seconds=second)
    agent = rng.choices(agents, weights)[0]
    where = f"{agent.module}:execute"
    roll = rng.random()
    if roll < 0.40:
        return [LogRecord(ts, "DEBUG", "src.agents.base_agent:run", f"{agent.name} starting {agent.action}")]
    if roll < 0.80:
        return [LogRecord(ts, "INFO", "src.agents.base_agent:run",
                          f"{agent.name} completed {agent.action} in {rng.lognormvariate(math.log(agent.median_s), agent.sigma):.2f}s")]
    if roll < 0.83:
        text = rng.choice(INFO_ERROR_MESSAGES).format(n=rng.randint(1, 400))
        return [LogRecord(ts, "INFO", where, text)]
    if roll < 0.86:
        return [LogRecord(ts, "SUCCESS", "src.agents.publishing_agent:publish",
                          f"Published post {rng.randint(10**17, 10**18)} to {'X' if rng.random() < 0.7 else 'Telegram'}")]
    if roll < 0.89:
        warns = cat.WARNINGS.get(agent.name, ("slow response",))
        text = rng.choice(warns).format(secs=rng.randint(5, 40), asset="BTC", conf="0.55", n=rng.randint(1, 20),
                                        test="hook_style")
        return [LogRecord(ts, "WARNING", where, f"{agent.name} warning: {text}")]
    if roll < 0.895:
        return [LogRecord(ts, "WARNING", "src.integrations.twitter_client:post_tweet",
                          "Rate limit hit for X API (HTTP 429): x-rate-limit-remaining=0 retry-after=900")]
    if roll < 0.90:
        rows = [f"  - {asset}: {rng.uniform(-5, 5):+.2f}%" for asset in list(cat.ASSETS)[:5]]
        return [LogRecord(ts, "INFO", "src.agents.market_scanner:execute", "Top movers:", tuple(rows))]
    if roll < 0.9005:
        return [LogRecord(ts, "CRITICAL", "src.database.connection:get_db", "Database connection pool exhausted",
                          traceback_lines(agent, cat.POOL_ERROR) + ("",))]
    if roll < 0.909:
        message = cat.ERRORS.get(agent.name, ("RuntimeError: agent failed",))[0]
        extra = traceback_lines(agent, message) + ("",) if rng.random() < 0.6 else ()
        return [LogRecord(ts, "ERROR", "src.agents.base_agent:run", f"{agent.name} failed: {message}", extra)]
    return [LogRecord(ts, "DEBUG", "src.agents.base_agent:run", f"{agent.name} heartbeat ok")]


def _make_template(seed: int, target_bytes: int) -> _Template:
    rng = random.Random(f"bench-logs:{seed}")
    agents = list(cat.AGENTS)
    weights = [2.0 / (a.interval[0] + a.interval[1]) for a in agents]
    sample = b"".join(format_record(r).encode() for s in range(2000)
                      for r in _records_for_second(random.Random(s), 0, agents, weights))
    per_record = max(40, len(sample) / 2000)
    n = max(10, int(target_bytes / per_record))
    seconds = sorted(rng.randrange(86400) for _ in range(n))
    parts: list[bytes] = []
    ends: list[int] = []
    levels: list[str] = []
    grep_lines: list[int] = []
    out_seconds: list[int] = []
    offset = 0
    for second in seconds:
        for record in _records_for_second(rng, second, agents, weights):
            chunk = format_record(record).encode()
            parts.append(chunk)
            offset += len(chunk)
            ends.append(offset)
            levels.append(record.level)
            grep_lines.append(sum(1 for line in chunk.lower().split(b"\n") if b"error" in line))
            out_seconds.append(second)
    text = b"".join(parts)
    assert text.count(TEMPLATE_PREFIX) == len(levels), "a message must not contain the template date"
    return _Template(text, out_seconds, ends, levels, grep_lines)


def build_logs(log_dir: Path, target_bytes: int, as_of: datetime = AS_OF, days: int = 30,
               log=print) -> dict[str, Any]:
    """Write ~target_bytes of the app's logs over `days` days ending at as_of; returns the true counts.

    The last file (as_of's day) is live: plain `.log` with the records before as_of.
    Earlier days are rotated `.log.zip`. The result, also written to
    `<log_dir>/bench-manifest.json`, holds per-day and total counts by level and
    the lines `grep -i error` matches; the window [since, until) covers every record.
    """
    started = time.monotonic()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("content_creator_*"):
        old.unlink()
    last_day = as_of.date()
    first_day = last_day - timedelta(days=days - 1)
    full_days = days - 1 + (as_of - datetime.combine(last_day, datetime.min.time())).total_seconds() / 86400
    per_day = int(target_bytes / max(full_days, 1e-3))
    templates = [_make_template(k, per_day) for k in range(TEMPLATES)]
    cut_second = int((as_of - datetime.combine(last_day, datetime.min.time())).total_seconds())

    def write_day(k: int) -> dict[str, Any]:
        day = first_day + timedelta(days=k)
        template = templates[k % TEMPLATES]
        n = len(template.levels) if day < last_day else template.prefix(cut_second)
        end = template.ends[n - 1] if n else 0
        text = template.text[:end].replace(TEMPLATE_PREFIX, f"{day:%Y-%m-%d} ".encode())
        by_level, grep_lines = template.counts(n)
        if day < last_day:
            rotated = datetime.combine(day + timedelta(days=1), datetime.min.time())
            path = log_dir / (log_name(day) + ".zip")
            path.write_bytes(_zip_bytes(log_name(day), text, rotated))
            _set_mtime(path, rotated)
        else:
            path = log_dir / log_name(day)
            path.write_bytes(text)
            _set_mtime(path, as_of)
        return {"date": day.isoformat(), "file": path.name, "bytes": len(text), "records": n,
                "by_level": {lv: by_level.get(lv, 0) for lv in LEVELS}, "grep_error_lines": grep_lines}

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        per_day_info = list(pool.map(write_day, range(days)))
    total = Counter()
    for info in per_day_info:
        total.update(info["by_level"])
    result = {
        "version": GENERATOR_VERSION,
        "as_of": as_of.isoformat(),
        "target_bytes": target_bytes,
        "since": datetime.combine(first_day, datetime.min.time()).isoformat(),
        "until": as_of.isoformat(),
        "bytes": sum(i["bytes"] for i in per_day_info),
        "records": sum(i["records"] for i in per_day_info),
        "by_level": {lv: total.get(lv, 0) for lv in LEVELS},
        "grep_error_lines": sum(i["grep_error_lines"] for i in per_day_info),
        "days": per_day_info,
        "seconds": round(time.monotonic() - started, 1),
    }
    (log_dir / "bench-manifest.json").write_text(json.dumps(result, indent=1))
    log(f"logs: {result['bytes'] / 2**20:.0f} MiB in {days} files, {result['records']:,} records, "
        f"in {result['seconds']} s")
    return result


def window_truth(manifest: dict[str, Any], since: datetime) -> dict[str, Any]:
    """True counts of [since, until) for a `since` at a midnight of the manifest's days."""
    days = [d for d in manifest["days"] if date.fromisoformat(d["date"]) >= since.date()]
    if since.time() != datetime.min.time():
        raise ValueError("window_truth needs a since at midnight")
    total = Counter()
    for d in days:
        total.update(d["by_level"])
    return {"by_level": {lv: total.get(lv, 0) for lv in LEVELS},
            "grep_error_lines": sum(d["grep_error_lines"] for d in days),
            "bytes": sum(d["bytes"] for d in days), "files": [d["file"] for d in days]}


# ---- cache: the bench cluster under .ccops/bench ------------------------------------------------

def bench_root(repo: Path | None = None) -> Path:
    return (repo or Path(__file__).resolve().parent.parent) / ".ccops" / "bench"


def ensure_database(root: Path, scale: float, as_of: datetime = AS_OF, log=print):
    """The bench cluster started and its database built at `scale` (reused when counts and indexes match).

    Returns (cluster, url, manifest).
    """
    from ccops.core import localpg

    cluster = localpg.Cluster(root / "pg")
    cluster.start(timeout=120)
    for setting in ("max_wal_size = '8GB'", "checkpoint_timeout = '30min'"):  # fewer checkpoints while loading
        cluster.psql(f"ALTER SYSTEM SET {setting}")
    cluster.psql("SELECT pg_reload_conf()")
    manifest_path = root / "db.json"
    url = cluster.url(BENCH_DB)
    manifest = _read_json(manifest_path)
    if (manifest.get("version") == GENERATOR_VERSION and manifest.get("scale") == scale
            and manifest.get("as_of") == as_of.isoformat()):
        exists = cluster.psql(f"SELECT 1 FROM pg_database WHERE datname = '{BENCH_DB}'").strip()
        if exists and _matches(cluster, url, manifest):
            log(f"reusing the bench database ({manifest['seconds']} s to build, "
                f"{manifest['size_bytes'] / 2**30:.2f} GiB)")
            return cluster, url, manifest
    log("building the bench database")
    manifest_path.unlink(missing_ok=True)
    cluster.create_database(BENCH_DB, drop_existing=True)
    manifest = build_database(url, scale, as_of, log=log)
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return cluster, url, manifest


def _matches(cluster, url: str, manifest: dict[str, Any]) -> bool:
    try:
        if table_counts(url) != manifest["counts"]:
            return False
        reference = cluster.create_database("schema_reference", drop_existing=True)
        from ccops.core import schema

        schema.create_all(reference)
        return index_definitions(url) == index_definitions(reference)
    except Exception:  # noqa: BLE001 - anything odd means rebuild
        return False


def ensure_logs(root: Path, target_bytes: int, as_of: datetime = AS_OF, log=print) -> tuple[Path, dict[str, Any]]:
    """The bench logs under root/logs, rebuilt unless the manifest matches and every file is there."""
    log_dir = root / "logs"
    manifest = _read_json(log_dir / "bench-manifest.json")
    if (manifest.get("version") == GENERATOR_VERSION and manifest.get("target_bytes") == target_bytes
            and manifest.get("as_of") == as_of.isoformat()
            and all((log_dir / d["file"]).is_file() for d in manifest.get("days", []))):
        log(f"reusing the bench logs ({manifest['bytes'] / 2**20:.0f} MiB)")
        return log_dir, manifest
    return log_dir, build_logs(log_dir, target_bytes, as_of, log=log)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description="build the bench data only")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--log-bytes", type=float, default=1e9)
    parser.add_argument("--skip-logs", action="store_true")
    parser.add_argument("--skip-db", action="store_true")
    args = parser.parse_args(argv)
    root = bench_root()
    if not args.skip_db:
        ensure_database(root, args.scale)
    if not args.skip_logs:
        ensure_logs(root, int(args.log_bytes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
