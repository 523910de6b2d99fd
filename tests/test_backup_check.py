"""The evening backup check on real dumps: good, too small, truncated, plain and gzipped SQL, missing."""

from __future__ import annotations

import gzip
import os
import subprocess
from datetime import datetime

import pytest

from ccops.checks import backup
from ccops.config import load_settings
from ccops.context import RunContext
from ccops.db import client_tool, libpq_env

AS_OF = datetime(2026, 11, 28, 19, 0)


@pytest.fixture
def backups(make_database, ccops_env, monkeypatch):
    url = make_database("production")
    directory = ccops_env / "backups"
    directory.mkdir()
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(directory))
    env = {**os.environ, **libpq_env(url)}
    subprocess.run([client_tool("pg_dump"), "-Fc", "-f", str(directory / "contentcreator_20261128_020000.dump")],
                   env=env, check=True)
    plain = subprocess.run([client_tool("pg_dump")], env=env, check=True, capture_output=True).stdout
    return directory, plain


def check(min_size: int = 1000) -> backup.Finding:
    settings = load_settings()
    settings.backup.min_size_bytes = min_size
    return backup.daily_backup(RunContext(runbook="daily", settings=settings, as_of=AS_OF))[0]


def test_todays_custom_dump_is_verified(backups):
    finding = check()
    assert finding.status.value == "OK" and "pg_restore --list" in finding.summary


def test_below_minimum_size_is_a_warning(backups):
    assert check(min_size=10_000_000).status.value == "WARNING"


def test_truncated_dump_is_critical(backups):
    directory, _ = backups
    path = directory / "contentcreator_20261128_020000.dump"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    finding = check()
    assert finding.status.value == "CRITICAL" and "pg_restore --list failed" in finding.summary


def test_guides_plain_and_gzipped_sql(backups):
    directory, plain = backups
    (directory / "contentcreator_20261128_020000.dump").unlink()
    (directory / "contentcreator_20261128_020000.sql.gz").write_bytes(gzip.compress(plain))
    assert check().status.value == "OK"
    (directory / "contentcreator_20261128_020000.sql.gz").write_bytes(gzip.compress(plain[:-200]))
    finding = check()
    assert finding.status.value == "CRITICAL" and "truncated" in finding.summary


def test_no_backup_today_is_critical(backups):
    directory, _ = backups
    (directory / "contentcreator_20261128_020000.dump").rename(directory / "contentcreator_20261127_020000.dump")
    finding = check()
    assert finding.status.value == "CRITICAL" and "latest is contentcreator_20261127_020000.dump" in finding.summary
