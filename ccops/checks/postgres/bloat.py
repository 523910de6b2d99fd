"""Bloat: how much of each index and table is empty space.

Two sources, the better one when it is there:
- pgstatindex (contrib pgstattuple) reads a B-tree and reports the real leaf
  density; ccops uses it when the extension is already created in the
  database (creating it needs a superuser, which a check must not be);
- otherwise the catalog estimate PgHero and check_postgres use (ioguix's
  queries): the size the rows would need at the fillfactor, from reltuples
  and pg_stats widths, against the pages the relation has. It is cheap and
  needs fresh statistics; rows without statistics are marked unreliable and
  never raise a WARNING.
Tables always use the estimate: pgstattuple() reads the whole heap, too
heavy for a weekly check on a table of ten million rows.
"""

from __future__ import annotations

import math

import pandas as pd
from psycopg import sql
from sqlalchemy.exc import DBAPIError

from ccops.core import sqlsafe
from ccops.core.context import RunContext, check
from ccops.core.db import query_df, scalar
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import extension_schema, pretty_bytes, tagged, user_schemas
from ccops.core.sqlsafe import ident
from ccops.core.thresholds import Level

BTREE_DEFAULT_FILLFACTOR = 90

INDEX_COLUMNS = ["schema", "table", "index", "qualified", "size_bytes", "bloat_bytes", "bloat_ratio",
                 "method", "avg_leaf_density", "leaf_fragmentation", "estimate_unreliable"]

# ioguix/pgsql-bloat-estimation btree_bloat.sql, limited to valid B-trees in user schemas with statistics.
INDEX_BLOAT_ESTIMATE_SQL = tagged(f"""
SELECT nspname AS schema, tblname AS "table", idxname AS index,
       (SELECT format('%I.%I', nn.nspname, cc.relname) FROM pg_class cc
          JOIN pg_namespace nn ON nn.oid = cc.relnamespace WHERE cc.oid = idxoid) AS qualified,
       (bs * relpages)::bigint AS size_bytes,
       CASE WHEN relpages > est_pages_ff THEN (bs * (relpages - est_pages_ff))::bigint ELSE 0 END AS bloat_bytes,
       CASE WHEN relpages > est_pages_ff THEN ((relpages - est_pages_ff) / relpages::float8) ELSE 0 END
         AS bloat_ratio,
       is_na AS estimate_unreliable
FROM (
  SELECT coalesce(1 + ceil(reltuples / floor((bs - pageopqdata - pagehdr) * fillfactor
                                             / (100 * (4 + nulldatahdrwidth)::float8))), 0) AS est_pages_ff,
         bs, nspname, tblname, idxname, idxoid, relpages, fillfactor, is_na
  FROM (
    SELECT maxalign, bs, nspname, tblname, idxname, idxoid, reltuples, relpages, fillfactor,
           (index_tuple_hdr_bm + maxalign
              - CASE WHEN index_tuple_hdr_bm % maxalign = 0 THEN maxalign ELSE index_tuple_hdr_bm % maxalign END
              + nulldatawidth + maxalign
              - CASE WHEN nulldatawidth = 0 THEN 0
                     WHEN nulldatawidth::integer % maxalign = 0 THEN maxalign
                     ELSE nulldatawidth::integer % maxalign END
           )::numeric AS nulldatahdrwidth,
           pagehdr, pageopqdata, is_na
    FROM (
      SELECT n.nspname, i.tblname, i.idxname, i.idxoid, i.reltuples, i.relpages, i.fillfactor,
             current_setting('block_size')::numeric AS bs,
             CASE WHEN version() ~ 'mingw32|64-bit|x86_64|ppc64|ia64|amd64' THEN 8 ELSE 4 END AS maxalign,
             24 AS pagehdr,
             16 AS pageopqdata,
             CASE WHEN max(coalesce(s.null_frac, 0)) = 0 THEN 8 ELSE 8 + ((32 + 8 - 1) / 8) END
               AS index_tuple_hdr_bm,
             sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024)) AS nulldatawidth,
             max(CASE WHEN i.atttypid = 'pg_catalog.name'::regtype THEN 1 ELSE 0 END) > 0 AS is_na
      FROM (
        SELECT ct.relname AS tblname, ct.relnamespace, ic.idxname, ic.reltuples, ic.relpages, ic.idxoid,
               ic.fillfactor,
               coalesce(a1.attnum, a2.attnum) AS attnum,
               coalesce(a1.attname, a2.attname) AS attname,
               coalesce(a1.atttypid, a2.atttypid) AS atttypid,
               CASE WHEN a1.attnum IS NULL THEN ic.idxname ELSE ct.relname END AS attrelname
        FROM (
          SELECT idxname, reltuples, relpages, tbloid, idxoid, fillfactor, indkey,
                 generate_series(1, indnatts) AS attpos
          FROM (
            SELECT ci.relname AS idxname, ci.reltuples, ci.relpages, i.indrelid AS tbloid,
                   i.indexrelid AS idxoid,
                   coalesce(substring(array_to_string(ci.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::smallint,
                            {BTREE_DEFAULT_FILLFACTOR}) AS fillfactor,
                   i.indnatts,
                   string_to_array(textin(int2vectorout(i.indkey)), ' ')::int[] AS indkey
            FROM pg_index i
            JOIN pg_class ci ON ci.oid = i.indexrelid
            JOIN pg_namespace cn ON cn.oid = ci.relnamespace
            WHERE ci.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
              AND ci.relpages > 0 AND ci.reltuples >= 0 AND i.indisvalid
              AND {user_schemas("cn")}
          ) AS idx_data
        ) AS ic
        JOIN pg_class ct ON ct.oid = ic.tbloid
        LEFT JOIN pg_attribute a1 ON ic.indkey[ic.attpos] <> 0
             AND a1.attrelid = ic.tbloid AND a1.attnum = ic.indkey[ic.attpos]
        LEFT JOIN pg_attribute a2 ON ic.indkey[ic.attpos] = 0
             AND a2.attrelid = ic.idxoid AND a2.attnum = ic.attpos
      ) i
      JOIN pg_namespace n ON n.oid = i.relnamespace
      JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = i.attrelname
           AND s.attname = i.attname AND NOT s.inherited
      GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ) AS rows_data_stats
  ) AS rows_hdr_pdg_stats
) AS relation_stats
ORDER BY bloat_bytes DESC, schema, "table", index
""")  # nosec B608 # module constants only, no catalog data

