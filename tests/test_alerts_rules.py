"""The rules that query the database, on hand-made data with exact expectations.

No content in 6 hours, high-engagement posts, significant A/B tests and
subscriber milestones, evaluated by `ccops alerts check` against a real
PostgreSQL; info alerts go to a digest channel and out with `alerts digest`.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from ccops import alerts
from ccops.alerts.config import AlertConfig, EngagementConfig
from ccops.alerts.rules import engagement_limit
from ccops.core.db import normalize_url
from ccops.core.settings import load_settings
from tests.test_alerts import rules_only

T = datetime(2026, 11, 28, 8, 0, 0)


@pytest.fixture
def db_env(make_database, ccops_env, monkeypatch):
    url = make_database("ccops")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    (ccops_env / "ccops.toml").write_text(rules_only("database", "no_content", "high_engagement", "ab_test",
                                                     "milestones") + f"""
[alerts.milestones]
subscribers = [10, 50, 100, 250]
community = [100, 1000]

[[alerts.channels]]
type = "log"
name = "pager"
path = "{ccops_env / 'pager.log'}"
digest = true

[[alerts.channels]]
type = "log"
name = "feed"
path = "{ccops_env / 'feed.log'}"
severities = ["info"]
""")
    return ccops_env, url


def run_sql(url: str, sql: str, rows: list[dict] | dict) -> None:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text(sql), rows)
    engine.dispose()


POST = ("INSERT INTO published_content (content_plan_id, platform, content_text, published_at, views, likes, "
        "comments, shares, engagement_rate) VALUES (1, :p, :text, :t, :v, 0, 0, 0, :r)")


def seed(url: str) -> None:
    run_sql(url, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) "
                 "VALUES (1, :t, 'BREAKOUT', 'BTC', 0.8, '{}')", {"t": T})
    run_sql(url, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES (1, 1, 'twitter', 'THREAD')", {})
    baseline = [{"p": "twitter", "text": "usual", "t": T - timedelta(hours=12 * i + 5), "v": 1000,
                 "r": 0.04 + 0.02 * (i % 5) / 4} for i in range(60)]  # 30 days, rates 4-6%
    hits = [{"p": "telegram", "text": "BTC breakout thread that took off", "t": T - timedelta(hours=2), "v": 5000,
             "r": 0.31},
            {"p": "twitter", "text": "tiny audience", "t": T - timedelta(hours=3), "v": 20, "r": 0.45},
            {"p": "twitter", "text": "yesterday's hit, outside the window", "t": T - timedelta(hours=30), "v": 4000,
             "r": 0.28}]
    run_sql(url, POST, baseline + hits)
    run_sql(url, "INSERT INTO ab_tests (id, test_name, variable_being_tested, status, started_at) VALUES "
                 "(1, 'Hook style', 'hook_style', 'ACTIVE', :s), (2, 'Emoji', 'emoji', 'ACTIVE', :s)",
            {"s": T - timedelta(days=5)})
    run_sql(url, "INSERT INTO ab_test_variants (id, test_id, variant_name, is_control, variant_config, impressions, "
                 "clicks, engagement_count, conversion_count) VALUES (:id, :test, :name, :control, '{}', :n, 0, :e, 0)",
            [{"id": 1, "test": 1, "name": "control", "control": True, "n": 2000, "e": 100},
             {"id": 2, "test": 1, "name": "question", "control": False, "n": 2000, "e": 180},
             {"id": 3, "test": 2, "name": "control", "control": True, "n": 2000, "e": 100},
             {"id": 4, "test": 2, "name": "emoji", "control": False, "n": 2000, "e": 104}])
    users(url, 0, 130, active=120)


def users(url: str, start: int, count: int, active: int) -> None:
    run_sql(url, "INSERT INTO community_users (id, tier, first_seen) VALUES (:id, 'FREE', :t)",
            [{"id": start + i, "t": T - timedelta(days=10)} for i in range(count)])
    run_sql(url, "INSERT INTO subscriptions (user_id, tier, status, amount, created_at) "
                 "VALUES (:id, 'BASIC', :status, 9.0, :t)",
            [{"id": start + i, "status": "active" if i < active else "cancelled", "t": T - timedelta(days=5)}
             for i in range(count)])


def by_key(outcome) -> dict[str, dict]:
    return {n["key"]: n for n in outcome.notifications}


def test_database_rules_raise_the_guides_info_and_warning_alerts(db_env):
    root, url = db_env
    seed(url)
    settings = load_settings()
    first = alerts.check(settings, now=T)
    found = by_key(first)
    assert sorted(found) == ["abtest.significant:1:2", "engagement.high:61", "milestone:community:100",
                             "milestone:subscribers:100"], first.notes
    assert all(n["kind"] == "info" for n in found.values())
    assert first.open_alerts == [] and first.exit_code == 0, "info alerts are events, not open alerts"
    hit = found["engagement.high:61"]["message"]
    assert hit.startswith("telegram post 61 (2026-11-28 06:00 UTC, 5,000 views): engagement rate 31.00%")
    assert "(mean + 3 sd of the last 30 days)" in hit
    ab = found["abtest.significant:1:2"]["message"]
    assert "'question' is significantly better than the control on engagement_count (9.00% vs 5.00%" in ab
    assert found["milestone:subscribers:100"]["message"] == "120 active subscriptions: passed the 100 milestone"
    assert found["milestone:community:100"]["message"] == "130 community members: passed the 100 milestone"

    # info goes to the feed at once, and to the pager only in the daily digest
    feed = (root / "feed.log").read_text()
    assert "INFO High-engagement content: telegram post 61" in feed
    assert not (root / "pager.log").exists()
    assert alerts.list_open(settings)["digest"] == {"pager": 4}

    again = alerts.check(settings, now=T + timedelta(minutes=5))
    assert again.notifications == [], "announced once: the same post, test and milestone stay quiet"

    digest = alerts.send_digest(settings, now=T + timedelta(hours=1))
    assert [c.sent for c in digest.channels if c.channel == "pager"] == [4]
    pager = (root / "pager.log").read_text()
    assert "daily digest: 4 info alerts" in pager and "passed the 100 milestone" in pager
    assert alerts.send_digest(settings, now=T + timedelta(days=1)).notifications == []

    users(url, 1000, 140, active=140)  # 260 active subscriptions, 270 community members
    later = by_key(alerts.check(settings, now=T + timedelta(minutes=10)))
    assert sorted(later) == ["milestone:subscribers:250"]


def test_no_content_in_six_hours_is_a_warning_that_resolves(db_env):
    _, url = db_env
    seed(url)
    settings = load_settings()
    quiet = alerts.check(settings, now=T)
    assert "content.none_recent" not in by_key(quiet)
    late = alerts.check(settings, now=T + timedelta(hours=4, minutes=1))  # last post at 06:00: 6 h 1 min ago
    assert [(a["key"], a["severity"]) for a in late.open_alerts] == [("content.none_recent", "warning")]
    assert late.open_alerts[0]["message"] == ("No content published in the last 6 h: the last post was "
                                             "2026-11-28 06:00 UTC, 6.0 h ago")
    run_sql(url, POST, {"p": "twitter", "text": "back", "t": T + timedelta(hours=4, minutes=3), "v": 10, "r": 0.01})
    back = alerts.check(settings, now=T + timedelta(hours=4, minutes=5))
    assert [(n["kind"], n["key"]) for n in back.notifications] == [("resolved", "content.none_recent")]


def test_empty_database_warns_no_content_and_has_no_baseline(db_env):
    settings = load_settings()
    out = alerts.check(settings, now=T)
    assert [a["key"] for a in out.open_alerts] == ["content.none_recent"]
    assert "nothing was ever published" in out.open_alerts[0]["message"]
    assert any("high_engagement: only 0 posts" in note for note in out.notes)


def test_engagement_limit_methods():
    sigma = AlertConfig(engagement=EngagementConfig(method="sigma", sigma=2.0, min_baseline_posts=10))
    assert engagement_limit(50, 0.05, 0.01, 0.09, sigma) == pytest.approx(0.07)
    assert engagement_limit(9, 0.05, 0.01, 0.09, sigma) is None, "too thin a baseline says nothing"
    pct = AlertConfig(engagement=EngagementConfig(method="percentile", min_baseline_posts=10))
    assert engagement_limit(50, 0.05, 0.01, 0.09, pct) == 0.09


def test_every_rule_runs_against_the_demo_deployment(demo_env):
    """The whole of `alerts check` on the demo: every rule can look, and it stays fast enough for cron."""
    import time

    from tests.conftest import DEMO_AS_OF

    settings = load_settings()
    started = time.monotonic()
    try:
        out = alerts.check(settings, now=datetime.fromisoformat(DEMO_AS_OF.replace("Z", "")))
    finally:  # the demo home is shared by the session: leave no alert state in it
        shutil.rmtree(settings.home / "alerts", ignore_errors=True)
    assert time.monotonic() - started < 15
    assert not [n for n in out.notes if "could not run" in n or "skipped" in n], out.notes
    keys = {n["key"] for n in out.notifications}
    assert {"milestone:subscribers:100", "milestone:community:1000"} <= keys
    assert not any(a["key"] in ("health.database", "services.status", "services.status_endpoint")
                   for a in out.open_alerts), "the demo is up"
