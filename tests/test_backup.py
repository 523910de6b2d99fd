"""Backups against a real database: verified, killed, corrupted, pruned, restored, on a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ccops import backup, cli, runner
from ccops.config import load_settings
from ccops.db import normalize_url
from tests.conftest import DEMO_AS_OF, PRODUCTION_SCHEMA


@pytest.fixture
def demo_db(make_database, ccops_env, monkeypatch):
    """A demo-filled database of our own, and a backup dir under tmp."""
    from ccops.context import parse_as_of
    from ccops.demo import generate

    url = make_database("ccops")
    generate(url, seed=3, days=6, as_of=parse_as_of(DEMO_AS_OF))
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    return url


def query(url: str, sql: str):
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        cursor = conn.execute(text(sql))
        result = cursor.fetchall() if cursor.returns_rows else []
    engine.dispose()
    return result


def test_backup_is_verified_and_manifest_counts_are_exact(demo_db, capsys):
    assert cli.main(["backup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] and "pg_restore --list" in out["reason"]
    manifest = out["manifest"]
    assert manifest["sha256"] == backup.sha256_of(Path(out["file"]))
    for table, count in manifest["row_counts"].items():
        assert query(demo_db, f'SELECT count(*) FROM "{table}"')[0][0] == count
    assert manifest["row_counts"]["agent_logs"] > 1000
    assert oct(Path(out["file"]).stat().st_mode)[-3:] == "600"


def test_killed_pg_dump_leaves_no_backup_and_earlier_ones_intact(demo_db, ccops_env):
    first = backup.create_backup(load_settings())
    query(demo_db, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 1500000) g")
    code = ("import sys; from ccops.config import load_settings; from ccops import backup; "
            "backup.create_backup(load_settings(), compression=9)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    directory = ccops_env / "backups"
    deadline = time.monotonic() + 30
    killed = False
    while time.monotonic() < deadline and not killed:
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit():
                try:
                    cmdline = (pid_dir / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline and cmdline[0].endswith(b"pg_dump") and any(str(directory).encode() in a for a in cmdline):
                    if list(directory.glob(".*.partial")):
                        os.kill(int(pid_dir.name), signal.SIGKILL)
                        killed = True
                        break
        time.sleep(0.02)
    assert killed, "pg_dump was caught part-way"
    assert proc.wait(timeout=60) != 0
    names = sorted(p.name for p in directory.iterdir())
    assert names == [first.path.name, first.path.name + ".manifest.json"], "no partial file left, nothing new"
    assert backup.verify_backup(first.path).ok


def test_truncated_and_bit_flipped_backups_fail_and_do_not_count(demo_db, ccops_env):
    settings = load_settings()
    good = backup.create_backup(settings, now=datetime(2026, 11, 18, 2, 0))
    truncated = backup.create_backup(settings, now=datetime(2026, 11, 19, 2, 0))
    flipped = backup.create_backup(settings, now=datetime(2026, 11, 20, 2, 0))
    truncated.path.write_bytes(truncated.path.read_bytes()[:-5000])
    data = bytearray(flipped.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.path.write_bytes(bytes(data))
    assert not backup.verify_backup(truncated.path).ok
    assert "sha256" in backup.verify_backup(flipped.path).reason
    assert backup.latest_verified(settings.effective_backup_dir).path == good.path
    with pytest.raises(backup.BackupError, match="refusing to restore"):
        backup.restore_backup(settings, flipped.path, "content_creator_restored", confirm=True)


def test_retention_keeps_newest_verified_when_last_ten_days_failed(tmp_path, demo_db, ccops_env):
    settings = load_settings()
    now = datetime(2026, 11, 28, 3, 0)
    for days_ago in range(40, 10, -3):  # verified backups 40..13 days old
        backup.create_backup(settings, now=now - timedelta(days=days_ago))
    for days_ago in range(10, 0, -1):  # the last ten days: all broken
        broken = backup.create_backup(settings, now=now - timedelta(days=days_ago))
        broken.path.write_bytes(b"PGDMP broken")
    (ccops_env / "backups" / ".contentcreator_20261128_020000.dump.partial").write_bytes(b"x")
    plan = backup.plan_retention(settings.effective_backup_dir, now, retention_days=30, keep_verified=7)
    kept = {p.name for p, _ in plan.keep}
    verified = [b for b in backup.list_backups(settings.effective_backup_dir) if b.verified]
    assert len(verified) == 10
    assert {b.path.name for b in verified[:7]} <= kept, "the newest 7 verified stay whatever their age"
    deleted = {p.name for p in plan.delete_paths()}
    assert ".contentcreator_20261128_020000.dump.partial" in deleted
    assert all(name not in deleted for name in kept)
    before = sorted(p.name for p in (ccops_env / "backups").iterdir())
    assert cli.main(["backup", "prune", "--dry-run"]) == 0
    assert sorted(p.name for p in (ccops_env / "backups").iterdir()) == before, "dry run deletes nothing"
    backup.apply_retention(plan)
    left = [b for b in backup.list_backups(settings.effective_backup_dir) if b.verified]
    assert len(left) >= 7


def test_full_backup_filesystem_is_a_clear_error_and_loses_nothing(demo_db, ccops_env, monkeypatch, tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        (mount / "old.txt").write_text("an earlier file that must survive")
        monkeypatch.setenv("CCOPS_BACKUP_DIR", str(mount))
        query(demo_db, "CREATE TABLE noise AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
        with pytest.raises(backup.BackupError, match="no backup was written"):
            backup.create_backup(load_settings(), compression=0)
        assert sorted(p.name for p in mount.iterdir()) == ["old.txt"]
        assert (mount / "old.txt").read_text() == "an earlier file that must survive"
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_restore_into_a_database_with_data_takes_a_safety_dump_first(demo_db, ccops_env, make_database, monkeypatch):
    settings = load_settings()
    source = backup.create_backup(settings)
    target = make_database("ccops", name="restore_target")
    query(target, "INSERT INTO insights (timestamp, type, asset, confidence, details) VALUES (now(), 'BREAKOUT', 'ETH', 0.5, '{}')")
    assert cli.main(["restore", str(source.path), "--target", target]) == 64, "no --yes, no terminal: refused"
    assert query(target, "SELECT count(*) FROM insights")[0][0] == 1, "nothing changed without confirmation"

    result = backup.restore_backup(settings, source.path, target, confirm=True, run_health=False)
    assert result.ok, result.summary()
    names = [s.name for s in result.steps]
    assert names.index("safety dump") < names.index("restore")
    assert "check row counts" in names
    assert query(target, "SELECT count(*) FROM insights")[0][0] == source.manifest["row_counts"]["insights"]
    safety = [b for b in backup.list_backups(settings.effective_backup_dir) if b.path != source.path]
    assert safety and safety[0].verified


@pytest.mark.skipif(not PRODUCTION_SCHEMA.exists(), reason="production-schema.sql not beside the checkout")
def test_production_dump_from_postgres_17_restores_into_15(make_database, ccops_env, monkeypatch):
    url = make_database("none", name="from_pg17")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "b"))
    backup_file = ccops_env / "contentcreator_20251216_020000.sql"
    backup_file.write_text(PRODUCTION_SCHEMA.read_text())
    result = backup.restore_backup(load_settings(), backup_file, url, confirm=True, stop_app=False, run_health=False)
    assert result.ok, result.summary()
    assert len(query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")) == 16


def test_restore_test_restores_compares_and_drops(demo_db, ccops_env):
    settings = load_settings()
    backup.create_backup(settings)
    result = backup.restore_test(settings)
    assert result.ok and result.counts and all(r["ok"] for r in result.counts)
    assert not query(demo_db, f"SELECT 1 FROM pg_database WHERE datname = '{result.scratch}'")


def test_backup_and_recovery_runbooks_headless(demo_db, ccops_env, make_database):
    settings = load_settings()
    record = runner.run_runbook(settings, "backup", [], timeout=300).record
    assert record["outcome"] == "ok", record
    assert any(f["check"] == "action.backup" and f["status"] == "OK" for f in record["findings"])
    target = make_database("ccops", name="recovery_target")
    dry = runner.run_runbook(settings, "recovery", [["target", target]], timeout=300).record
    assert {f["check"]: f for f in dry["findings"]}["action.restore"]["status"] == "INFO"
    real = runner.run_runbook(settings, "recovery", [["target", target], ["dry_run", "False"], ["confirm", "True"]],
                              timeout=300).record
    found = {f["check"]: f for f in real["findings"]}
    assert found["action.restore"]["status"] == "OK", found["action.restore"]["summary"]
    assert found["backup.restore_steps"]["status"] == "OK"
    assert query(target, "SELECT count(*) FROM agent_logs")[0][0] > 1000


