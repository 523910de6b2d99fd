"""The embedded demo: deterministic data with the incidents the runbooks must find, real processes.

One demo (30 days, fixed as_of) is brought up for the module with its own
cluster, app process, log dir and status server; the tests read its database
and log files exactly as the runbooks will, and hold them to FACTS.md: the
`.env` key list, the app refusing unknown keys, local-time (Amsterdam) log
lines, loguru's rotated names, real 429 lines, 'success' rows for runs whose
client logged an ERROR, and backup.sh's files. The determinism tests use the
session cluster.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import tarfile
import time
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from ccops import demo, logs
from ccops.checks.health import run_health
from ccops.core import localpg
from ccops.core.db import libpq_url
from ccops.core.errors import UsageError
from ccops.core.settings import Settings, load_settings, read_env_file
from ccops.demo import appdir, appenv, applog, backend
from ccops.demo.catalog import AGENTS
from ccops.demo.generator import LOAD_ORDER, build, generate
from tests.conformance.test_app_env import EXAMPLE_KEYS

AS_OF_TEXT = "2026-03-10T08:20:00Z"
AS_OF = datetime(2026, 3, 10, 8, 20)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
RECORD = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \| (TRACE|DEBUG|INFO|SUCCESS|WARNING|ERROR|CRITICAL) *\| (\S+):(\S+) - (.*)$")


# ---- helpers ------------------------------------------------------------------------------

def rows(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(libpq_url(url)) as conn:
        return conn.execute(sql, params).fetchall()


def one(url: str, sql: str, *params):
    return rows(url, sql, *params)[0][0]


def table_hashes(url: str) -> dict[str, str]:
    """md5 of every table's rows in id order, column order independent (jsonb sorts keys)."""
    return {
        name: one(url, f"SELECT md5(coalesce(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY t.id), '')) FROM {name} t")
        for name in LOAD_ORDER
    }


def log_bytes(log_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in applog.demo_log_files(log_dir)}


def parse_records(text: str) -> list[dict]:
    """Records by the level field; continuation lines (no timestamp) belong to the record above."""
    records: list[dict] = []
    for line in text.splitlines():
        match = RECORD.match(line)
        if match:
            assert line[19:22] == " | " and line[30:33] == " | ", line  # {level: <8}
            ts, level, name, function, message = match.groups()
            records.append({"ts": datetime.fromisoformat(ts), "level": level, "where": f"{name}:{function}",
                            "message": message, "extra": []})
        else:
            assert records, f"continuation line before any record: {line!r}"
            records[-1]["extra"].append(line)
    return records


def local(ts: datetime) -> datetime:
    """A naive UTC time (the database's) as the naive Amsterdam time the demo's log lines show."""
    return ts.replace(tzinfo=timezone.utc).astimezone(AMSTERDAM).replace(tzinfo=None)


def all_records(log_dir: Path) -> list[dict]:
    out: list[dict] = []
    for path in applog.demo_log_files(log_dir):
        out.extend(parse_records(applog.read_log_text(path)))
    return out


# ---- the module's demo ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("demo") / "home"
    settings = Settings(home=home)
    info = demo.up(settings, seed=42, days=30, as_of=AS_OF_TEXT)
    print(f"\ndemo up, 30 days: {info['elapsed_seconds']} s")
    yield settings, info
    demo.down(settings)
    localpg.demo_cluster(home).destroy()


@pytest.fixture
def demo_url(running_demo) -> str:
    return backend.app_database_url(running_demo[0])


def test_up_builds_thirty_days_quickly_and_reports_it(running_demo):
    settings, info = running_demo
    assert info["elapsed_seconds"] < 30
    password = localpg.demo_cluster(settings.home)._state()["password"]
    assert "***" in info["database_url"] and password not in str(info)
    assert info["log_files"] == 31 and info["days"] == 30 and info["as_of"] == AS_OF_TEXT
    counts = info["counts"]
    assert set(counts) == set(LOAD_ORDER) and all(counts[name] > 0 for name in LOAD_ORDER)
    assert 600 <= counts["published_content"] <= 1200  # ~20-40 a day
    assert counts["agent_logs"] > 20_000
    assert {a["kind"] for a in info["anomalies"]} == {"error_burst", "agent_stopped", "no_content_day", "critical_log"}
    assert info["server_port"] == backend.server_state(settings)["port"]
    # ccops.core.settings finds the demo's status endpoint through server.json; the app has no /health
    assert settings.effective_status_url() == f"http://127.0.0.1:{info['server_port']}/api/status"
    assert settings.optional("health_url") is None
    assert info["clean_as_of"] == "2026-02-26T08:20:00Z" and info["logs_timezone"] == "Europe/Amsterdam"
    assert settings.effective_log_dir == demo.demo_dir(settings) / "app" / "logs"
    assert settings.effective_app_env_file == demo.demo_dir(settings) / "app" / ".env"


