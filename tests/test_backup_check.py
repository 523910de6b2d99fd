"""The evening backup check on real dumps: good, too small, truncated, plain and gzipped SQL, missing."""

from __future__ import annotations

import gzip
import os
import subprocess
from datetime import datetime

import pytest

from ccops.checks import backup
from ccops.core.context import RunContext
from ccops.core.db import client_tool, libpq_env
from ccops.core.settings import load_settings

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


# ---- the app's own scripts/backup.sh files (FACTS.md "Backups already on disk") ----------------

from tests.conformance.test_app_backups import SECRETS, backup_sh, setup_app_backups  # noqa: E402


@pytest.fixture
def app_backups(make_database, pg_cluster, ccops_env, monkeypatch):
    """backup.sh's three files of 2026-11-28 02:00, made with pg_dump, cp and tar (see tests/conformance)."""
    return setup_app_backups(make_database, pg_cluster, ccops_env, monkeypatch)


def daily(monkeypatch) -> list:
    settings = load_settings()
    settings.backup.min_size_bytes = 1000
    return backup.daily_backup(RunContext(runbook="daily", settings=settings, as_of=AS_OF))


def test_daily_check_counts_the_app_backup_sh_dump(app_backups, monkeypatch):
    """With only backup.sh's files present it once said CRITICAL 'there are none'."""
    finding = daily(monkeypatch)[0]
    assert finding.status.value == "OK", finding.summary
    assert finding.summary.startswith("db_20261128_020000.sql (app backup.sh)") and "dump trailer" in finding.summary


def test_daily_check_newest_good_counts_and_a_newer_broken_one_is_named(app_backups, pg_cluster, monkeypatch):
    files = backup_sh(pg_cluster, app_backups["dir"], app_backups["project"], datetime(2026, 11, 28, 14, 0))
    data = files["db"].read_bytes()
    files["db"].write_bytes(data[: len(data) // 3])  # pg_dump killed at 14:00
    finding = daily(monkeypatch)[0]
    assert finding.status.value == "WARNING"
    assert "db_20261128_020000.sql (app backup.sh)" in finding.summary
    assert "newer db_20261128_140000.sql fails verification" in finding.summary
    (app_backups["dir"] / "db_20261128_020000.sql").unlink()
    finding = daily(monkeypatch)[0]
    assert finding.status.value == "CRITICAL" and "db_20261128_140000.sql cannot be read back" in finding.summary


def test_env_copies_readable_by_others_are_a_warning_and_never_shown(app_backups, pg_cluster, monkeypatch):
    env_copy = app_backups["files"]["env"]
    assert oct(env_copy.stat().st_mode)[-3:] == "644", "cp of a 0644 .env, as backup.sh does it"
    finding = daily(monkeypatch)[1]
    assert finding.check == "backup.env_copies" and finding.status.value == "WARNING"
    assert "env_20261128_020000 (0644)" in finding.summary
    shown = finding.summary + finding.data.to_csv()
    assert not any(secret in shown for secret in SECRETS), "names and modes only"
    env_copy.chmod(0o600)
    finding = daily(monkeypatch)[1]
    assert finding.status.value == "OK" and "1 .env copies, all readable by their owner only" in finding.summary
