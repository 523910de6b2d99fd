"""Hostile names: no table, index or schema name read from the catalog is ever spliced into SQL.

A database of the real production schema gets tables and indexes named the way an
attacker (or a careless migration) names them: a double quote, the quote-and-function
attack `a",public.pwn()"b` made by an unprivileged role that owns `public.pwn()`,
spaces, Mixed Case, 63 bytes, non-ASCII, and a colon and a percent sign (SQLAlchemy's
text() reads `:word` as a bind parameter, psycopg reads `%s` as a placeholder). Then
ccops runs over it what an operator runs: backup, verify, restore test, the weekly
maintenance (dry run, then confirmed), the weekly and monthly database checks, the
quarterly capacity figures, the corruption runbook's steps (and the runbook itself,
once, with an index of a hostile name damaged on disk) and the monthly clean-up. Every
step must succeed, and `pwn()` must never run: it writes a row to `pwn_log` when it
does (and, in a read-only session, fails the statement that called it).
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from ccops import backup
from ccops.actions import cleanup, maintenance
from ccops.actions.emergency import corruption
from ccops.analytics import capacity
from ccops.checks import integrity
from ccops.checks import postgres as pg
from ccops.core import localpg
from ccops.core.context import RunContext
from ccops.core.db import dispose_all, libpq_url
from ccops.core.findings import Status
from ccops.core.settings import Settings, load_settings
from ccops.runbook import runner
from tests.conftest import PRODUCTION_ROLE, restore_production_schema

REPO = Path(__file__).resolve().parent.parent
AS_OF = datetime(2026, 11, 20, 18, 0, 0)
MALLORY = "ccops_mallory"
PWN_TABLE = 'a",public.pwn()"b'
LONG_TABLE = "long_" + "n" * 58
LONG_INDEX = "ix_" + "y" * 60
# table -> its index (every table also has a primary key, named by PostgreSQL from the table's name)
HOSTILE = {
    'odd"name': 'odd"name_ix',
    PWN_TABLE: 'i",public.pwn()"x',
    "with space": "with space ix",
    "MixedCase": "MixedCase_Ix",
    LONG_TABLE: LONG_INDEX,
    "tëst_ü": "ïx_tëst_ü",
    "col :on %s": "ix :on %(x)s",
}
LEFTOVER = 'p",public.pwn()"q_ccnew'  # an invalid index named like a failed REINDEX CONCURRENTLY's


def test_names_are_what_they_claim():
    assert len(LONG_TABLE.encode()) == 63 and len(LONG_INDEX.encode()) == 63


def execute(url: str, *statements: sql.Composable | str, params: tuple = ()) -> list[tuple]:
    rows: list[tuple] = []
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for statement in statements:
            cursor = conn.execute(statement, params or None)
            rows = cursor.fetchall() if cursor.description else []
    return rows


def pwn_calls(url: str) -> int:
    return execute(url, "SELECT count(*) FROM public.pwn_log")[0][0]


def qualified(name: str) -> str:
    """How the server spells public.<name> (format('%I.%I')): the `object` of a maintenance action."""
    return "public." + (name if name.islower() and name.replace("_", "").isalnum() and name.isascii()
                        else '"' + name.replace('"', '""') + '"')


def plant(url: str, rows: int = 20000) -> None:
    """The hostile tables with dead tuples (autovacuum off), fresh statistics, indexes, and pwn()."""
    t = sql.Identifier
    execute(url, sql.SQL(
        "DO $$ BEGIN CREATE ROLE {} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$").format(t(MALLORY)))
    execute(
        url,
        "CREATE TABLE public.pwn_log (who text, at timestamptz DEFAULT now())",
        "GRANT INSERT ON public.pwn_log TO PUBLIC",
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(t(MALLORY)),
    )
    for table, index in HOSTILE.items():
        owner = [sql.SQL("SET ROLE {}").format(t(MALLORY))] if table == PWN_TABLE else []
        if table == PWN_TABLE:
            owner.append("""CREATE FUNCTION public.pwn() RETURNS SETOF int LANGUAGE plpgsql AS $$
                BEGIN INSERT INTO public.pwn_log (who) VALUES (current_user); RETURN; END $$""")
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            for statement in owner:
                conn.execute(statement)
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int, ts timestamp) "
                                 "WITH (autovacuum_enabled = false)").format(t("public", table)))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, g % 100, timestamp '2026-11-01' + g * interval '1 minute' "
                                 "FROM generate_series(1, {}) g").format(t("public", table), sql.Literal(rows)))
            conn.execute(sql.SQL("CREATE INDEX {} ON {} (v, id)").format(t(index), t("public", table)))
            conn.execute(sql.SQL("DELETE FROM {} WHERE id % 4 <> 0").format(t("public", table)))
            conn.execute(sql.SQL("ANALYZE {}").format(t("public", table)))
            conn.execute("SELECT pg_stat_force_next_flush()")
            conn.execute("RESET ROLE")
    # A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an invalid index: named like a REINDEX leftover.
    with pytest.raises(psycopg.errors.UniqueViolation):
        execute(url, sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (v)").format(t(LEFTOVER), t("public", PWN_TABLE)))
    assert pwn_calls(url) == 0


@pytest.fixture(scope="module")
def hostile_db(make_database) -> str:
    url = make_database("production")
    plant(url)
    return url


@pytest.fixture
def env(hostile_db, ccops_env, monkeypatch) -> Settings:
    monkeypatch.setenv("CCOPS_DATABASE_URL", hostile_db)
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(ccops_env / "logs"))
    (ccops_env / "logs").mkdir()
    return load_settings()


def ctx_of(settings: Settings) -> RunContext:
    return RunContext(runbook="t", settings=settings, as_of=AS_OF)


def test_backup_verify_and_restore_test(env, hostile_db):
    made = backup.create_backup(env)
    assert made.verified, made.reason
    counts = made.manifest.get("row_counts") or made.manifest.get("counts") or {}
    assert counts, made.manifest
    for table in HOSTILE:
        assert any(table in str(key) for key in counts), f"{table!r} missing from the manifest's counts"
    assert backup.verify_backup(made.path).ok
    result = backup.restore_test(env, made.path)
    assert result.ok, result.counts
    assert pwn_calls(hostile_db) == 0


def test_weekly_maintenance_dry_run_then_confirmed(env, hostile_db):
    ctx = ctx_of(env)
    hostile_tables = {qualified(t) for t in HOSTILE}
    hostile_indexes = {qualified(i) for i in HOSTILE.values()}

    dry = maintenance.vacuum_analyze(env, dry_run=True)
    assert hostile_tables <= {a.object for a in dry.actions}
    assert {a.status for a in dry.actions} == {maintenance.PLANNED}
    reindex_dry = maintenance.reindex_bloated(env, min_size_bytes=64 * 1024, dry_run=True)
    assert hostile_indexes <= {a.object for a in reindex_dry.actions}, reindex_dry.to_findings()[0].summary
    leftovers = maintenance.drop_invalid_ccnew(env, dry_run=True)
    assert [a.object for a in leftovers.actions] == [qualified(LEFTOVER)]

    # the notebook's steps, confirmed
    for step in (maintenance.vacuum(ctx, dry_run=False),
                 maintenance.reindex(ctx, dry_run=False, min_size_bytes=64 * 1024),
                 maintenance.drop_invalid_indexes(ctx, dry_run=False, confirm=True)):
        [finding] = step
        assert finding.status == Status.OK, finding.summary
        assert set(finding.data["status"]) == {maintenance.DONE}, finding.data[["object", "status", "error"]]
    pwn_action = next(a for a in dry.actions if a.object == qualified(PWN_TABLE))
    assert pwn_action.action == 'VACUUM (ANALYZE) "public"."a"",public.pwn()""b"', "one identifier, quoted"
    dead = execute(hostile_db, "SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                   params=(list(HOSTILE),))
    assert len(dead) == len(HOSTILE) and all(n == 0 for _, n in dead), dead
    assert execute(hostile_db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid")[0][0] == 0
    assert pwn_calls(hostile_db) == 0


def test_weekly_and_monthly_database_checks_and_capacity(env, hostile_db):
    ctx = ctx_of(env)
    steps = [*pg.WEEKLY, *pg.MONTHLY]
    for step in steps:
        found = step(ctx)
        for finding in found if isinstance(found, list) else [found]:
            assert finding.status != Status.UNKNOWN or "pg_stat_statements" in finding.summary, finding.summary
            assert "error" not in finding.summary.lower() or "errors" in finding.summary.lower(), finding.summary
    with ctx.db() as conn:
        growth, _ = capacity.table_growth(conn, AS_OF, days=30, tables={t: "ts" for t in HOSTILE})
    assert sorted(growth["table"]) == sorted(HOSTILE)
    assert set(growth["rows"]) == {5000}
    assert pwn_calls(hostile_db) == 0


def test_corruption_steps_integrity_check_and_targeted_reindex(env, hostile_db):
    report = integrity.check_integrity(hostile_db)
    assert report.clean, report.indexes[~report.indexes["ok"]]
    names = set(report.indexes["index"])
    assert set(HOSTILE.values()) <= names
    results = integrity.reindex(hostile_db, sorted(HOSTILE.values()))
    assert [r["error"] for r in results if not r["ok"]] == []
    concurrent = integrity.reindex(hostile_db, sorted(HOSTILE.values()), concurrently=True)
    assert all(r["ok"] for r in concurrent), concurrent
    assert integrity.check_integrity(hostile_db).clean
    assert pwn_calls(hostile_db) == 0


def test_monthly_clean_up(env, hostile_db):
    ctx = ctx_of(env)
    for confirm in (False, True):
        for step in (cleanup.old_logs, cleanup.old_backups, cleanup.old_reports):
            for finding in step(ctx, dry_run=not confirm, confirm=confirm):
                assert finding.status in (Status.OK, Status.INFO), finding.summary
    assert pwn_calls(hostile_db) == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_emergency_dump_table_by_table_is_exact_private_and_stays_in_its_folder(make_database, tmp_path):
    """The full dump fails (one table the dumping role may not read), so every table is dumped alone:
    each by its exact name, into a file no name can steer, all of it 0600 in 0700 folders."""
    url = make_database("empty")
    plant(url, rows=200)
    tables = [*HOSTILE, "sl/ash", "../escape", "locked"]
    for table in ("sl/ash", "../escape", "locked"):
        execute(url, sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(table)),
                sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(table)))
    execute(url, "DO $$ BEGIN CREATE ROLE ccops_dumper LOGIN PASSWORD 'dumper-pw'; "
                 "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO ccops_dumper",
            'REVOKE SELECT ON public.locked FROM ccops_dumper')
    parts = urlsplit(libpq_url(url))
    dumper = f"postgresql://ccops_dumper:dumper-pw@{parts.hostname}:{parts.port}{parts.path}"

    dest = tmp_path / "backups" / "emergency"
    dump = corruption.emergency_dump(dumper, dest, tables)
    assert not dump.full and "(full dump)" in dump.failed
    assert set(dump.failed) - {"(full dump)", "(schema)"} == {"locked"}
    assert sorted(dump.saved) == sorted(set(tables) - {"locked"})
    assert not (tmp_path / "backups" / "escape.dump").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file() and dump.directory not in p.parents] == []
    index = json.loads((dump.directory / "tables.json").read_text(encoding="utf-8"))
    assert sorted(index.values()) == sorted(dump.saved)
    for name, table in index.items():
        listing = subprocess.run([str(localpg.find_bindir() / "pg_restore"), "--list", str(dump.directory / name)],
                                 capture_output=True, text=True, check=True).stdout
        data = [line for line in listing.splitlines() if " TABLE DATA " in line]
        assert len(data) == 1 and table in data[0], (table, listing)
    assert mode(dest) == 0o700 and mode(dump.directory) == 0o700
    files = [p for p in dump.directory.iterdir()]
    assert files and all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}
    assert pwn_calls(url) == 0


def test_corruption_runbook_repairs_a_damaged_index_of_a_hostile_name(tmp_path, ccops_env, monkeypatch):
    """One real run of the runbook: emergency dump, amcheck, targeted REINDEX, verify; dumps private."""
    from tests.test_integrity import damage_index_on_disk

    cluster = localpg.Cluster(tmp_path / "pg")
    cluster.start()
    try:
        url = cluster.create_database("content_creator")
        cluster.psql(f"CREATE ROLE {PRODUCTION_ROLE}")
        restore_production_schema(cluster, "content_creator")
        plant(url)
        damaged = 'odd"name_ix'
        damage_index_on_disk(cluster, url, sql.Identifier("public", damaged).as_string())
        monkeypatch.setenv("CCOPS_DATABASE_URL", cluster.url("content_creator"))
        monkeypatch.setenv("CCOPS_BACKEND", "none")
        monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))

        record = runner.run_runbook(load_settings(), "emergency/database_corruption",
                                    [["dry_run", "False"], ["confirm", "True"]], timeout=300).record
        assert record["outcome"] not in ("failed", "timed-out"), record.get("error")
        found = {f["check"]: f for f in record["findings"]}
        assert found["integrity.indexes"]["status"] == "CRITICAL" and damaged in found["integrity.indexes"]["summary"]
        assert found["action.emergency_dump"]["status"] == "OK", found["action.emergency_dump"]["summary"]
        assert found["action.reindex"]["status"] == "OK", found["action.reindex"]["summary"]
        assert found["corruption.verify.indexes"]["status"] == "OK"
        emergency = ccops_env / "backups" / "emergency"
        [folder] = list(emergency.glob("emergency_*"))
        assert mode(emergency) == 0o700 and mode(folder) == 0o700
        assert (folder / "full.dump").stat().st_size > 0 and mode(folder / "full.dump") == 0o600
        assert pwn_calls(url) == 0
    finally:
        dispose_all()
        cluster.destroy()


def test_bandit_finds_no_sql_built_from_strings():
    """B608 (SQL built by string formatting) nowhere in ccops; constants-only SQL says why on its line."""
    bandit = Path(sys.executable).parent / "bandit"
    proc = subprocess.run([str(bandit), "-q", "-r", str(REPO / "ccops"), "-t", "B608", "-f", "json"],
                          capture_output=True, text=True, timeout=300)
    results = json.loads(proc.stdout)["results"]
    assert results == [], [(r["filename"], r["line_number"], r["code"]) for r in results]
