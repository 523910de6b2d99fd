"""Backups as .dump.zst (pg_dump -Fc -Z0 | zstd -T0): read to the end, restored streamed and in parallel,
and the .dump backups ccops wrote before still verify and restore (issue 18, target 3)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from ccops import backup
from ccops.backup import restore as restore_module
from ccops.backup.toc import fill_data_offsets, read_toc
from ccops.backup.verify import run_pg_restore
from ccops.core.db import client_tool, libpq_env
from ccops.core.settings import load_settings
from tests.test_backup import query


@pytest.fixture
def small_db(make_database, ccops_env, monkeypatch):
    """A database with a few MB of rows in two tables, a backup dir under tmp."""
    url = make_database("ccops")
    query(url, "CREATE TABLE noise AS SELECT g, md5(g::text) AS h FROM generate_series(1, 150000) g")
    query(url, "ALTER TABLE noise ADD PRIMARY KEY (g)")
    query(url, "CREATE TABLE other AS SELECT g, g % 7 AS k FROM generate_series(1, 40000) g")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    return url


def no_zstd_path(tmp_path: Path) -> str:
    """A PATH without zstd (pg_dump and pg_restore are found in the server's bindir, not on PATH)."""
    empty = tmp_path / "no-zstd-bin"
    empty.mkdir(exist_ok=True)
    return str(empty)


def new_target(settings, label: str) -> str:
    """The URL of a database that does not exist yet (a restore creates it; nothing to keep aside)."""
    return backup.target_url(settings, f"{label}_{uuid.uuid4().hex[:8]}")


def restore_detail(result) -> str:
    return next(s.detail for s in result.steps if s.name == "restore")


def test_zstd_backup_is_read_to_its_end_and_restores_streamed_and_in_parallel(small_db, make_database,
                                                                             monkeypatch):
    settings = load_settings()
    made = backup.create_backup(settings)
    assert made.path.name.endswith(".dump.zst") and made.verified, made.reason
    assert made.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd", "a zstd stream on disk"
    assert made.manifest["compressor"].startswith("zstd -T0 --zstd=strategy=5") and made.manifest["row_counts"]["noise"] == 150000
    # the manifest's archive size is what zstd gives back, byte for byte, and it is a custom dump
    unpacked = subprocess.run(["zstd", "-dc", str(made.path)], capture_output=True, check=True).stdout
    assert len(unpacked) == made.manifest["archive_size"] and unpacked[:5] == b"PGDMP"
    assert "zstd checksums, pg_restore full read" in made.reason, "a fresh backup is read to its end"
    assert oct(made.path.stat().st_mode)[-3:] == "600"

    for jobs in (1, 2):
        target = new_target(settings, f"zst_{jobs}")
        result = backup.restore_backup(settings, made.path, target, confirm=True, stop_app=False, run_health=False,
                                       jobs=jobs)
        assert result.ok, result.summary()
        assert query(target, "SELECT count(*), sum(g) FROM noise") == [(150000, 150000 * 150001 // 2)]
        assert query(target, "SELECT count(*) FROM other") == [(40000,)]
        detail = restore_detail(result)
        if jobs == 1:
            assert "decompressed into" not in detail and "parallel jobs" not in detail, "zstd's stream, one job"
        else:  # pg_dump wrote into a pipe (no data offsets): the decompressed copy gets them before pg_restore -j 2
            assert "with 2 parallel jobs" in detail and "for 2 jobs" in detail, detail
            tables = query(small_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0]
            assert f"data offsets of {tables} tables written into the table of contents" in detail, detail
            assert "as the backup found them, each checked where it points" in detail, "no scan of the archive"


def test_the_backup_notes_each_tables_data_offset_as_a_scan_of_its_archive_finds_it(small_db, tmp_path):
    made = backup.create_backup(load_settings())
    noted = made.manifest["data_offsets"]
    tables = query(small_db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0]
    assert isinstance(noted, dict) and len(noted) == tables, noted  # the schema's tables, noise and other
    # the reference: the decompressed archive, its offsets found by a scan (toc.py's own path, tested against
    # pg_dump's file in test_backup_toc.py), then read from its table of contents as pg_restore reads them
    copy = tmp_path / "copy.dump"
    copy.write_bytes(subprocess.run(["zstd", "-dc", str(made.path)], capture_output=True, check=True).stdout)
    assert "found by a scan of the archive" in fill_data_offsets(copy)
    assert {str(e.dump_id): e.offset for e in read_toc(copy.read_bytes()).data_entries()} == noted


def hand_made_zst(url: str, directory: Path) -> Path:
    """`pg_dump -Fc -Z0 -f x.dump && zstd x.dump` by hand: a .dump.zst with its data offsets, no manifest."""
    raw = directory / "contentcreator_20261120_020000.dump"
    subprocess.run([client_tool("pg_dump"), "-Fc", "-Z0", "-f", str(raw)], env={**os.environ, **libpq_env(url)},
                   check=True)
    subprocess.run(["zstd", "-q", "--rm", str(raw)], check=True)
    return raw.with_name(raw.name + ".zst")


def test_a_zst_archive_with_data_offsets_restores_in_parallel_through_a_removed_copy(small_db, ccops_env,
                                                                                      monkeypatch):
    settings = load_settings()
    made = hand_made_zst(small_db, ccops_env)
    assert backup.verify_backup(made).ok, "without a manifest: read to its end"
    monkeypatch.setattr(restore_module, "_available_memory", lambda: 0)  # the copy goes beside the backup
    target = new_target(settings, "parallel")
    result = backup.restore_backup(settings, made, target, confirm=True, stop_app=False, run_health=False, jobs=2)
    assert result.ok, result.summary()
    detail = restore_detail(result)
    assert f"decompressed into {made.parent} for 2 jobs" in detail and "with 2 parallel jobs" in detail
    assert "data offsets already set by pg_dump" in detail, "a file dump's own offsets are kept"
    assert query(target, "SELECT count(*), sum(g) FROM noise") == [(150000, 150000 * 150001 // 2)]
    left = [p.name for p in made.parent.iterdir() if p.name.startswith(".ccops-restore-")]
    assert left == [], "the decompressed copy (every row of the database) is removed"


def test_damaged_zstd_backups_fail_verification_and_are_never_restored(small_db, ccops_env, make_database):
    settings = load_settings()
    made = backup.create_backup(settings)
    body = made.path.read_bytes()
    manifest = backup.manifest_path(made.path)
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01
    made.path.write_bytes(bytes(flipped))
    assert "sha256 differs" in backup.verify_backup(made.path).reason
    manifest.unlink()  # without its manifest, only the full read can tell: zstd's frame checksum does
    result = backup.verify_backup(made.path)
    assert not result.ok and "full read failed" in result.reason and result.checks == ["pg_restore --list"]
    target = make_database(None)
    with pytest.raises(backup.BackupError, match="refusing to restore"):
        backup.restore_backup(settings, made.path, target, confirm=True, stop_app=False, run_health=False)
    made.path.write_bytes(body[: len(body) * 2 // 3])  # cut short: zstd reaches no end
    assert not backup.verify_backup(made.path).ok
    assert query(target, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)], "untouched"


def test_a_failing_pg_restore_keeps_its_own_reason_not_zstds_broken_pipe(small_db):
    made = backup.create_backup(load_settings())
    proc = run_pg_restore(["-d", "no_such_database_here"], made.path, read_all=True, timeout=60,
                          env={**os.environ, **libpq_env(small_db)})
    assert proc.returncode != 0
    assert "no_such_database_here" in proc.stderr.strip().splitlines()[-1] and "zstd" not in proc.stderr


def test_backups_in_the_old_format_still_verify_and_restore(small_db, make_database, monkeypatch, tmp_path):
    settings = load_settings()
    original = os.environ["PATH"]
    monkeypatch.setenv("PATH", no_zstd_path(tmp_path))  # a host without zstd writes what ccops always wrote
    old = backup.create_backup(settings)
    monkeypatch.setenv("PATH", original)  # read back where zstd is installed, as after an upgrade
    assert old.path.name.endswith(".dump") and old.path.read_bytes()[:5] == b"PGDMP"
    assert old.manifest["compressor"] == "pg_dump -Z6"
    manifest = json.loads(backup.manifest_path(old.path).read_text())
    for key in ("compressor", "archive_size"):  # a manifest written before issue 18 has neither
        manifest.pop(key, None)
    backup.manifest_path(old.path).write_text(json.dumps(manifest))
    assert backup.verify_backup(old.path).ok
    for jobs in (1, 2):
        target = new_target(settings, f"old_{jobs}")
        result = backup.restore_backup(settings, old.path, target, confirm=True, stop_app=False, run_health=False,
                                       jobs=jobs)
        assert result.ok, result.summary()
        assert query(target, "SELECT count(*) FROM noise") == [(150000,)]
    assert backup.latest_verified(settings.effective_backup_dir).path == old.path


def test_no_room_to_decompress_restores_with_one_streamed_job(small_db, ccops_env, monkeypatch):
    settings = load_settings()
    made = hand_made_zst(small_db, ccops_env)
    monkeypatch.setattr(restore_module, "SPOOL_MARGIN_BYTES", 1 << 62)  # no disk has that much room
    target = new_target(settings, "streamed")
    result = backup.restore_backup(settings, made, target, confirm=True, stop_app=False, run_health=False, jobs=2)
    assert result.ok, result.summary()
    assert "one job, streamed: no room to decompress" in restore_detail(result)
    assert query(target, "SELECT count(*) FROM other") == [(40000,)]


def test_a_zstd_backup_on_a_host_without_zstd_is_one_clear_refusal(small_db, make_database, monkeypatch, tmp_path):
    settings = load_settings()
    made = backup.create_backup(settings)
    monkeypatch.setenv("PATH", no_zstd_path(tmp_path))
    result = backup.verify_backup(made.path)
    assert not result.ok and "zstd not found on PATH" in result.reason and "apt-get install zstd" in result.reason
    target = new_target(settings, "no_zstd")
    with pytest.raises(backup.BackupError, match="zstd not found"):
        backup.restore_backup(settings, made.path, target, confirm=True, stop_app=False, run_health=False)
