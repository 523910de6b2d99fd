"""Monthly and quarterly runbooks headless, the safe clean-up, and a real disaster-recovery drill."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from ccops import backup
from ccops.actions import cleanup, drill
from ccops.core.context import RunContext
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import DEMO_AS_OF


def run(name: str, *params: tuple[str, str]) -> dict:
    record = runner.run_runbook(load_settings(), name, [list(p) for p in params], timeout=600).record
    assert record["outcome"] not in ("failed", "timed-out"), record.get("error")
    return record


def by_check(record: dict) -> dict[str, dict]:
    return {f["check"]: f for f in record["findings"]}


def test_monthly_and_quarterly_on_the_demo(demo_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(demo_env / "backups"))
    # the backup the monthly restore test reads, taken as `ccops backup` takes it (the backup runbook itself runs on
    # the demo under nbval and headless in test_backup)
    assert backup.create_backup(load_settings()).verified
    monthly = by_check(run("monthly", ("as_of", DEMO_AS_OF)))
    assert monthly["backup.restore_test"]["status"] == "OK"
    assert monthly["analytics.costs"]["status"] in ("OK", "WARNING")
    assert monthly["monthly.content_strategy"]["status"] == "INFO", "human items stay pending in a headless run"
    quarterly = by_check(run("quarterly", ("as_of", DEMO_AS_OF)))
    assert quarterly["drill.recovery"]["status"] == "OK"
    assert quarterly["drill.recovery"]["value"] > 0
    assert quarterly["audit.app_role"]["status"] == "WARNING", "the demo app connects as a superuser"


def test_monthly_and_quarterly_on_an_empty_database(make_database, ccops_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("production"))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(tmp_path / "no-logs"))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    monthly = run("monthly", ("as_of", DEMO_AS_OF))
    assert by_check(monthly)["backup.restore_test"]["status"] == "UNKNOWN", "no backup to test: said so"
    quarterly = run("quarterly", ("as_of", DEMO_AS_OF), ("run_drill", "False"))
    assert by_check(quarterly)["drill.recovery"]["summary"].startswith("skipped")


def test_cleanup_real_run_deletes_exactly_what_the_dry_run_listed(ccops_env, monkeypatch):
    logs = ccops_env / "logs"
    logs.mkdir()
    for day in ("2026-06-01", "2026-07-15", "2026-11-01", "2026-11-20"):
        (logs / f"content_creator_{day}.log.zip").write_bytes(b"x" * 1000)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    ctx = RunContext(runbook="monthly", settings=load_settings(), as_of=datetime(2026, 11, 20, 6))
    dry = cleanup.old_logs(ctx, keep_days=90)
    listed = set(dry[0].data["path"])
    assert listed == {str(logs / "content_creator_2026-06-01.log.zip"), str(logs / "content_creator_2026-07-15.log.zip")}
    assert len(list(logs.iterdir())) == 4, "dry run deletes nothing"
    (logs / "content_creator_2026-08-01.log.zip").write_bytes(b"y")  # appears after the dry run
    real = cleanup.old_logs(ctx, keep_days=90, dry_run=False, confirm=True)
    assert real[-1].status.value == "OK"
    left = {p.name for p in logs.iterdir()}
    assert left == {"content_creator_2026-11-01.log.zip", "content_creator_2026-11-20.log.zip",
                    "content_creator_2026-08-01.log.zip"}


def test_drill_starts_a_second_cluster_restores_and_removes_it(demo_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(demo_env / "drill-backups"))
    settings = load_settings()
    before = {p for p in Path("/proc").iterdir() if p.name.isdigit()}
    result = drill.run_drill(settings, datetime(2026, 11, 20, 18))
    assert result.ok, result.steps
    assert [s["step"] for s in result.steps] == ["fresh backup", "new server", "create database", "restore",
                                                 "verify row counts", "health check"]
    assert result.recovery_s > 0
    # the demo's data ends at its own as_of, so the copy may be stale, but it must answer
    assert result.health_line.startswith(("HEALTHY", "UNHEALTHY")) and "unreachable" not in result.health_line
    assert result.cluster_removed
    assert not list((settings.home / "drills").iterdir()), "the drill cluster's files are gone"
    after = {p for p in Path("/proc").iterdir() if p.name.isdigit()} - before
    postmasters = [p for p in after if (p / "cmdline").exists()
                   and b"drill-" in (p / "cmdline").read_bytes() and os.path.exists(p)]
    assert not postmasters, "no server of the drill is left running"
