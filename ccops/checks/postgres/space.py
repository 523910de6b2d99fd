"""Space: how big each database is, and which tables take the room.

The weekly audit's `\\l+` and "largest tables" steps. Sizes come from the
size functions on pg_class rather than pg_tables, so a table's heap, its
indexes and its TOAST show separately: a table whose index part grows faster
than its heap is the first sign of index bloat.
"""

from __future__ import annotations

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import pretty_bytes, tagged

DATABASE_SIZES_SQL = tagged("""
SELECT d.datname AS database,
       pg_get_userbyid(d.datdba) AS owner,
       pg_encoding_to_char(d.encoding) AS encoding,
       CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END AS size_bytes,
       d.datname = current_database() AS current
FROM pg_database d
WHERE d.datallowconn
ORDER BY size_bytes DESC NULLS LAST, d.datname
""")

LARGEST_TABLES_SQL = tagged("""
SELECT n.nspname AS schema,
       c.relname AS "table",
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS rows_estimate,
       pg_relation_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       CASE WHEN c.reltoastrelid = 0 THEN 0 ELSE pg_total_relation_size(c.reltoastrelid) END AS toast_bytes,
       pg_total_relation_size(c.oid) AS total_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname = :schema
ORDER BY total_bytes DESC, c.relname
LIMIT :limit
""")


@check("postgres.database_sizes")
def database_sizes(ctx: RunContext) -> Finding:
    """Every database on the server with owner, encoding and size (the guide's `\\l+`)."""
    with ctx.db() as conn:
        frame = query_df(conn, DATABASE_SIZES_SQL)
    if frame.empty:
        return Finding("postgres.database_sizes", Status.INFO, "no data: no database accepts connections")
    frame["size"] = frame["size_bytes"].map(pretty_bytes)
    current = frame[frame["current"]]
    own = int(current["size_bytes"].iloc[0]) if not current.empty and current["size_bytes"].notna().all() else None
    total = int(frame["size_bytes"].fillna(0).sum())
    name = current["database"].iloc[0] if not current.empty else "?"
    summary = (
        f"{name} is {pretty_bytes(own)}; {len(frame)} databases on the server total {pretty_bytes(total)}"
        if own is not None else f"{len(frame)} databases on the server total {pretty_bytes(total)}"
    )
    return Finding("postgres.database_sizes", Status.OK, summary, own, data=frame)


@check("postgres.largest_tables")
def largest_tables(ctx: RunContext, limit: int = 10, schema: str = "public") -> Finding:
    """The largest tables with heap, index and TOAST sizes apart (the guide's size queries)."""
    with ctx.db() as conn:
        frame = query_df(conn, LARGEST_TABLES_SQL, schema=schema, limit=int(limit))
    if frame.empty:
        return Finding("postgres.largest_tables", Status.OK, f"no data: schema {schema} holds no tables")
    for column in ("table_bytes", "index_bytes", "toast_bytes", "total_bytes"):
        frame[column.replace("_bytes", "_size")] = frame[column].map(pretty_bytes)
    top = frame.iloc[0]
    summary = (
        f"largest table {top['table']}: {pretty_bytes(top['total_bytes'])} "
        f"({pretty_bytes(top['table_bytes'])} data, {pretty_bytes(top['index_bytes'])} indexes); "
        f"top {len(frame)} total {pretty_bytes(frame['total_bytes'].sum())}"
    )
    return Finding("postgres.largest_tables", Status.OK, summary, int(top["total_bytes"]), data=frame)
