"""FACTS.md, "API failures as the app really logs them": refused requests, never quota figures.

The lines are written from FACTS.md's format (`{time} | {level: <8} | {name}:{function} -
{message}`) and its examples: the app's API clients log a 429 as
`Failed to post tweet: 429 Too Many Requests` from `src.api_integrations.twitter_api`,
naming no agent and no reset. tweepy's TooManyRequests reads "429 Too Many
Requests" then "88 - Rate limit exceeded" on a second line; Binance answers a
429 through requests ("429 Client Error: Too Many Requests for url: ...") or,
through python-binance, "APIError(code=-1003): Too much request weight used".
A DEBUG line of a 201 Created that reports x-rate-limit-remaining is remaining
quota: it never counts as an event. Each count is checked against awk on the
same file, as an operator would check it by hand.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from ccops import logs
from ccops.checks import logs as log_checks
from ccops.core.context import RunContext
from ccops.core.db import dispose_all, normalize_url
from ccops.core.findings import Status
from ccops.core.settings import load_settings
from ccops.logs import ratelimit

DAY = "2026-11-24"


def line(time: str, level: str, where: str, message: str) -> str:
    """One loguru record in the app's format (FACTS.md, Logs)."""
    return f"{DAY} {time} | {level: <8} | {where} - {message}\n"


TWITTER = "src.api_integrations.twitter_api"
EXCHANGE = "src.api_integrations.exchange_api"
SUCCESS_WITH_QUOTA = line("09:59:58", "DEBUG", f"{TWITTER}:post_tweet",
                          "Tweet posted: 201 Created (x-rate-limit-limit=300 x-rate-limit-remaining=212 "
                          "x-rate-limit-reset=1795510800)")
APP_LOG = "".join([
    SUCCESS_WITH_QUOTA,
    line("10:00:01", "INFO", "src.agents.publishing_agent:execute", "Publishing 3 items; 1429 published so far"),
    line("10:02:13", "ERROR", f"{TWITTER}:post_tweet", "Failed to post tweet: 429 Too Many Requests"),
    line("10:02:14", "ERROR", f"{TWITTER}:search_tweets", "Failed to search tweets: 401 Unauthorized"),
    line("10:40:05", "ERROR", f"{TWITTER}:search_tweets", "Failed to search tweets: 429 Too Many Requests"),
    "88 - Rate limit exceeded\n",
    line("11:15:00", "ERROR", f"{EXCHANGE}:get_ticker_24h",
         "Error getting 24h ticker for BTCUSDT: 429 Client Error: Too Many Requests for url: "
         "https://api.binance.com/api/v3/ticker/24hr?symbol=BTCUSDT"),
    line("11:16:30", "ERROR", f"{EXCHANGE}:get_ticker_24h",
         "Error getting 24h ticker for ETHUSDT: APIError(code=-1003): Too much request weight used; current "
         "limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling "
         "the API."),
    line("11:30:00", "DEBUG", f"{TWITTER}:post_tweet",
         "Tweet posted: 201 Created (x-rate-limit-limit=300 x-rate-limit-remaining=2)"),
    line("11:31:00", "INFO", "__main__:run_cycle", "Cycle done: no rate limit trouble, 429 tweets in queue"),
])
AWK_EVENTS = ("awk -F' [|] ' 'NF >= 3 && $2 ~ /^(WARNING|ERROR|CRITICAL) *$/ && "
              "tolower($0) ~ /(^|[^0-9.])429([^0-9.]|$)|too many requests|request weight/' {path} | wc -l")


