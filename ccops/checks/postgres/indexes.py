"""Indexes: unused, duplicate and invalid ones, for the monthly optimisation review.

Every index costs on every write, so the monthly review looks for indexes
that never paid back (no scan since the statistics were reset), indexes made
redundant by another one on the same leading columns, and invalid indexes:
leftovers of a failed CREATE/REINDEX ... CONCURRENTLY that the planner never
uses but every INSERT still maintains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ccops.core.context import RunContext, check
from ccops.core.db import query_df, scalar
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import pretty_bytes, tagged, user_schemas
from ccops.core.sqlsafe import ident, render

# Names PostgreSQL gives the transient indexes of REINDEX ... CONCURRENTLY.
REBUILD_LEFTOVER = re.compile(r"_cc(new|old)[0-9]*$")

STATS_RESET_SQL = tagged("""
SELECT stats_reset, extract(epoch FROM now() - stats_reset)::float8 / 86400 AS days
FROM pg_stat_database WHERE datname = current_database()
""")

UNUSED_SQL = tagged("""
SELECT s.schemaname AS schema, s.relname AS "table", s.indexrelname AS index,
       format('%I.%I', s.schemaname, s.indexrelname) AS qualified,
       pg_relation_size(s.indexrelid) AS size_bytes,
       s.idx_scan,
       pg_get_indexdef(s.indexrelid) AS definition
FROM pg_stat_user_indexes s
JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0
  AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid)
ORDER BY size_bytes DESC, schema, "table", index
""")

INDEXES_SQL = tagged(f"""
SELECT i.indrelid AS table_oid,
       n.nspname AS schema, t.relname AS "table", c.relname AS index,
       format('%I.%I', n.nspname, c.relname) AS qualified,
       am.amname AS method,
       i.indisunique AS is_unique, i.indisprimary AS is_primary,
       (SELECT k.conname FROM pg_constraint k WHERE k.conindid = i.indexrelid LIMIT 1) AS constraint_name,
       i.indnkeyatts AS key_count,
       array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) k ORDER BY k)
         AS columns,
       i.indclass::text AS opclasses, i.indcollation::text AS collations, i.indoption::text AS options,
       pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_relation_size(i.indexrelid) AS size_bytes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE i.indisvalid AND {user_schemas("n")}
ORDER BY n.nspname, t.relname, c.relname
""")  # nosec B608 # module constants only, no catalog data

INVALID_SQL = tagged(f"""
SELECT n.nspname AS schema, t.relname AS "table", c.relname AS index,
       format('%I.%I', n.nspname, c.relname) AS qualified,
       i.indexrelid AS index_oid, i.indrelid AS table_oid,
       pg_relation_size(c.oid) AS size_bytes,
       i.indisready AS maintained_on_write,
       EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
               WHERE p.relid = i.indrelid
                 AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database()))
         AS build_in_progress,
       pg_get_indexdef(c.oid) AS definition
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND {user_schemas("n")}
ORDER BY n.nspname, t.relname, c.relname
""")  # nosec B608 # module constants only, no catalog data


def stats_reset_note(conn: Connection) -> tuple[str, float | None]:
    row = conn.execute(text(STATS_RESET_SQL)).first()
    if row is None or row.stats_reset is None:
        return "since statistics began (never reset)", None
    return f"since statistics were reset on {row.stats_reset:%Y-%m-%d %H:%M %Z}", float(row.days)


@check("postgres.unused_indexes")
def unused_indexes(ctx: RunContext, min_stats_days: float = 7.0) -> Finding:
    """Indexes never scanned since the statistics reset that enforce nothing (not unique, no constraint).

    INFO, not WARNING: an index used only by a quarterly report looks unused for
    months; the operator decides. Statistics younger than `min_stats_days` are
    called out, because then "never scanned" means little.
    """
    with ctx.db() as conn:
        frame = query_df(conn, UNUSED_SQL)
        since, days = stats_reset_note(conn)
    young = f"; statistics are only {days:.1f} days old, too young to judge" if days is not None and days < min_stats_days else ""
    if frame.empty:
        return Finding("postgres.unused_indexes", Status.OK, f"every non-unique index has been scanned {since}", 0)
    frame["size"] = frame["size_bytes"].map(pretty_bytes)
    frame["stats_since"] = since
    total = int(frame["size_bytes"].sum())
    names = ", ".join(frame["index"].head(8)) + (f" and {len(frame) - 8} more" if len(frame) > 8 else "")
    summary = f"{len(frame)} index(es) never scanned {since} ({pretty_bytes(total)}): {names}{young}"
    return Finding("postgres.unused_indexes", Status.INFO, summary, len(frame), data=frame)


@dataclass(frozen=True)
class _Index:
    table_oid: int
    qualified: str
    table: str
    name: str
    method: str
    is_unique: bool
    is_primary: bool
    constraint_name: str | None
    keys: tuple[tuple[str, str, str, str], ...]  # (definition, opclass, collation, option) per key column
    include: frozenset[str]
    columns: tuple[str, ...]
    predicate: str | None
    size_bytes: int

    @property
    def enforces(self) -> bool:
        return self.is_unique or self.is_primary or self.constraint_name is not None


def _parse(row) -> _Index:
    columns = tuple(row.columns)
    keys_n = int(row.key_count)
    opclasses, collations, options = (str(v).split() for v in (row.opclasses, row.collations, row.options))
    keys = tuple(
        (columns[k], opclasses[k] if k < len(opclasses) else "", collations[k] if k < len(collations) else "",
         options[k] if k < len(options) else "")
        for k in range(keys_n)
    )
    return _Index(
        int(row.table_oid), row.qualified, row.table, row.index, row.method, bool(row.is_unique),
        bool(row.is_primary), _text(row.constraint_name), keys, frozenset(columns[keys_n:]), columns,
        _text(row.predicate), int(row.size_bytes),
    )


def _text(value) -> str | None:
    """SQL NULL arrives as None or NaN depending on the column's other values: make it None."""
    return value if isinstance(value, str) else None


