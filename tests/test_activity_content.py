"""Agent activity and content checks on hand-made data with exact expectations."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ccops.checks import activity, content
from ccops.core.context import RunContext
from ccops.core.settings import load_settings
from tests.helpers import insert

AS_OF = datetime(2026, 11, 20, 18, 0, 0)


@pytest.fixture
def ctx(make_database, ccops_env, monkeypatch):
    url = make_database("ccops")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)



AGENT_SQL = "INSERT INTO agent_logs (timestamp, agent_name, action, status, execution_time) VALUES (:t, :a, 'execute', :s, 1.5)"


def test_silent_agent_and_error_burst_are_found(ctx):
    rows = []
    for minutes in range(0, 7 * 24 * 60, 10):  # every 10 minutes for a week, still running
        rows.append({"t": AS_OF - timedelta(minutes=minutes + 1), "a": "MarketScannerAgent", "s": "success"})
    for hours in range(10, 7 * 24):  # hourly, but nothing in the last 10 hours
        rows.append({"t": AS_OF - timedelta(hours=hours), "a": "ImageGenerationAgent", "s": "success"})
    for minutes in range(0, 7 * 24 * 60, 30):
        rows.append({"t": AS_OF - timedelta(minutes=minutes + 2), "a": "PublishingAgent", "s": "success"})
    burst_hour = AS_OF - timedelta(hours=5)
    for minute in (5, 15, 25, 35):
        rows.append({"t": burst_hour + timedelta(minutes=minute), "a": "PublishingAgent", "s": "error"})
    rows.append({"t": AS_OF - timedelta(hours=2), "a": "PublishingAgent", "s": "warning"})
    insert(ctx, AGENT_SQL, rows)

    found = {f.check: f for f in activity.agent_activity(ctx)}
    table = found["activity.agents"].data.set_index("agent_name")
    assert table.loc["PublishingAgent", "errors_24h"] == 4
    assert table.loc["PublishingAgent", "warnings_24h"] == 1
    assert table.loc["MarketScannerAgent", "executions_24h"] == 144
    assert table.loc["ImageGenerationAgent", "executions_24h"] == 14  # hours 10..23 inclusive
    assert table.loc["ImageGenerationAgent", "usual_interval_min"] == 60.0

    silent = found["activity.silent_agents"]
    assert silent.status.value == "WARNING"
    assert list(silent.data["agent_name"]) == ["ImageGenerationAgent"]
    assert "ImageGenerationAgent (silent 10.0 h, usually every 60 min)" in silent.summary

    burst = found["activity.error_bursts"]
    assert burst.status.value == "WARNING" and burst.value == 4
    assert "PublishingAgent logged 4 errors between 13:00 and 14:00 UTC on 2026-11-20" in burst.summary
    assert ctx.findings and len(ctx.findings) == 3, "the decorator records what it returns"


def test_quiet_week_is_ok(ctx):
    ctx.settings.thresholds.expected_agents = ["AnalysisAgent"]  # this deployment runs one agent
    rows = [{"t": AS_OF - timedelta(minutes=15 * i + 1), "a": "AnalysisAgent", "s": "success"} for i in range(4 * 24 * 7)]
    insert(ctx, AGENT_SQL, rows)
    found = {f.check: f for f in activity.agent_activity(ctx)}
    assert [f.status.value for f in found.values()] == ["OK", "OK", "OK"]


@pytest.fixture
def production_ctx(make_database, ccops_env, monkeypatch):
    """The real production schema (agent_logs with its agent_name and timestamp indexes)."""
    url = make_database("production")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


PRODUCTION_AGENT_SQL = ("INSERT INTO agent_logs (id, timestamp, agent_name, action, status, execution_time) "
                        "VALUES (:i, :t, :a, 'execute', 'success', 1.5)")


def test_agent_silent_for_eight_days_is_critical(production_ctx):
    ctx = production_ctx
    last = AS_OF - timedelta(days=8, minutes=30)
    rows = [{"i": i, "t": last - timedelta(hours=i), "a": "ConversionAgent"} for i in range(60)]
    rows += [{"i": 1000 + i, "t": AS_OF - timedelta(minutes=10 * i + 1), "a": "MarketScannerAgent"}
             for i in range(6 * 24 * 7)]
    rows += [{"i": 5000, "t": AS_OF - timedelta(days=120), "a": "OldAgent"}]  # beyond the 90 days: forgotten
    insert(ctx, PRODUCTION_AGENT_SQL, rows)
    ctx.settings.thresholds.expected_agents = ["MarketScannerAgent", "ConversionAgent"]

    silent = {f.check: f for f in activity.agent_activity(ctx)}["activity.silent_agents"]
    assert silent.status.value == "CRITICAL"
    assert "ConversionAgent silent since 2026-11-12 17:30 UTC (8.0 days)" in silent.summary
    assert list(silent.data["agent_name"]) == ["ConversionAgent"]
    assert "OldAgent" not in silent.summary and "MarketScannerAgent" not in silent.summary


def test_agent_never_seen_default_list_is_info_configured_list_is_critical(production_ctx):
    ctx = production_ctx
    rows = [{"i": i, "t": AS_OF - timedelta(minutes=10 * i + 1), "a": name}
            for n, name in enumerate(activity.KNOWN_AGENTS[:-1]) for i in range(n * 2000, n * 2000 + 20)]
    insert(ctx, PRODUCTION_AGENT_SQL, [dict(r, t=AS_OF - timedelta(minutes=10 * (r["i"] % 2000) + 1)) for r in rows])
    silent = {f.check: f for f in activity.agent_activity(ctx)}["activity.silent_agents"]
    assert silent.status.value == "INFO"
    assert "no run in the last 90 days by OnboardingAgent (named in the app's agent list (FACTS.md))" in silent.summary

    ctx.settings.thresholds.expected_agents = ["MarketScannerAgent", "OnboardingAgent"]
    silent = {f.check: f for f in activity.agent_activity(ctx)}["activity.silent_agents"]
    assert silent.status.value == "CRITICAL"
    assert "OnboardingAgent (named in thresholds.expected_agents)" in silent.summary


def seed_content(ctx: RunContext, per_day: dict[int, dict[str, int]]) -> None:
    insert(ctx, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) VALUES (1, :t, 'BREAKOUT', 'BTC', 0.8, '{}')", [{"t": AS_OF}])
    insert(ctx, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES (1, 1, 'twitter', 'THREAD')", [{}])
    rows = []
    day0 = AS_OF.replace(hour=0)
    for days_ago, platforms in per_day.items():
        for platform, count in platforms.items():
            for i in range(count):
                rows.append({"p": platform, "t": day0 - timedelta(days=days_ago) + timedelta(hours=1 + i % 20, minutes=i),
                             "v": 1000, "l": 40, "c": 5, "s": 5, "r": 0.05})
    insert(ctx, "INSERT INTO published_content (content_plan_id, platform, content_text, published_at, views, likes, comments, shares, engagement_rate)"
                " VALUES (1, :p, 'x', :t, :v, :l, :c, :s, :r)", rows)


def test_yesterday_against_seven_day_average_and_empty_day(ctx):
    per_day = {d: {"twitter": 20, "telegram": 10} for d in range(2, 9)}
    per_day[1] = {"twitter": 6, "telegram": 4}  # yesterday: 10 against an average of 30 (minus the empty day)
    per_day[4] = {}  # a day without content
    seed_content(ctx, per_day)
    found = {f.check: f for f in content.published_yesterday(ctx)}
    yesterday = found["content.published_yesterday"]
    assert yesterday.status.value == "WARNING"
    assert yesterday.value == 10
    table = yesterday.data.set_index("platform")
    assert table.loc["twitter", "yesterday"] == 6
    assert table.loc["twitter", "avg_7d"] == round(20 * 6 / 7, 1)
    empty = found["content.days_without_content"]
    assert empty.status.value == "WARNING"
    assert empty.summary == "no content at all on 2026-11-16"


def test_engagement_today_compares_same_hours(ctx):
    per_day = {d: {"twitter": 12} for d in range(0, 8)}
    seed_content(ctx, per_day)
    found = content.engagement_today(ctx)[0]
    table = found.data.set_index("metric")
    # as_of is 18:00; posts are spread over hours 1..20, so 12 of them fall before 18:00 each day
    assert table.loc["posts", "today"] == table.loc["posts", "avg_same_hours_7d"]
    assert table.loc["interactions", "today"] == 50 * table.loc["posts", "today"]
    assert table.loc["avg_engagement_rate", "today"] == pytest.approx(0.05)
    assert found.status.value == "OK"


def test_empty_database_says_no_data_and_does_not_raise(ctx):
    results = activity.agent_activity(ctx) + content.published_yesterday(ctx) + content.engagement_today(ctx)
    assert all("no data" in f.summary for f in results)
    assert all(f.status.value != "UNKNOWN" for f in results)
