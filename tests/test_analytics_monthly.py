"""The monthly reports on hand-made data: costs and ROI from settings, the engagement breakdown."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from ccops import analytics
from ccops.analytics.content import heatmap_matrix
from ccops.core.context import RunContext
from ccops.core.settings import ConfigError, load_settings
from tests.helpers import insert, one

COSTS_TOML = """
[costs]
infrastructure_monthly = 30.0
[costs.prices]
anthropic = 0.5
x = 0.1
"""


def make_ctx(url: str, monkeypatch, as_of: datetime) -> RunContext:
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return RunContext(runbook="t", settings=load_settings(), as_of=as_of)




AGENT_SQL = ("INSERT INTO agent_logs (timestamp, agent_name, action, status, execution_time, details) "
             "VALUES (:t, :a, 'execute', :s, 1.0, CAST(:d AS json))")
POST_SQL = ("INSERT INTO published_content (content_plan_id, platform, content_text, published_at, views, likes, "
            "comments, shares, engagement_rate) VALUES (:plan, :platform, 'x', :t, :views, 0, 0, 0, :rate)")
SUB_SQL = ("INSERT INTO subscriptions (user_id, tier, status, amount, created_at, cancelled_at) "
           "VALUES (1, 'BASIC', :status, :amount, :created, :cancelled)")
NOV_16 = datetime(2026, 11, 16)  # exactly half of November has passed


def seed_month_data(ctx: RunContext) -> None:
    insert(ctx, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) "
                "VALUES (1, :t, 'BREAKOUT', 'BTC', 0.8, '{}')", {"t": NOV_16})
    insert(ctx, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES (1, 1, 'twitter', 'THREAD')", {})
    insert(ctx, "INSERT INTO community_users (id, tier) VALUES (1, 'FREE')", {})
    tokens = '{"tokens_input": 1000, "tokens_output": 500}'
    runs = [{"t": datetime(2026, 11, 2 + i), "a": "AnalysisAgent", "s": "error" if i == 0 else "success", "d": tokens}
            for i in range(4)]
    runs += [{"t": datetime(2026, 11, 3, 12), "a": "PublishingAgent", "s": "success", "d": "[1, 2]"},
             {"t": datetime(2026, 11, 4, 12), "a": "PublishingAgent", "s": "warning", "d": '"text"'}]
    runs += [{"t": datetime(2026, 10, 1 + i), "a": "AnalysisAgent", "s": "success", "d": '{"tokens_input": "n/a"}'}
             for i in range(10)]
    runs += [{"t": datetime(2026, 10, 5), "a": "ABTestingAgent", "s": "success", "d": "{}"},  # no paid API
             {"t": datetime(2026, 11, 17), "a": "AnalysisAgent", "s": "success", "d": "{}"},  # after as_of
             {"t": datetime(2026, 8, 31), "a": "AnalysisAgent", "s": "success", "d": "{}"}]   # before the months
    insert(ctx, AGENT_SQL, runs)
    posts = [datetime(2026, 11, d) for d in (1, 5, 9)] + [datetime(2026, 10, d) for d in (2, 4, 6, 8, 10)]
    insert(ctx, POST_SQL, [{"plan": 1, "platform": "twitter", "t": t, "views": 100, "rate": 0.01} for t in posts])
    insert(ctx, SUB_SQL, [
        {"status": "active", "amount": 20.0, "created": datetime(2026, 9, 15), "cancelled": None},
        {"status": "cancelled", "amount": 10.0, "created": datetime(2026, 10, 10), "cancelled": datetime(2026, 11, 5)},
        {"status": "active", "amount": 40.0, "created": datetime(2026, 11, 10), "cancelled": None},
    ])


def test_cost_per_piece_revenue_and_roi_per_month(make_database, ccops_env, monkeypatch):
    (ccops_env / "ccops.toml").write_text(COSTS_TOML)
    ctx = make_ctx(make_database("ccops"), monkeypatch, NOV_16)
    seed_month_data(ctx)
    found = analytics.cost_analysis(ctx, months=3)
    costs = one(found, "analytics.costs")
    table = costs.data.set_index("month")
    assert list(table.index) == ["2026-09", "2026-10", "2026-11"]
    assert list(table["elapsed_share"]) == [1.0, 1.0, 0.5]

    sep, oct_, nov = table.loc["2026-09"], table.loc["2026-10"], table.loc["2026-11"]
    # September: no runs, no posts; one member (20) at the month's end
    assert sep["api_cost"] == 0 and sep["total_cost"] == 30.0 and sep["published"] == 0
    assert np.isnan(sep["cost_per_piece"])
    assert sep["revenue"] == 20.0 and sep["roi"] == pytest.approx((20 - 30) / 30)
    # October: 10 AnalysisAgent calls at 0.5; members 20 + 10 (cancelled in November) at its end
    assert oct_["api_calls"] == 11 and oct_["api_cost"] == pytest.approx(5.0)
    assert oct_["total_cost"] == pytest.approx(35.0) and oct_["published"] == 5
    assert oct_["cost_per_piece"] == pytest.approx(7.0)
    assert oct_["revenue"] == 30.0 and oct_["roi"] == pytest.approx(-5 / 35)
    # November to the 16th: 4 x 0.5 + 2 x 0.1, half the infrastructure, half of MRR 20 + 40
    assert nov["api_calls"] == 6 and nov["api_cost"] == pytest.approx(2.2)
    assert nov["infrastructure_cost"] == pytest.approx(15.0) and nov["total_cost"] == pytest.approx(17.2)
    assert nov["cost_per_piece"] == pytest.approx(17.2 / 3)
    assert nov["mrr_at_end"] == 60.0 and nov["revenue"] == pytest.approx(30.0)
    assert nov["roi"] == pytest.approx((30 - 17.2) / 17.2)
    assert costs.status.value == "OK" and costs.value == pytest.approx((30 - 17.2) / 17.2)
    assert "infrastructure cost not configured" not in costs.summary
    assert costs.figure is not None

    usage = one(found, "analytics.api_usage").data.set_index(["month", "api"])
    assert usage.loc[("2026-11", "anthropic"), "billed_calls"] == 4
    assert usage.loc[("2026-11", "x"), "cost"] == pytest.approx(0.2)
    assert usage.loc[("2026-10", "internal"), "cost"] == 0.0
    assert usage.loc[("2026-10", "internal"), "agents"] == "ABTestingAgent"


def test_successful_calls_and_token_prices(make_database, ccops_env, monkeypatch):
    (ccops_env / "ccops.toml").write_text(COSTS_TOML.replace("[costs]\n", '[costs]\nbilled_calls = "successful"\n') + """