def test_counts_match_the_database(running_demo, demo_url):
    _, info = running_demo
    for name in LOAD_ORDER:
        assert one(demo_url, f"SELECT count(*) FROM {name}") == info["counts"][name], name
        # sequences continue after the generated ids, so the app's next insert works
        assert one(demo_url, f"SELECT nextval(pg_get_serial_sequence('{name}', 'id'))") == info["counts"][name] + 1


def test_health_preconditions_hold_at_as_of(running_demo, demo_url):
    settings, _ = running_demo
    report = run_health(settings, AS_OF_TEXT, database_url=demo_url)
    assert report.healthy and report.line() == "HEALTHY", report.line()
    last_activity = one(demo_url, 'SELECT max("timestamp") FROM agent_logs')
    assert AS_OF - timedelta(hours=1) < last_activity <= AS_OF
    last_post = one(demo_url, "SELECT max(published_at) FROM published_content")
    assert AS_OF - timedelta(hours=6) < last_post <= AS_OF
    # nothing happens after as_of, in any table
    for table, column in [("agent_logs", "timestamp"), ("published_content", "created_at"), ("user_interactions", "timestamp"),
                          ("market_data", "timestamp"), ("conversion_attempts", "converted_at"), ("subscriptions", "created_at"),
                          ("community_users", "updated_at"), ("moderation_actions", "timestamp"), ("insights", "timestamp")]:
        assert one(demo_url, f'SELECT max("{column}") FROM {table}') <= AS_OF, table


def test_burst_rows_say_success_as_the_app_writes_them(running_demo, demo_url):
    """FACTS: the app writes 'success' for runs whose client logged an ERROR; the DB and the log disagree."""
    settings, _ = running_demo
    since = AS_OF - timedelta(hours=24)
    errors = one(demo_url, "SELECT count(*) FROM agent_logs WHERE status = 'error' AND \"timestamp\" > %s AND \"timestamp\" <= %s", since, AS_OF)
    assert errors <= 10
    burst = rows(demo_url, """SELECT agent_name, status, count(*) FROM agent_logs WHERE "timestamp" >= '2026-03-10 03:00'
                              AND "timestamp" < '2026-03-10 04:00' AND agent_name IN ('PublishingAgent', 'EngagementAgent')
                              GROUP BY 1, 2 ORDER BY 1""")
    assert burst == [("EngagementAgent", "success", 3), ("PublishingAgent", "success", 5)]
    records = all_records(settings.effective_log_dir)
    refused = [r for r in records if r["level"] == "ERROR" and r["message"].endswith("429 Too Many Requests")]
    assert len(refused) == 13 and all(local(datetime(2026, 3, 10, 3)) <= r["ts"] < local(datetime(2026, 3, 10, 4)) for r in refused)
    # the agent_logs statuses are exactly 'success', 'error', 'warning'
    assert {r[0] for r in rows(demo_url, "SELECT DISTINCT status FROM agent_logs")} == {"success", "error", "warning"}


def test_image_generation_agent_stopped_36_hours_before(demo_url):
    last = one(demo_url, "SELECT max(\"timestamp\") FROM agent_logs WHERE agent_name = 'ImageGenerationAgent'")
    assert last <= AS_OF - timedelta(hours=36)
    per_day = rows(demo_url, """SELECT "timestamp"::date, count(*) FROM agent_logs WHERE agent_name = 'ImageGenerationAgent'
                                AND "timestamp" >= '2026-02-10' AND "timestamp" < '2026-03-08' GROUP BY 1""")
    assert len(per_day) == 26 and all(24 <= n <= 50 for _, n in per_day)  # every 30-60 min until it stopped
    others = rows(demo_url, 'SELECT agent_name, max("timestamp") FROM agent_logs GROUP BY 1')
    assert {a.name for a in AGENTS} == {name for name, _ in others}
    cadence = {a.name: timedelta(minutes=a.interval[1]) for a in AGENTS}
    silent = {name for name, ts in others if AS_OF - ts > 2 * cadence[name]}  # the guide's silence check uses 4x
    assert silent == {"ImageGenerationAgent"}


