"""FACTS.md "Backups already on disk": the app's scripts/backup.sh files are backups to ccops.

The files are made the way backup.sh makes them, with the real tools: `pg_dump -U
content_creator_user content_creator` (plain SQL) of a database holding the real
production schema, `cp` of the app's `.env`, and `tar -czf` of its `logs/` dir,
each named `<kind>_$(date +%Y%m%d_%H%M%S)`. Nothing here comes from the demo.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from ccops import backup, cli
from ccops.core.db import client_tool

APP_ROLE = "content_creator_user"  # FACTS.md: backup.sh runs pg_dump -U content_creator_user content_creator
APP_DB = "content_creator"
APP_ROLE_PASSWORD = "backup-sh-test"
# keys from the app's .env.example (FACTS.md), with values shaped like real ones
APP_ENV = (
    "DATABASE_URL=postgresql://content_creator_user:Sup3rSecretPw@localhost:5432/content_creator\n"
    "ANTHROPIC_API_KEY=sk-ant-api03-SECRETSECRETSECRET\n"
    "TWITTER_BEARER_TOKEN=AAAAAAAAAAAAAAAAAAAAAsecretbearer\n"
    "TELEGRAM_BOT_TOKEN=123456:ABCsecrettelegram\n"
    "STRIPE_API_KEY=sk_live_secretstripe\n"
    "HUMAN_IN_THE_LOOP=false\n"
    "LOG_LEVEL=INFO\n"
)
SECRETS = ("Sup3rSecretPw", "SECRETSECRETSECRET", "secretbearer", "secrettelegram", "secretstripe")
# a loguru record (FACTS.md line format), one with a traceback continuing it
LOG_LINES = (
    "2026-11-28 01:59:58 | INFO     | src.agents.market_scanner:execute - Scanning 12 assets\n"
    "2026-11-28 02:00:03 | ERROR    | src.api_integrations.twitter_api:post_tweet - Failed to post tweet: "
    "429 Too Many Requests\n"
    "Traceback (most recent call last):\n  File \"main.py\", line 1, in <module>\n"
)


def app_database(make_database, pg_cluster) -> str:
    """`content_creator` with the real production schema, owned by content_creator_user, and some rows.

    The rows carry what COPY must escape (tab, newline, quote, semicolon, backslash) and enum
    NAMES in upper case, as the app writes them.
    """
    url = make_database("production", name=APP_DB)
    pg_cluster.psql(f"ALTER ROLE {APP_ROLE} LOGIN PASSWORD '{APP_ROLE_PASSWORD}'")
    env = {**os.environ, **pg_cluster.libpq_env(), "PGDATABASE": APP_DB}
    seed = """
INSERT INTO agent_logs (timestamp, agent_name, action, status, details, error_message, execution_time, created_at)
SELECT timestamp '2026-11-27 00:00' + g * interval '1 minute', 'MarketScannerAgent', 'execute',
       CASE WHEN g % 7 = 0 THEN 'error' ELSE 'success' END, '{"assets": 12}',
       CASE WHEN g % 7 = 0 THEN E'Traceback:\\n\\tFile "x.py"; it''s broken \\\\ here' END, 0.5 * g, now()
FROM generate_series(1, 120) g;
INSERT INTO community_users (twitter_id, twitter_username, tier, subscription_status, engagement_score, first_seen)
VALUES ('1', 'alice', 'FREE', 'active', 12.5, now()), ('2', 'bob', 'VIP', 'active', 88, now()),
       ('3', 'carol', 'PREMIUM', 'cancelled', 40, now());