[costs.token_prices.anthropic]
input_per_million = 3.0
output_per_million = 15.0
[costs.agent_apis]
PublishingAgent = ["x", "images"]
""")
    ctx = make_ctx(make_database("ccops"), monkeypatch, NOV_16)
    seed_month_data(ctx)
    found = analytics.cost_analysis(ctx, months=1)
    nov = one(found, "analytics.costs").data.iloc[0]
    # 3 successful AnalysisAgent runs: 3 x 0.5 + 3 x (1000 x 3 + 500 x 15) / 1e6; PublishingAgent: x and images
    expected_api = 3 * 0.5 + 3 * (1000 * 3 + 500 * 15) / 1e6 + 2 * 0.1 + 2 * 0.04
    assert nov["api_calls"] == 3 + 2 + 2
    assert nov["api_cost"] == pytest.approx(expected_api)
    usage = one(found, "analytics.api_usage").data.set_index("api")
    assert usage.loc["anthropic", "tokens_input"] == 3000 and usage.loc["anthropic", "tokens_output"] == 1500
    assert usage.loc["images", "agents"] == "PublishingAgent"


@pytest.mark.parametrize("body, key", [
    ("[costs]\ninfrastructure_monthly = \"fifty\"\n", "costs.infrastructure_monthly"),
    ("[costs.prices]\nanthropic = -1\n", "costs.prices.anthropic"),
    ("[costs]\nbilled_calls = \"some\"\n", "costs.billed_calls"),
    ("[costs.agent_apis]\nAnalysisAgent = \"openai\"\n", "costs.prices.openai"),
    ("[costs]\nbudget = 3\n", "costs.budget"),
])
def test_bad_cost_settings_name_the_key_and_the_file(make_database, ccops_env, monkeypatch, body, key):
    path = ccops_env / "ccops.toml"
    path.write_text(body)
    ctx = make_ctx(make_database("ccops"), monkeypatch, NOV_16)
    with pytest.raises(ConfigError) as raised:
        analytics.cost_settings(ctx.settings)
    assert key in str(raised.value) and str(path) in str(raised.value)
    finding = one(analytics.cost_analysis(ctx), "analytics.costs")
    assert finding.status.value == "UNKNOWN" and key in finding.summary


def test_costs_without_infrastructure_setting_say_so_and_flag_a_loss(make_database, ccops_env, monkeypatch):
    ctx = make_ctx(make_database("ccops"), monkeypatch, NOV_16)
    insert(ctx, AGENT_SQL, [{"t": datetime(2026, 11, 3), "a": "AnalysisAgent", "s": "success", "d": "{}"}])
    costs = one(analytics.cost_analysis(ctx, months=2), "analytics.costs")
    assert costs.status.value == "WARNING", "cost with no revenue is a loss"
    assert costs.data.iloc[-1]["roi"] == -1.0 and costs.data.iloc[-1]["api_cost"] == pytest.approx(0.01)
    assert "infrastructure cost not configured (costs.infrastructure_monthly)" in costs.summary


AS_OF = datetime(2026, 11, 20, 18, 0)


def test_engagement_breakdown(make_database, ccops_env, monkeypatch):
    ctx = make_ctx(make_database("ccops"), monkeypatch, AS_OF)
    insert(ctx, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) VALUES "
                "(1, :t, 'BREAKOUT', 'BTC', 0.8, '{}'), (2, :t, 'VOLUME_SPIKE', 'ETH', 0.7, '{}')", {"t": AS_OF})
    insert(ctx, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES "
                "(1, 1, 'twitter', 'THREAD'), (2, 2, 'telegram', 'TELEGRAM_MESSAGE')", {})
    tuesday_14 = datetime(2026, 11, 17, 14, 30)   # a Tuesday
    friday_09 = datetime(2026, 11, 13, 9, 10)     # a Friday
    posts = [{"plan": 1, "platform": "twitter", "t": tuesday_14 + timedelta(minutes=i), "views": 100, "rate": r}
             for i, r in enumerate((0.04, 0.06, 0.05))]
    posts += [{"plan": 2, "platform": "telegram", "t": friday_09 + timedelta(minutes=i), "views": 200, "rate": r}
              for i, r in enumerate((0.01, 0.03, 0.02))]
    posts += [{"plan": 2, "platform": "telegram", "t": AS_OF - timedelta(days=70), "views": 10, "rate": 0.9}]
    insert(ctx, POST_SQL, posts)
    insert(ctx, "INSERT INTO ab_tests (id, test_name, variable_being_tested, status, started_at, completed_at) VALUES "
                "(1, 'Recent', 'hook_style', 'COMPLETED', :a, :b), (2, 'Old', 'hook_style', 'COMPLETED', :c, :d)",
           {"a": AS_OF - timedelta(days=20), "b": AS_OF - timedelta(days=10),
            "c": AS_OF - timedelta(days=80), "d": AS_OF - timedelta(days=50)})
    insert(ctx, "INSERT INTO ab_test_variants (test_id, variant_name, is_control, variant_config, impressions, "
                "engagement_count) VALUES (1, 'control', true, '{}', 1000, 200), (1, 'b', false, '{}', 1000, 250), "
                "(2, 'control', true, '{}', 1000, 100)", {})

    found = analytics.engagement_breakdown(ctx, days=30)
    platform = one(found, "analytics.engagement_by_platform").data.set_index("platform")
    assert platform.loc["twitter", "posts"] == 3 and platform.loc["twitter", "avg_engagement_rate"] == pytest.approx(0.05)
    assert platform.loc["telegram", "avg_engagement_rate"] == pytest.approx(0.02)
    assert platform.loc["telegram", "views"] == 600, "the post 70 days back is outside the window"
    formats = one(found, "analytics.engagement_by_format")
    assert list(formats.data["format"]) == ["THREAD", "TELEGRAM_MESSAGE"]
    assert formats.summary.startswith("best format: THREAD (5.00% over 3 posts)")
    assets = one(found, "analytics.engagement_by_asset").data
    assert list(assets["asset"]) == ["BTC", "ETH"]

    heat = one(found, "analytics.engagement_heatmap")
    assert heat.figure is not None and heat.figure.axes, "the heatmap figure exists"
    matrix = heatmap_matrix(heat.data)
    assert matrix.shape == (7, 24)
    assert matrix[1, 14] == pytest.approx(0.05) and matrix[4, 9] == pytest.approx(0.02)
    assert np.isnan(matrix).sum() == 7 * 24 - 2
    assert heat.summary == "best slot: Tue 14:00 UTC, 5.00% over 3 posts (slots with 3+ posts)"

    tests = one(found, "analytics.ab_tests_in_window")
    assert list(tests.data["test_id"].unique()) == [1], "the test finished 50 days ago is not this month's"
    assert bool(tests.data.set_index("variant_name").loc["b", "significant"])

    trend = one(found, "analytics.engagement_trend")
    by_week = trend.data.set_index("weeks_ago")
    assert by_week.loc[0, "posts"] == 3 and by_week.loc[1, "posts"] == 3 and sorted(by_week.index) == [0, 1]
    assert by_week.loc[1, "avg_engagement_rate"] == pytest.approx(0.02)
    assert trend.value == pytest.approx(0.03), "the slope: 3 points a week"
    assert trend.summary.startswith("engagement flat (+3.000 pp/week; 2 points are too few"), "two weeks show no noise"


def test_a_single_week_of_history_has_no_trend(make_database, ccops_env, monkeypatch):
    ctx = make_ctx(make_database("ccops"), monkeypatch, AS_OF)
    insert(ctx, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) "
                "VALUES (1, :t, 'BREAKOUT', 'BTC', 0.8, '{}')", {"t": AS_OF})
    insert(ctx, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES (1, 1, 'twitter', 'THREAD')", {})
    insert(ctx, POST_SQL, [{"plan": 1, "platform": "twitter", "t": AS_OF - timedelta(hours=3), "views": 0, "rate": None}])
    found = analytics.engagement_breakdown(ctx, days=30)
    trend = one(found, "analytics.engagement_trend")
    assert trend.status.value == "INFO" and trend.summary == "only 0 week(s) with engagement data: no trend yet"
    platform = one(found, "analytics.engagement_by_platform")
    assert platform.status.value == "INFO" and "none with an engagement rate" in platform.summary
    assert np.isnan(platform.data["interactions_per_view"].iloc[0]), "0 views: no rate, no division error"
    assert one(found, "analytics.ab_tests_in_window").summary.startswith("no data")
