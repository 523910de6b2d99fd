"""Off-site backups in a bucket, against a real S3 API on 127.0.0.1 (moto's server, tests/s3server.py).

A backup is copied there under a temporary key, read back and hashed, and only then given its name;
retention there keeps the newest verified copies whatever their age; a restore fetches a copy back and
refuses one whose sha256 does not match its manifest; a link cut mid-upload leaves the local backup,
a warning (exit 1) and nothing in the bucket that counts as a backup.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ccops import backup, cli
from ccops.backup.offsite import fetch_offsite
from ccops.core.db import normalize_url
from ccops.core.settings import load_settings
from tests.helpers import backup_source
from tests.s3server import cut_proxy_fixture, s3_fixture, s3_server_fixture  # noqa: F401 - fixtures

PREFIX = "contentcreator/backups"


@pytest.fixture
def source_db(make_demo_database, ccops_env, monkeypatch):
    """A small demo-filled database and a backup dir under tmp (each test names its bucket as backup.offsite)."""
    return backup_source(make_demo_database, ccops_env, monkeypatch, seed=5, days=5)


def count(url: str, table: str) -> int:
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        value = conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one()
    engine.dispose()
    return int(value)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_backup_in_the_bucket_is_read_back_and_retention_keeps_the_verified_floor(source_db, s3, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("CCOPS_BACKUP_OFFSITE", s3.url(PREFIX))
    monkeypatch.setenv("CCOPS_BACKUP_KEEP_VERIFIED", "2")
    seed = backup.create_backup(load_settings(), now=datetime(2020, 1, 1))
    body, manifest = seed.path.read_bytes(), backup.manifest_path(seed.path).read_bytes()
    old = {day: seed.path.name.replace("20200101", f"2020010{day}") for day in (1, 2, 3, 4, 5)}
    for day, name in old.items():  # copies from 2020, far beyond the 30 days: only the floor can keep them
        s3.put(f"{PREFIX}/{name}", body if day != 5 else body[: len(body) // 2])  # day 5: truncated, unverified
        s3.put(f"{PREFIX}/{name}.manifest.json", manifest)
    stale = "." + seed.path.name.replace("20200101", "20191231") + ".partial"
    s3.put(f"{PREFIX}/{stale}", body[:100])  # a copy cut short long ago
    seed.path.unlink()
    backup.manifest_path(seed.path).unlink()

    assert cli.main(["backup", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    made = Path(out["file"])
    assert out["offsite"]["ok"], out["offsite"]
    # what the bucket holds is the backup byte for byte, and its manifest is the local one
    assert sha256(s3.get(f"{PREFIX}/{made.name}")) == out["manifest"]["sha256"] == backup.sha256_of(made)
    assert s3.get(f"{PREFIX}/{made.name}.manifest.json") == backup.manifest_path(made).read_bytes()
    # keep_verified 2: the new copy and the newest old *verified* one (day 4; day 5 does not match its
    # manifest's size, so it is no backup and, being old, goes); days 1-3 are beyond the age and the floor
    assert s3.keys(PREFIX) == sorted(f"{PREFIX}/{n}" for n in (
        made.name, made.name + ".manifest.json", old[4], old[4] + ".manifest.json"))
    assert sorted(out["offsite"]["deleted"]) == sorted(
        [old[d] for d in (1, 2, 3, 5)] + [old[d] + ".manifest.json" for d in (1, 2, 3, 5)]
        + [stale])


def test_restore_from_the_bucket_checks_the_sha256_and_refuses_a_tampered_copy(source_db, s3, make_database,
                                                                              monkeypatch, capsys):
    monkeypatch.setenv("CCOPS_BACKUP_OFFSITE", s3.url(PREFIX))
    settings = load_settings()
    made = backup.create_backup(settings)
    backup.offsite_copy(settings, made.path)
    expected = backup.read_manifest(made.path)
    for path in (made.path, backup.manifest_path(made.path)):  # the host lost its backups
        path.unlink()

    fetched = fetch_offsite(settings, made.path.name)
    assert fetched == made.path and backup.sha256_of(fetched) == expected["sha256"]
    assert backup.read_manifest(fetched) == expected and oct(fetched.stat().st_mode)[-3:] == "600"
    target = make_database(None, name="restored_from_bucket")
    result = backup.restore_backup(settings, fetched, target, confirm=True, run_health=False, app_stopped=True)
    assert result.ok, result.summary()
    assert count(target, "agent_logs") == expected["row_counts"]["agent_logs"] > 0

    # one flipped byte in the bucket: the copy no longer matches its manifest and is never restored
    body = bytearray(s3.get(f"{PREFIX}/{made.path.name}"))
    body[len(body) // 2] ^= 0xFF
    s3.put(f"{PREFIX}/{made.path.name}", bytes(body))
    for path in (made.path, backup.manifest_path(made.path)):
        path.unlink()
    other = make_database(None, name="not_restored")
    code = cli.main(["restore", made.path.name, "--from-offsite", "--target", other, "--yes", "--app-stopped"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "not its manifest's" in err and "refusing to restore" in err and err.count("\n") == 1, err
    assert not made.path.exists() and not list(made.path.parent.glob(".*.partial")), "nothing fetched is kept"
    with pytest.raises(backup.BackupError, match=r"no backup contentcreator_20200101_000000.dump in s3://.* never counts"):
        fetch_offsite(settings, "contentcreator_20200101_000000.dump")


def test_link_cut_mid_upload_keeps_the_local_backup_and_nothing_counts_in_the_bucket(source_db, s3, cut_proxy,
                                                                                   monkeypatch, capsys):
    monkeypatch.setenv("CCOPS_BACKUP_OFFSITE", s3.url(PREFIX))
    assert cli.main(["backup", "--no-offsite"]) == 0  # the size of a backup, to cut in its middle
    capsys.readouterr()
    size = backup.list_backups(Path(os.environ["CCOPS_BACKUP_DIR"]))[0].path.stat().st_size
    assert size > 20_000
    cut_proxy.cut_after(size // 2)
    code = cli.main(["backup"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)  # WARNING: the backup is good here, its off-site copy is not
    failed = [line for line in out.splitlines() if "off-site copy FAILED" in line]
    assert len(failed) == 1 and "no new backup counts there" in failed[0], out
    assert cut_proxy.forwarded >= size // 2, "the link was cut during the upload, not before it"
    local = backup.list_backups(Path(os.environ["CCOPS_BACKUP_DIR"]))
    assert len(local) == 2 and all(b.verified for b in local), "the local copies stay, verified"
    # listed by the test's own client, past the proxy: no object that is or describes a backup
    assert [k for k in s3.keys(PREFIX) if not k.rsplit("/", 1)[1].startswith(".")] == []

    # the link back: the next backup's copy lands and is verified; the hidden leftover is no backup
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    assert cli.main(["backup", "--json"]) == 0
    out_json = json.loads(capsys.readouterr().out)
    name = Path(out_json["file"]).name
    assert [k for k in s3.keys(PREFIX) if not k.rsplit("/", 1)[1].startswith(".")] == [
        f"{PREFIX}/{name}", f"{PREFIX}/{name}.manifest.json"]
