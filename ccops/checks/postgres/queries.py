"""Query statistics from pg_stat_statements: the weekly slow-query review and the monthly top list.

The guide's queries name `total_time`/`mean_time`, columns that pg_stat_statements
renamed to `total_exec_time`/`mean_exec_time` in PostgreSQL 13; on a 15 server the
guide's SQL fails. ccops reads whichever names the installed extension version
has, keeps to the current database (the view holds every database's
statements), and leaves out its own catalog reads. When the extension is
missing, the finding says exactly what to change, because the fix needs a
server restart an operator has to plan.

A statement's text is shown as pg_stat_statements keeps it, and for utility
statements that is verbatim: `ALTER ROLE app PASSWORD '...'` would put a password
in a report that reviewers read. Every text is therefore masked (ccops.core.scrub's
forms: SQL PASSWORD literals, keyword `password=`, tokens) and only then cut to
QUERY_TEXT_LIMIT characters, so a cut never leaves half a password behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from psycopg import sql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ccops.core import sqlsafe
from ccops.core.context import RunContext, check
from ccops.core.db import query_df, scalar
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import TAG, extension_schema, tagged
from ccops.core.scrub import QUERY_TEXT_LIMIT, scrub_query
from ccops.core.sqlsafe import ident

PRELOAD_FIX = (
    "add it to shared_preload_libraries in postgresql.conf (shared_preload_libraries = 'pg_stat_statements'; "
    "in docker compose: command: postgres -c shared_preload_libraries=pg_stat_statements) and restart PostgreSQL"
)

# Characters of a statement read from the server: enough to mask a password that starts late
# in a long statement before the text is cut to QUERY_TEXT_LIMIT for the report.
QUERY_READ_LIMIT = 20_000

# Statements ccops' own sessions send around every check (see ccops.core.db.connect), and the probes that
# SQLAlchemy sends once per new engine (the app's SQLAlchemy sends the same: they are connection
# set-up, not anyone's workload).
OWN_STATEMENTS = r"^\s*(SET (LOCAL )?(statement_timeout|lock_timeout)|SET TRANSACTION READ ONLY)"
SETUP_STATEMENTS = (
    r"^\s*(select pg_catalog\.version\(\)|select current_schema\(\)|show transaction isolation level"
    r"|show standard_conforming_strings|select oid, typarray from pg_type)"
)
# pg_dump's data statements: `COPY public.market_data (id, asset, ...) TO stdout;` (no comment possible).
DUMP_STATEMENTS = r"^\s*COPY\s+\S+(\s*\([^)]*\))?\s+TO\s+stdout"

# How each statement of the view is classed (psycopg placeholders): ccops' own by its marker comment,
# connection set-up, a dump's COPY, else the app's.
KIND_SQL = """CASE WHEN ltrim(s.query) LIKE %(own_tag)s THEN 'ccops'
            WHEN s.query ~* %(own)s OR s.query ~* %(setup)s THEN 'setup'
            WHEN s.query ~* %(dump)s THEN 'dump' ELSE 'app' END"""


@dataclass
class StatementsSource:
    """Where pg_stat_statements can be read in this database, or why it cannot."""

    view: str | None  # schema-qualified view name when readable (for reading, not for SQL: see relation())
    total_col: str = "total_exec_time"
    mean_col: str = "mean_exec_time"
    max_col: str = "max_exec_time"
    problem: str = ""
    schema: str | None = None  # the schema the extension was created in

    def relation(self, name: str = "pg_stat_statements") -> sql.Identifier:
        """One of the extension's views, as an identifier for a composed statement."""
        if self.schema is None:
            raise ValueError("pg_stat_statements is not readable here")
        return ident(self.schema, name)


def preload_state(conn: Connection) -> bool | None:
    """Whether pg_stat_statements is in shared_preload_libraries; None when the role may not see it."""
    value = scalar(conn, tagged("SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'"))
    if value is None:
        return None
    return "pg_stat_statements" in [part.strip().strip('"') for part in value.split(",")]


