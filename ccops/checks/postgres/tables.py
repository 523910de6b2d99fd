"""Tables read mostly by sequential scans: the "add indexes if needed" step of the monthly review.

The rule is PgHero's missing-indexes rule: a table of at least `min_rows` live
rows where index scans are under 95% of all scans. The hint is deliberately
simple: the columns that the most expensive statements touching the table
name after WHERE/AND/OR, kept only when they are columns of that table and no
index starts with them. It is a lead to check with EXPLAIN, not a diagnosis
(a join's filter may belong to the other table when both have the column).

ccops' own scans are not the app's: a backup's pg_dump and its row counts read
every table sequentially, and a monthly WARNING built on them would send an
operator after an index the app does not need. The scans ccops measured
(ccops.core.selfstats' ledger) are subtracted per table before the rule is applied,
and the summary says how many were left out.
"""

from __future__ import annotations

import re

import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection

from ccops.checks.postgres.queries import DUMP_STATEMENTS, statements_source
from ccops.core import sqlsafe
from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import TAG, tagged

# Every table big enough to matter that was ever read by a sequential scan; the index share is
# computed after ccops' own scans (ccops.core.selfstats) are taken away, so it is not filtered here.
SEQ_SCAN_SQL = tagged("""
SELECT s.relid::bigint AS table_oid, s.schemaname AS schema, s.relname AS "table", s.n_live_tup,
       s.seq_scan, s.seq_tup_read, coalesce(s.idx_scan, 0) AS idx_scan
FROM pg_stat_user_tables s
WHERE s.n_live_tup >= :min_rows AND s.seq_scan > 0
ORDER BY s.seq_tup_read DESC, s.relname
""")

TABLE_COLUMNS_SQL = tagged("""
SELECT a.attname,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisvalid
               AND i.indkey[0] = a.attnum) AS leads_index
FROM pg_attribute a
WHERE a.attrelid = :oid AND a.attnum > 0 AND NOT a.attisdropped
""")

# psycopg placeholders: {names} are composed identifiers, %(values)s parameters.
STATEMENTS_FOR_TABLE_SQL = tagged("""
SELECT s.query FROM {view} s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query ~* %(pattern)s AND ltrim(s.query) NOT LIKE %(own_tag)s AND s.query !~* %(dump)s
ORDER BY s.{total} DESC
LIMIT %(limit)s
""")

FILTER_COLUMN = re.compile(
    r"\b(?:WHERE|AND|OR)\s+\(*\s*(?:\"?[A-Za-z_][\w$]*\"?\.)?\"?([A-Za-z_][\w$]*)\"?\s*"
    r"(?:=|<>|!=|<=|>=|<|>|~|\bIN\b|\bNOT\b|\bLIKE\b|\bILIKE\b|\bBETWEEN\b|\bIS\b)",
    re.IGNORECASE,
)


def filter_columns(query: str) -> list[str]:
    """Column names that appear as the left side of a WHERE/AND/OR condition, in order, once each."""
    seen: list[str] = []
    for name in FILTER_COLUMN.findall(query):
        lowered = name.lower()
        if lowered not in seen:
            seen.append(lowered)
    return seen


def _hint(conn: Connection, source, table_oid: int, table: str, statements: int) -> str:
    if source.view is None:
        return "no hint: pg_stat_statements unavailable"
    if not re.fullmatch(r"\w+", table):
        return ""
    pattern = rf"(FROM|JOIN|UPDATE)\s+(\"?\w+\"?\.)?\"?{table}\"?\M"
    statement = sql.SQL(STATEMENTS_FOR_TABLE_SQL).format(view=source.relation(), total=sql.Identifier(source.total_col))
    queries = sqlsafe.query_df(conn, statement, {"pattern": pattern, "own_tag": TAG + "%", "dump": DUMP_STATEMENTS,
                                                 "limit": int(statements)})["query"].tolist()
    columns = query_df(conn, TABLE_COLUMNS_SQL, oid=table_oid)
    own = dict(zip(columns["attname"].str.lower(), columns["leads_index"], strict=True))
    named: list[str] = []
    for query in queries:
        named += [c for c in filter_columns(query) if c in own and c not in named]
    unindexed = [c for c in named if not own[c]]
    if unindexed:
        return f"top statements filter on {', '.join(unindexed)}, which no index starts with"
    if named:
        return f"filtered columns ({', '.join(named)}) already lead an index"
    return ""


def subtract_own_scans(frame: pd.DataFrame, own: dict[int, dict]) -> tuple[pd.DataFrame, int]:
    """The app's scans per table (ccops' measured scans taken away, never below zero), the index share
    and average rows recomputed on them; with the number of scans left out."""
    frame = frame.copy()
    left_out = 0
    for index, row in frame.iterrows():
        mine = own.get(int(row["table_oid"]))
        if not mine:
            continue
        scans = min(int(row["seq_scan"]), int(mine["seq_scan"]))
        left_out += scans
        frame.at[index, "seq_scan"] = int(row["seq_scan"]) - scans
        frame.at[index, "seq_tup_read"] = max(0, int(row["seq_tup_read"]) - int(mine["seq_tup_read"]))
    scans, index_scans = frame["seq_scan"].astype(float), frame["idx_scan"].astype(float)
    frame["avg_rows_per_seq_scan"] = (frame["seq_tup_read"].astype(float) / scans.where(scans > 0)).round()
    frame["index_scan_pct"] = (100 * index_scans / (scans + index_scans).where(scans + index_scans > 0)).round(1)
    return frame, left_out


def _left_out_sentence(scans: int) -> str:
    if not scans:
        return "no sequential scan of ccops' own was recorded"
    return f"{scans:,} sequential scans by ccops itself (backups, restore checks) left out"


@check("postgres.sequential_scans")
def sequential_scan_heavy_tables(
    ctx: RunContext, min_rows: int = 10_000, min_index_pct: float = 95.0, statements: int = 5
) -> Finding:
    """Tables of `min_rows`+ rows read mostly by sequential scans, with a hint of the missing index.

    Only the app's scans count: the ones ccops measured during its own operations are taken away first.
    """
    from ccops.core import selfstats

    with ctx.db() as conn:
        frame = query_df(conn, SEQ_SCAN_SQL, min_rows=int(min_rows))
        ledger = selfstats.current_ledger(ctx.settings.home, ctx.settings.resolved_database_url(), conn)
        frame, left_out = subtract_own_scans(frame, selfstats.own_table_scans(ledger))
        frame = frame[(frame["seq_scan"] > 0) & (frame["index_scan_pct"] < float(min_index_pct))]
        if frame.empty:
            return Finding("postgres.sequential_scans", Status.OK,
                           f"no table of {min_rows:,}+ rows is read mostly by sequential scans; "
                           f"{_left_out_sentence(left_out)}", 0)
        source = statements_source(conn)
        frame = frame.assign(hint=[
            _hint(conn, source, int(row.table_oid), row.table, statements) for row in frame.itertuples()
        ])
    frame = frame.drop(columns=["table_oid"]).reset_index(drop=True)
    frame["avg_rows_per_seq_scan"] = pd.to_numeric(frame["avg_rows_per_seq_scan"]).astype("Int64")
    names = "; ".join(
        f"{r.table} ({r.seq_scan:,} seq scans, {r.index_scan_pct:.0f}% index){': ' + r.hint if r.hint else ''}"
        for r in frame.itertuples()
    )
    summary = f"{len(frame)} table(s) read mostly by sequential scans: {names}; {_left_out_sentence(left_out)}"
    return Finding("postgres.sequential_scans", Status.WARNING, summary, len(frame), min_index_pct, data=frame)