"""
    proc = subprocess.run([client_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"], input=seed, text=True,
                          capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return url


def app_dir(root: Path, env_mode: int = 0o644) -> Path:
    """The app's project dir as backup.sh sees it: .env (FACTS key names) and logs/ with loguru's files."""
    project = root / "content-creator"
    logs = project / "logs"
    logs.mkdir(parents=True)
    env_file = project / ".env"
    env_file.write_text(APP_ENV)
    env_file.chmod(env_mode)
    (logs / "content_creator_2026-11-28.log").write_text(LOG_LINES)
    rotated = logs / "content_creator_2026-11-27.2026-11-28_00-00-00_123456.log.zip"
    with zipfile.ZipFile(rotated, "w") as archive:
        archive.writestr("content_creator_2026-11-27.2026-11-28_00-00-00_123456.log", LOG_LINES)
    (logs / "output.log").write_text("\x1b[32m2026-11-28 01:59:58\x1b[0m | INFO | scanning\n")
    (logs / "error.log").write_text("")
    return project


def backup_sh(pg_cluster, backup_dir: Path, project: Path, moment: datetime, gzipped: bool = False) -> dict[str, Path]:
    """Run what scripts/backup.sh runs at `moment` (its local `date +%Y%m%d_%H%M%S`), with the real tools."""
    stamp = f"{moment:%Y%m%d_%H%M%S}"
    backup_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **pg_cluster.libpq_env(), "PGPASSWORD": APP_ROLE_PASSWORD}
    env.pop("PGDATABASE", None)
    dump = backup_dir / f"db_{stamp}.sql"
    with open(dump, "wb") as out:
        subprocess.run([client_tool("pg_dump"), "-U", APP_ROLE, APP_DB], stdout=out, env=env, check=True)
    if gzipped:
        subprocess.run(["gzip", str(dump)], check=True)
        dump = dump.with_name(dump.name + ".gz")
    env_copy = backup_dir / f"env_{stamp}"
    subprocess.run(["cp", str(project / ".env"), str(env_copy)], check=True)
    logs = backup_dir / f"logs_{stamp}.tar.gz"
    subprocess.run(["tar", "-czf", str(logs), "-C", str(project), "logs"], check=True)
    return {"db": dump, "env": env_copy, "logs": logs}


def setup_app_backups(make_database, pg_cluster, root: Path, monkeypatch) -> dict:
    """The app's database, its project dir, and one run of backup.sh on 2026-11-28 at 02:00 (app host at UTC)."""
    url = app_database(make_database, pg_cluster)
    project = app_dir(root)
    directory = root / "backups"
    files = backup_sh(pg_cluster, directory, project, datetime(2026, 11, 28, 2, 0, 0))
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(directory))
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")  # the zone backup.sh's `date` ran in
    return {"url": url, "project": project, "dir": directory, "files": files}


@pytest.fixture
def app_backups(make_database, pg_cluster, ccops_env, monkeypatch):
    return setup_app_backups(make_database, pg_cluster, ccops_env, monkeypatch)


def test_one_naming_rule_knows_ccops_and_backup_sh_names():
    cases = {
        "db_20261128_020000.sql": ("db", backup.ORIGIN_APP), "db_20261128_020000.sql.gz": ("db", backup.ORIGIN_APP),
        "env_20261128_020000": ("env", backup.ORIGIN_APP), "logs_20261128_020000.tar.gz": ("logs", backup.ORIGIN_APP),
        "contentcreator_20261128_020000.dump": ("db", backup.ORIGIN_CCOPS),
        "contentcreator_20261128_020000_2.dump": ("db", backup.ORIGIN_CCOPS),
        "contentcreator_20261128_020000.sql.gz": ("db", backup.ORIGIN_CCOPS),  # the guide's own script
        "contentcreator_env_20261128_020000": ("env", backup.ORIGIN_CCOPS),
        "contentcreator_logs_20261128_020000.tar.gz": ("logs", backup.ORIGIN_CCOPS),
    }
    for name, (kind, origin) in cases.items():
        parsed = backup.parse_name(name)
        assert parsed is not None and (parsed.kind, parsed.origin) == (kind, origin), name
        assert backup.NAME_RE.match(name), name
    for name in ("db_20261128_020000.dump", "env_20261128_020000.txt", "logs_20261128_020000.tar", "db_2026.sql",
                 ".db_20261128_020000.sql.partial", "db_20261399_020000.sql", "contentcreator_20261128_020000.dump"
                 ".manifest.json", "emergency_backup_20261128_020000.sql"):
        assert backup.parse_name(name) is None, name
    import ccops.checks.backup as check_module

    assert not hasattr(check_module, "NAME"), "the evening check has no naming rule of its own"