def test_one_calendar_day_without_content(demo_url):
    per_day = dict(rows(demo_url, "SELECT published_at::date, count(*) FROM published_content GROUP BY 1"))
    gap = (AS_OF - timedelta(days=4)).date()
    assert gap not in per_day
    full_days = [d for d in per_day if datetime(2026, 2, 9).date() <= d < AS_OF.date()]
    assert len(full_days) == 28 and min(per_day[d] for d in full_days) >= 10
    # the agents still ran that day; the publishing agent just had nothing to publish
    assert one(demo_url, "SELECT count(*) FROM agent_logs WHERE agent_name = 'PublishingAgent' AND \"timestamp\"::date = %s", gap) > 40


def test_data_is_internally_consistent(demo_url):
    assert one(demo_url, "SELECT count(*) FROM published_content WHERE engagement_rate <> (likes + comments + shares)::float8 / views") == 0
    assert one(demo_url, """SELECT count(*) FROM published_content p JOIN content_plans c ON c.id = p.content_plan_id
                            WHERE c.status <> 'published' OR c.platform <> p.platform OR c."timestamp" > p.published_at""") == 0
    assert one(demo_url, "SELECT count(*) FROM user_interactions i JOIN published_content p ON p.id = i.content_id "
                         "WHERE i.\"timestamp\" < p.published_at") == 0
    assert one(demo_url, "SELECT count(*) FROM user_interactions i JOIN community_users u ON u.id = i.user_id "
                         "WHERE i.\"timestamp\" < u.first_seen") == 0
    # enums hold upper-case NAMES
    assert set(r[0] for r in rows(demo_url, "SELECT DISTINCT tier::text FROM community_users")) <= {"FREE", "BASIC", "PREMIUM", "VIP"}
    assert {r[0] for r in rows(demo_url, "SELECT DISTINCT format::text FROM content_plans")} >= {"SINGLE_TWEET", "THREAD", "TELEGRAM_MESSAGE"}
    # funnel: each stage smaller than the one before, stages in time order
    sent, opened, clicked, converted = rows(demo_url, """SELECT count(*), count(opened_at), count(clicked_at), count(converted_at)
                                                         FROM conversion_attempts""")[0]
    assert sent > opened > clicked > converted > 0
    assert one(demo_url, "SELECT count(*) FROM conversion_attempts WHERE clicked_at < opened_at OR converted_at < clicked_at "
                         "OR (clicked_at IS NOT NULL AND opened_at IS NULL)") == 0
    # paying members: an active subscription and a paid tier go together
    assert one(demo_url, """SELECT count(*) FROM community_users u WHERE (u.tier <> 'FREE') <> EXISTS (
                              SELECT 1 FROM subscriptions s WHERE s.user_id = u.id AND s.status IN ('active', 'past_due'))""") == 0
    # users keep arriving
    assert one(demo_url, "SELECT count(*) FROM community_users WHERE first_seen >= '2026-03-03'") > 200


def test_ab_tests_have_a_clear_winner_and_an_underpowered_test(demo_url):
    tests = rows(demo_url, "SELECT id, status::text, winning_variant_id, confidence_level FROM ab_tests")
    assert {s for _, s, _, _ in tests} >= {"ACTIVE", "COMPLETED"}
    assert one(demo_url, "SELECT count(*) FROM ab_tests t WHERE (SELECT count(*) FROM ab_test_variants v "
                         "WHERE v.test_id = t.id AND v.is_control) <> 1") == 0
    assert any(status == "COMPLETED" and winner and conf >= 0.99 for _, status, winner, conf in tests)
    small = rows(demo_url, "SELECT test_id, max(impressions) FROM ab_test_variants GROUP BY 1 HAVING max(impressions) < 100")
    assert small
    # variant impressions are the views of the posts linked to them
    assert one(demo_url, """SELECT count(*) FROM ab_test_variants v JOIN (SELECT ab_test_variant_id, sum(views) AS views
                            FROM published_content GROUP BY 1) p ON p.ab_test_variant_id = v.id WHERE p.views <> v.impressions""") == 0


# ---- the log files --------------------------------------------------------------------------------