def statements_source(conn: Connection) -> StatementsSource:
    """Find the view and its column names, or a one-sentence fix for why it is unusable."""
    database = scalar(conn, tagged("SELECT current_database()"))
    create = f"run CREATE EXTENSION pg_stat_statements; in database {database} as a superuser"
    schema = extension_schema(conn, "pg_stat_statements")
    preloaded = preload_state(conn)
    if schema is None:
        if preloaded:
            problem = f"pg_stat_statements is loaded but not created in database {database}: {create}"
        else:
            problem = f"pg_stat_statements is not enabled: {PRELOAD_FIX}, then {create}"
        return StatementsSource(None, problem=problem)
    relation = ident(schema, "pg_stat_statements")
    view = sqlsafe.render(relation, conn)
    try:
        with conn.begin_nested():
            sqlsafe.execute(conn, sql.SQL(tagged("SELECT 1 FROM {} LIMIT 1")).format(relation))
    except DBAPIError as exc:
        message = str(getattr(exc, "orig", exc))
        if "shared_preload_libraries" in message or preloaded is False:
            problem = f"pg_stat_statements is created in {database} but not loaded: {PRELOAD_FIX}"
        else:
            problem = f"pg_stat_statements cannot be read: {message.strip().splitlines()[0]}"
        return StatementsSource(None, problem=problem)
    columns = set(query_df(conn, COLUMNS_SQL, schema=schema)["attname"])
    if "total_exec_time" in columns:
        return StatementsSource(view, schema=schema)
    return StatementsSource(view, "total_time", "mean_time", "max_time", schema=schema)  # extension older than 1.8


COLUMNS_SQL = tagged("""
SELECT a.attname FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relname = 'pg_stat_statements' AND a.attnum > 0
""")

# psycopg placeholders: {names} are composed identifiers, %(values)s parameters, %% a literal percent sign.
STATEMENTS_SQL = tagged("""
SELECT * FROM (
  SELECT s.queryid::text AS queryid,
         left(s.query, %(read_limit)s) AS query,
         s.calls,
         s.{total}::float8 AS total_ms,
         s.{mean}::float8 AS mean_ms,
         s.{max}::float8 AS max_ms,
         s.rows,
         s.shared_blks_hit,
         s.shared_blks_read,
         {kind} AS kind
  FROM {view} s
  WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND s.query NOT ILIKE '%%pg_stat_statements%%'
) s
WHERE s.kind = 'app'
ORDER BY s.{order} DESC NULLS LAST, s.queryid
LIMIT %(limit)s
""")

# Everything the view holds for this database, by kind: what the reviews left out, and the app's total time.
KINDS_SQL = tagged("""
SELECT {kind} AS kind, s.queryid::text AS queryid, s.calls, s.{total}::float8 AS total_ms
FROM {view} s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.query NOT ILIKE '%%pg_stat_statements%%'
""")

PATTERNS = {"own": OWN_STATEMENTS, "setup": SETUP_STATEMENTS, "dump": DUMP_STATEMENTS}
KIND_WORDS = {"ccops": "ccops' own (marked)", "measured": "run by ccops' backups (measured)",
              "setup": "connection set-up", "dump": "dump COPY"}


def statements_sql(source: StatementsSource, order: str) -> sql.Composed:
    """The app's statements of this database, ranked by `order` (mean_ms or total_ms), the view and its
    column names composed as identifiers."""
    return sql.SQL(STATEMENTS_SQL).format(
        view=source.relation(), total=sql.Identifier(source.total_col), mean=sql.Identifier(source.mean_col),
        max=sql.Identifier(source.max_col), order=sql.Identifier(order), kind=sql.SQL(KIND_SQL),
    )


def _params(limit: int) -> dict[str, object]:
    return {**PATTERNS, "own_tag": TAG + "%", "limit": int(limit), "read_limit": QUERY_READ_LIMIT}


@dataclass
class LeftOut:
    """What a review did not count as the app's: statements, calls and seconds per reason."""

    by_kind: dict[str, tuple[int, float, float]]  # kind -> (statements, calls, total ms)
    app_total_ms: float

    def sentence(self) -> str:
        """`left out ccops' work: 41 statements, 1,120 calls, 2.3 s (...)`, or that nothing was left out."""
        kinds = {k: v for k, v in self.by_kind.items() if v[1] > 0}
        if not kinds:
            return "nothing of ccops' own was recorded"
        statements = sum(v[0] for v in kinds.values())
        calls = sum(v[1] for v in kinds.values())
        seconds = sum(v[2] for v in kinds.values()) / 1000
        parts = ", ".join(f"{KIND_WORDS[k]} {int(v[1]):,} calls" for k, v in sorted(kinds.items()))
        return (f"left out, as not the app's: {statements:,} statements, {int(calls):,} calls, "
                f"{seconds:,.1f} s ({parts})")


