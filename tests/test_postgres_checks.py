"""PostgreSQL checks against the real test cluster, on objects each test plants itself.

Statistics in PostgreSQL 15 live in shared memory but a backend flushes its
counters lazily; `run()` ends every batch with pg_stat_force_next_flush(), whose
flush happens before the server answers the next statement, so each
assertion reads exact counters without sleeping.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ccops.checks import postgres as pg
from ccops.checks.postgres.indexes import find_duplicates
from ccops.checks.postgres.tables import filter_columns
from ccops.core import localpg
from ccops.core.context import RunContext
from ccops.core.db import normalize_url
from ccops.core.settings import Settings
from tests.helpers import autocommit, scalar

AS_OF = datetime(2026, 11, 20, 18, 0, 0)


run = autocommit
value = scalar


def make_ctx(url: str, **settings) -> RunContext:
    return RunContext(runbook="t", settings=Settings(database_url=url, **settings), as_of=AS_OF)


@pytest.fixture(scope="module")
def planted(make_database) -> str:
    """A database with the app's tables plus objects each monthly check must find."""
    url = make_database("ccops")
    run(
        url,
        """CREATE TABLE events (id serial PRIMARY KEY, kind text, created_at timestamp, ref int UNIQUE,
                                payload text) WITH (autovacuum_enabled = false)""",
        """INSERT INTO events (kind, created_at, payload)
           SELECT 'k' || (g % 50), timestamp '2026-01-01' + g * interval '1 minute', repeat('p', 200)
           FROM generate_series(1, 20000) g""",
    )
    run(  # a second session: the insert's counters are flushed before ANALYZE sets n_live_tup
        url,
        "CREATE INDEX events_kind_idx ON events (kind)",
        "CREATE INDEX events_kind_created_idx ON events (kind, created_at)",
        "CREATE INDEX events_kind_created_copy ON events (kind, created_at)",
        "CREATE INDEX events_kind_recent ON events (kind) WHERE created_at > '2026-01-05'",
        "CREATE INDEX events_kind_desc ON events (kind DESC)",
        "CREATE TABLE dupe_vals (v int)",
        "INSERT INTO dupe_vals VALUES (1), (1)",
        "CREATE TABLE counters (id serial PRIMARY KEY)",
        "CREATE TABLE wide_counters (id bigserial PRIMARY KEY)",
        "CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
        "SELECT setval('counters_id_seq', 1800000000)",
        "SELECT setval('wide_counters_id_seq', 1800000000)",
        "SELECT setval('ident_id_seq', 1200000000)",
        "ANALYZE events",
    )
    with pytest.raises(Exception, match="could not create unique index"):
        run(url, "CREATE UNIQUE INDEX CONCURRENTLY dupe_vals_v_uq ON dupe_vals (v)")
    for _ in range(3):
        run(url, "SELECT count(*) FROM events WHERE created_at > '2026-01-10'")
    return url


def test_largest_tables_and_database_sizes(planted):
    ctx = make_ctx(planted)
    [finding] = pg.largest_tables(ctx, limit=5)
    frame = finding.data
    assert finding.status.value == "OK" and len(frame) == 5
    top = frame.iloc[0]
    assert top["table"] == "events"
    assert top["total_bytes"] == value(planted, "SELECT pg_total_relation_size('events')")
    assert top["index_bytes"] == value(planted, "SELECT pg_indexes_size('events')")
    assert top["table_bytes"] + top["index_bytes"] + top["toast_bytes"] <= top["total_bytes"]
    assert top["rows_estimate"] == 20000
    assert "largest table events" in finding.summary

    [sizes] = pg.database_sizes(ctx)
    dbname = planted.rsplit("/", 1)[1]
    row = sizes.data.set_index("database").loc[dbname]
    assert bool(row["current"]) and row["encoding"] == "UTF8" and row["owner"] == "postgres"
    # A live database changes size on its own (autovacuum truncates, the free
    # space map grows), so the reported size must match a fresh reading closely,
    # not to the byte; a wrong column (a table's size, another database's) is
    # off by far more than 2%.
    fresh = value(planted, "SELECT pg_database_size(current_database())")
    assert abs(int(row["size_bytes"]) - fresh) <= 0.02 * fresh
    assert {"postgres", "template1", dbname} <= set(sizes.data["database"])