# {pgstatindex} is the function in the schema the extension was created in: psycopg composes it.
PGSTATINDEX_SQL = tagged(f"""
SELECT n.nspname AS schema, t.relname AS "table", c.relname AS index,
       format('%I.%I', n.nspname, c.relname) AS qualified,
       pg_relation_size(c.oid) AS size_bytes,
       coalesce(substring(array_to_string(c.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::int, {BTREE_DEFAULT_FILLFACTOR})
         AS fillfactor,
       s.leaf_pages, s.empty_pages, s.deleted_pages, s.avg_leaf_density, s.leaf_fragmentation
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL {{pgstatindex}}(c.oid::regclass) s
WHERE c.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
  AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
  AND {user_schemas("n")}
""")  # nosec B608 # module constants only; the one name is composed below with sql.Identifier

# ioguix/pgsql-bloat-estimation table_bloat.sql, limited to user schemas.
TABLE_BLOAT_ESTIMATE_SQL = tagged(f"""
SELECT schemaname AS schema, tblname AS "table",
       (bs * tblpages)::bigint AS size_bytes,
       CASE WHEN tblpages - est_tblpages_ff > 0 THEN ((tblpages - est_tblpages_ff) * bs)::bigint ELSE 0 END
         AS bloat_bytes,
       CASE WHEN tblpages > 0 AND tblpages - est_tblpages_ff > 0
            THEN (tblpages - est_tblpages_ff) / tblpages::float8 ELSE 0 END AS bloat_ratio,
       'estimate' AS method,
       is_na AS estimate_unreliable
FROM (
  SELECT ceil(reltuples / ((bs - page_hdr) * fillfactor / (tpl_size * 100))) + ceil(toasttuples / 4)
           AS est_tblpages_ff,
         tblpages, fillfactor, bs, schemaname, tblname, is_na
  FROM (
    SELECT (4 + tpl_hdr_size + tpl_data_size + (2 * ma)
              - CASE WHEN tpl_hdr_size % ma = 0 THEN ma ELSE tpl_hdr_size % ma END
              - CASE WHEN ceil(tpl_data_size)::int % ma = 0 THEN ma ELSE ceil(tpl_data_size)::int % ma END
           ) AS tpl_size,
           (heappages + toastpages) AS tblpages, reltuples, toasttuples, bs, page_hdr,
           schemaname, tblname, fillfactor, is_na
    FROM (
      SELECT tbl.oid AS tblid, ns.nspname AS schemaname, tbl.relname AS tblname, tbl.reltuples,
             tbl.relpages AS heappages, coalesce(toast.relpages, 0) AS toastpages,
             coalesce(toast.reltuples, 0) AS toasttuples,
             coalesce(substring(array_to_string(tbl.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::smallint, 100)
               AS fillfactor,
             current_setting('block_size')::numeric AS bs,
             CASE WHEN version() ~ 'mingw32|64-bit|x86_64|ppc64|ia64|amd64' THEN 8 ELSE 4 END AS ma,
             24 AS page_hdr,
             23 + CASE WHEN max(coalesce(s.null_frac, 0)) > 0 THEN (7 + count(s.attname)) / 8 ELSE 0::int END
               AS tpl_hdr_size,
             sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) AS tpl_data_size,
             bool_or(att.atttypid = 'pg_catalog.name'::regtype)
               OR sum(CASE WHEN att.attnum > 0 THEN 1 ELSE 0 END) <> count(s.attname) AS is_na
      FROM pg_attribute att
      JOIN pg_class tbl ON att.attrelid = tbl.oid
      JOIN pg_namespace ns ON ns.oid = tbl.relnamespace
      LEFT JOIN pg_stats s ON s.schemaname = ns.nspname AND s.tablename = tbl.relname
           AND NOT s.inherited AND s.attname = att.attname
      LEFT JOIN pg_class toast ON tbl.reltoastrelid = toast.oid
      WHERE NOT att.attisdropped AND att.attnum > 0
        AND tbl.relkind IN ('r', 'm') AND tbl.relpages > 0 AND tbl.reltuples >= 0
        AND {user_schemas("ns")}
      GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ) AS s
  ) AS s2
) AS s3
ORDER BY bloat_bytes DESC, schema, "table"
""")  # nosec B608 # module constants only, no catalog data