def left_out(conn: Connection, source: StatementsSource, ledger: dict[str, dict[str, float]]) -> LeftOut:
    """Count the statements a review leaves out, by reason; the app's remaining total time."""
    statement = sql.SQL(KINDS_SQL).format(view=source.relation(), total=sql.Identifier(source.total_col),
                                          kind=sql.SQL(KIND_SQL))
    frame = sqlsafe.query_df(conn, statement, _params(0))
    by_kind: dict[str, list[float]] = {}
    app_total = 0.0
    for row in frame.itertuples():
        calls, total = float(row.calls), float(row.total_ms or 0)
        if row.kind == "app" and row.queryid in ledger:
            own = ledger[row.queryid]
            own_calls, own_ms = min(calls, own["calls"]), min(total, own["total_ms"])
            entry = by_kind.setdefault("measured", [0, 0.0, 0.0])
            entry[0] += 1 if own_calls >= calls else 0
            entry[1] += own_calls
            entry[2] += own_ms
            calls, total = calls - own_calls, total - own_ms
        if row.kind == "app":
            app_total += total
            continue
        entry = by_kind.setdefault(row.kind, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += calls
        entry[2] += total
    return LeftOut({k: (int(v[0]), v[1], v[2]) for k, v in by_kind.items()}, app_total)


def subtract_own(frame: pd.DataFrame, ledger: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The app's share of each statement: ccops' measured calls, time and rows taken away (max_ms stays:
    a maximum cannot be split); statements left with no call of the app's are dropped."""
    frame = frame.copy()
    for index, row in frame.iterrows():
        own = ledger.get(str(row["queryid"]))
        if not own:
            continue
        frame.at[index, "calls"] = max(0, int(row["calls"]) - int(own["calls"]))
        frame.at[index, "total_ms"] = max(0.0, float(row["total_ms"]) - float(own["total_ms"]))
        frame.at[index, "rows"] = max(0, int(row["rows"]) - int(own["rows"]))
        if frame.at[index, "calls"]:
            frame.at[index, "mean_ms"] = frame.at[index, "total_ms"] / frame.at[index, "calls"]
    return frame[frame["calls"] > 0]


def read_statements(conn: Connection, source: StatementsSource, order_by: str, limit: int,
                    ledger: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """The app's top statements: ccops' marked, set-up and dump statements left out, and the calls that
    ccops' measured operations made (`ledger`, from ccops.core.selfstats) subtracted before ranking."""
    order = {"mean": "mean_ms", "total": "total_ms"}.get(order_by)
    if order is None:
        raise ValueError(f"order_by must be 'mean' or 'total', got {order_by!r}")
    ledger = ledger or {}
    frame = sqlsafe.query_df(conn, statements_sql(source, order), _params(int(limit) + len(ledger)))
    frame = subtract_own(frame, ledger)
    key = "mean_ms" if order_by == "mean" else "total_ms"
    frame = frame.sort_values([key, "queryid"], ascending=[False, True]).head(int(limit)).reset_index(drop=True)
    frame["query"] = frame["query"].map(lambda text: scrub_query(text, QUERY_TEXT_LIMIT))
    hits, reads = frame["shared_blks_hit"].astype(float), frame["shared_blks_read"].astype(float)
    frame["cache_hit_ratio"] = (hits / (hits + reads)).where(hits + reads > 0)
    frame["pct_of_total_time"] = float("nan")  # of the app's total time: review() knows it
    frame = frame.drop(columns=["kind"])
    for column in ("total_ms", "mean_ms", "max_ms", "cache_hit_ratio", "pct_of_total_time"):
        frame[column] = frame[column].astype(float).round(3)
    return frame


def review(conn: Connection, source: StatementsSource, order_by: str, limit: int,
           ctx: RunContext) -> tuple[pd.DataFrame, LeftOut]:
    """The ranked app statements and what was left out, ccops' ledger read for this database."""
    from ccops.core import selfstats

    ledger = selfstats.own_statements(selfstats.current_ledger(ctx.settings.home, ctx.settings.resolved_database_url(),
                                                               conn))
    left = left_out(conn, source, ledger)
    frame = read_statements(conn, source, order_by, limit, ledger)
    if left.app_total_ms:
        frame["pct_of_total_time"] = (100 * frame["total_ms"] / left.app_total_ms).round(3)
    return frame, left


def stats_since(conn: Connection, source: StatementsSource) -> str:
    """When the statistics started (pg_stat_statements_info, 1.9+), for the summary."""
    if source.schema is None:
        return ""
    exists = scalar(conn, tagged("SELECT to_regclass(format('%I.%I', CAST(:schema AS text), 'pg_stat_statements_info')) "
                                 "IS NOT NULL"), schema=source.schema)
    if not exists:
        return ""
    reset = sqlsafe.scalar(conn, sql.SQL(tagged("SELECT stats_reset FROM {}")).format(
        source.relation("pg_stat_statements_info")))
    return f" since {reset:%Y-%m-%d %H:%M} UTC" if reset is not None else ""


@check("postgres.slow_queries")
def slow_queries(
    ctx: RunContext,
    order_by: str = "mean",
    limit: int = 10,
    warning_mean_ms: float | None = None,
    critical_mean_ms: float | None = None,
    min_calls: int | None = None,
) -> Finding:
    """The slowest statements of this database by mean (or total) execution time.

    WARNING/CRITICAL when a statement called at least `min_calls` times takes on
    average longer than the threshold: one slow ad-hoc query is not a trend. The levels are
    thresholds.postgres.slow_query_mean_ms and .slow_query_min_calls (the keyword arguments
    override them for one call).
    """
    limits = ctx.settings.thresholds.postgres
    level = limits.slow_query_mean_ms.override(warning_mean_ms, critical_mean_ms)
    warning_mean_ms = level.first
    min_calls = limits.slow_query_min_calls if min_calls is None else min_calls
    with ctx.db() as conn:
        source = statements_source(conn)
        if source.view is None:
            return Finding("postgres.slow_queries", Status.UNKNOWN, source.problem)
        frame, left = review(conn, source, order_by, limit, ctx)
        since = stats_since(conn, source)
    if frame.empty:
        return Finding("postgres.slow_queries", Status.OK,
                       f"no data: no statements of the app recorded for this database{since}; {left.sentence()}")
    counted = frame[frame["calls"] >= min_calls]
    worst_mean = float(counted["mean_ms"].max()) if not counted.empty else 0.0
    status = level.grade(worst_mean)
    top = frame.iloc[0]
    summary = (f"slowest statement by {order_by} time{since}: {top['mean_ms']:,.1f} ms mean over "
               f"{int(top['calls']):,} calls ({top['total_ms'] / 1000:,.1f} s total)")
    if status != Status.OK:
        over = counted[level.beyond(counted["mean_ms"])]
        summary = (f"{len(over)} statement(s) called {min_calls}+ times average over {warning_mean_ms:,.0f} ms; "
                   f"worst {worst_mean:,.1f} ms{since}")
    return Finding("postgres.slow_queries", status, f"{summary}; {left.sentence()}", round(worst_mean, 3),
                   warning_mean_ms, data=frame)


@check("postgres.top_queries")
def top_queries_by_total_time(ctx: RunContext, limit: int = 20) -> Finding:
    """The statements that take the most execution time in all: where an index pays back most."""
    with ctx.db() as conn:
        source = statements_source(conn)
        if source.view is None:
            return Finding("postgres.top_queries", Status.UNKNOWN, source.problem)
        frame, left = review(conn, source, "total", limit, ctx)
        since = stats_since(conn, source)
    if frame.empty:
        return Finding("postgres.top_queries", Status.OK,
                       f"no data: no statements of the app recorded for this database{since}; {left.sentence()}")
    share = float(frame["pct_of_total_time"].sum())
    top = frame.iloc[0]
    summary = (f"top {len(frame)} statements take {share:.0f}% of execution time{since}; the first "
               f"{top['total_ms'] / 1000:,.1f} s in {int(top['calls']):,} calls; {left.sentence()}")
    return Finding("postgres.top_queries", Status.INFO, summary, round(share, 1), data=frame)