def test_table_maintenance_flags_tables_autovacuum_does_not_keep_up_with(make_database):
    url = make_database("ccops")
    run(
        url,
        "CREATE TABLE churn (id int, v text) WITH (autovacuum_enabled = false)",
        "INSERT INTO churn SELECT g, 'x' FROM generate_series(1, 5000) g",
        "DELETE FROM churn WHERE id <= 3000",
        "CREATE TABLE calm (id int) WITH (autovacuum_enabled = false)",
        "INSERT INTO calm SELECT g FROM generate_series(1, 100) g",
        "DELETE FROM calm WHERE id <= 60",  # 60% dead, but too few to matter
    )
    [finding] = pg.table_maintenance(make_ctx(url))
    table = finding.data.set_index("table")
    assert finding.status.value == "WARNING" and finding.value == 1
    assert table.loc["churn", "n_dead_tup"] == 3000 and table.loc["churn", "n_live_tup"] == 2000
    assert table.loc["churn", "dead_ratio"] == 0.6
    assert bool(table.loc["churn", "needs_vacuum"]) and not bool(table.loc["calm", "needs_vacuum"])
    assert "churn (3,000 dead, 60%)" in finding.summary and "autovacuum is disabled on" in finding.summary

    [relaxed] = pg.table_maintenance(make_ctx(url), dead_ratio_warning=0.7)
    assert relaxed.status.value == "OK"


def test_bloat_by_estimate_then_by_pgstatindex(make_database):
    url = make_database("ccops")
    run(
        url,
        "CREATE TABLE sparse (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)",
        "INSERT INTO sparse SELECT g, g FROM generate_series(1, 100000) g",
        "CREATE INDEX sparse_v ON sparse (v)",
        "DELETE FROM sparse WHERE id % 10 <> 0",  # every page keeps a tenth of its entries
        "VACUUM ANALYZE sparse",
    )
    found = {f.check: f for f in pg.bloat_estimate(make_ctx(url), min_bloat_bytes=100_000)}
    indexes = found["postgres.bloat.indexes"].data.set_index("index")
    assert set(indexes["method"]) == {"estimate"}
    assert indexes.loc["sparse_v", "bloat_ratio"] > 0.8
    assert indexes.loc["sparse_v", "size_bytes"] == value(url, "SELECT pg_relation_size('sparse_v')")
    assert found["postgres.bloat.indexes"].status.value == "CRITICAL"
    assert "public.sparse_v" in found["postgres.bloat.indexes"].summary
    tables = found["postgres.bloat.tables"].data.set_index("table")
    assert tables.loc["sparse", "bloat_ratio"] > 0.8

    [quiet, _] = pg.bloat_estimate(make_ctx(url))  # default: 10 MB to gain before it matters
    assert quiet.status.value == "OK"

    run(url, "CREATE EXTENSION pgstattuple")
    exact = pg.bloat_estimate(make_ctx(url), min_bloat_bytes=100_000)[0]
    rows = exact.data.set_index("index")
    assert rows.loc["sparse_v", "method"] == "pgstatindex"
    assert rows.loc["sparse_v", "avg_leaf_density"] < 15  # a tenth of a 90%-full page
    assert rows.loc["sparse_v", "bloat_ratio"] > 0.8
    assert "pgstatindex" in exact.summary


def test_slow_query_is_found_for_this_database_only(planted, pg_cluster):
    run(planted, "SELECT pg_sleep(0.2), count(*) FROM agent_logs")
    run(pg_cluster.url("postgres"), "SELECT pg_sleep(0.01) AS other_database_marker")
    ctx = make_ctx(planted)
    pg.slow_queries(ctx)  # ccops' own catalog reads must not show up in the next call
    [finding] = pg.slow_queries(ctx, limit=50)
    frame = finding.data
    sleeper = frame[frame["query"].str.contains("pg_sleep")]
    assert len(sleeper) == 1
    assert sleeper.iloc[0]["mean_ms"] >= 200 and sleeper.iloc[0]["calls"] == 1
    assert list(frame["mean_ms"]) == sorted(frame["mean_ms"], reverse=True), "ordered by mean time"
    assert not frame["query"].str.contains("other_database_marker").any()
    assert not frame["query"].str.contains("ccops|pg_stat_statements|statement_timeout", regex=True).any()
    assert {"total_ms", "mean_ms", "max_ms", "rows", "shared_blks_hit", "shared_blks_read"} <= set(frame.columns)
    assert finding.status.value == "OK", "one call is not a trend at min_calls=10"

    [strict] = pg.slow_queries(ctx, warning_mean_ms=100, min_calls=1)
    assert strict.status.value == "WARNING" and strict.value >= 200

    [top] = pg.top_queries_by_total_time(ctx, limit=20)
    assert top.status.value == "INFO"
    assert top.data["query"].str.contains("pg_sleep").any()
    assert list(top.data["total_ms"]) == sorted(top.data["total_ms"], reverse=True)

    [bad] = pg.slow_queries(ctx, order_by="calls")
    assert bad.status.value == "UNKNOWN" and "order_by" in bad.summary


