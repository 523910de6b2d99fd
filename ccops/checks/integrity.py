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
from typing import Any

from psycopg import sql

# amcheck itself lives in the foundation: the backup engine's restore test proves a scratch database with it too
from ccops.core.amcheck import IntegrityReport, amcheck_available, check_integrity
from ccops.core.amcheck import first_line as _first_line
from ccops.core.context import RunContext, check
from ccops.core.db import get_engine
from ccops.core.findings import Finding, Status
from ccops.core.sqlsafe import execute, ident

__all__ = ["IntegrityReport", "amcheck_available", "check_integrity", "integrity_check", "reindex",
           "reindex_statement", "report_findings"]

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
    ctx.results.integrity = report  # for the repair steps, when a runbook has them after this one
    return report_findings(report)
