"""amcheck over a database: which B-tree indexes and tables are damaged, by name.

In the foundation because two layers prove a database with it: the integrity
checks and the corruption runbook (on the live database), and the backup
engine's restore test (on a scratch database it just restored). One function,
so "clean" means the same thing in both places.

`bt_index_check(heapallindexed => true)` on every B-tree index (the index is
consistent and indexes every heap tuple) and `verify_heapam` on every table
(PostgreSQL 14+). Each object is checked in its own transaction so one damaged
index does not hide the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ccops.core.db import get_engine

if TYPE_CHECKING:  # pandas is imported where the report's frames are built: `ccops restore` and
    import pandas as pd  # `ccops backup` import this module and never build one (0.3-0.4 s of pandas)

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
    import pandas as pd

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
        return first_line(exc)


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
        return first_line(exc)


def first_line(exc: BaseException) -> str:
    """The server's own first line of an error (the driver's wrapper text says nothing an operator needs)."""
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else exc.__class__.__name__