def test_backup_sh_files_are_listed_with_kind_and_origin_and_verified(app_backups, capsys):
    assert cli.main(["backup", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted((r["file"], r["kind"], r["origin"], r["verified"]) for r in rows) == [
        ("db_20261128_020000.sql", "db", "app backup.sh", True),
        ("env_20261128_020000", "env", "app backup.sh", True),
        ("logs_20261128_020000.tar.gz", "logs", "app backup.sh", True)]
    by_kind = {r["kind"]: r["reason"] for r in rows}
    assert "dump trailer" in by_kind["db"] and "16 COPY blocks" in by_kind["db"]
    assert "123 rows" in by_kind["db"], by_kind["db"]  # 120 agent_logs + 3 community_users, counted from COPY
    assert "members" in by_kind["logs"] and ".env copy with 7 keys" in by_kind["env"]
    assert cli.main(["backup", "list"]) == 0
    text = capsys.readouterr().out
    assert "db_20261128_020000.sql" in text and "app backup.sh" in text and "no backups" not in text
    assert not any(secret in text for secret in SECRETS)


def test_real_pg_dump_output_parses_and_counts_rows(app_backups):
    dump = app_backups["files"]["db"]
    head = dump.read_bytes()[:4096]
    assert head.startswith(b"--\n-- PostgreSQL database dump")
    result = backup.verify_backup(dump)
    assert result.ok, result.reason
    assert result.row_counts["agent_logs"] == 120 and result.row_counts["community_users"] == 3
    assert set(result.row_counts) >= {"market_data", "published_content", "performance_snapshots"}


def test_truncated_or_damaged_plain_dump_fails_verification(app_backups):
    dump = app_backups["files"]["db"]
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])  # a dump killed half-way (disk full, pg_dump killed)
    result = backup.verify_backup(dump)
    assert not result.ok and "truncated" in result.reason
    # the trailer is there, but a row lost its tabs in the middle: the parse finds it
    row = next(line for line in data.splitlines(keepends=True) if line.startswith(b"1\t"))
    dump.write_bytes(data.replace(row, row.replace(b"\t", b" ", 3), 1))
    result = backup.verify_backup(dump)
    assert not result.ok and "does not parse" in result.reason and "fields" in result.reason
    # a statement cut before its ';' (the trailer pasted back after it)
    cut = data.index(b"CREATE TABLE public.agent_logs")
    dump.write_bytes(data[: cut + 40] + b"\n--\n-- PostgreSQL database dump complete\n--\n")
    result = backup.verify_backup(dump)
    assert not result.ok and "does not parse" in result.reason


def test_gzipped_dump_checked_by_gzip_crc_and_parse(app_backups, make_database, pg_cluster, ccops_env):
    files = backup_sh(pg_cluster, ccops_env / "gz", app_backups["project"], datetime(2026, 11, 28, 3, 0), gzipped=True)
    assert files["db"].name == "db_20261128_030000.sql.gz"
    result = backup.verify_backup(files["db"])
    assert result.ok and "gzip CRC" in result.reason
    data = files["db"].read_bytes()
    files["db"].write_bytes(data[:-100])
    result = backup.verify_backup(files["db"])
    assert not result.ok and "cannot be read to the end" in result.reason
    assert gzip.decompress(gzip.compress(b"x")) == b"x"


def test_logs_tarball_members_are_read_and_a_truncated_one_fails(app_backups):
    logs = app_backups["files"]["logs"]
    result = backup.verify_backup(logs)
    assert result.ok and "5 members" in result.reason  # logs/ and its four files, read to their ends
    logs.write_bytes(logs.read_bytes()[:-40])
    result = backup.verify_backup(logs)
    assert not result.ok and "truncated or damaged" in result.reason


def test_app_names_are_the_hosts_local_time(monkeypatch):
    """backup.sh's `date` is local: at UTC+1 (production's zone) db_..._030000 was written at 02:00 UTC."""
    monkeypatch.setenv("TZ", "Europe/Amsterdam")
    time.tzset()
    try:
        assert backup.parse_name("db_20261128_030000.sql").created == datetime(2026, 11, 28, 2, 0)
        assert backup.parse_name("contentcreator_20261128_030000.dump").created == datetime(2026, 11, 28, 3, 0)
        # the app host's zone, when ccops runs elsewhere: settings.logs_timezone (the same clock writes the logs)
        assert backup.parse_name("db_20261128_030000.sql", "UTC").created == datetime(2026, 11, 28, 3, 0)
        assert backup.parse_name("db_20260715_030000.sql", "Europe/Amsterdam").created == datetime(2026, 7, 15, 1, 0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_restore_of_a_backup_sh_dump_proves_its_rows(app_backups, make_database, capsys):
    target = make_database("none")
    name = target.rsplit("/", 1)[1]
    dump = app_backups["files"]["db"]
    assert cli.main(["restore", str(dump), "--target", name, "--app-stopped", "--yes", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    steps = {s["name"]: s["detail"] for s in out["steps"]}
    assert "16 tables match the dump's own data" in steps["check row counts"], steps
    assert "ownership not kept" not in steps["restore"], "content_creator_user exists here: owners kept"
    import psycopg

    from ccops.core.db import libpq_url

    with psycopg.connect(libpq_url(target)) as conn:
        assert conn.execute("SELECT count(*) FROM agent_logs").fetchone()[0] == 120
        assert conn.execute("SELECT count(*) FROM community_users WHERE tier = 'VIP'").fetchone()[0] == 1


def test_env_and_logs_copies_are_not_restorable_into_a_database(app_backups, capsys):
    assert cli.main(["restore", str(app_backups["files"]["env"]), "--target", "x", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "is a copy of the app's .env (app backup.sh), not a database dump" in err
    assert not any(secret in err for secret in SECRETS)
