"""Every report on an empty production database: INFO "no data", never an exception; and on the demo."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from ccops import analytics
from ccops.core.context import RunContext, parse_as_of
from ccops.core.settings import load_settings
from tests.conftest import DEMO_AS_OF

CALLS = {
    "agent_performance": lambda ctx: analytics.agent_performance(ctx),
    "content_summary": lambda ctx: analytics.content_summary(ctx),
    "top_content": lambda ctx: analytics.top_content(ctx),
    "conversion_funnel": lambda ctx: analytics.conversion_funnel(ctx),
    "ab_test_results": lambda ctx: analytics.ab_test_results(ctx),
    "cost_analysis": lambda ctx: analytics.cost_analysis(ctx),
    "engagement_breakdown": lambda ctx: analytics.engagement_breakdown(ctx),
    "agent_audit": lambda ctx: analytics.agent_audit(ctx),
    "capacity_growth": lambda ctx: analytics.capacity_growth(ctx),
    "capacity_disk_projection": lambda ctx: analytics.capacity_disk_projection(ctx),
}


def test_every_report_on_an_empty_database_says_no_data(make_database, ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("production"))
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=datetime(2026, 11, 20, 18))
    recorded = 0
    for name, call in CALLS.items():
        found = call(ctx)
        assert found, name
        recorded += len(found)
        for finding in found:
            assert finding.status.value == "INFO", (name, str(finding))
            assert finding.summary.startswith("no data: "), (name, str(finding))
            assert finding.check.startswith("analytics."), name
    assert len(ctx.findings) == recorded, "every finding is recorded in the run"


def test_an_unreachable_database_is_unknown_not_an_exception(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/none")
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=datetime(2026, 11, 20, 18))
    for name, call in CALLS.items():
        found = call(ctx)
        assert [f.status.value for f in found] == ["UNKNOWN"], name
        assert "secret" not in found[0].summary


@pytest.mark.slow
def test_every_report_runs_on_the_demo(demo_env):
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=parse_as_of(DEMO_AS_OF))
    statuses = {}
    for call in CALLS.values():
        found = call(ctx)
        html = found._repr_html_()  # tables and charts render as the notebook and the archive show them
        assert html.count("<img") == sum(1 for f in found if f.has_picture), str(found)
        for finding in found:
            statuses[finding.check] = finding.status.value
            assert finding.status.value != "UNKNOWN", str(finding)
            assert not finding.summary.startswith("no data"), str(finding)
            assert finding.data is None or isinstance(finding.data, pd.DataFrame)
    # per agent, errors are what agent_logs says, checked by hand over the same 7 days: the app writes
    # 'success' even for runs that logged an ERROR (FACTS.md), so the demo's 429 burst of PublishingAgent
    # shows in the logs, not here
    performance = analytics.agent_performance(ctx)[0].data.set_index("agent_name")
    from sqlalchemy import create_engine, text

    engine = create_engine(load_settings().resolved_database_url().replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        by_hand = dict(conn.execute(text(
            "SELECT agent_name, count(*) FILTER (WHERE status = 'error') FROM agent_logs "
            "WHERE timestamp >= :since AND timestamp < :until GROUP BY 1"),
            {"since": ctx.as_of - timedelta(days=7), "until": ctx.as_of}).all())
    engine.dispose()
    assert {name: int(n) for name, n in performance["errors"].items()} == \
        {name: n for name, n in by_hand.items() if name in performance.index}
    tests = analytics.ab_test_results(ctx)[0].data
    hook = tests[tests["test_name"].str.startswith("Hook style")]
    assert hook["significant"].any()
    emoji = tests[tests["test_name"].str.startswith("Emoji density")]
    assert set(emoji.loc[~emoji["is_control"], "verdict"]) == {"not significant (too few impressions)"}
    assert statuses["analytics.engagement_heatmap"] == "OK"
