"""Run outcomes mean what they say: the state after a repair, the past never touching live alerts,
steps that did nothing listed as such, and a record naming what produced it (issue 14: 2, 3, 5, 7, 10)."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from sqlalchemy import create_engine, text

from ccops import demo, schedule
from ccops.alerts import engine
from ccops.alerts.state import StateStore
from ccops.core import localpg
from ccops.core.context import RunContext, check, parse_as_of
from ccops.core.errors import NotConfigured
from ccops.core.findings import Finding, Status, assess, recovered
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import DEMO_AS_OF, REPO

NOW_ISH = "2026-11-20T18:00:00Z"


def run(name: str, *params: tuple[str, str], timeout: int = 300) -> runner.RunResult:
    result = runner.run_runbook(load_settings(), name, [list(p) for p in params], timeout=timeout)
    assert result.record["outcome"] not in ("failed", "timed-out"), result.record.get("error")
    return result


def by_check(record: dict) -> dict[str, dict]:
    return {f["check"]: f for f in record["findings"]}


def open_alerts(settings) -> dict[str, dict]:
    return {a["key"]: a for a in engine.list_open(settings)["open"]}


# ---- how findings make an outcome ------------------------------------------------------------

def test_a_verified_recovery_resolves_the_incident_it_names_and_nothing_else():
    found = [
        Finding("system_down.state", Status.CRITICAL, "DOWN: app is stopped"),
        Finding("system_down.logs:app", Status.WARNING, "3 ERROR lines"),
        Finding("backup.age", Status.WARNING, "newest verified backup is 30 h old"),
        Finding("action.restart", Status.OK, "restart: all services back up"),
        recovered("system_down.verdict", "UP after restart", ("system_down.state", "system_down.logs")),
    ]
    verdict = assess(found)
    assert verdict.status == Status.WARNING, "the stale backup is still true after the restart"
    assert [f.check for f in verdict.incident] == ["system_down.state", "system_down.logs:app"]
    assert verdict.incident_record()["status"] == "CRITICAL"
    assert verdict.incident_record()["summary"] == "DOWN: app is stopped"


def test_a_recovery_does_not_resolve_what_is_found_after_it():
    found = [recovered("x.verdict", "up", ("x.state",)), Finding("x.state", Status.CRITICAL, "down again")]
    assert assess(found).status == Status.CRITICAL and not assess(found).incident


def test_the_check_decorator_turns_not_configured_into_its_own_kind(ccops_env):
    @check("audit.example")
    def needs_a_setting(ctx):
        raise NotConfigured("security.example_dir", "the app's example folder")

    ctx = RunContext("t", load_settings(), parse_as_of(NOW_ISH))
    (finding,) = needs_a_setting(ctx)
    assert finding.status == Status.UNKNOWN and finding.kind == "not_configured"
    assert finding.setting == "security.example_dir"
    assert finding.summary.startswith("not configured: set security.example_dir")
    ctx.record([Finding("other", Status.UNKNOWN, "could not run: database unreachable")])
    text_summary = str(ctx.summary())
    assert "not configured (1): audit.example - set security.example_dir" in text_summary
    assert "could not decide (1): other" in text_summary


def test_the_cli_line_tells_unknown_from_failed():
    base = {"runbook": "monthly", "duration_s": 2.0, "error": None}
    unknown = runner.RunResult({**base, "outcome": "unknown", "undecided": ["audit.roles"],
                                "not_configured": [{"check": "audit.bandit", "setting": "security.app_source_dir"}]}, 3)
    failed = runner.RunResult({**base, "outcome": "failed", "error": "KeyError: 'x' in cell [3] `f()`"}, 3)
    assert unknown.line() == ("monthly: unknown in 2.0s [could not decide (1): audit.roles; "
                              "not configured (1): audit.bandit - set security.app_source_dir]")
    assert failed.line() == "monthly: failed in 2.0s (the run broke: KeyError: 'x' in cell [3] `f()`)"
    assert unknown.exit_code == failed.exit_code == 3


# ---- item 3: a repaired incident -------------------------------------------------------------

@pytest.fixture
def own_demo(ccops_env):
    settings = load_settings()
    demo.up(settings, seed=7, days=6, as_of=DEMO_AS_OF)
    yield settings
    demo.down(settings)


def test_system_down_confirmed_ends_ok_with_the_incident_recorded_and_its_alert_resolved(own_demo):
    from ccops.deploy.services import get_backend

    get_backend(own_demo).stop("app")
    dry = run("emergency/system_down", ("wait_seconds", "20"))
    assert (dry.record["outcome"], dry.exit_code) == ("critical", 2)
    assert by_check(dry.record)["action.restart"]["summary"].startswith("would restart")
    assert dry.record["incident"] is None, "nothing was repaired"
    opened = open_alerts(own_demo)
    assert any(a["severity"] == "critical" for a in opened.values()), opened

    done = run("emergency/system_down", ("dry_run", "False"), ("confirm", "True"), ("wait_seconds", "30"))
    found = by_check(done.record)
    assert found["system_down.verdict"]["summary"].startswith("UP after restart")
    assert (done.record["outcome"], done.exit_code) == ("ok", 0), [
        f for f in done.record["findings"] if f["status"] != "OK" and not f.get("resolved_by")]
    assert done.record["incident"]["status"] == "CRITICAL"
    assert done.record["incident"]["check"] == "system_down.state"
    assert "app is stopped" in done.record["incident"]["summary"]
    assert found["system_down.state"]["resolved_by"] == "system_down.verdict"
    assert not open_alerts(own_demo), "the incident's alerts resolve with the verified recovery"
    assert "incident resolved: [CRITICAL] system_down.state" in done.line()


def _damage_demo_index(settings) -> str:
    from ccops.core.db import dispose_all, normalize_url
    from tests.test_integrity import damage_index_on_disk

    url = settings.resolved_database_url()
    engine_ = create_engine(normalize_url(url))
    with engine_.begin() as conn:
        conn.execute(text("CREATE TABLE corruption_probe (id serial primary key, n int)"))
        conn.execute(text("INSERT INTO corruption_probe (n) SELECT g FROM generate_series(1, 20000) g"))
        conn.execute(text("CREATE INDEX ix_corruption_probe_n ON corruption_probe (n)"))
    engine_.dispose()
    dispose_all()
    damage_index_on_disk(localpg.demo_cluster(settings.home), url, "ix_corruption_probe_n")
    return "ix_corruption_probe_n"


def test_corruption_dry_run_says_would_and_confirmed_repair_ends_ok(own_demo):
    index = _damage_demo_index(own_demo)
    dry = run("emergency/database_corruption")
    found = by_check(dry.record)
    assert (dry.record["outcome"], dry.exit_code) == ("critical", 2)
    assert found["action.reindex"]["summary"].startswith("would REINDEX INDEX")
    assert "rebuilt" not in found["action.restore"]["summary"].replace("not rebuilt", ""), found["action.restore"]
    assert f"a REINDEX would repair {index}" in found["action.restore"]["summary"]

    done = run("emergency/database_corruption", ("dry_run", "False"), ("confirm", "True"))
    found = by_check(done.record)
    assert found["action.reindex"]["status"] == "OK"
    assert found["corruption.recovered"]["summary"].startswith("recovered: reindex done, amcheck now clean")
    assert (done.record["outcome"], done.exit_code) == ("ok", 0), [
        f for f in done.record["findings"] if f["status"] != "OK" and not f.get("resolved_by")]
    assert done.record["incident"]["check"] == "integrity.indexes" and index in done.record["incident"]["summary"]
    assert not [k for k in open_alerts(own_demo) if "integrity" in k], open_alerts(own_demo)


# ---- item 2: looking back never changes the present ------------------------------------------

def test_a_backdated_run_leaves_the_alert_state_byte_identical(demo_env):
    from ccops.alerts.config import load as load_alerts

    store = StateStore(load_alerts(load_settings()).state_dir)
    with store.locked() as state:  # a live alert the backdated run's own evaluation would close
        state["alerts"]["run.failed:daily:morning"] = {
            "key": "run.failed:daily:morning", "severity": "warning", "title": "Runbook daily:morning failed",
            "message": "daily:morning failed", "source": "test", "value": None, "threshold": None,
            "opened_at": "2026-11-19T07:00:00Z", "last_seen": "2026-11-19T07:00:00Z",
            "last_notified": "2026-11-19T07:00:00Z", "notifications": 1}
    state_file = store.path
    before = state_file.read_bytes()
    result = run("daily", ("part", "morning"), ("as_of", DEMO_AS_OF))
    assert state_file.read_bytes() == before
    alerts = result.record["alerts"]
    assert alerts["backdated"] is True and alerts["notifications"] == 0
    assert "live alerts were not opened, updated or resolved" in alerts["note"]
    assert any(w["severity"] in ("warning", "critical") for w in alerts["would_raise"]), alerts
    assert "backdated: live alerts untouched" in result.line()


def test_backdated_means_more_than_ten_minutes_before_the_start():
    start = parse_as_of("2026-11-20T18:00:00Z")
    assert runner.is_backdated(parse_as_of("2026-11-20T17:49:59Z"), start)
    assert not runner.is_backdated(parse_as_of("2026-11-20T17:50:00Z"), start)
    assert not runner.is_backdated(None, start)


# ---- items 5 and 10: cron maintains the database; the record names what produced it ----------

def _dead_tuples(url: str) -> int:
    from ccops.core.db import normalize_url

    engine_ = create_engine(normalize_url(url))
    with engine_.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        value = conn.execute(text("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'churn'")).scalar()
    engine_.dispose()
    return int(value or 0)


def test_the_weekly_crontab_entry_applies_maintenance_and_the_record_says_who_ran_it(ccops_env, monkeypatch,
                                                                                     make_database):
    from ccops.core.db import dispose_all, normalize_url

    monkeypatch.setenv("CCOPS_BACKEND", "none")
    entry = next(e for e in schedule.load(load_settings()).entries if e.name == "weekly")
    assert "CCOPS_RUN_MODE=scheduled " in entry.command
    assert entry.command.endswith("run weekly -p dry_run false; } >> "
                                  + str(ccops_env / "home" / "cron" / "weekly.log") + " 2>&1")
    assert "confirm" not in entry.args, "cron never confirms the destructive step"

    url = make_database("production")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    engine_ = create_engine(normalize_url(url))
    with engine_.begin() as conn:
        # autovacuum off on it: in a busy suite it could clean the dead tuples before the weekly run does
        conn.execute(text("CREATE TABLE churn (id int primary key, v text) WITH (autovacuum_enabled = false)"))
        conn.execute(text("INSERT INTO churn SELECT g, 'x' FROM generate_series(1, 20000) g"))
        conn.execute(text("SET statement_timeout = 0"))
    with engine_.begin() as conn:
        conn.execute(text("DELETE FROM churn WHERE id % 2 = 0"))
    engine_.dispose()
    dispose_all()
    assert _dead_tuples(url) >= 10_000

    monkeypatch.setenv("CCOPS_RUN_MODE", "scheduled")  # what the crontab line sets
    argv = list(entry.args)
    params = [argv[i + 1: i + 3] for i, a in enumerate(argv) if a == "-p"]
    result = run("weekly", *[tuple(p) for p in params])
    found = by_check(result.record)
    assert result.record["parameters"]["dry_run"] is False
    vacuum = found["maintenance.vacuum"]
    assert vacuum["status"] == "OK" and vacuum["summary"].startswith("VACUUM (ANALYZE) on 1 of 1"), vacuum
    assert "dead tuples 10,000 -> 0" in vacuum["summary"], "the report says what it did"
    assert _dead_tuples(url) < 1000, "VACUUM ran"

    record = result.record
    assert record["mode"] == "scheduled"
    assert record["runbook_sha256"] == hashlib.sha256((REPO / "runbooks" / "weekly.ipynb").read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record["git"]["commit"] == head and isinstance(record["git"]["dirty"], bool)
    user, host = record["user_host"].split("@")
    assert user and host == record["host"]


def test_weekly_maintenance_off_makes_the_weekly_entry_a_report(ccops_env):
    (ccops_env / "ccops.toml").write_text("[schedule]\nweekly_maintenance = false\n")
    entry = next(e for e in schedule.load(load_settings(str(ccops_env / "ccops.toml"))).entries if e.name == "weekly")
    assert entry.args == ("run", "weekly") and "dry run" in entry.description
    (ccops_env / "ccops.toml").write_text('[schedule]\nweekly_maintenance = "yes"\n')
    with pytest.raises(Exception, match="schedule.weekly_maintenance: expected true or false"):
        schedule.load(load_settings(str(ccops_env / "ccops.toml")))


def test_mode_is_cli_without_a_terminal_and_the_variable_wins(monkeypatch):
    monkeypatch.delenv("CCOPS_RUN_MODE", raising=False)
    proc = subprocess.run([__import__("sys").executable, "-c", "from ccops.runbook.runner import run_mode; print(run_mode())"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.strip() == "cli"
    monkeypatch.setenv("CCOPS_RUN_MODE", "interactive")
    assert runner.run_mode() == "interactive"
