"""Corruption detection with amcheck, and repair of damaged indexes.

The guide's answer to corruption is `REINDEX DATABASE`: it blocks writers for
its whole run, cannot fix a damaged table, and says nothing about what was
wrong. ccops first finds out: `bt_index_check(heapallindexed => true)` on every
B-tree index (the index is consistent and indexes every heap tuple) and
`verify_heapam` on every table (PostgreSQL 14+). Only indexes that failed are
rebuilt; heap damage is reported for the restore path, because no REINDEX
repairs a table. Each object is checked in its own transaction so one
damaged index does not hide the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ccops.core.context import RunContext, check
from ccops.core.db import get_engine
from ccops.core.findings import Finding, Status
from ccops.core.sqlsafe import execute, ident

INDEXES_SQL = """
SELECT c.oid AS oid, c.relname AS index, t.relname AS "table", pg_relation_size(c.oid) AS bytes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_am am ON am.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'btree' AND n.nspname = 'public' AND i.indisvalid AND i.indisready
  AND c.relpersistence <> 't'
ORDER BY t.relname, c.relname
"""
TABLES_SQL = """
SELECT c.oid AS oid, c.relname AS "table"
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname = 'public' AND c.relpersistence <> 't'
ORDER BY c.relname
"""


@dataclass
class IntegrityReport:
    """What amcheck found: one row per index and per table, with the error if any."""

    indexes: pd.DataFrame
    tables: pd.DataFrame
    duration_s: float
    problems: list[str] = field(default_factory=list)

    @property
    def damaged_indexes(self) -> list[str]:
        return [] if self.indexes.empty else list(self.indexes.loc[~self.indexes["ok"], "index"])

    @property
    def damaged_tables(self) -> list[str]:
        return [] if self.tables.empty else list(self.tables.loc[~self.tables["ok"], "table"])

    @property
    def clean(self) -> bool:
        return not self.damaged_indexes and not self.damaged_tables and not self.problems


def amcheck_available(conn: Connection) -> bool:
    return bool(conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'")).scalar())


def check_integrity(url: str, statement_timeout_ms: int = 600_000, heap: bool = True) -> IntegrityReport:
    """Run amcheck over every B-tree index and (optionally) every table of the database at url."""
    started = time.monotonic()
    engine = get_engine(url)
    with engine.connect() as conn:
        if not amcheck_available(conn):
            raise RuntimeError("the amcheck extension is not installed in this database: "
                               "run CREATE EXTENSION amcheck; as a superuser")
        index_rows = [dict(r) for r in conn.execute(text(INDEXES_SQL)).mappings()]
        table_rows = [dict(r) for r in conn.execute(text(TABLES_SQL)).mappings()] if heap else []
        conn.rollback()
        for row in index_rows:
            row["error"] = _one(conn, "SELECT bt_index_check(index => :oid, heapallindexed => true)",
                                row["oid"], statement_timeout_ms)
        for row in table_rows:
            row["error"] = _heap(conn, row["oid"], statement_timeout_ms)
    indexes = pd.DataFrame(index_rows, columns=["oid", "index", "table", "bytes", "error"])
    tables = pd.DataFrame(table_rows, columns=["oid", "table", "error"])
    for frame in (indexes, tables):
        frame["ok"] = frame["error"].isna() | (frame["error"] == "")
    return IntegrityReport(indexes.drop(columns="oid"), tables.drop(columns="oid"), time.monotonic() - started)


def _one(conn: Connection, sql: str, oid: int, timeout_ms: int) -> str | None:
    try:
        with conn.begin():
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
            conn.execute(text(sql), {"oid": oid})
        return None
    except Exception as exc:  # noqa: BLE001 - the error text is the finding
        return _first_line(exc)


def _heap(conn: Connection, oid: int, timeout_ms: int) -> str | None:
    try:
        with conn.begin():
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout_ms)}"))
            rows = conn.execute(
                text("SELECT blkno, offnum, msg FROM verify_heapam(relation => :oid, on_error_stop => false) LIMIT 5"),
                {"oid": oid},
            ).fetchall()
        if rows:
            return "; ".join(f"block {r.blkno} offset {r.offnum}: {r.msg}" for r in rows)
        return None
    except Exception as exc:  # noqa: BLE001
        return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else exc.__class__.__name__


def reindex_statement(name: str, concurrently: bool = False, schema: str = "public") -> sql.Composed:
    """REINDEX INDEX [CONCURRENTLY] schema.name, the name composed as an identifier (never spliced)."""
    keyword = sql.SQL(" CONCURRENTLY") if concurrently else sql.SQL("")
    return sql.SQL("REINDEX INDEX{} {}").format(keyword, ident(schema, name))


def reindex(url: str, indexes: list[str], concurrently: bool = False, schema: str = "public") -> list[dict[str, Any]]:
    """Rebuild the named indexes of `schema` (as the catalog spells them), one statement each;
    returns what happened to each."""
    results = []
    engine = get_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in indexes:
            started = time.monotonic()
            try:
                execute(conn, reindex_statement(name, concurrently, schema))
                results.append({"index": name, "ok": True, "error": "", "seconds": round(time.monotonic() - started, 3)})
            except Exception as exc:  # noqa: BLE001 - reported per index
                results.append({"index": name, "ok": False, "error": _first_line(exc),
                                "seconds": round(time.monotonic() - started, 3)})
    return results


def report_findings(report: IntegrityReport) -> list[Finding]:
    found = []
    damaged = report.damaged_indexes
    if damaged:
        found.append(Finding("integrity.indexes", Status.CRITICAL,
                             f"{len(damaged)} of {len(report.indexes)} B-tree indexes fail amcheck: {', '.join(damaged)}",
                             len(damaged), 0, data=report.indexes[~report.indexes["ok"]].reset_index(drop=True)))
    else:
        found.append(Finding("integrity.indexes", Status.OK,
                             f"all {len(report.indexes)} B-tree indexes pass bt_index_check (heapallindexed) "
                             f"in {report.duration_s:.1f} s", 0, 0))
    tables = report.damaged_tables
    if tables:
        found.append(Finding("integrity.heap", Status.CRITICAL,
                             f"{len(tables)} tables have heap corruption (REINDEX cannot repair this: restore): "
                             f"{', '.join(tables)}", len(tables), 0,
                             data=report.tables[~report.tables["ok"]].reset_index(drop=True)))
    elif not report.tables.empty:
        found.append(Finding("integrity.heap", Status.OK,
                             f"all {len(report.tables)} tables pass verify_heapam", 0, 0))
    return found


@check("integrity.indexes")
def integrity_check(ctx: RunContext) -> list[Finding]:
    """amcheck over the configured database: damaged indexes and tables, by name."""
    report = check_integrity(ctx.settings.resolved_database_url())
    ctx.state["integrity_report"] = report
    return report_findings(report)