def test_log_files_rotate_and_compress_like_loguru(running_demo):
    settings, _ = running_demo
    files = applog.demo_log_files(settings.effective_log_dir)
    assert [p.name for p in files][-1] == "content_creator_2026-03-10.log"
    assert len(files) == 31 and all(p.name.endswith(".log.zip") for p in files[:-1])
    # loguru's name: the day, then the file's creation time (FACTS: content_creator_2026-12-02.2026-12-02_09-20-33_298768.log.zip)
    assert all(re.fullmatch(r"content_creator_(\d{4}-\d{2}-\d{2})\.\1_\d{2}-\d{2}-\d{2}_\d{6}\.log\.zip", p.name) for p in files[:-1])
    assert files[0].name == "content_creator_2026-02-08.2026-02-08_09-20-00_000000.log.zip"  # started 08:20 UTC = 09:20 CET
    assert all(logs.parse_log_name(p.name).day == logs.file_day(p) for p in files)
    with zipfile.ZipFile(files[0]) as archive:
        assert archive.namelist() == ["content_creator_2026-02-08.log"]
    today = parse_records(files[-1].read_text())
    assert today[-1]["ts"] <= local(AS_OF) and today[0]["ts"].date() == local(AS_OF).date()
    # a rotated file's mtime is its rotation time, local midnight (23:00 UTC in winter)
    assert datetime.fromtimestamp(files[0].stat().st_mtime, timezone.utc) == datetime(2026, 2, 8, 23, tzinfo=timezone.utc)


def test_log_times_are_amsterdam_local_time(tmp_path):
    """FACTS: the log shows the host's local time, no zone; the database holds UTC."""
    november = applog.LogRecord(datetime(2026, 11, 10, 12, 0), "ERROR", f"{logs.APP_LOG_STEM}:x", "noon UTC")
    july = applog.LogRecord(datetime(2026, 7, 1, 12, 0), "INFO", "m:f", "noon UTC")
    assert applog.format_record(november, AMSTERDAM) == "2026-11-10 13:00:00 | ERROR    | content_creator:x - noon UTC\n"
    assert applog.format_record(july, AMSTERDAM).startswith("2026-07-01 14:00:00 | INFO     | ")
    # 23:30 UTC is already the next local day: it goes into that day's file
    late = applog.LogRecord(datetime(2026, 11, 10, 23, 30), "INFO", "m:f", "late")
    written = applog.write_logs([november, late], tmp_path, datetime(2026, 11, 11, 6), datetime(2026, 11, 10, 6))
    assert [p.name for p in written] == ["content_creator_2026-11-10.2026-11-10_13-00-00_000000.log.zip",
                                         "content_creator_2026-11-11.log"]
    assert written[1].read_text() == "2026-11-11 00:30:00 | INFO     | m:f - late\n"


def test_the_demos_records_are_local_time_of_its_database_rows(running_demo, demo_url):
    settings, _ = running_demo
    text = applog.read_log_text(next(p for p in applog.demo_log_files(settings.effective_log_dir)
                                     if p.name.startswith("content_creator_2026-03-09.")))
    level = {"success": "INFO", "warning": "WARNING", "error": "ERROR"}
    expected = Counter(
        (local(ts).replace(microsecond=0), level[status], name)
        for ts, status, name in rows(demo_url, """SELECT "timestamp", status, agent_name FROM agent_logs
                                                  WHERE "timestamp" >= '2026-03-08 22:00' AND "timestamp" < '2026-03-10 01:00'""")
        if local(ts).date() == datetime(2026, 3, 9).date()
    )
    pattern = re.compile(r"^(\w+) (completed|warning:|failed:)")
    found = Counter(
        (r["ts"], r["level"], pattern.match(r["message"]).group(1))
        for r in parse_records(text) if r["where"] == "src.agents.base_agent:run" and pattern.match(r["message"])
    )
    assert found == expected and len(found) > 500


