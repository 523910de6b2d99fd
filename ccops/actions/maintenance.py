"""Safe database maintenance: VACUUM (ANALYZE), REINDEX ... CONCURRENTLY, and cleanup of failed rebuilds.

The guide's weekly `VACUUM ANALYZE; REINDEX DATABASE` is replaced because
REINDEX DATABASE locks out writers on each table for the length of its
rebuild, and both commands act on everything whether it needs it or not.
Here each step acts only where the statistics say it pays, one object at a
time, and reports what it did with before/after figures:

- every action statement runs with `lock_timeout` (settings.lock_timeout_ms),
  so it never queues behind a long transaction and, worse, makes the app's
  queries queue behind it; a lock timeout is reported as "skipped: table
  busy" for that object and the run goes on;
- every action statement runs with a statement_timeout (an hour by default);
- VACUUM and CONCURRENTLY cannot run in a transaction block, so actions run
  on an AUTOCOMMIT connection; the planning reads run in an ordinary
  read-only session first, so a dry run changes nothing at all;
- a REINDEX CONCURRENTLY that fails half way leaves an invalid `_ccnew` (or
  `_ccold`) index that every write still maintains: ccops drops the leftover
  it just caused right away, and drop_invalid_ccnew() finds older ones.

Which steps need `confirm`: the DESIGN asks destructive steps for
dry_run=False AND confirm=True. VACUUM (ANALYZE) and REINDEX CONCURRENTLY
are not destructive: they delete no data, writers keep working, and a failure
leaves the previous state; they need dry_run=False only. Dropping an index,
even an invalid leftover, removes an object someone may be looking at, so
drop_invalid_indexes() needs confirm=True as well.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from ccops.checks.postgres.bloat import index_bloat
from ccops.checks.postgres.indexes import REBUILD_LEFTOVER, invalid_index_rows
from ccops.core.context import RunContext, check
from ccops.core.db import connect, get_engine, query_df
from ccops.core.findings import Finding, Findings, Status
from ccops.core.pgsql import LOCK_NOT_AVAILABLE, QUERY_CANCELED, pretty_bytes, sqlstate, tagged
from ccops.core.settings import Settings
from ccops.core.sqlsafe import execute, ident, render

ACTION_STATEMENT_TIMEOUT_S = 3600.0
DEFAULT_MIN_INDEX_BYTES = 1024 * 1024  # below 1 MB a rebuild gains nothing worth a lock

PLANNED = "would run"
DONE = "done"
BUSY = "skipped: table busy"


@dataclass
class MaintenanceAction:
    """One statement on one object: what, why, the figures around it, and how it ended."""

    object: str
    action: str
    dry_run: bool
    reason: str = ""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    status: str = PLANNED
    error: str = ""
    statement: sql.Composable | None = field(default=None, repr=False)  # what runs; `action` is its text
    oid: int | None = None  # the object's oid when the plan read it from the catalog

    @classmethod
    def of(cls, statement: sql.Composable, object_: str, dry_run: bool, **kwargs: Any) -> MaintenanceAction:
        """An action whose statement is composed (names as identifiers) and shown as the server gets it."""
        return cls(object_, render(statement), dry_run, statement=statement, **kwargs)

    def row(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"object": self.object, "action": self.action, "dry_run": self.dry_run,
                                "reason": self.reason, "status": self.status}
        flat.update({f"{key}_before": value for key, value in self.before.items()})
        flat.update({f"{key}_after": value for key, value in self.after.items()})
        flat["duration_s"] = None if self.duration_s is None else round(self.duration_s, 3)
        flat["error"] = self.error
        return flat


@dataclass
class MaintenanceReport:
    """What one maintenance step did (or would do), ready for a notebook as findings."""

    kind: str  # "vacuum", "reindex" or "invalid_indexes": the finding is maintenance.<kind>
    dry_run: bool
    criteria: str
    actions: list[MaintenanceAction] = field(default_factory=list)
    note: str = ""

    @property
    def check_id(self) -> str:
        return f"maintenance.{self.kind}"

    def by_status(self, prefix: str) -> list[MaintenanceAction]:
        return [a for a in self.actions if a.status.startswith(prefix)]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([a.row() for a in self.actions])

    def to_findings(self) -> Findings:
        return Findings([Finding(self.check_id, self._status(), self._summary(), len(self.actions),
                                 data=self.to_frame() if self.actions else None)])

    def _status(self) -> Status:
        if any(a.status.startswith(("skipped", "failed")) for a in self.actions):
            return Status.WARNING
        if self.dry_run and self.actions:
            return Status.INFO
        return Status.OK

    def _summary(self) -> str:
        note = f" ({self.note})" if self.note else ""
        verb = {"vacuum": "VACUUM (ANALYZE)", "reindex": "REINDEX INDEX CONCURRENTLY",
                "invalid_indexes": "DROP INDEX CONCURRENTLY"}[self.kind]
        if not self.actions:
            return f"nothing to do: no object matches {self.criteria}{note}"
        names = ", ".join(a.object for a in self.actions[:6]) + (" ..." if len(self.actions) > 6 else "")
        if self.dry_run:
            return f"dry run: would {verb} {len(self.actions)} object(s) ({names}); nothing changed{note}"
        done = self.by_status(DONE)
        seconds = sum(a.duration_s or 0 for a in done)
        summary = f"{verb} on {len(done)} of {len(self.actions)} object(s) in {seconds:.2f} s"
        if done:
            summary += f": {self._gain(done)}"
        others = [a for a in self.actions if a.status != DONE]
        if others:
            summary += "; " + "; ".join(f"{a.object}: {a.status}{' - ' + a.error if a.error else ''}" for a in others)
        return summary + note

    def _gain(self, done: list[MaintenanceAction]) -> str:
        if self.kind == "vacuum":
            before = sum(int(a.before.get("n_dead_tup") or 0) for a in done)
            after = sum(int(a.after.get("n_dead_tup") or 0) for a in done)
            return f"dead tuples {before:,} -> {after:,}"
        before = sum(int(a.before.get("size_bytes") or 0) for a in done)
        after = sum(int(a.after.get("size_bytes") or 0) for a in done)
        return f"{pretty_bytes(before)} -> {pretty_bytes(after)}"


# ---- sessions -------------------------------------------------------------------------------

@contextmanager
def action_session(settings: Settings) -> Iterator[Connection]:
    """An AUTOCOMMIT connection (VACUUM and CONCURRENTLY refuse transaction blocks) with lock_timeout set."""
    engine = get_engine(settings.resolved_database_url())
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text(f"SET lock_timeout = {int(settings.lock_timeout_ms)}"))
        conn.execute(text(f"SET statement_timeout = {int(settings.statement_timeout_ms)}"))
        yield conn


@contextmanager
def plan_session(settings: Settings) -> Iterator[Connection]:
    with connect(settings.resolved_database_url(), read_only=True,
                 statement_timeout_ms=settings.statement_timeout_ms,
                 lock_timeout_ms=settings.lock_timeout_ms) as conn:
        yield conn


def run_statement(conn: Connection, settings: Settings, action: MaintenanceAction,
                  statement_timeout_s: float) -> bool:
    """Run the action's composed statement with its own statement_timeout; a failure is recorded, never raised."""
    if action.statement is None:
        raise ValueError(f"{action.object}: no composed statement to run")
    conn.execute(text(f"SET statement_timeout = {int(statement_timeout_s * 1000)}"))
    started = time.monotonic()
    try:
        execute(conn, action.statement)
        action.status = DONE
        return True
    except DBAPIError as exc:
        state = sqlstate(exc)
        if state == LOCK_NOT_AVAILABLE:
            action.status = BUSY
            action.error = f"lock not granted within {settings.lock_timeout_ms} ms"
        elif state == QUERY_CANCELED:
            action.status = "failed"
            action.error = f"statement_timeout of {statement_timeout_s:.0f} s reached"
        else:
            action.status = "failed"
            lines = str(getattr(exc, "orig", exc)).strip().splitlines()
            action.error = lines[0] if lines else exc.__class__.__name__
        return False
    finally:
        action.duration_s = time.monotonic() - started
        conn.execute(text(f"SET statement_timeout = {int(settings.statement_timeout_ms)}"))