def index_bloat(conn, use_pgstattuple: bool = True) -> tuple[pd.DataFrame, str]:
    """Per B-tree index: size, bloat bytes and ratio; and a note saying which method was used.

    pgstatindex runs in a savepoint: without the pg_stat_scan_tables role it is
    refused, and the check falls back to the estimate instead of failing.
    """
    note = ""
    schema = extension_schema(conn, "pgstattuple") if use_pgstattuple else None
    if schema:
        statement = sql.SQL(PGSTATINDEX_SQL).format(pgstatindex=ident(schema, "pgstatindex"))
        try:
            with conn.begin_nested():
                frame = sqlsafe.query_df(conn, statement)
            block = int(scalar(conn, tagged("SELECT current_setting('block_size')::int")))
            return _from_pgstatindex(frame, block), "by pgstatindex leaf density"
        except DBAPIError as exc:
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            note = f"pgstatindex failed ({first[0] if first else 'error'}); "
    frame = query_df(conn, INDEX_BLOAT_ESTIMATE_SQL)
    frame["method"] = "estimate"
    frame["avg_leaf_density"] = float("nan")
    frame["leaf_fragmentation"] = float("nan")
    return frame[INDEX_COLUMNS], note + "by catalog estimate; pgstattuple would give exact B-tree figures"