def test_log_burst_is_real_429_lines_and_grep_over_counts(running_demo):
    settings, _ = running_demo
    records = all_records(settings.effective_log_dir)
    errors_by_hour = Counter(r["ts"].replace(minute=0, second=0) for r in records if r["level"] == "ERROR")
    burst_hour = local(datetime(2026, 3, 10, 3))  # 04:00 CET
    assert errors_by_hour[burst_hour] == 13
    assert [h for h, n in errors_by_hour.items() if n > 10] == [burst_hour]
    refused = [r for r in records if "Too Many Requests" in r["message"] or ": 429" in r["message"]]
    assert {(r["level"], r["where"], r["message"]) for r in refused} == {
        ("ERROR", "src.api_integrations.twitter_api:post_tweet", "Failed to post tweet: 429 Too Many Requests"),
        ("ERROR", "src.api_integrations.twitter_api:search_tweets", "Failed to search tweets: 429 Too Many Requests")}
    # the app never writes rate-limit words or headers itself
    assert not [r for r in records if "rate limit" in r["message"].lower() or "x-rate-limit" in r["message"].lower()
                or "ratelimit" in r["message"].lower()]
    assert any(r["where"] == "src.api_integrations.exchange_api:get_ticker_24h" for r in records)
    # the guide's `grep -i error | wc -l` counts text, not records
    text = (settings.effective_log_dir / "content_creator_2026-03-10.log").read_text()
    grep_count = sum(1 for line in text.splitlines() if "error" in line.lower())
    level_count = sum(1 for r in parse_records(text) if r["level"] == "ERROR")
    assert grep_count > level_count + 8
    assert any(r["level"] == "INFO" and "error" in r["message"].lower() for r in parse_records(text))
    # tracebacks are continuation lines of ERROR records; an older CRITICAL incident is in a rotated file
    assert any(r["extra"] and r["extra"][0] == "Traceback (most recent call last):" for r in records if r["level"] == "ERROR")
    assert all(r["level"] == "ERROR" for r in records if r["extra"])
    critical = [r for r in records if r["level"] == "CRITICAL"]
    assert any(r["message"] == "Database connection pool exhausted" and r["ts"] < AS_OF - timedelta(days=2) for r in critical)
    assert {r["level"] for r in records} >= {"DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}
    per_day = Counter(r["ts"].date() for r in records)
    assert 1000 <= per_day[datetime(2026, 3, 5).date()] <= 5000


def test_output_log_is_coloured_and_never_counted_and_error_log_is_beside_it(running_demo):
    settings, _ = running_demo
    log_dir = settings.effective_log_dir
    output = (log_dir / "output.log").read_text()
    assert "\x1b[32m" in output and "\x1b[0m" in output and "Starting Content Creator in scheduled mode" in output
    assert (log_dir / "error.log").exists()
    counted = [path.name for path, _ in logs.app_log_files(log_dir)]
    assert "output.log" not in counted and "error.log" not in counted and len(counted) == 31


# ---- determinism --------------------------------------------------------------------------------

def test_same_inputs_give_identical_tables_and_logs(make_database, tmp_path):
    as_of = datetime(2026, 1, 15, 13, 47, 5)
    first, second, other = make_database("ccops"), make_database("production"), make_database("ccops")
    generate(first, 7, 6, as_of, log_dir=tmp_path / "a")
    generate(second, 7, 6, as_of, log_dir=tmp_path / "b")
    generate(other, 8, 6, as_of, log_dir=tmp_path / "c")
    hashes = table_hashes(first)
    assert hashes == table_hashes(second)  # also on the schema restored from the production dump
    assert log_bytes(tmp_path / "a") == log_bytes(tmp_path / "b") and len(log_bytes(tmp_path / "a")) == 7
    different = table_hashes(other)
    assert all(different[name] != hashes[name] for name in ("agent_logs", "published_content", "community_users"))
    assert log_bytes(tmp_path / "c") != log_bytes(tmp_path / "a")


@pytest.mark.parametrize("seed, as_of", [
    (0, datetime(2026, 1, 1, 0, 10)), (1, datetime(2026, 2, 28, 4, 59, 59)), (2, datetime(2026, 6, 30, 23, 59)),
    (3, datetime(2026, 5, 17, 12, 0)), (12345, datetime(2026, 8, 3, 9, 30)),
])
def test_incidents_hold_for_any_seed_and_instant(seed, as_of):
    data = build(seed, 6, as_of)
    facts = data.facts
    assert facts.agent_errors_24h <= 10 and facts.burst_agent_log_errors == 0
    assert facts.burst_log_errors >= facts.burst_429_records >= 13
    assert as_of - timedelta(hours=24) < facts.burst_hour < as_of - timedelta(hours=4)
    assert facts.stopped_last_seen <= as_of - timedelta(hours=36)
    assert as_of - timedelta(hours=1) < facts.last_agent_activity <= as_of
    assert as_of - timedelta(hours=6) < facts.last_published <= as_of
    posts = data.tables["published_content"]
    assert not any(p["published_at"].date() == facts.no_content_day for p in posts)
    errors = Counter(r.ts.replace(minute=0, second=0, microsecond=0) for r in data.records if r.level == "ERROR")
    assert [h for h, n in errors.items() if n > 10] == [facts.burst_hour]


def test_rerunning_up_regenerates_without_restarting(running_demo, demo_url):
    settings, info = running_demo
    before = table_hashes(demo_url)
    logs_before = log_bytes(settings.effective_log_dir)
    pids = {s["service"]: s["pid"] for s in demo.services(settings)}
    one(demo_url, "UPDATE agent_logs SET status = 'error' WHERE id < 100 RETURNING 1")  # damage it
    again = demo.up(settings, seed=42, days=30, as_of=AS_OF_TEXT)
    assert {s["service"]: s["pid"] for s in demo.services(settings)} == pids
    assert again["server_port"] == info["server_port"]
    assert table_hashes(backend.app_database_url(settings)) == before
    assert log_bytes(settings.effective_log_dir) == logs_before


# ---- the app's .env and safety --------------------------------------------------------------------

def test_app_env_file_has_exactly_the_apps_keys_and_is_private(running_demo):
    settings, _ = running_demo
    path = settings.effective_app_env_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = read_env_file(path)
    facts_keys = list(EXAMPLE_KEYS)  # FACTS.md, Settings: the key list of the app's .env.example
    assert list(env) == facts_keys == list(appenv.ENV_KEYS) and len(facts_keys) == 39  # no ENABLE_*, X_BEARER_TOKEN, STRIPE_SECRET_KEY
    example = read_env_file(demo.demo_dir(settings) / "app" / ".env.example")
    assert list(example) == facts_keys
    assert env["DATABASE_URL"] == backend.app_database_url(settings) and env["DATABASE_URL"].startswith("postgresql://")
    assert re.fullmatch(r"sk-ant-api03-[\w-]{86}-\w{6}AA", env["ANTHROPIC_API_KEY"])
    assert re.fullmatch(r"\d{10}:AA[\w-]{33}", env["TELEGRAM_BOT_TOKEN"])
    assert env["STRIPE_API_KEY"].startswith("sk_test_") and env["TWITTER_BEARER_TOKEN"].startswith("AAAAAAAA")
    assert env["HUMAN_IN_THE_LOOP"] == "false"
    # the archive scrubber learns every secret from this file, the database password included
    secrets = settings.secret_values()
    assert env["ANTHROPIC_API_KEY"] in secrets and localpg.demo_cluster(settings.home)._state()["password"] in secrets


def settings_import(app: Path) -> subprocess.CompletedProcess[str]:
    """What a validation step runs: the app's own settings import, in its directory."""
    return subprocess.run([appdir.venv_python(), "-c", "import src.config.settings"], cwd=app, capture_output=True,
                          text=True, timeout=30)


def test_the_app_refuses_to_start_with_a_key_it_does_not_define(running_demo):
    settings, _ = running_demo
    app, env_file = backend.app_dir(settings), settings.effective_app_env_file
    good = env_file.read_bytes()
    assert settings_import(app).returncode == 0
    demo.stop_service(settings, "app")
    try:
        env_file.write_bytes(good + b"ENABLE_PUBLISHING=false\n")  # the guide's pause, which the app does not have
        checked = settings_import(app)
        assert checked.returncode != 0 and "Extra inputs are not permitted" in checked.stderr
        assert "enable_publishing" in checked.stderr and "ValidationError: 1 validation error for Settings" in checked.stderr
        with pytest.raises(backend.DemoError, match="crashed at start: .*Extra inputs are not permitted"):
            backend.start_app(settings)
        assert "Extra inputs are not permitted" in (settings.effective_log_dir / "error.log").read_text()
        assert backend.app_pids(settings) == [] and demo.service(settings, "app")["state"] == "stopped"
        # keys are case-insensitive, and a wrong type is refused too
        env_file.write_bytes(good.replace(b"HUMAN_IN_THE_LOOP=false", b"human_in_the_loop=maybe"))
        assert "Input should be a valid boolean" in settings_import(app).stderr
        env_file.write_bytes(good.replace(b"HUMAN_IN_THE_LOOP=false", b"human_in_the_loop=true"))
        assert settings_import(app).returncode == 0
    finally:
        env_file.write_bytes(good)
    started = demo.start_service(settings, "app")
    assert started["state"] == "running" and backend.app_pids(settings) == [started["pid"]]
    assert (settings.effective_log_dir / "error.log").read_text() == ""


def test_the_scripts_start_and_stop_the_app_on_their_own(running_demo):
    """A process supervisor (ccops' process backend) can run the scripts unchanged from the app dir."""
    settings, _ = running_demo
    app = backend.app_dir(settings)
    before = backend.app_pids(settings)
    assert before
    cmdline = Path(f"/proc/{before[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert appdir.MATCH in cmdline and os.readlink(f"/proc/{before[0]}/cwd") == str(app.resolve())
    assert int((app / appdir.PID_FILE).read_text()) == before[0]
    stop = subprocess.run(["sh", appdir.STOP_SCRIPT], cwd=app, capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0 and "stopped" in stop.stdout and backend.app_pids(settings) == []
    assert "Received SIGTERM" in (settings.effective_log_dir / "output.log").read_text()
    start = subprocess.run(["sh", appdir.START_SCRIPT], cwd=app, capture_output=True, text=True, timeout=30)
    assert start.returncode == 0 and "started" in start.stdout
    deadline = datetime.now() + timedelta(seconds=10)
    while not backend.app_pids(settings) and datetime.now() < deadline:
        pass
    assert backend.app_pids(settings) == [int((app / appdir.PID_FILE).read_text())]


def test_backup_sh_files_from_before_ccops(running_demo):
    """FACTS: db_YYYYmmdd_HHMMSS.sql (plain pg_dump), env_YYYYmmdd_HHMMSS (0600), logs_YYYYmmdd_HHMMSS.tar.gz."""
    settings, info = running_demo
    backup_dir = settings.effective_backup_dir
    names = sorted(p.name for p in backup_dir.iterdir() if re.match(r"(db|env|logs)_\d{8}_\d{6}", p.name))
    assert names == sorted(info["app_backups"]) == sorted([
        "db_20260226_030017.sql", "env_20260226_030017", "logs_20260226_030017.tar.gz",  # the night before the clean day
        "db_20260310_030017.sql", "env_20260310_030017", "logs_20260310_030017.tar.gz"])  # the night before as_of
    dump = (backup_dir / "db_20260310_030017.sql").read_text()
    assert dump.startswith("--\n-- PostgreSQL database dump\n") and "-- PostgreSQL database dump complete" in dump
    assert "COPY public.agent_logs " in dump
    env_copy = backup_dir / "env_20260310_030017"
    assert stat.S_IMODE(env_copy.stat().st_mode) == 0o600
    assert list(read_env_file(env_copy)) == list(read_env_file(settings.effective_app_env_file))
    with tarfile.open(backup_dir / "logs_20260310_030017.tar.gz") as archive:
        members = archive.getnames()
    assert members[-1] == "logs/content_creator_2026-03-10.log" and all(m.startswith("logs/content_creator_") for m in members)
    # dated by the host's local clock, written before as_of (03:00:17 CET = 02:00:17 UTC)
    stamp = datetime.fromtimestamp((backup_dir / "db_20260310_030017.sql").stat().st_mtime, timezone.utc)
    assert datetime(2026, 3, 10, 2, 0, 17, tzinfo=timezone.utc) <= stamp < AS_OF.replace(tzinfo=timezone.utc)
    assert (backup_dir.parent / "demo" / "app" / "scripts" / "backup.sh").exists()


def test_up_refuses_to_overwrite_a_deployments_files(ccops_env, monkeypatch):
    real_env = ccops_env / "prod.env"
    real_env.write_text("DATABASE_URL=postgresql://app:secret@db:5432/content_creator\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(real_env))
    with pytest.raises(UsageError, match="not written by the demo"):
        demo.up(load_settings())
    assert real_env.read_text() == "DATABASE_URL=postgresql://app:secret@db:5432/content_creator\n"
    monkeypatch.delenv("CCOPS_APP_ENV_FILE")
    logs = ccops_env / "logs"
    logs.mkdir()
    (logs / "content_creator_2026-01-01.log").write_text("real\n")
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    with pytest.raises(UsageError, match="did not write"):
        demo.up(load_settings())
    assert (logs / "content_creator_2026-01-01.log").read_text() == "real\n"
    assert not (ccops_env / "home" / "pg").exists()  # refused before starting anything


# ---- the status server and the local backend -------------------------------------------------------

def test_status_server_and_service_controls(running_demo):
    settings, _ = running_demo
    password = localpg.demo_cluster(settings.home)._state()["password"]
    status_url = settings.effective_status_url()
    assert backend.probe(status_url) == (200, {"status": "running", "project": "Content Creator API"})
    assert backend.probe(status_url.replace("/api/status", "/health"))[0] == 404  # the app has no /health
    listed = {s["service"]: s for s in demo.services(settings)}
    assert listed["db"]["state"] == listed["app"]["state"] == "running"
    assert listed["db"]["health"] == "healthy" and listed["app"]["health"] == ""
    assert set(listed["app"]) == {"service", "state", "health", "restarts", "pid", "detail"}
    assert appdir.MATCH in listed["app"]["detail"]

    stopped = demo.stop_service(settings, "db")
    assert (stopped["state"], stopped["health"], stopped["pid"]) == ("stopped", "", None)
    started = demo.start_service(settings, "db")  # a new port: the app's .env follows it
    assert (started["state"], started["health"]) == ("running", "healthy")
    assert read_env_file(settings.effective_app_env_file)["DATABASE_URL"] == backend.app_database_url(settings)

    app_pid = demo.service(settings, "app")["pid"]
    assert demo.stop_service(settings, "app")["state"] == "stopped"
    assert backend.probe(status_url)[0] is None and backend.app_pids(settings) == []
    assert demo.start_service(settings, "app")["state"] == "running"
    restarted = demo.restart_service(settings, "app")
    assert restarted["restarts"] == 1 and restarted["pid"] not in (None, app_pid)
    assert settings.effective_status_url() == status_url  # the status server kept its port
    assert demo.restart_service(settings, "db")["restarts"] == 1
    assert {s["service"]: s["restarts"] for s in demo.services(settings)} == {"db": 1, "app": 1}

    # the password is on no command line and in no log of the server
    server_pid = backend.server_running(settings)["pid"]
    cmdline = Path(f"/proc/{server_pid}/cmdline").read_bytes().decode()
    assert "ccops.demo.server" in cmdline and password not in cmdline
    assert password not in Path(f"/proc/{restarted['pid']}/cmdline").read_bytes().decode()
    assert password not in (demo.demo_dir(settings) / "server.log").read_text()
    with pytest.raises(UsageError):
        demo.stop_service(settings, "redis")


def test_down_stops_both_and_keeps_the_data(running_demo):
    settings, _ = running_demo
    result = demo.down(settings)
    assert result["app"] == "stopped" and result["db"] == "stopped"
    assert {(s["service"], s["state"]) for s in demo.services(settings)} == {("db", "stopped"), ("app", "stopped")}
    assert backend.probe(settings.effective_status_url())[0] is None and backend.app_pids(settings) == []
    assert (Path(result["data_dir"]) / "PG_VERSION").exists()
    shown = demo.status(settings)
    assert shown["db"] == "stopped" and shown["app"] == "stopped" and shown["generated"]["seed"] == 42
    assert os.path.exists(demo.demo_dir(settings) / "server.json")


def _stubborn_app(folder: Path) -> subprocess.Popen:
    """`python main.py --scheduled` in `folder` that ignores SIGTERM, as a hung app does."""
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(
        "import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(120)\n", encoding="utf-8")
    proc = subprocess.Popen(["python", "main.py", "--scheduled"], cwd=folder, stdout=subprocess.PIPE, text=True,
                            executable=appdir.venv_python(), start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def test_the_stop_script_kills_a_stubborn_app_after_the_grace_and_leaves_another_dirs_app(tmp_path: Path):
    """scripts/stop_content_creator.sh (FACTS.md: SIGTERM, then SIGKILL after 2 s), only for this app dir."""
    app, other = tmp_path / "app", tmp_path / "other"
    mine, theirs = _stubborn_app(app), _stubborn_app(other)
    try:
        appdir.install(app, tmp_path / "backups")
        started = time.monotonic()
        stop = subprocess.run(["sh", appdir.STOP_SCRIPT], cwd=app, capture_output=True, text=True, timeout=30)
        took = time.monotonic() - started
        assert stop.returncode == 0, stop.stderr
        assert f"killed after {appdir.STOP_GRACE_SECONDS} s (pid {mine.pid})" in stop.stdout
        assert mine.wait(timeout=5) == -signal.SIGKILL
        assert appdir.STOP_GRACE_SECONDS <= took < appdir.STOP_GRACE_SECONDS + 5
        assert theirs.poll() is None, "the app of another directory was touched"
        again = subprocess.run(["sh", appdir.STOP_SCRIPT], cwd=app, capture_output=True, text=True, timeout=30)
        assert "not running" in again.stdout
    finally:
        for proc in (mine, theirs):
            proc.kill()
            proc.wait(timeout=10)