@pytest.fixture
def app_logs(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log_dir = ccops_env / "logs"
    log_dir.mkdir()
    (log_dir / f"content_creator_{DAY}.log").write_text(APP_LOG)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")  # these lines are written in UTC: no conversion
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    return log_dir


def read(log_dir: Path, select: logs.Selector | None = None) -> list[logs.LogRecord]:
    return list(logs.read_records(log_dir, datetime(2026, 11, 24), datetime(2026, 11, 25), select=select))


def awk(command: str, path: Path) -> int:
    return int(subprocess.run(command.format(path=path), shell=True, capture_output=True, text=True,  # noqa: S602
                              check=True).stdout)


def test_only_refused_requests_count_as_they_do_by_hand(app_logs):
    events = ratelimit.rate_limit_events(read(app_logs))
    by_hand = awk(AWK_EVENTS, app_logs / f"content_creator_{DAY}.log")
    assert len(events) == by_hand == 4
    assert [(t.strftime("%H:%M:%S"), api, client) for t, api, client in
            zip(events["time"], events["api"], events["client"], strict=True)] == [
        ("10:02:13", "x", "twitter_api"), ("10:40:05", "x", "twitter_api"),
        ("11:15:00", "binance", "exchange_api"), ("11:16:30", "binance", "exchange_api")]
    assert (events["agent"] == "").all(), "the lines name the client, never the agent"
    assert events["reset_at"].isna().all(), "the app logs no reset time"


def test_the_fast_path_selects_the_same_records(app_logs):
    slow = [r for r in read(app_logs) if ratelimit.is_event(r.level, r.message)]
    fast = read(app_logs, ratelimit.select_events())
    assert [(r.time, r.message) for r in fast] == [(r.time, r.message) for r in slow]


def test_a_success_reporting_its_quota_is_no_event_but_may_be_close_to_the_limit(app_logs):
    readings = ratelimit.quota_readings(read(app_logs, ratelimit.select_quota()))
    assert list(readings["remaining"]) == [212, 2] and list(readings["limit"]) == [300, 300]
    low = ratelimit.approaching(readings, 0.1)
    assert low.to_dict("records")[0]["remaining"] == 2 and len(low) == 1
    assert ratelimit.rate_limit_events(read(app_logs, ratelimit.select_quota())).empty


def test_the_daily_check_on_a_day_of_successful_posts_reports_no_event(ccops_env, monkeypatch):
    """Issue 14.1: 201 Created lines with x-rate-limit-remaining were counted as 26 rate-limit events."""
    log_dir = ccops_env / "logs"
    log_dir.mkdir()
    posts = "".join(line(f"{h:02d}:{m:02d}:07", "DEBUG", f"{TWITTER}:post_tweet",
                         f"Tweet posted: 201 Created (x-rate-limit-limit=300 x-rate-limit-remaining={280 - h})")
                    for h in range(24) for m in (0, 30))
    (log_dir / f"content_creator_{DAY}.log").write_text(posts)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    ctx = RunContext(runbook="daily", settings=load_settings(), as_of=datetime(2026, 11, 25))
    finding = log_checks.rate_limit_events_check(ctx)[0]
    assert (finding.status, finding.value) == (Status.OK, 0), finding.summary


def test_a_429_is_an_event_at_warning_and_above_only():
    assert ratelimit.is_event("ERROR", "Failed to post tweet: 429 Too Many Requests")
    assert ratelimit.is_event("WARNING", "anthropic.RateLimitError: Error code: 429 - {'type': 'rate_limit_error'}")
    assert not ratelimit.is_event("INFO", "Failed to post tweet: 429 Too Many Requests")
    assert not ratelimit.is_event("ERROR", "Failed to search tweets: 401 Unauthorized")
    assert not ratelimit.is_event("ERROR", "Failed to fetch 4290 rows; took 1.429 s")


def test_client_and_api_are_read_from_the_module_the_app_logs_from():
    assert ratelimit.client_of(TWITTER) == "twitter_api" and ratelimit.client_of(EXCHANGE) == "exchange_api"
    assert ratelimit.client_of("src.agents.publishing_agent") == ""
    assert ratelimit.api_of("Failed to post tweet: 429 Too Many Requests", TWITTER) == "x"
    assert ratelimit.api_of("Error getting 24h ticker: 429", EXCHANGE) == "binance"
    assert ratelimit.agent_named("", "src.agents.market_scanner") == "MarketScannerAgent"


# ---- attribution against a real agent_logs --------------------------------------------------

AGENT_ROWS = [  # (timestamp, agent_name, status)
    ("2026-11-24 10:02:40", "PublishingAgent", "error"),  # 27 s after the post 429
    ("2026-11-24 10:02:50", "AnalysisAgent", "error"),  # does not use twitter_api
    ("2026-11-24 10:39:30", "EngagementAgent", "success"),  # 35 s before the search 429
    ("2026-11-24 10:45:00", "PublishingAgent", "success"),  # 5 min after it: too far
    ("2026-11-24 10:45:00", "MarketScannerAgent", "success"),  # 30 min before the exchange 429s
]


def test_the_agent_is_inferred_from_agent_logs_and_the_client_map(app_logs, make_database):
    url = make_database("production")
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            for i, (at, agent, status) in enumerate(AGENT_ROWS, start=1):
                conn.execute(text("INSERT INTO agent_logs (id, \"timestamp\", agent_name, action, status) "
                                  "VALUES (:i, :at, :agent, 'execute', :status)"), {"i": i, "at": at, "agent": agent,
                                                                                       "status": status})
        events = ratelimit.rate_limit_events(read(app_logs))
        cfg = ratelimit.config_of(load_settings())
        with engine.connect() as conn:
            attributed, note = ratelimit.attribute(events, cfg, conn)
    finally:
        engine.dispose()
        dispose_all()
    assert note == ""
    assert list(attributed["agent"]) == ["PublishingAgent", "EngagementAgent", "MarketScannerAgent",
                                         "MarketScannerAgent"]
    assert list(attributed["attribution"]) == [
        "inferred: agent_logs error within 1 min of the 429", "inferred: agent_logs run within 1 min of the 429",
        "inferred: exchange_api is used by MarketScannerAgent", "inferred: exchange_api is used by MarketScannerAgent"]
    assert all(how.startswith("inferred") for how in attributed["attribution"])


def test_without_a_database_the_client_map_still_names_both_candidates(app_logs):
    events = ratelimit.rate_limit_events(read(app_logs))
    attributed, _ = ratelimit.attribute(events, ratelimit.config_of(load_settings()), None)
    assert attributed["agent"].iloc[0] == "PublishingAgent / EngagementAgent"
    assert attributed["attribution"].iloc[0] == "inferred: twitter_api is used by PublishingAgent, EngagementAgent"


def test_the_client_map_is_a_setting(app_logs, monkeypatch):
    monkeypatch.setenv("CCOPS_RATELIMIT_CLIENT_AGENTS", "twitter_api=PublishingAgent")
    monkeypatch.setenv("CCOPS_RATELIMIT_WINDOW_MINUTES", "60")
    cfg = ratelimit.config_of(load_settings())
    assert cfg.client_agents == {"twitter_api": ("PublishingAgent",)} and cfg.window == timedelta(hours=1)


# ---- the reset ------------------------------------------------------------------------------

def test_without_a_probe_the_reset_is_xs_window_after_the_last_429(app_logs):
    events = ratelimit.rate_limit_events(read(app_logs))
    cfg = ratelimit.config_of(load_settings())
    reset, basis = ratelimit.reset_estimate(events, "x", cfg)
    assert reset == datetime(2026, 11, 24, 10, 55, 5)
    assert basis == "X's 15-minute window after the last 429 at 10:40:05 UTC"
    probed = datetime(2026, 11, 24, 10, 50)
    assert ratelimit.reset_estimate(events, "x", cfg, probed) == (probed, "from the live probe's rate-limit headers")


def test_an_emergency_run_after_the_reset_pauses_nothing(app_logs):
    """Issue 14.1: at 12:00 the last 429 was long past: the limit has reset, nothing is held."""
    from ccops.actions.emergency import rate_limit

    ctx = RunContext(runbook="emergency/api_rate_limit", settings=load_settings(), as_of=datetime(2026, 11, 24, 12))
    found = {f.check: f for f in rate_limit.who_is_limited(ctx, hours=6)}
    events = found["rate_limit.events"]
    assert events.status == Status.WARNING and events.value == 4
    assert "the limit reset at 2026-11-24 11:31:30 UTC" in events.summary
    assert found["rate_limit.quota"].status == Status.INFO and "x 2 of 300 left at 11:30" in found["rate_limit.quota"].summary
    pause = rate_limit.pause(ctx, dry_run=False, confirm=True)[0]
    assert pause.status == Status.INFO and pause.summary.startswith("nothing paused: the limit reset at 2026-11-24 11:31:30")
    assert isinstance(events.data, pd.DataFrame) and set(events.data["client"]) == {"twitter_api", "exchange_api"}