# ---- VACUUM (ANALYZE) -----------------------------------------------------------------------

# Each filter is optional (NULL: not applied): by schema, by oid, or by an operator-given name that
# the server resolves (to_regclass), so only catalog names reach a statement, as identifiers.
TABLE_STATE_SQL = tagged("""
SELECT c.oid AS relid, n.nspname AS schema, c.relname AS name,
       format('%I.%I', n.nspname, c.relname) AS qualified,
       coalesce(s.n_live_tup, 0) AS n_live_tup, coalesce(s.n_dead_tup, 0) AS n_dead_tup,
       CASE WHEN coalesce(s.n_live_tup, 0) + coalesce(s.n_dead_tup, 0) > 0
            THEN s.n_dead_tup::float8 / (s.n_live_tup + s.n_dead_tup) ELSE 0 END AS dead_ratio,
       pg_table_size(c.oid) AS table_bytes,
       pg_has_role(c.relowner, 'USAGE') AS can_maintain
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'm')
  AND (CAST(:schema AS text) IS NULL OR n.nspname = :schema)
  AND (CAST(:relid AS oid) IS NULL OR c.oid = :relid)
  AND (CAST(:name AS text) IS NULL OR c.oid = to_regclass(:name))
ORDER BY n_dead_tup DESC, qualified
""")
CLEAR_SNAPSHOT_SQL = tagged("SELECT pg_stat_clear_snapshot()")