def _from_pgstatindex(frame: pd.DataFrame, block_size: int) -> pd.DataFrame:
    """Bloat from leaf density: free leaf space beyond the fillfactor, plus empty and deleted pages."""
    rows = []
    for row in frame.itertuples(index=False):
        density = float(row.avg_leaf_density) if row.avg_leaf_density is not None else math.nan
        wasted_leaf = 0.0 if math.isnan(density) else row.leaf_pages * max(0.0, 1 - density / row.fillfactor)
        bloat = int((row.empty_pages + row.deleted_pages + wasted_leaf) * block_size)
        bloat = min(bloat, int(row.size_bytes))
        rows.append({
            "schema": row.schema, "table": row.table, "index": row.index, "qualified": row.qualified,
            "size_bytes": int(row.size_bytes), "bloat_bytes": bloat,
            "bloat_ratio": bloat / row.size_bytes if row.size_bytes else 0.0,
            "method": "pgstatindex", "avg_leaf_density": density,
            "leaf_fragmentation": float(row.leaf_fragmentation) if row.leaf_fragmentation is not None else math.nan,
            "estimate_unreliable": False,
        })
    result = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    return result.sort_values(["bloat_bytes", "index"], ascending=[False, True]).reset_index(drop=True)


def table_bloat(conn) -> pd.DataFrame:
    return query_df(conn, TABLE_BLOAT_ESTIMATE_SQL)


def _grade(frame: pd.DataFrame, level: Level, min_bloat_bytes: int) -> pd.Series:
    reliable = ~frame["estimate_unreliable"].astype(bool)
    big = frame["bloat_bytes"] >= min_bloat_bytes
    grade = pd.Series("ok", index=frame.index)
    for part in level.sides():  # warning first, so a critical row ends up "critical"
        grade[reliable & big & level.beyond(frame["bloat_ratio"], getattr(level, part))] = part
    return grade


def _finding(check_id: str, kind: str, frame: pd.DataFrame, note: str, level: Level, min_bloat_bytes: int) -> Finding:
    if frame.empty:
        return Finding(check_id, Status.OK, f"no data: no {kind} with pages and statistics to estimate yet")
    frame = frame.copy()
    frame["bloat_ratio"] = frame["bloat_ratio"].astype(float).round(4)
    frame["grade"] = _grade(frame, level, min_bloat_bytes)
    warning_ratio = level.first
    frame["size"] = frame["size_bytes"].map(pretty_bytes)
    frame["bloat"] = frame["bloat_bytes"].map(pretty_bytes)
    total = int(frame["bloat_bytes"].sum())
    bad = frame[frame["grade"] != "ok"]
    status = Status.CRITICAL if (bad["grade"] == "critical").any() else Status.WARNING if not bad.empty else Status.OK
    if bad.empty:
        summary = (f"{len(frame)} {kind}: {pretty_bytes(total)} reclaimable in all, none at "
                   f"more than {warning_ratio:.0%} bloat with {pretty_bytes(min_bloat_bytes)}+ to gain ({note})")
    else:
        top = bad.head(5)
        label = top["qualified"] if "qualified" in top else top["schema"] + "." + top["table"]
        names = ", ".join(f"{name} ({ratio:.0%} of {size})"
                          for name, ratio, size in zip(label, top["bloat_ratio"], top["size"], strict=True))
        if len(bad) > len(top):
            names += f" and {len(bad) - len(top)} more"
        summary = f"{len(bad)} bloated {kind}: {names} ({note})"
    return Finding(check_id, status, summary, total, warning_ratio, data=frame)


@check("postgres.bloat")
def bloat_estimate(
    ctx: RunContext,
    warning_ratio: float | None = None,
    critical_ratio: float | None = None,
    min_bloat_bytes: int | None = None,
) -> list[Finding]:
    """Index and table bloat; WARNING/CRITICAL when the share wasted and the bytes to gain are both large.

    The levels are thresholds.postgres.bloat_ratio and .min_bloat_bytes (the keyword
    arguments override them for one call). `min_bloat_bytes` keeps small relations
    quiet: an index of a few pages can be half empty and still not worth a rebuild.
    """
    limits = ctx.settings.thresholds.postgres
    level = limits.bloat_ratio.override(warning_ratio, critical_ratio)
    min_bytes = limits.min_bloat_bytes if min_bloat_bytes is None else min_bloat_bytes
    with ctx.db() as conn:
        indexes, note = index_bloat(conn)
        tables = table_bloat(conn)
    return [
        _finding("postgres.bloat.indexes", "indexes", indexes, note, level, min_bytes),
        _finding("postgres.bloat.tables", "tables", tables, "by catalog estimate", level, min_bytes),
    ]
