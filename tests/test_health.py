"""`ccops health`: the guide's verdicts against real databases, and the exit codes cron sees."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from ccops import cli
from ccops.checks.health import evaluate
from ccops.core import localpg
from ccops.core.db import normalize_url
from ccops.core.settings import Thresholds

AS_OF = "2026-11-20T12:00:00Z"


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["health", *args])
    return code, capsys.readouterr().out.strip()


def test_empty_production_database_is_unhealthy_with_the_guides_reasons(make_database, ccops_env, monkeypatch, capsys):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("production"))
    code, out = run_cli(capsys, "--as-of", AS_OF)
    assert out == "UNHEALTHY: No agent activity in last 24 hours; No content published in last 24 hours"
    assert code == 2


def test_error_count_above_ten_is_reported_and_window_is_exact(make_database, ccops_env, monkeypatch, capsys):
    url = make_database("ccops")
    as_of = datetime(2026, 11, 20, 12, 0, 0)
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        rows = [
            {"t": as_of - timedelta(minutes=5 * i), "s": "error" if i < 11 else "success"} for i in range(20)
        ]
        # rows just outside the window on both sides must not count
        rows += [{"t": as_of - timedelta(hours=24), "s": "error"}, {"t": as_of + timedelta(seconds=1), "s": "error"}]
        conn.execute(text("INSERT INTO agent_logs (timestamp, agent_name, action, status) VALUES (:t, 'AnalysisAgent', 'execute', :s)"), rows)
        conn.execute(text("INSERT INTO insights (timestamp, type, asset, confidence, details) VALUES (:t, 'BREAKOUT', 'BTC', 0.9, '{}')"), {"t": as_of})
        conn.execute(text("INSERT INTO content_plans (insight_id, platform, format) VALUES (1, 'twitter', 'THREAD')"))
        conn.execute(text("INSERT INTO published_content (content_plan_id, platform, content_text, published_at) VALUES (1, 'twitter', 'gm', :t)"),
                     {"t": as_of - timedelta(hours=1)})
    engine.dispose()
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    code, out = run_cli(capsys, "--as-of", AS_OF)
    assert out == "UNHEALTHY: High error count: 11 in last 24h"
    assert code == 1
    code, out = run_cli(capsys, "--as-of", AS_OF, "--json")
    report = json.loads(out)
    activity = next(f for f in report["findings"] if f["check"] == "health.agent_activity")
    assert activity["value"] == 20


def test_stopped_server_is_critical_database_unreachable(tmp_path, ccops_env, monkeypatch, capsys):
    cluster = localpg.Cluster(tmp_path / "stopped")
    url = cluster.start()
    password = url.split("@")[0].split(":")[-1]
    cluster.stop()
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    try:
        code, out = run_cli(capsys)
    finally:
        cluster.destroy()
    assert code == 2
    assert out.startswith("UNHEALTHY: database unreachable")
    assert password not in out, "the password must not be printed"


def test_no_database_configured_says_how_to_get_one(ccops_env, capsys):
    code = cli.main(["health"])
    out = capsys.readouterr()
    assert code == 2
    assert "set database.url (or CCOPS_DATABASE_URL" in out.out  # the settings name no demo (issue 16)


@pytest.mark.parametrize(
    ("executions", "errors", "published", "expected"),
    [(5, 10, 1, []), (5, 11, 1, ["High error count: 11 in last 24h"]), (0, 0, 0, ["No agent activity in last 24 hours", "No content published in last 24 hours"])],
)
def test_thresholds_are_the_guides(executions, errors, published, expected):
    as_of = datetime(2026, 1, 1)
    found = evaluate({"executions": executions, "errors": errors, "last_seen": as_of},
                     {"published": published, "last_published": as_of}, as_of, Thresholds())
    assert [f.summary for f in found if f.status.value != "OK"] == expected
