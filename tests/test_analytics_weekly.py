"""The weekly reports on hand-made data: agent percentiles, content, the funnel, A/B verdicts."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from ccops import analytics
from ccops.core.context import RunContext
from ccops.core.settings import load_settings
from tests.helpers import insert, one

AS_OF = datetime(2026, 11, 20, 18, 0, 0)
WEEK = timedelta(days=7)


def make_ctx(url: str, monkeypatch) -> RunContext:
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


@pytest.fixture
def ctx(make_database, ccops_env, monkeypatch):
    return make_ctx(make_database("ccops"), monkeypatch)




AGENT_SQL = ("INSERT INTO agent_logs (timestamp, agent_name, action, status, execution_time) "
             "VALUES (:t, :a, 'execute', :s, :x)")


def agent_rows(agent: str, end: datetime, times: list[float], errors: int = 0) -> list[dict]:
    """Runs spread over the 7 days before `end`, the first `errors` of them failed."""
    step = WEEK / (len(times) + 1)
    return [{"t": end - step * (i + 1), "a": agent, "s": "error" if i < errors else "success", "x": x}
            for i, x in enumerate(times)]


def test_agent_performance_percentiles_deltas_and_warnings(ctx):
    analysis_now = [1.0, 2.0, 3.5, 4.0, 10.0, 7.25, 0.5, 2.2]
    analysis_before = [1.0, 1.5, 2.0, 2.0, 3.0]
    publishing_now = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9]
    scanner = [2.0, 2.0, 2.5, 3.0]
    rows = (agent_rows("AnalysisAgent", AS_OF, analysis_now)
            + agent_rows("AnalysisAgent", AS_OF - WEEK, analysis_before, errors=1)
            + agent_rows("PublishingAgent", AS_OF, publishing_now, errors=2)
            + agent_rows("PublishingAgent", AS_OF - WEEK, publishing_now)
            + agent_rows("MarketScannerAgent", AS_OF, scanner)
            + agent_rows("MarketScannerAgent", AS_OF - WEEK, scanner)
            + agent_rows("ImageGenerationAgent", AS_OF - WEEK, [20.0, 22.0])
            + agent_rows("NewAgent", AS_OF, [50.0]))
    # boundaries: as_of itself is in the week, as_of - 7 d in the week before, as_of - 14 d in neither
    rows += [{"t": AS_OF, "a": "MarketScannerAgent", "s": "success", "x": 2.0},
             {"t": AS_OF - WEEK, "a": "MarketScannerAgent", "s": "success", "x": 2.0},
             {"t": AS_OF - 2 * WEEK, "a": "MarketScannerAgent", "s": "error", "x": 99.0},
             {"t": AS_OF + timedelta(seconds=1), "a": "MarketScannerAgent", "s": "error", "x": 99.0}]
    insert(ctx, AGENT_SQL, rows)

    finding = one(analytics.agent_performance(ctx, days=7), "analytics.agent_performance")
    table = finding.data.set_index("agent_name")

    a = table.loc["AnalysisAgent"]
    assert a["runs"] == 8 and a["errors"] == 0 and a["prev_runs"] == 5
    assert a["p50_s"] == pytest.approx(np.percentile(analysis_now, 50, method="linear"))
    assert a["p95_s"] == pytest.approx(np.percentile(analysis_now, 95, method="linear"))
    assert a["max_s"] == 10.0
    prev_p95 = np.percentile(analysis_before, 95, method="linear")
    assert a["prev_p95_s"] == pytest.approx(prev_p95)
    assert a["p95_delta_s"] == pytest.approx(a["p95_s"] - prev_p95)
    assert a["p95_change_pct"] == pytest.approx((a["p95_s"] - prev_p95) / prev_p95 * 100)
    assert a["prev_error_rate"] == pytest.approx(0.2) and a["error_rate_change"] == pytest.approx(-0.2)
    assert a["runs_change"] == 3

    p = table.loc["PublishingAgent"]
    assert p["error_rate"] == pytest.approx(0.2) and p["p95_change_pct"] == pytest.approx(0.0)

    m = table.loc["MarketScannerAgent"]
    assert m["runs"] == 5 and m["prev_runs"] == 5 and m["errors"] == 0, "as_of counts, the edges and beyond do not"
    assert m["max_s"] == 3.0

    stopped = table.loc["ImageGenerationAgent"]
    assert stopped["runs"] == 0 and stopped["prev_runs"] == 2 and math.isnan(stopped["p95_s"])

    new = table.loc["NewAgent"]
    assert new["runs"] == 1 and new["prev_runs"] == 0 and new["p95_s"] == 50.0
    assert math.isnan(new["prev_error_rate"]) and math.isnan(new["p95_change_pct"]), "no week before: no change"

    assert finding.status.value == "WARNING" and finding.value == 2
    assert "PublishingAgent (error rate 20.0%)" in finding.summary
    assert "AnalysisAgent (p95 +" in finding.summary
    assert "MarketScannerAgent" not in finding.summary and "NewAgent" not in finding.summary
    assert finding.figure is not None and len(finding.figure.axes) == 2

    # thresholds are parameters
    relaxed = one(analytics.agent_performance(ctx, days=7, max_error_rate=0.25, max_p95_growth=10),
                  "analytics.agent_performance")
    assert relaxed.status.value == "OK"


def seed_plans(ctx: RunContext) -> None:
    insert(ctx, "INSERT INTO insights (id, timestamp, type, asset, confidence, details) VALUES "
                "(1, :t, 'BREAKOUT', 'BTC', 0.8, '{}'), (2, :t, 'VOLUME_SPIKE', 'ETH', 0.7, '{}')", {"t": AS_OF})
    insert(ctx, "INSERT INTO content_plans (id, insight_id, platform, format) VALUES "
                "(1, 1, 'twitter', 'THREAD'), (2, 2, 'telegram', 'TELEGRAM_MESSAGE'), (3, 1, 'twitter', 'SINGLE_TWEET')",
           {})


POST_SQL = ("INSERT INTO published_content (content_plan_id, platform, content_text, published_at, views, likes, "
            "comments, shares, engagement_rate) VALUES (:plan, :platform, :text, :t, :views, :likes, :comments, "
            ":shares, :rate)")


def post(plan, platform, t, views, likes, comments, shares, rate=None, text_="post"):
    interactions = likes + comments + shares
    return {"plan": plan, "platform": platform, "text": text_, "t": t, "views": views, "likes": likes,
            "comments": comments, "shares": shares, "rate": rate if rate is not None else interactions / views}


def test_content_summary_and_top_content(ctx):
    seed_plans(ctx)
    long_text = "A" * 79 + "BCDEF"
    rows = [
        post(1, "twitter", AS_OF - timedelta(days=1), 1000, 40, 5, 5, text_=long_text),   # 5 %
        post(3, "twitter", AS_OF - timedelta(days=2), 200, 10, 0, 2),                     # 6 %
        post(2, "telegram", AS_OF - timedelta(days=3), 500, 10, 0, 0),                    # 2 %
        post(3, "twitter", AS_OF - timedelta(days=4), 3, 1, 0, 0),                        # 33 %, too few views
        # the week before
        post(1, "twitter", AS_OF - timedelta(days=8), 400, 8, 0, 0),                      # 2 %
        post(2, "telegram", AS_OF - timedelta(days=9), 100, 4, 0, 0),                     # 4 %
    ]
    insert(ctx, POST_SQL, rows)

    summary = one(analytics.content_summary(ctx, days=7), "analytics.content_summary")
    table = summary.data.set_index("platform")
    assert list(table.index) == ["telegram", "twitter", "all platforms"]
    total = table.loc["all platforms"]
    assert total["posts"] == 4 and total["prev_posts"] == 2 and total["posts_change_pct"] == pytest.approx(100.0)
    assert total["views"] == 1703 and total["likes"] == 61 and total["comments"] == 5 and total["shares"] == 7
    assert total["avg_engagement_rate"] == pytest.approx((0.05 + 0.06 + 0.02 + 1 / 3) / 4)
    assert total["prev_avg_engagement_rate"] == pytest.approx(0.03)
    twitter = table.loc["twitter"]
    assert twitter["posts"] == 3 and twitter["prev_posts"] == 1 and twitter["views"] == 1203
    assert table.loc["telegram", "engagement_change_pct"] == pytest.approx(-50.0)
    assert summary.status.value == "OK" and summary.value == 4
    assert summary.summary.startswith("4 posts in the last 7 days (+100% vs 2)")

    top = one(analytics.top_content(ctx, days=7, limit=2), "analytics.top_content")
    assert list(top.data["engagement_rate"]) == pytest.approx([0.06, 0.05]), "the 3-view post does not win"
    assert list(top.data["format"]) == ["SINGLE_TWEET", "THREAD"]
    assert top.data["text"].iloc[1] == long_text[:80]
    assert list(top.data.columns[:4]) == ["id", "platform", "format", "published_at"]
    everything = one(analytics.top_content(ctx, days=7, min_views=1), "analytics.top_content")
    assert everything.data["views"].iloc[0] == 3

    none_big = one(analytics.top_content(ctx, days=7, min_views=5000), "analytics.top_content")
    assert none_big.status.value == "INFO"
    assert none_big.summary == "no data: none of the 4 posts of the last 7 days reached 5000 views"


def test_quiet_week_after_a_busy_one_is_a_warning(ctx):
    seed_plans(ctx)
    insert(ctx, POST_SQL, [post(1, "twitter", AS_OF - timedelta(days=10), 100, 1, 0, 0)])
    summary = one(analytics.content_summary(ctx, days=7), "analytics.content_summary")
    assert summary.status.value == "WARNING"
    assert summary.summary == "nothing published in the last 7 days (1 posts the 7 days before)"


ATTEMPT_SQL = ("INSERT INTO conversion_attempts (user_id, platform, message_text, sent_at, opened_at, clicked_at, "
               "converted_at, status) VALUES (1, 'telegram', 'join', :sent, :opened, :clicked, :converted, 'sent')")
SUB_SQL = ("INSERT INTO subscriptions (user_id, tier, status, amount, currency, created_at, cancelled_at) "
           "VALUES (1, 'BASIC', :status, :amount, 'eur', :created, :cancelled)")


def attempt(sent, opened=None, clicked=None, converted=None):
    return {"sent": sent, "opened": opened, "clicked": clicked, "converted": converted}


def sub(status, amount, created, cancelled=None):
    return {"status": status, "amount": amount, "created": created, "cancelled": cancelled}


def test_conversion_funnel_counts_rates_members_and_mrr(ctx):
    insert(ctx, "INSERT INTO community_users (id, tier) VALUES (1, 'FREE')", {})
    day = timedelta(days=1)
    now = [attempt(AS_OF - timedelta(hours=12 * (i + 1))) for i in range(10)]  # 10 sent this week
    for i in range(5):                                                     # 5 opened
        now[i]["opened"] = now[i]["sent"] + timedelta(hours=1)
    for i in range(2):                                                     # 2 clicked, 1 converted
        now[i]["clicked"] = now[i]["sent"] + timedelta(hours=2)
    now[0]["converted"] = now[0]["sent"] + timedelta(hours=3)
    now[4]["opened"] = AS_OF + timedelta(hours=1)                          # opens after as_of do not count yet
    before = [attempt(AS_OF - WEEK - day * (i + 1), opened=AS_OF - WEEK - day * i) for i in range(4)]
    before[0]["clicked"] = before[0]["opened"] + timedelta(minutes=5)
    insert(ctx, ATTEMPT_SQL, now + before)
    insert(ctx, SUB_SQL, [
        sub("active", 10.0, AS_OF - 40 * day),                             # long-standing member
        sub("cancelled", 20.0, AS_OF - 30 * day, AS_OF - 3 * day),         # in last week's MRR, not this one's
        sub("active", 30.0, AS_OF - 2 * day),                              # new this week
        sub("past_due", 5.0, AS_OF - 3 * day),                             # new paying member, no revenue
        sub("unpaid", 99.0, AS_OF - 4 * day),                              # neither
        sub("active", 7.0, AS_OF - 10 * day),                              # new the week before
        sub("active", 1000.0, AS_OF + day),                                # the future
    ])

    found = analytics.conversion_funnel(ctx, days=7)
    funnel = one(found, "analytics.conversion_funnel").data.set_index("stage")
    assert list(funnel["count"]) == [10, 4, 2, 1]
    assert list(funnel["prev_count"]) == [4, 4, 1, 0]
    assert funnel.loc["opened", "step_rate"] == pytest.approx(0.4)
    assert funnel.loc["clicked", "step_rate"] == pytest.approx(0.5)
    assert funnel.loc["converted", "step_rate"] == pytest.approx(0.5)
    assert funnel.loc["converted", "rate_from_sent"] == pytest.approx(0.1)
    assert funnel.loc["clicked", "prev_step_rate"] == pytest.approx(0.25)
    assert funnel.loc["converted", "prev_step_rate"] == 0.0
    assert funnel.loc["sent", "change_pct"] == pytest.approx(150.0)
    assert one(found, "analytics.conversion_funnel").figure is not None

    revenue = one(found, "analytics.revenue")
    money = revenue.data.set_index("metric")
    assert money.loc["new paying members", "value"] == 2 and money.loc["new paying members", "prev_value"] == 1
    assert money.loc["new revenue (monthly amount)", "value"] == 30.0
    assert money.loc["new revenue (monthly amount)", "prev_value"] == 7.0
    assert money.loc["MRR at period end", "value"] == 47.0          # 10 + 30 + 7
    assert money.loc["MRR at period end", "prev_value"] == 37.0     # 10 + 20 + 7
    assert money.loc["active members at period end", "value"] == 3
    assert revenue.value == 47.0 and revenue.status.value == "OK"


def test_funnel_without_attempts_still_reports_revenue(ctx):
    insert(ctx, "INSERT INTO community_users (id, tier) VALUES (1, 'FREE')", {})
    insert(ctx, SUB_SQL, [sub("active", 10.0, AS_OF - timedelta(days=40))])
    found = analytics.conversion_funnel(ctx, days=7)
    assert one(found, "analytics.conversion_funnel").summary.startswith("no data")
    revenue = one(found, "analytics.revenue")
    assert revenue.value == 10.0 and revenue.data.set_index("metric").loc["new paying members", "value"] == 0


TEST_SQL = ("INSERT INTO ab_tests (id, test_name, variable_being_tested, status, started_at, completed_at) "
            "VALUES (:id, :name, :var, :status, :started, :completed)")
VARIANT_SQL = ("INSERT INTO ab_test_variants (test_id, variant_name, is_control, variant_config, impressions, clicks, "
               "engagement_count, conversion_count) VALUES (:test, :name, :control, '{}', :n, :clicks, :eng, :conv)")


def variant(test, name, control, n, clicks=0, eng=0, conv=0):
    return {"test": test, "name": name, "control": control, "n": n, "clicks": clicks, "eng": eng, "conv": conv}


def seed_tests(ctx: RunContext) -> None:
    started = AS_OF - timedelta(days=5)
    insert(ctx, TEST_SQL, [
        {"id": 1, "name": "Hook", "var": "hook_style", "status": "ACTIVE", "started": started, "completed": None},
        {"id": 2, "name": "Offer", "var": "cta_offer", "status": "ACTIVE", "started": started, "completed": None},
        {"id": 3, "name": "No control", "var": "media", "status": "ACTIVE", "started": started, "completed": None},
        {"id": 4, "name": "Empty", "var": "hashtags", "status": "PAUSED", "started": started, "completed": None},
        {"id": 5, "name": "Old", "var": "hook_style", "status": "COMPLETED", "started": AS_OF - timedelta(days=90),
         "completed": AS_OF - timedelta(days=60)},
        {"id": 6, "name": "Future", "var": "hook_style", "status": "ACTIVE", "started": AS_OF + timedelta(days=1),
         "completed": None},
    ])
    insert(ctx, VARIANT_SQL, [
        variant(1, "control", True, 1000, clicks=900, eng=200),
        variant(1, "question", False, 1000, clicks=10, eng=250),
        variant(1, "emoji", False, 1000, eng=190),
        variant(2, "control", True, 50, eng=40, conv=5),
        variant(2, "free_week", False, 60, eng=10, conv=9),
        variant(3, "a", False, 500, eng=50),
        variant(3, "b", False, 500, eng=80),
        variant(4, "control", True, 0),
        variant(4, "b", False, 0),
        variant(5, "control", True, 2000, eng=100),
        variant(5, "b", False, 2000, eng=300),
        variant(6, "control", True, 10, eng=1),
    ])
    # the app's own calls: the control for test 1 (this analysis disagrees), "b" for test 5 (agrees)
    insert(ctx, "UPDATE ab_tests SET winning_variant_id = CASE id WHEN 1 THEN 1 WHEN 5 THEN 11 END WHERE id IN (1, 5)", {})


def test_ab_test_results_verdicts(ctx):
    seed_tests(ctx)
    finding = one(analytics.ab_test_results(ctx), "analytics.ab_tests")
    table = finding.data
    assert sorted(table["test_id"].unique()) == [1, 2, 3, 4, 5], "a test starting after as_of is not reported"
    rows = table.set_index(["test_id", "variant_name"])

    question = rows.loc[(1, "question")]
    assert question["metric"] == "engagement_count", "engagement, not the (here misleading) clicks"
    assert question["rate"] == 0.25 and question["control_rate"] == 0.2
    assert question["lift"] == pytest.approx(0.25)
    assert question["z"] == pytest.approx(2.6774, abs=5e-5)
    assert question["p_value"] == pytest.approx(0.0074196, abs=1e-7)
    assert bool(question["significant"]) and question["verdict"] == "significant: better than control"
    emoji = rows.loc[(1, "emoji")]
    assert not emoji["significant"] and emoji["verdict"] == "not significant" and emoji["lift"] == pytest.approx(-0.05)
    assert rows.loc[(1, "control"), "verdict"] == "control"

    offer = rows.loc[(2, "free_week")]
    assert offer["metric"] == "conversion_count" and offer["rate"] == pytest.approx(0.15)
    assert offer["verdict"] == "not significant (too few impressions)" and not offer["significant"]
    assert offer["lift"] == pytest.approx(0.5), "the lift is still shown"

    assert set(rows.loc[3, "verdict"]) == {"no control variant: cannot compare"}
    empty = rows.loc[(4, "b")]
    assert math.isnan(empty["rate"]) and empty["verdict"] == "not significant (too few impressions)"
    assert bool(rows.loc[(5, "b"), "significant"])

    assert finding.status.value == "OK" and finding.value == 2 and finding.threshold == 0.95
    assert "Hook: question +25.0% on engagement_count (25.00% vs 20.00%, p=0.0074)" in finding.summary
    assert "2 test(s) with too few impressions to call" in finding.summary
    assert "1 test(s) without a control variant" in finding.summary
    assert "the winner the app recorded is not supported here for: Hook (see app_winner)" in finding.summary
    assert list(table.loc[table["app_winner"], "variant_name"]) == ["control", "b"]
    assert finding.figure is not None

    # a smaller sample minimum lets the offer test be judged
    judged = one(analytics.ab_test_results(ctx, min_impressions=50), "analytics.ab_tests").data
    assert judged.set_index(["test_id", "variant_name"]).loc[(2, "free_week"), "verdict"] == "not significant"


def test_ab_confidence_comes_from_the_settings_file(make_database, ccops_env, monkeypatch):
    (ccops_env / "ccops.toml").write_text("[analytics]\nconfidence = 0.995\n")
    ctx = make_ctx(make_database("ccops"), monkeypatch)
    seed_tests(ctx)
    finding = one(analytics.ab_test_results(ctx), "analytics.ab_tests")
    question = finding.data.set_index(["test_id", "variant_name"]).loc[(1, "question")]
    assert finding.threshold == 0.995
    assert question["verdict"] == "not significant", "p = 0.0074 is not below 0.005"
    explicit = one(analytics.ab_test_results(ctx, confidence=0.99), "analytics.ab_tests")
    assert bool(explicit.data.set_index(["test_id", "variant_name"]).loc[(1, "question"), "significant"])


def test_bad_confidence_setting_names_the_key_and_file(make_database, ccops_env, monkeypatch):
    (ccops_env / "ccops.toml").write_text("[analytics]\nconfidence = 95\n")
    ctx = make_ctx(make_database("ccops"), monkeypatch)
    finding = one(analytics.ab_test_results(ctx), "analytics.ab_tests")
    assert finding.status.value == "UNKNOWN"
    assert "analytics.confidence" in finding.summary and str(ccops_env / "ccops.toml") in finding.summary