def test_pg_stat_statements_not_created_says_how_to_fix(make_database):
    url = make_database("ccops")
    run(url, "DROP EXTENSION pg_stat_statements")
    dbname = url.rsplit("/", 1)[1]
    [finding] = pg.slow_queries(make_ctx(url))
    assert finding.status.value == "UNKNOWN"
    assert f"CREATE EXTENSION pg_stat_statements; in database {dbname}" in finding.summary
    assert "restart" not in finding.summary, "it is preloaded here: no restart needed"
    [seq] = pg.sequential_scan_heavy_tables(make_ctx(url))
    assert seq.status.value == "OK"


@pytest.fixture(scope="module")
def unpreloaded(tmp_path_factory) -> localpg.Cluster:
    """A second small cluster whose shared_preload_libraries is empty (the last setting in the file wins)."""
    cluster = localpg.Cluster(tmp_path_factory.mktemp("nopreload") / "pg")
    cluster.start()
    conf = Path(cluster.status().datadir) / "postgresql.conf"
    with open(conf, "a", encoding="utf-8") as handle:
        handle.write("\nshared_preload_libraries = ''\n")
    cluster.stop()
    cluster.start()
    yield cluster
    cluster.destroy()


def test_pg_stat_statements_not_preloaded_says_how_to_fix(unpreloaded):
    assert unpreloaded.psql("SHOW shared_preload_libraries").strip() == ""
    [created] = pg.slow_queries(make_ctx(unpreloaded.url("postgres")))
    assert created.status.value == "UNKNOWN"
    assert "created in postgres but not loaded" in created.summary
    assert "shared_preload_libraries" in created.summary and "restart PostgreSQL" in created.summary

    url = unpreloaded.create_database("bare")
    unpreloaded.psql("DROP EXTENSION pg_stat_statements", dbname="bare")
    [missing] = pg.top_queries_by_total_time(make_ctx(url))
    assert missing.status.value == "UNKNOWN"
    text_ = missing.summary
    assert text_.index("shared_preload_libraries") < text_.index("restart PostgreSQL") < text_.index(
        "CREATE EXTENSION pg_stat_statements; in database bare")


