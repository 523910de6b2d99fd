"""The emergency runbooks executed headlessly, against faults made for real."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ccops import demo, localpg, runner
from ccops.config import load_settings
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
    pid = demo.status(settings).get("server_pid") or __import__("json").loads(
        (settings.demo_dir / "server.json").read_text())["pid"]
    os.kill(int(pid), signal.SIGKILL)
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


def test_rate_limit_pause_and_resume_edit_only_the_flag(own_demo):
    env_file = own_demo.effective_app_env_file
    before = env_file.read_bytes()
    record = run("emergency/api_rate_limit", ("as_of", DEMO_AS_OF))
    found = by_check(record)
    assert found["rate_limit.events"]["status"] in ("WARNING", "CRITICAL")
    assert "PublishingAgent" in found["rate_limit.events"]["summary"]
    assert "-p phase resume -p agent PublishingAgent" in found["rate_limit.wait"]["summary"]
    assert env_file.read_bytes() == before, "the dry run leaves the .env alone"

    run("emergency/api_rate_limit", ("as_of", DEMO_AS_OF), ("dry_run", "False"), ("confirm", "True"))
    after = env_file.read_bytes()
    assert b"ENABLE_PUBLISHING=false" in after
    assert after.replace(b"ENABLE_PUBLISHING=false", b"ENABLE_PUBLISHING=true") == before
    assert list(env_file.parent.glob(env_file.name + ".bak-*")), "a backup copy is kept"

    record = run("emergency/api_rate_limit", ("as_of", DEMO_AS_OF), ("phase", "resume"), ("agent", "PublishingAgent"),
                 ("dry_run", "False"), ("confirm", "True"))
    assert env_file.read_bytes() == before
    found = by_check(record)
    assert "PublishingAgent" in found["rate_limit.after"]["summary"]
    assert "action.pause" not in found, "the resume phase does not pause"


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

    from ccops.db import dispose_all, normalize_url
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
