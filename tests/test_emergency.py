"""The emergency runbooks executed headlessly, against faults made for real."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ccops import demo
from ccops.core import localpg
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import DEMO_AS_OF


def run(name: str, *params: tuple[str, str], timeout: int = 300) -> dict:
    record = runner.run_runbook(load_settings(), name, [list(p) for p in params], timeout=timeout).record
    assert record["outcome"] not in ("failed", "timed-out"), record.get("error")
    return record


def by_check(record: dict) -> dict[str, dict]:
    return {f["check"]: f for f in record["findings"]}


@pytest.fixture
def own_demo(ccops_env):
    """A demo of its own: these tests break and repair it."""
    settings = load_settings()
    demo.up(settings, seed=7, days=6, as_of=DEMO_AS_OF)
    yield settings
    demo.down(settings)


def kill_everything(settings) -> None:
    """The app process (python main.py --scheduled), its status server and the database, all killed."""
    from ccops.demo import backend

    for pid in backend.app_pids(settings):
        os.kill(pid, signal.SIGKILL)
    os.kill(backend.server_running(settings)["pid"], signal.SIGKILL)
    localpg.demo_cluster(settings.home).stop(mode="immediate")
    time.sleep(0.2)


def test_system_down_defaults_change_nothing_then_confirm_brings_it_back(own_demo):
    kill_everything(own_demo)
    record = run("emergency/system_down", ("wait_seconds", "20"))
    found = by_check(record)
    assert found["system_down.state"]["status"] == "CRITICAL"
    assert "db is stopped" in found["system_down.state"]["summary"] and "app is stopped" in found["system_down.state"]["summary"]
    assert found["action.restart"]["status"] == "INFO" and found["action.restart"]["summary"].startswith("would restart")
    assert found["system_down.verdict"]["status"] == "CRITICAL"
    assert not localpg.demo_cluster(own_demo.home).status().running, "the dry run changed nothing"

    record = run("emergency/system_down", ("dry_run", "False"), ("confirm", "True"), ("wait_seconds", "30"))
    found = by_check(record)
    assert found["action.restart"]["status"] == "OK", found["action.restart"]["summary"]
    assert found["system_down.verdict"]["status"] == "OK" and found["system_down.verdict"]["summary"].startswith("UP after restart")
    assert found["health.database"]["status"] == "OK"
    assert found["services.status_endpoint"]["status"] == "OK"
    assert found["action.timeline"]["summary"] == "1 of 1 actions run, 0 failed"


def test_rate_limit_runbook_holds_publishing_the_way_the_app_allows_and_resumes_exactly(
        ccops_env, monkeypatch, make_database):
    """On a deployment built from FACTS.md: real 429 lines, the app's key list, its rejecting settings.

    The pause sets HUMAN_IN_THE_LOOP=true (never an ENABLE_* key), the app's own settings still
    load, the resume time is in the report and in a one-shot crontab line; the resume gives back
    the .env byte for byte and takes the line out again. After the reset nothing is paused.
    """
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine, text

    from ccops.core.db import dispose_all, normalize_url
    from tests.conformance.test_app_env import ENV_CRLF, SETTINGS_MODULE
    from tests.test_schedule import FAKE_CRONTAB, USER_CRONTAB

    app = ccops_env / "content-creator"
    (app / "src" / "config").mkdir(parents=True)
    (app / "src" / "config" / "settings.py").write_text(SETTINGS_MODULE)
    env = app / ".env"
    env.write_bytes(ENV_CRLF)
    log_dir = app / "logs"
    log_dir.mkdir()
    as_of = datetime.now(UTC).replace(tzinfo=None, microsecond=0) + timedelta(hours=1)
    hit = as_of - timedelta(minutes=8)
    (log_dir / f"content_creator_{hit:%Y-%m-%d}.log").write_text(
        f"{hit:%Y-%m-%d %H:%M:%S} | ERROR    | src.api_integrations.twitter_api:post_tweet - "
        "Failed to post tweet: 429 Too Many Requests\n")
    url = make_database("production")
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO agent_logs (id, \"timestamp\", agent_name, action, status) "
                          "VALUES (1, :at, 'PublishingAgent', 'execute', 'error')"), {"at": hit + timedelta(seconds=20)})
    engine.dispose()
    store, script = ccops_env / "crontab.txt", ccops_env / "fake-crontab"
    store.write_text(USER_CRONTAB)
    script.write_text(FAKE_CRONTAB.format(store=store))
    script.chmod(0o755)
    for name, value in {"CCOPS_DATABASE_URL": url, "CCOPS_LOG_DIR": str(log_dir), "CCOPS_APP_ENV_FILE": str(env),
                        "CCOPS_BACKEND": "none", "CCOPS_LOGS_TIMEZONE": "UTC", "CCOPS_CRONTAB_CMD": str(script)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    stamp = as_of.strftime("%Y-%m-%dT%H:%M:%SZ")
    resume_at = hit + timedelta(minutes=20)
    try:
        found = by_check(run("emergency/api_rate_limit", ("as_of", stamp)))
        events = found["rate_limit.events"]
        assert events["status"] == "CRITICAL" and events["value"] == 1
        assert "PublishingAgent (inferred: agent_logs error within 1 min of the 429)" in events["summary"]
        assert found["action.pause"]["summary"].startswith("would hold publishing: set HUMAN_IN_THE_LOOP=true")
        assert f"until {resume_at:%Y-%m-%d %H:%M} UTC" in found["action.pause"]["summary"]
        assert env.read_bytes() == ENV_CRLF and store.read_text() == USER_CRONTAB, "the dry run changes nothing"

        found = by_check(run("emergency/api_rate_limit", ("as_of", stamp), ("dry_run", "False"), ("confirm", "True"),
                             ("schedule_resume", "True")))
        assert found["action.pause"]["status"] == "OK", found["action.pause"]["summary"]
        assert env.read_bytes() == ENV_CRLF + b"\r\nHUMAN_IN_THE_LOOP=true\r\n"
        assert b"ENABLE_" not in env.read_bytes()
        started = subprocess.run([__import__("sys").executable, "-c", "import src.config.settings"], cwd=app,
                                 capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        assert f"resume at {resume_at:%Y-%m-%d %H:%M} UTC" in found["action.pause"]["summary"]
        assert found["rate_limit.wait"]["value"] == f"{resume_at:%Y-%m-%dT%H:%M:%SZ}"
        cron = store.read_text()
        assert cron.startswith(USER_CRONTAB) and cron.count("-p phase resume") == 1
        local = resume_at.replace(tzinfo=UTC).astimezone()
        assert f"\n{local.minute} {local.hour} {local.day} {local.month} * " in cron

        found = by_check(run("emergency/api_rate_limit", ("as_of", stamp), ("phase", "resume"), ("dry_run", "False"),
                             ("confirm", "True")))
        assert found["action.resume"]["status"] == "OK", found["action.resume"]["summary"]
        assert "HUMAN_IN_THE_LOOP: true -> (absent)" in found["action.resume"]["summary"]
        assert env.read_bytes() == ENV_CRLF, "the resume gives back every byte"
        assert store.read_text() == USER_CRONTAB, "the one-shot line is gone, every other line kept"

        later = (hit + timedelta(minutes=16)).strftime("%Y-%m-%dT%H:%M:%SZ")
        found = by_check(run("emergency/api_rate_limit", ("as_of", later), ("dry_run", "False"), ("confirm", "True")))
        assert found["action.pause"]["summary"].startswith(
            f"nothing paused: the limit reset at {hit + timedelta(minutes=15):%Y-%m-%d %H:%M:%S} UTC")
        assert env.read_bytes() == ENV_CRLF
    finally:
        dispose_all()


def test_out_of_disk_dry_run_lists_and_confirmed_run_frees(ccops_env, monkeypatch, make_database):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("production"))
    logs = ccops_env / "logs"
    logs.mkdir()
    for day in ("2026-11-17", "2026-11-18", "2026-11-19"):
        (logs / f"content_creator_{day}.log").write_text(f"{day} 10:00:00 | INFO     | x:y - tick\n" * 20000)
    (logs / "content_creator_2026-11-20.log").write_text("2026-11-20 10:00:00 | INFO     | x:y - live\n" * 1000)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    monkeypatch.setenv("CCOPS_THRESHOLDS_DISK_FREE_WARNING_PCT", "100")
    monkeypatch.setenv("CCOPS_THRESHOLDS_DISK_FREE_CRITICAL_PCT", "99.99")
    before = sorted(p.name for p in logs.iterdir())
    record = run("emergency/out_of_disk_space", ("as_of", DEMO_AS_OF))
    found = by_check(record)
    assert found["disk.filesystems"]["status"] == "CRITICAL", "thresholds make this disk count as full"
    assert "compress rotated logs: 3 files" in found["disk.plan.compress_logs"]["summary"]
    assert sorted(p.name for p in logs.iterdir()) == before, "the dry run deletes nothing"

    record = run("emergency/out_of_disk_space", ("as_of", DEMO_AS_OF), ("dry_run", "False"), ("confirm", "True"))
    found = by_check(record)
    assert found["action.compress_logs"]["status"] == "OK"
    assert found["disk.freed"]["value"] > 1_000_000
    assert sorted(p.name for p in logs.iterdir()) == [
        "content_creator_2026-11-17.log.gz", "content_creator_2026-11-18.log.gz",
        "content_creator_2026-11-19.log.gz", "content_creator_2026-11-20.log"], "the live log is untouched"
    assert Path(logs / "content_creator_2026-11-20.log").stat().st_size > 0


def test_corruption_runbook_finds_rebuilds_and_saves(tmp_path, ccops_env, monkeypatch):
    from sqlalchemy import create_engine, text

    from ccops.core.db import dispose_all, normalize_url
    from tests.test_integrity import damage_index_on_disk

    cluster = localpg.Cluster(tmp_path / "pg")
    cluster.start()
    try:
        url = cluster.create_database("content_creator")
        engine = create_engine(normalize_url(url))
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE agent_logs (id serial primary key, agent_name text, n int)"))
            conn.execute(text("INSERT INTO agent_logs (agent_name, n) SELECT 'Agent' || (g % 17), g FROM generate_series(1, 20000) g"))
            conn.execute(text("CREATE INDEX ix_agent_logs_n ON agent_logs (n)"))
        engine.dispose()
        damage_index_on_disk(cluster, url, "ix_agent_logs_n")
        monkeypatch.setenv("CCOPS_DATABASE_URL", cluster.url("content_creator"))
        monkeypatch.setenv("CCOPS_BACKEND", "none")
        monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))

        record = run("emergency/database_corruption")
        found = by_check(record)
        assert found["integrity.indexes"]["status"] == "CRITICAL" and "ix_agent_logs_n" in found["integrity.indexes"]["summary"]
        assert found["action.reindex"]["status"] == "INFO", "dry run: nothing rebuilt"
        assert not (ccops_env / "backups").exists(), "dry run: no dump either"

        record = run("emergency/database_corruption", ("dry_run", "False"), ("confirm", "True"))
        found = by_check(record)
        assert found["action.emergency_dump"]["status"] == "OK"
        dumps = list((ccops_env / "backups" / "emergency").glob("emergency_*/full.dump"))
        assert dumps and dumps[0].stat().st_size > 0
        assert found["action.reindex"]["status"] == "OK"
        assert found["action.restore"]["summary"].startswith("no restore needed")
        assert found["corruption.verify.indexes"]["status"] == "OK"
    finally:
        dispose_all()
        cluster.destroy()


# ---- system down on the plain-process deployment (FACTS.md: what production ran) ---------------

def test_system_down_on_the_real_heads_crash_then_on_a_fixed_app(ccops_env, monkeypatch, make_database):
    """The head that dies at import reads 'crashed at start: SyntaxError', never UP; fixed, it is UP after restart."""
    from tests.conformance.test_deployments import GOOD_MAIN, make_app

    app = make_app(ccops_env / "projects" / "content-creator", "broken")
    bindir = ccops_env / "pybin"
    bindir.mkdir()
    (bindir / "python").symlink_to(__import__("sys").executable)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("empty"))
    monkeypatch.setenv("CCOPS_BACKEND", "process")
    monkeypatch.setenv("CCOPS_PROCESS_WORKDIR", str(app))
    monkeypatch.setenv("CCOPS_PROCESS_START_COMMAND", "scripts/start_content_creator.sh")
    monkeypatch.setenv("CCOPS_PROCESS_SETTLE_SECONDS", "1.5")
    act = (("dry_run", "False"), ("confirm", "True"), ("wait_seconds", "5"))
    # the outage: the operator's last start of the head died at import, leaving its traceback in error.log
    subprocess.run(["scripts/start_content_creator.sh"], cwd=app, check=True, capture_output=True)
    time.sleep(1)
    try:
        found = by_check(run("emergency/system_down", *act))
        assert found["system_down.state"]["summary"].startswith("DOWN: app is stopped")
        assert found["action.restart"]["status"] == "CRITICAL"
        assert "app crashed at start: SyntaxError: invalid syntax. Perhaps you forgot a comma? " \
               "(src/database/models.py, line 10)" in found["action.restart"]["summary"]
        logs = found["system_down.logs:app"]
        assert logs["status"] == "WARNING" and logs["summary"].endswith(
            "latest: [error.log] SyntaxError: invalid syntax. Perhaps you forgot a comma?")
        assert found["system_down.logs:db"]["summary"] == \
            "no logs for db: not configured: set process.db_log (the file pg_ctl -l writes)"
        assert found["system_down.verdict"]["status"] == "CRITICAL"
        assert found["system_down.verdict"]["summary"].startswith("STILL DOWN: app is stopped (last words in ")
        assert found["services.status_endpoint"]["summary"].startswith("not configured: set http.status_url")

        (app / "main.py").write_text(GOOD_MAIN)  # the missing comma put back, in effect
        found = by_check(run("emergency/system_down", *act))
        assert found["action.restart"]["status"] == "OK", found["action.restart"]["summary"]
        assert "app UP: pid " in found["action.restart"]["summary"]
        verdict = found["system_down.verdict"]
        assert verdict["status"] == "OK" and verdict["summary"] == (
            "UP after restart: services running, database answering (no status endpoint configured: http.status_url)")
    finally:
        from ccops.deploy import services

        for proc in services.find_processes("python main.py --scheduled", str(app)):
            services.send_signal(proc.pid, services.signal.SIGKILL)


def test_corruption_runbook_without_amcheck_never_reads_as_clean(make_database, ccops_env, monkeypatch):
    """Issue 13 (8): a database without amcheck once read "OK no restore needed", then failed a later
    cell (exit 3 as a broken run). It must say it could not decide, at every step, and finish."""
    from sqlalchemy import create_engine, text

    from ccops.core.db import normalize_url

    url = make_database("production")
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP EXTENSION IF EXISTS amcheck"))
    engine.dispose()
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    record = run("emergency/database_corruption")
    found = by_check(record)
    assert record["outcome"] == "unknown" and record["exit_code"] == 3
    assert "amcheck" in found["integrity.indexes"]["summary"] and found["integrity.indexes"]["status"] == "UNKNOWN"
    for step in ("action.reindex", "action.restore", "action.resume"):
        assert found[step]["status"] == "UNKNOWN", found[step]["summary"]
        assert "no restore needed" not in found[step]["summary"]
