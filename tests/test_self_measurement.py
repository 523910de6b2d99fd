"""ccops must not measure itself: its backups, restore tests and weekly runs stay out of the query and
seq-scan reviews, which say how much they left out. Checked against the server by hand (psql).

The database has the real production schema; "the app" is a separate session without ccops' name or
marker, running the kind of statement the guide warns about (a filter on an unindexed column).
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ccops.backup import create_backup
from ccops.backup.restore import restore_test
from ccops.checks import postgres as pg
from ccops.core import db, selfstats
from ccops.core.context import RunContext
from ccops.core.db import normalize_url
from ccops.core.settings import load_settings
from ccops.runbook import runner

APP_SCANS = 3
ROWS = 20_000


def psql(cluster, dbname: str, sql: str) -> str:
    """The operator's check by hand: psql as the superuser, unaligned, no ccops involved."""
    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": dbname, "PGAPPNAME": "psql"}
    proc = subprocess.run([str(cluster.bindir / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def app_session(url: str, *statements: str) -> None:
    """The app: its own session name, no marker, statistics flushed before it returns."""
    engine = create_engine(normalize_url(url), poolclass=NullPool, connect_args={"application_name": "content-creator"})
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        conn.exec_driver_sql("SELECT 1")
    engine.dispose()


@pytest.fixture
def busy_database(make_database, ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A production-schema database of 20,000 agent_logs rows that the app read by 3 sequential scans."""
    url = make_database("production")
    dbname = url.rsplit("/", 1)[1]
    app_session(url, f"""INSERT INTO agent_logs (id, "timestamp", agent_name, action, status, execution_time)
        SELECT g, timestamp '2026-11-20 00:00' - g * interval '1 minute', 'MarketScannerAgent', 'execute',
               'success', 1.5 FROM generate_series(1, {ROWS}) g""", "ANALYZE agent_logs")
    app_session(url, *["SELECT count(*) FROM agent_logs WHERE error_message IS NOT NULL"] * APP_SCANS)
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(ccops_env / "logs"))
    (ccops_env / "logs").mkdir()
    return url, dbname


def seq_scans(cluster, dbname: str) -> int:
    return int(psql(cluster, dbname, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'agent_logs'"))


def test_sessions_name_themselves_and_mark_their_statements(busy_database, pg_cluster):
    url, dbname = busy_database
    db.set_application_name("ccops/selftest")
    try:
        with db.connect(url) as conn:
            name = conn.execute(text("SELECT current_setting('application_name')")).scalar()
            conn.execute(text("SELECT count(*) FROM community_users WHERE tier = 'VIP'"))
        assert name == "ccops/selftest"
        assert db.libpq_env(url)["PGAPPNAME"] == "ccops/selftest"
    finally:
        db.set_application_name("")
    # pg_stat_statements holds the whole cluster's statements: other tests' databases on this worker's
    # cluster run the same query unmarked (as the app), so only this database's count
    texts = psql(pg_cluster, dbname, "SELECT query FROM pg_stat_statements WHERE query ~ 'FROM community_users WHERE tier' "
                                     "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
    assert texts.startswith("/* ccops */"), texts


def test_backup_restore_test_and_weekly_run_are_left_out(busy_database, pg_cluster):
    url, dbname = busy_database
    settings = load_settings()
    before = seq_scans(pg_cluster, dbname)  # the app's 3 and the schema load's index builds: not ccops'
    assert before >= APP_SCANS

    backup = create_backup(settings)
    restore_test(settings, backup.path)
    result = runner.run_runbook(load_settings(), "weekly", [], timeout=600)
    assert result.record["outcome"] != "failed", result.record.get("error")

    # By hand: the server's counters hold ccops' scans and statements...
    total = seq_scans(pg_cluster, dbname)
    assert total > before, "the backup's pg_dump and row counts must show in pg_stat_user_tables"
    copy_calls = int(psql(pg_cluster, dbname, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                          "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                          "AND query ~* '^COPY public\\.agent_logs .* TO stdout'"))
    assert copy_calls >= 1
    marked = int(psql(pg_cluster, dbname, "SELECT count(*) FROM pg_stat_statements WHERE dbid = "
                      "(SELECT oid FROM pg_database WHERE datname = current_database()) AND query LIKE '/* ccops */%'"))
    assert marked > 0

    # ...and the ledger holds exactly the difference, which the reviews take away.
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=datetime.now())
    [scan] = pg.sequential_scan_heavy_tables(ctx)
    row = scan.data.set_index("table").loc["agent_logs"]
    assert int(row["seq_scan"]) == before, scan.summary
    assert f"{total - before:,} sequential scans by ccops itself" in scan.summary

    for finding in pg.slow_queries(ctx, limit=50) + pg.top_queries_by_total_time(ctx, limit=50):
        queries = finding.data["query"].tolist()
        assert not [q for q in queries if q.lstrip().startswith("/* ccops */")], queries
        assert not [q for q in queries if q.upper().startswith("COPY ")], queries
        assert not [q for q in queries if "pg_catalog" in q and "pg_dump" not in q and "agent_logs" not in q], queries
        assert any("error_message IS NOT NULL" in q for q in queries), queries
        app = finding.data[finding.data["query"].str.contains("error_message IS NOT NULL")].iloc[0]
        assert int(app["calls"]) == APP_SCANS
        assert "left out, as not the app's:" in finding.summary
        assert "dump COPY" not in finding.summary or "measured" in finding.summary


def test_ledger_ignores_counters_reset_since(busy_database, pg_cluster):
    url, dbname = busy_database
    settings = load_settings()
    create_backup(settings)
    assert selfstats.read_ledger(selfstats.ledger_path(settings.home, url))["tables"]
    psql(pg_cluster, dbname, "SELECT pg_stat_reset()")
    app_session(url, "SELECT count(*) FROM agent_logs WHERE error_message IS NOT NULL")
    ctx = RunContext(runbook="t", settings=settings, as_of=datetime.now())
    [scan] = pg.sequential_scan_heavy_tables(ctx, min_rows=0)  # pg_stat_reset zeroes n_live_tup as well
    assert int(scan.data.set_index("table").loc["agent_logs", "seq_scan"]) == 1
    assert "no sequential scan of ccops' own was recorded" in scan.summary
    assert selfstats.ledger_path(settings.home, url).exists()