def _table_state(conn: Connection, schema: str | None = None, relid: int | None = None,
                 name: str | None = None) -> pd.DataFrame:
    conn.execute(text(CLEAR_SNAPSHOT_SQL))
    return query_df(conn, TABLE_STATE_SQL, schema=schema, relid=relid, name=name)


def vacuum_statement(schema: str, name: str) -> sql.Composed:
    return sql.SQL("VACUUM (ANALYZE) {}").format(ident(schema, name))


def reindex_statement(schema: str, name: str) -> sql.Composed:
    return sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(ident(schema, name))


def drop_index_statement(schema: str, name: str) -> sql.Composed:
    return sql.SQL("DROP INDEX CONCURRENTLY {}").format(ident(schema, name))


def vacuum_analyze(
    settings: Settings,
    tables: Sequence[str] | None = None,
    dry_run: bool = True,
    min_dead_tuples: int | None = None,
    min_dead_ratio: float | None = None,
    schema: str = "public",
    statement_timeout_s: float = ACTION_STATEMENT_TIMEOUT_S,
) -> MaintenanceReport:
    """VACUUM (ANALYZE) the tables of `schema` that hold at least `min_dead_tuples` dead tuples making
    up at least `min_dead_ratio` of their rows (or exactly the `tables` named), one at a time.

    None takes thresholds.postgres.min_dead_tuples and .vacuum_dead_ratio: floors, so "at least".
    """
    limits = settings.thresholds.postgres
    min_dead_tuples = limits.min_dead_tuples if min_dead_tuples is None else min_dead_tuples
    min_dead_ratio = limits.vacuum_dead_ratio if min_dead_ratio is None else min_dead_ratio
    criteria = (f"tables named {', '.join(tables)}" if tables else
                f"{schema} tables with {min_dead_tuples:,}+ dead tuples and {min_dead_ratio:.0%}+ dead")
    report = MaintenanceReport("vacuum", dry_run, criteria)
    with plan_session(settings) as conn:
        if tables:
            plan, missing = _named_tables(conn, tables)
            for name in missing:
                report.actions.append(MaintenanceAction(name, "VACUUM (ANALYZE)", dry_run, "named",
                                                        status="skipped: no such table"))
        else:
            plan = _table_state(conn, schema=schema)
            plan = plan[(plan["n_dead_tup"] >= min_dead_tuples) & (plan["dead_ratio"] >= min_dead_ratio)]
    for row in plan.itertuples():
        action = MaintenanceAction.of(
            vacuum_statement(row.schema, row.name), row.qualified, dry_run, oid=int(row.relid),
            reason=f"{int(row.n_dead_tup):,} dead tuples ({row.dead_ratio:.0%})",
            before={"n_dead_tup": int(row.n_dead_tup), "n_live_tup": int(row.n_live_tup),
                    "table_bytes": int(row.table_bytes)},
        )
        if not row.can_maintain:
            action.status = "skipped: not owner"
        report.actions.append(action)
    if dry_run:
        return report
    with action_session(settings) as conn:
        for action in report.actions:
            if action.status != PLANNED:
                continue
            if run_statement(conn, settings, action, statement_timeout_s):
                state = _table_state(conn, relid=action.oid)
                if not state.empty:
                    after = state.iloc[0]
                    action.after = {"n_dead_tup": int(after["n_dead_tup"]), "n_live_tup": int(after["n_live_tup"]),
                                    "table_bytes": int(after["table_bytes"])}
    return report