def find_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Pairs (redundant index, index that covers it) on the same table.

    Exact duplicate: same method, key columns (with opclass, collation and
    order), INCLUDE columns and predicate. The copy reported is the one that
    enforces nothing; when both or neither enforce, the later name, so each
    pair is reported once. Prefix: a non-unique B-tree whose key columns are a
    strict prefix of another B-tree's, with the same predicate and INCLUDE
    columns the other one has too: every query it serves, the longer one serves.
    """
    indexes = [_parse(row) for row in frame.itertuples(index=False)]
    by_table: dict[int, list[_Index]] = {}
    for index in indexes:
        by_table.setdefault(index.table_oid, []).append(index)
    found = []
    for group in by_table.values():
        for a in group:
            for b in group:
                if a is b or a.method != b.method or a.predicate != b.predicate:
                    continue
                kind = _redundancy(a, b)
                if kind:
                    found.append({
                        "table": a.table, "index": a.name, "qualified": a.qualified, "kind": kind,
                        "covered_by": b.name, "index_columns": ", ".join(a.columns),
                        "covering_columns": ", ".join(b.columns), "predicate": a.predicate,
                        "size_bytes": a.size_bytes, "constraint": a.constraint_name,
                        "suggestion": (f"ALTER TABLE ... DROP CONSTRAINT {render(ident(a.constraint_name))}" if a.constraint_name
                                       else f"DROP INDEX CONCURRENTLY {a.qualified};"),
                    })
                    break
    columns = ["table", "index", "qualified", "kind", "covered_by", "index_columns", "covering_columns",
               "predicate", "size_bytes", "constraint", "suggestion"]
    return pd.DataFrame(found, columns=columns)


def _redundancy(a: _Index, b: _Index) -> str:
    """How b makes a redundant: 'exact duplicate', 'prefix', or '' when it does not."""
    if a.keys == b.keys and a.include == b.include:
        if a.is_primary:
            return ""
        if b.is_primary:
            return "exact duplicate"
        rank_a, rank_b = (a.constraint_name is not None, a.is_unique), (b.constraint_name is not None, b.is_unique)
        if rank_a != rank_b:
            return "exact duplicate" if rank_b > rank_a else ""
        return "exact duplicate" if a.name > b.name else ""
    if a.method != "btree" or a.enforces or len(a.keys) >= len(b.keys):
        return ""
    if b.keys[: len(a.keys)] == a.keys and a.include <= set(b.columns):
        return "prefix"
    return ""


@check("postgres.duplicate_indexes")
def duplicate_indexes(ctx: RunContext) -> Finding:
    """Exact duplicates and indexes whose columns lead another index on the same table."""
    with ctx.db() as conn:
        frame = query_df(conn, INDEXES_SQL)
    if frame.empty:
        return Finding("postgres.duplicate_indexes", Status.OK, "no data: this database has no valid indexes")
    found = find_duplicates(frame)
    if found.empty:
        return Finding("postgres.duplicate_indexes", Status.OK, f"no duplicate or redundant index among {len(frame)}", 0)
    found["size"] = found["size_bytes"].map(pretty_bytes)
    names = ", ".join(f"{r.index} ({r.kind} of {r.covered_by})" for r in found.itertuples())
    summary = f"{len(found)} redundant index(es), {pretty_bytes(found['size_bytes'].sum())} in all: {names}"
    return Finding("postgres.duplicate_indexes", Status.WARNING, summary, len(found), 0, data=found)


def invalid_index_rows(conn: Connection) -> pd.DataFrame:
    """Invalid indexes with whether each is a REINDEX CONCURRENTLY leftover or is being built right now."""
    frame = query_df(conn, INVALID_SQL)
    frame["rebuild_leftover"] = frame["index"].map(lambda name: bool(REBUILD_LEFTOVER.search(name)))
    return frame


@check("postgres.invalid_indexes")
def invalid_indexes(ctx: RunContext) -> Finding:
    """Invalid indexes: never used by the planner, yet (when ready) maintained on every write."""
    with ctx.db() as conn:
        frame = invalid_index_rows(conn)
        database = scalar(conn, tagged("SELECT current_database()"))
    if frame.empty:
        return Finding("postgres.invalid_indexes", Status.OK, f"no invalid index in {database}", 0)
    frame["size"] = frame["size_bytes"].map(pretty_bytes)
    frame["advice"] = [
        "being built right now: leave it" if building
        else "leftover of a failed REINDEX CONCURRENTLY: ccops.actions.maintenance.drop_invalid_ccnew drops it" if leftover
        else "failed CREATE INDEX CONCURRENTLY: drop it and create it again"
        for building, leftover in zip(frame["build_in_progress"], frame["rebuild_leftover"], strict=True)
    ]
    stale = frame[~frame["build_in_progress"]]
    if stale.empty:
        return Finding("postgres.invalid_indexes", Status.INFO,
                       f"{len(frame)} index(es) are being built concurrently right now", 0, data=frame)
    names = ", ".join(f"{r.index} ({'REINDEX CONCURRENTLY leftover' if r.rebuild_leftover else 'failed build'})"
                      for r in stale.itertuples())
    summary = f"{len(stale)} invalid index(es) in {database}: {names}"
    return Finding("postgres.invalid_indexes", Status.WARNING, summary, len(stale), 0, data=frame)
