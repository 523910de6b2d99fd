"""Maintenance against the real test cluster: dead tuples, bloated indexes and failed rebuilds made for real."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ccops.actions import maintenance
from ccops.checks import postgres as pg
from ccops.core.context import RunContext
from ccops.core.db import normalize_url
from ccops.core.settings import Settings
from tests.helpers import autocommit, row

AS_OF = datetime(2026, 11, 20, 18, 0, 0)


run = autocommit


def dead_tuples(url: str, table: str) -> int:
    return row(url, f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{table}'")[0]


@pytest.fixture
def churned(make_database) -> str:
    """`churn`: 5,000 live and 15,000 dead tuples with autovacuum off; `calm`: a few dead tuples only."""
    url = make_database("ccops")
    run(
        url,
        "CREATE TABLE churn (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)",
        "INSERT INTO churn SELECT g, g FROM generate_series(1, 20000) g",
        "CREATE TABLE calm (id int) WITH (autovacuum_enabled = false)",
        "INSERT INTO calm SELECT g FROM generate_series(1, 1000) g",
    )
    run(url, "DELETE FROM churn WHERE id > 5000", "DELETE FROM calm WHERE id <= 10")
    assert dead_tuples(url, "churn") == 15000
    return url


def test_vacuum_dry_run_changes_nothing_then_vacuum_removes_dead_tuples(churned):
    settings = Settings(database_url=churned)
    dry = maintenance.vacuum_analyze(settings, dry_run=True)
    assert [a.object for a in dry.actions] == ["public.churn"], "calm has 1% dead: below min_dead_ratio"
    assert dry.actions[0].status == "would run" and dry.actions[0].before["n_dead_tup"] == 15000
    assert dead_tuples(churned, "churn") == 15000
    assert row(churned, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'churn'")[0] is None
    [finding] = dry.to_findings()
    assert finding.check == "maintenance.vacuum" and finding.status.value == "INFO"
    assert finding.summary.startswith("dry run: would VACUUM (ANALYZE) 1 object(s) (public.churn)")

    done = maintenance.vacuum_analyze(settings, dry_run=False)
    [action] = done.actions
    assert action.status == "done" and action.duration_s is not None
    assert action.before["n_dead_tup"] == 15000 and action.after["n_dead_tup"] == 0
    assert action.after["n_live_tup"] == 5000
    assert dead_tuples(churned, "churn") == 0
    assert dead_tuples(churned, "calm") == 10, "a table that did not need it was left alone"
    [finding] = done.to_findings()
    assert finding.status.value == "OK" and "dead tuples 15,000 -> 0" in finding.summary
    assert set(finding.data.columns) >= {"object", "status", "n_dead_tup_before", "n_dead_tup_after",
                                         "table_bytes_before", "table_bytes_after", "duration_s"}

    again = maintenance.vacuum_analyze(settings, dry_run=False)
    assert again.actions == [] and again.to_findings()[0].summary.startswith("nothing to do")


def test_vacuum_named_tables_and_a_busy_table(churned):
    settings = Settings(database_url=churned, lock_timeout_ms=200)
    engine = create_engine(normalize_url(churned), poolclass=NullPool)
    with engine.connect() as holder:
        holder.execute(text("LOCK TABLE churn IN SHARE MODE"))  # conflicts with VACUUM's lock
        report = maintenance.vacuum_analyze(settings, tables=["churn", "calm", "no_such_table"], dry_run=False)
        holder.rollback()
    engine.dispose()
    status = {a.object: a.status for a in report.actions}
    assert status == {"no_such_table": "skipped: no such table", "public.churn": "skipped: table busy",
                      "public.calm": "done"}
    assert dead_tuples(churned, "churn") == 15000 and dead_tuples(churned, "calm") == 0
    [finding] = report.to_findings()
    assert finding.status.value == "WARNING"
    assert "public.churn: skipped: table busy - lock not granted within 200 ms" in finding.summary


@pytest.fixture
def bloated(make_database) -> str:
    """`sparse`: 100k rows with nine in ten deleted and vacuumed, so both indexes are mostly empty pages."""
    url = make_database("ccops")
    run(
        url,
        "CREATE TABLE sparse (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)",
        "INSERT INTO sparse SELECT g, g FROM generate_series(1, 100000) g",
        "CREATE INDEX sparse_v ON sparse (v)",
        "DELETE FROM sparse WHERE id % 10 <> 0",
        "VACUUM ANALYZE sparse",
    )
    return url


def index_state(url: str, name: str):
    return row(url, f"SELECT '{name}'::regclass::oid, pg_relation_size('{name}')")


def test_reindex_rebuilds_bloated_indexes_concurrently_and_they_shrink(bloated):
    settings = Settings(database_url=bloated)
    oid_before, size_before = index_state(bloated, "sparse_v")

    dry = maintenance.reindex_bloated(settings, min_size_bytes=100_000, dry_run=True)
    assert {a.object for a in dry.actions} == {"public.sparse_v", "public.sparse_pkey"}
    assert index_state(bloated, "sparse_v") == (oid_before, size_before), "dry run rebuilt nothing"

    done = maintenance.reindex_bloated(settings, min_size_bytes=100_000, dry_run=False)
    actions = {a.object: a for a in done.actions}
    oid_after, size_after = index_state(bloated, "sparse_v")
    assert actions["public.sparse_v"].status == "done"
    assert oid_after != oid_before, "a new index replaced the old one"
    assert size_after < size_before * 0.3
    assert actions["public.sparse_v"].before["size_bytes"] == size_before
    assert actions["public.sparse_v"].after["size_bytes"] == size_after
    assert row(bloated, "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'sparse'::regclass")[0]
    [finding] = done.to_findings()
    assert finding.check == "maintenance.reindex" and finding.status.value == "OK"

    assert maintenance.reindex_bloated(settings, min_size_bytes=100_000, dry_run=False).actions == []


def test_reindex_uses_pgstatindex_when_installed(bloated):
    run(bloated, "CREATE EXTENSION pgstattuple")
    report = maintenance.reindex_bloated(Settings(database_url=bloated), min_size_bytes=100_000, dry_run=True)
    assert "pgstatindex" in report.note
    assert all("leaf density" in a.reason for a in report.actions) and len(report.actions) == 2


def test_a_rebuild_that_times_out_half_way_leaves_no_ccnew_behind(bloated):
    """An old snapshot makes REINDEX CONCURRENTLY wait after building the new index; lock_timeout fires."""
    settings = Settings(database_url=bloated, lock_timeout_ms=300)
    engine = create_engine(normalize_url(bloated), poolclass=NullPool)
    with engine.connect() as holder:
        holder.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        holder.execute(text("SELECT txid_current(), count(*) FROM agent_logs")).first()
        report = maintenance.reindex_bloated(settings, min_size_bytes=100_000, dry_run=False)
        holder.rollback()
    engine.dispose()
    assert {a.status for a in report.actions} == {"skipped: table busy"}
    assert any("dropped the leftover public.sparse_v_ccnew" in a.error for a in report.actions)
    leftovers = row(bloated, "SELECT count(*) FROM pg_class WHERE relname ~ '_ccnew'")[0]
    assert leftovers == 0
    assert row(bloated, "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'sparse'::regclass")[0]
    assert report.to_findings()[0].status.value == "WARNING"


@pytest.fixture
def with_leftovers(make_database) -> str:
    """Real invalid indexes: a failed concurrent build named like a REINDEX leftover, and a plain one."""
    url = make_database("ccops")
    run(url, "CREATE TABLE t (col int)", "INSERT INTO t VALUES (1), (1), (2)")
    for name in ("t_col_idx_ccnew", "t_col_uq"):
        with pytest.raises(Exception, match="could not create unique index"):
            run(url, f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON t (col)")
    return url


def ctx_for(url: str) -> RunContext:
    return RunContext(runbook="t", settings=Settings(database_url=url), as_of=AS_OF)


def index_names(url: str) -> set[str]:
    found = row(url, "SELECT array_agg(indexrelid::regclass::text) FROM pg_index WHERE indrelid = 't'::regclass")[0]
    return set(found or [])


def test_invalid_leftover_is_found_and_dropped_only_with_confirm(with_leftovers):
    url = with_leftovers
    valid = row(url, "SELECT bool_or(indisvalid) FROM pg_index WHERE indrelid = 't'::regclass")[0]
    assert valid is False and index_names(url) == {"t_col_idx_ccnew", "t_col_uq"}

    ctx = ctx_for(url)
    [check] = pg.invalid_indexes(ctx)
    flags = check.data.set_index("index")["rebuild_leftover"].to_dict()
    assert flags == {"t_col_idx_ccnew": True, "t_col_uq": False}
    assert check.status.value == "WARNING"

    [dry] = maintenance.drop_invalid_indexes(ctx)
    assert dry.status.value == "INFO" and "public.t_col_idx_ccnew" in dry.summary
    [unconfirmed] = maintenance.drop_invalid_indexes(ctx, dry_run=False)
    assert "needs confirm=True" in unconfirmed.summary
    assert index_names(url) == {"t_col_idx_ccnew", "t_col_uq"}, "nothing dropped without confirm"

    [dropped] = maintenance.drop_invalid_indexes(ctx, dry_run=False, confirm=True)
    assert dropped.status.value == "OK" and dropped.check == "maintenance.invalid_indexes"
    assert index_names(url) == {"t_col_uq"}, "only the REINDEX leftover goes; a failed build is the owner's call"
    assert [f.check for f in ctx.findings] == ["postgres.invalid_indexes"] + ["maintenance.invalid_indexes"] * 3


def test_notebook_steps_default_to_dry_run(churned):
    ctx = ctx_for(churned)
    [finding] = maintenance.vacuum(ctx)
    assert finding.status.value == "INFO" and dead_tuples(churned, "churn") == 15000
    [finding] = maintenance.vacuum(ctx, dry_run=False)
    assert finding.status.value == "OK" and dead_tuples(churned, "churn") == 0
    oid_before = index_state(churned, "churn_pkey")
    [finding] = maintenance.reindex(ctx, min_size_bytes=100_000)  # three quarters of the keys are gone
    assert finding.status.value == "INFO" and "public.churn_pkey" in finding.summary
    assert index_state(churned, "churn_pkey") == oid_before


def test_unreachable_database_is_an_unknown_finding_not_a_traceback():
    ctx = ctx_for("postgresql://nobody:secret@127.0.0.1:1/none")
    [finding] = maintenance.vacuum(ctx, dry_run=False)
    assert finding.status.value == "UNKNOWN" and "secret" not in finding.summary