def _named_tables(conn: Connection, tables: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Resolve operator-given names through the catalog, so only catalog-quoted names reach a statement."""
    frames, missing = [], []
    for name in tables:
        frame = _table_state(conn, name=name)
        if frame.empty:
            missing.append(name)
        else:
            frames.append(frame)
    plan = pd.concat(frames, ignore_index=True) if frames else _table_state(conn, relid=0)
    return plan.drop_duplicates("qualified"), missing


# ---- REINDEX CONCURRENTLY -------------------------------------------------------------------

INDEX_TABLE_SQL = tagged("""
SELECT i.indrelid AS table_oid, pg_has_role(t.relowner, 'USAGE') AS can_maintain
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE i.indexrelid = to_regclass(:q)
""")

INVALID_ON_TABLE_SQL = tagged("""
SELECT i.indexrelid AS oid, n.nspname AS schema, c.relname AS name,
       format('%I.%I', n.nspname, c.relname) AS qualified
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indrelid = :table_oid AND NOT i.indisvalid
""")

INDEX_SIZE_SQL = tagged("SELECT pg_relation_size(to_regclass(:q))")


def reindex_bloated(
    settings: Settings,
    bloat_threshold: float | None = None,
    min_size_bytes: int = DEFAULT_MIN_INDEX_BYTES,
    dry_run: bool = True,
    statement_timeout_s: float = ACTION_STATEMENT_TIMEOUT_S,
) -> MaintenanceReport:
    """REINDEX INDEX CONCURRENTLY each valid B-tree of at least `min_size_bytes` whose bloat ratio is
    past `bloat_threshold` (pgstatindex leaf density when pgstattuple is installed, else the
    catalog estimate); sizes before and after. None: the warning level of thresholds.postgres.bloat_ratio,
    so the rebuild takes exactly the indexes the bloat check flags."""
    level = settings.thresholds.postgres.bloat_ratio
    bloat_threshold = level.first if bloat_threshold is None else bloat_threshold
    criteria = f"B-tree indexes of {pretty_bytes(min_size_bytes)}+ with more than {bloat_threshold:.0%} bloat"
    with plan_session(settings) as conn:
        bloat, method = index_bloat(conn)
    report = MaintenanceReport("reindex", dry_run, criteria, note=f"bloat {method}")
    reliable = ~bloat["estimate_unreliable"].astype(bool)
    chosen = bloat[reliable & (bloat["size_bytes"] >= min_size_bytes) & level.beyond(bloat["bloat_ratio"], bloat_threshold)]
    for row in chosen.itertuples():
        density = "" if row.avg_leaf_density != row.avg_leaf_density else (
            f", leaf density {row.avg_leaf_density:.0f}%, fragmentation {row.leaf_fragmentation:.0f}%")
        report.actions.append(MaintenanceAction.of(
            reindex_statement(row.schema, row.index), row.qualified, dry_run,
            reason=f"{row.bloat_ratio:.0%} bloat ({row.method}{density})",
            before={"size_bytes": int(row.size_bytes), "bloat_ratio": round(float(row.bloat_ratio), 4)},
        ))
    if dry_run:
        return report
    with action_session(settings) as conn:
        for action in report.actions:
            info = conn.execute(text(INDEX_TABLE_SQL), {"q": action.object}).first()
            if info is None:
                action.status = "skipped: index no longer exists"
                continue
            if not info.can_maintain:
                action.status = "skipped: not owner"
                continue
            known_invalid = {r.oid for r in conn.execute(text(INVALID_ON_TABLE_SQL), {"table_oid": info.table_oid})}
            if run_statement(conn, settings, action, statement_timeout_s):
                action.after = {"size_bytes": int(conn.execute(text(INDEX_SIZE_SQL), {"q": action.object}).scalar_one())}
            else:
                _clean_failed_rebuild(conn, settings, action, info.table_oid, known_invalid)
    return report


def _clean_failed_rebuild(conn: Connection, settings: Settings, action: MaintenanceAction,
                          table_oid: int, known_invalid: set[int]) -> None:
    """Drop the invalid _ccnew/_ccold index a failed REINDEX CONCURRENTLY just left on the table."""
    rows = conn.execute(text(INVALID_ON_TABLE_SQL), {"table_oid": table_oid}).all()
    leftovers = [r for r in rows if r.oid not in known_invalid and REBUILD_LEFTOVER.search(r.name)]
    notes = []
    for leftover in leftovers:
        cleanup = MaintenanceAction.of(drop_index_statement(leftover.schema, leftover.name), leftover.qualified, False)
        if run_statement(conn, settings, cleanup, ACTION_STATEMENT_TIMEOUT_S):
            notes.append(f"dropped the leftover {leftover.qualified}")
        else:
            notes.append(f"left {leftover.qualified} behind ({cleanup.status}); drop_invalid_ccnew removes it")
    if notes:
        action.error = "; ".join([action.error, *notes]) if action.error else "; ".join(notes)


# ---- invalid leftovers of REINDEX CONCURRENTLY ----------------------------------------------

def drop_invalid_ccnew(
    settings: Settings, dry_run: bool = True, statement_timeout_s: float = ACTION_STATEMENT_TIMEOUT_S
) -> MaintenanceReport:
    """DROP INDEX CONCURRENTLY every invalid `*_ccnew*` / `*_ccold*` index, unless a build on its
    table is in progress right now (then it is that build's, not a leftover)."""
    report = MaintenanceReport("invalid_indexes", dry_run, "invalid _ccnew/_ccold indexes left by REINDEX CONCURRENTLY")
    with plan_session(settings) as conn:
        rows = invalid_index_rows(conn)
    for row in rows[rows["rebuild_leftover"]].itertuples():
        action = MaintenanceAction.of(
            drop_index_statement(row.schema, row.index), row.qualified, dry_run,
            reason="invalid leftover of a failed REINDEX CONCURRENTLY",
            before={"size_bytes": int(row.size_bytes)},
        )
        if row.build_in_progress:
            action.status = "skipped: an index build on this table is in progress"
        report.actions.append(action)
    if dry_run:
        return report
    with action_session(settings) as conn:
        for action in report.actions:
            if action.status == PLANNED and run_statement(conn, settings, action, statement_timeout_s):
                action.after = {"size_bytes": 0}
    return report


# ---- notebook steps -------------------------------------------------------------------------

@check("maintenance.vacuum")
def vacuum(ctx: RunContext, dry_run: bool = True, tables: Sequence[str] | None = None,
           min_dead_tuples: int | None = None, min_dead_ratio: float | None = None) -> Findings:
    """The weekly VACUUM (ANALYZE) step: not destructive, so dry_run=False is enough to act."""
    return vacuum_analyze(ctx.settings, tables=tables, dry_run=dry_run, min_dead_tuples=min_dead_tuples,
                          min_dead_ratio=min_dead_ratio).to_findings()


@check("maintenance.reindex")
def reindex(ctx: RunContext, dry_run: bool = True, bloat_threshold: float | None = None,
            min_size_bytes: int = DEFAULT_MIN_INDEX_BYTES) -> Findings:
    """The weekly index rebuild, concurrently and only where bloated: dry_run=False is enough to act."""
    return reindex_bloated(ctx.settings, bloat_threshold=bloat_threshold, min_size_bytes=min_size_bytes,
                           dry_run=dry_run).to_findings()


@check("maintenance.invalid_indexes")
def drop_invalid_indexes(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Drop leftovers of failed concurrent rebuilds: a DROP, so it needs dry_run=False AND confirm=True."""
    if not dry_run and not confirm:
        report = drop_invalid_ccnew(ctx.settings, dry_run=True)
        report.note = "dry_run=False needs confirm=True as well: nothing dropped"
        return report.to_findings()
    return drop_invalid_ccnew(ctx.settings, dry_run=dry_run).to_findings()