def test_unused_duplicate_and_invalid_indexes(planted):
    ctx = make_ctx(planted)
    [unused] = pg.unused_indexes(ctx)
    names = set(unused.data["index"])
    assert {"events_kind_idx", "events_kind_created_idx", "events_kind_created_copy"} <= names
    assert not names & {"events_pkey", "events_ref_key", "dupe_vals_v_uq"}, "enforcing and invalid indexes stay out"
    assert unused.status.value == "INFO" and "never reset" in unused.summary
    assert (unused.data["idx_scan"] == 0).all()

    [dupes] = pg.duplicate_indexes(ctx)
    found = {row.index: (row.kind, row.covered_by) for row in dupes.data.itertuples()}
    assert found == {  # the first covering index by name; of two copies the later name goes
        "events_kind_idx": ("prefix", "events_kind_created_copy"),
        "events_kind_created_idx": ("exact duplicate", "events_kind_created_copy"),
    }
    assert dupes.status.value == "WARNING"
    # a partial index and a DESC index are not redundant with the plain ones
    assert "events_kind_recent" not in found and "events_kind_desc" not in found

    [invalid] = pg.invalid_indexes(ctx)
    assert value(planted, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'dupe_vals_v_uq'::regclass") is False
    row = invalid.data.set_index("index").loc["dupe_vals_v_uq"]
    assert invalid.status.value == "WARNING" and not row["rebuild_leftover"] and not row["build_in_progress"]
    assert "dupe_vals_v_uq (failed build)" in invalid.summary


def test_duplicate_rules_on_rows():
    """The pairing rules on hand-made catalog rows: uniqueness and constraints decide which copy goes."""
    import pandas as pd

    def idx(name, cols, unique=False, primary=False, constraint=None, include=(), predicate=None, method="btree"):
        columns = list(cols) + list(include)
        return {"table_oid": 1, "schema": "public", "table": "t", "index": name, "qualified": f"public.{name}",
                "method": method, "is_unique": unique, "is_primary": primary, "constraint_name": constraint,
                "key_count": len(cols), "columns": columns, "opclasses": " ".join("1978" for _ in columns),
                "collations": " ".join("0" for _ in cols), "options": " ".join("0" for _ in cols),
                "predicate": predicate, "size_bytes": 8192}

    frame = pd.DataFrame([
        idx("t_pkey", ["id"], unique=True, primary=True, constraint="t_pkey"),
        idx("t_id_plain", ["id"]),
        idx("t_a_uq", ["a"], unique=True, constraint="t_a_uq"),
        idx("t_a_b", ["a", "b"]),
        idx("t_c_incl", ["c"], include=["d"]),
        idx("t_c_e", ["c", "e"]),
        idx("t_g_gin", ["g"], method="gin"),
        idx("t_g_h", ["g", "h"], method="gin"),
    ])
    found = {row.index: (row.kind, row.covered_by) for row in find_duplicates(frame).itertuples()}
    assert found == {"t_id_plain": ("exact duplicate", "t_pkey")}, found


def test_sequential_scans_with_a_where_column_hint(planted):
    [finding] = pg.sequential_scan_heavy_tables(make_ctx(planted))
    row = finding.data.set_index("table").loc["events"]
    assert finding.status.value == "WARNING"
    assert row["seq_scan"] >= 3 and row["idx_scan"] == 0 and row["n_live_tup"] == 20000
    assert row["seq_tup_read"] >= 3 * 20000
    assert row["hint"] == "top statements filter on created_at, which no index starts with"
    [none] = pg.sequential_scan_heavy_tables(make_ctx(planted), min_rows=1_000_000)
    assert none.status.value == "OK"


def test_filter_columns_parser():
    query = 'SELECT * FROM events e WHERE e."created_at" > $1 AND kind IN ($2) OR (status = $3) ORDER BY id'
    assert filter_columns(query) == ["created_at", "kind", "status"]
    assert filter_columns("SELECT count(*) FROM events") == []


def test_sequence_exhaustion_uses_the_column_type(planted):
    [finding] = pg.sequence_exhaustion(make_ctx(planted))
    table = finding.data.set_index("table")
    assert finding.status.value == "CRITICAL"
    assert table.loc["counters", "pct_used"] == pytest.approx(100 * 1_800_000_000 / 2_147_483_647, abs=1e-3)
    assert table.loc["counters", "remaining"] == 2_147_483_647 - 1_800_000_000
    assert table.loc["ident", "pct_used"] == pytest.approx(55.879, abs=1e-3)
    assert table.loc["wide_counters", "pct_used"] < 0.001, "bigint range"
    assert table.loc["events", "max_value"] == 2_147_483_647
    assert "counters.id 83.8%" in finding.summary and "ident.id 55.9%" in finding.summary

    [warning] = pg.sequence_exhaustion(make_ctx(planted), critical_pct=90)
    assert warning.status.value == "WARNING"


def test_connections_flag_idle_in_transaction(planted):
    engine = create_engine(normalize_url(planted), poolclass=NullPool)
    with engine.connect() as holder:
        holder.execute(text("SELECT count(*) FROM events")).scalar()  # transaction left open
        pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        time.sleep(0.4)
        found = {f.check: f for f in pg.connections(make_ctx(planted), idle_in_transaction_warning_s=0.2)}
        holder.rollback()
    engine.dispose()
    idle = found["postgres.idle_in_transaction"]
    assert idle.status.value == "WARNING" and pid in set(idle.data["pid"])
    assert "idle in transaction" in set(found["postgres.connections"].data["state"])
    assert found["postgres.connections"].status.value == "OK"
    [_, calm] = pg.connections(make_ctx(planted))
    assert calm.status.value == "OK"


def test_idle_sessions_last_query_is_masked_before_it_is_cut(planted):
    """pg_stat_activity's text is the session's own: a password in it never reaches a report."""
    engine = create_engine(normalize_url(planted), poolclass=NullPool)
    statement = "SELECT count(*) FROM events /* ALTER ROLE app PASSWORD 'sekrit-idle-42' */ /* " + "x" * 400 + " */"
    with engine.connect() as holder:
        holder.execute(text(statement)).scalar()
        time.sleep(0.4)
        found = {f.check: f for f in pg.connections(make_ctx(planted), idle_in_transaction_warning_s=0.2)}
        holder.rollback()
    engine.dispose()
    shown = " ".join(found["postgres.idle_in_transaction"].data["last_query"])
    assert "PASSWORD '***'" in shown and "sekrit" not in shown
    assert max(len(q) for q in found["postgres.idle_in_transaction"].data["last_query"]) <= 200


def test_every_check_runs_on_an_empty_production_database(make_database):
    ctx = make_ctx(make_database("production"))
    for fn in pg.WEEKLY + pg.MONTHLY:
        fn(ctx)
    assert ctx.findings, "every check recorded its findings"
    failures = [str(f) for f in ctx.findings if f.status.value == "UNKNOWN"]
    assert failures == []
    statuses = {f.check: f.status.value for f in ctx.findings}
    assert statuses["postgres.sequences"] == "OK" and statuses["postgres.invalid_indexes"] == "OK"
    assert statuses["postgres.duplicate_indexes"] == "OK"
