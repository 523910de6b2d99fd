"""What ccops itself did to the database's statistics: a small ledger so the reviews can leave it out.

A backup's pg_dump reads every table by a sequential scan (`COPY public.x (...)
TO stdout`) and its manifest counts every table's rows, so the monthly
"tables read mostly by sequential scans" review would otherwise rank the
monitor's own backups among the app's missing indexes, and pg_stat_statements
would list pg_dump's COPY and catalog queries among the app's statements.
pg_stat_user_tables has no per-application split and pg_dump's statements
carry no comment, so ccops measures: `measured(url, operation)` reads
pg_stat_user_tables (seq_scan, seq_tup_read per table) and pg_stat_statements
(calls, time, rows per statement) before and after an operation and adds the
difference to a ledger in CCOPS_HOME/selfstats/. The reviews subtract it
(`own_table_scans`, `own_statements`).

What the ledger cannot know, it does not claim: a scan the app made during the
measured window is counted as ccops' (windows are the length of one backup);
figures from before a statistics reset (pg_stat_reset, pg_stat_statements_reset)
are dropped, because the counters they were measured against are gone; and a
subtraction never goes below zero. Measuring never breaks the operation it
measures: a database that cannot be read for statistics is simply not measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.engine import Connection

from ccops.core import fs

LEDGER_DIR = "selfstats"
SETTLE_SECONDS = 5.0  # how long to wait for finished sessions to flush their statistics
MAX_OPERATIONS = 50  # operations kept in the ledger for the report

TABLES_SQL = """
SELECT relid::bigint AS relid, schemaname, relname, seq_scan, seq_tup_read
FROM pg_stat_user_tables
"""
DATABASE_SQL = """
SELECT d.oid::bigint AS oid, s.stats_reset::text AS stats_reset
FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid
WHERE d.datname = current_database()
"""
STATEMENTS_SQL = """
SELECT s.queryid::text AS queryid, s.calls, s.total_exec_time::float8 AS total_ms, s.rows
FROM {view} s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.queryid IS NOT NULL
"""
OTHER_SESSIONS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE application_name = :name AND pid <> pg_backend_pid() AND datname = current_database()
"""


@dataclass
class Snapshot:
    """The counters of one database at one moment."""

    database_oid: int
    stats_reset: str | None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # relid -> counters and name
    statements_reset: str | None = None
    statements: dict[str, dict[str, float]] | None = None  # queryid -> calls, total_ms, rows; None: unreadable


def _statements_view(conn: Connection) -> tuple[str, str | None] | None:
    """(the pg_stat_statements view, its stats_reset) when the extension is created and readable."""
    from ccops.core.pgsql import extension_schema
    from ccops.core.sqlsafe import ident, render

    schema = extension_schema(conn, "pg_stat_statements")
    if schema is None:
        return None
    view = render(ident(schema, "pg_stat_statements"), conn)
    info = render(ident(schema, "pg_stat_statements_info"), conn)
    try:
        with conn.begin_nested():
            reset = conn.execute(text(f"SELECT stats_reset::text FROM {info}")).scalar()  # nosec B608 - quoted by psycopg
    except Exception:  # noqa: BLE001 - not loaded, or older than 1.9: the statements are not measured
        return None
    return view, reset


def take_snapshot(conn: Connection) -> Snapshot:
    """Read the counters (pg_stat_user_tables, pg_stat_statements) of the connected database."""
    row = conn.execute(text(DATABASE_SQL)).mappings().one()
    snap = Snapshot(int(row["oid"]), row["stats_reset"])
    for t in conn.execute(text(TABLES_SQL)).mappings():
        snap.tables[str(t["relid"])] = {"table": f"{t['schemaname']}.{t['relname']}",
                                        "seq_scan": int(t["seq_scan"] or 0), "seq_tup_read": int(t["seq_tup_read"] or 0)}
    found = _statements_view(conn)
    if found is not None:
        view, snap.statements_reset = found
        rows = conn.execute(text(STATEMENTS_SQL.format(view=view)))  # nosec B608 - view quoted by psycopg
        snap.statements = {r.queryid: {"calls": float(r.calls), "total_ms": float(r.total_ms), "rows": float(r.rows)}
                           for r in rows}
    return snap


def _snapshot(url: str) -> Snapshot:
    from ccops.core.db import connect

    with connect(url, statement_timeout_ms=30_000) as conn:
        return take_snapshot(conn)


def _others_running(url: str) -> int:
    from ccops.core.db import application_name, connect

    with connect(url) as conn:
        return int(conn.execute(text(OTHER_SESSIONS_SQL), {"name": application_name()}).scalar() or 0)


def settled_snapshot(url: str, before: Snapshot, timeout: float = SETTLE_SECONDS) -> Snapshot:
    """The counters once ccops' finished sessions have flushed theirs.

    A session's statistics reach the shared counters when its server process
    exits, a moment after the client has gone: read too early and pg_dump's
    scans are missing. So wait until no other session of ccops' name is left,
    then until two readings a moment apart agree.
    """
    deadline = time.monotonic() + timeout
    while _others_running(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    last = _snapshot(url)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = _snapshot(url)
        if _counters(current) == _counters(last):
            return current
        last = current
    return last


def _counters(snap: Snapshot) -> tuple:
    """What must stop moving before a reading counts as settled: the table scan counters only.

    They are the ones that lag (a backend flushes them when it exits or idles). pg_stat_statements
    is written as each statement ends, so it has nothing left to flush; and every reading adds its
    own calls to it, so readings that compared it never agreed and each one waited the whole timeout.
    """
    return tuple(sorted((k, v["seq_scan"]) for k, v in snap.tables.items()))


def difference(before: Snapshot | None, after: Snapshot) -> dict[str, Any]:
    """What happened between two snapshots: per table seq scans, per statement calls/time/rows.

    A table or statement absent before counts from zero (created, or first run,
    in between). Counters that went down were reset in between: not counted.
    """
    tables: dict[str, dict[str, Any]] = {}
    for relid, now in after.tables.items():
        was = (before.tables.get(relid) if before else None) or {"seq_scan": 0, "seq_tup_read": 0}
        scans = now["seq_scan"] - was["seq_scan"]
        if scans > 0:
            tables[relid] = {"table": now["table"], "seq_scan": scans,
                             "seq_tup_read": max(0, now["seq_tup_read"] - was["seq_tup_read"])}
    statements: dict[str, dict[str, float]] = {}
    for queryid, now in (after.statements or {}).items():
        was = ((before.statements or {}).get(queryid) if before else None) or {"calls": 0, "total_ms": 0, "rows": 0}
        calls = now["calls"] - was["calls"]
        if calls > 0:
            statements[queryid] = {"calls": calls, "total_ms": max(0.0, now["total_ms"] - was["total_ms"]),
                                   "rows": max(0.0, now["rows"] - was["rows"])}
    return {"tables": tables, "statements": statements}


# ---- the ledger ------------------------------------------------------------------------------

def default_home() -> Path:
    """CCOPS_HOME as the settings resolve it (file or environment), for callers that hold no settings."""
    try:
        from ccops.core.settings import load_settings

        return Path(load_settings().home)
    except Exception:  # noqa: BLE001 - a broken settings file must not break a backup: use the environment
        return Path(os.environ.get("CCOPS_HOME", ".ccops"))


def ledger_path(home: Path, url: str) -> Path:
    """One ledger per database (host, port, name), named by a hash so no password or odd name reaches a path."""
    from ccops.core.db import libpq_url

    parts = urlsplit(libpq_url(url))
    key = f"{parts.hostname or ''}:{parts.port or ''}/{parts.path.lstrip('/')}"
    return Path(home) / LEDGER_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read_ledger(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def merge(ledger: dict[str, Any], after: Snapshot, delta: dict[str, Any], operation: str) -> dict[str, Any]:
    """Add one operation's difference; start the table part (statement part) afresh after a reset."""
    if ledger.get("database_oid") != after.database_oid or ledger.get("stats_reset") != after.stats_reset:
        ledger = {"operations": ledger.get("operations", []), "statements": ledger.get("statements", {}),
                  "statements_reset": ledger.get("statements_reset"), "tables": {}}
        if ledger.get("database_oid") not in (None, after.database_oid):
            ledger["statements"] = {}
    if ledger.get("statements_reset") != after.statements_reset:
        ledger["statements"] = {}
    ledger.update(database_oid=after.database_oid, stats_reset=after.stats_reset,
                  statements_reset=after.statements_reset)
    for relid, part in delta["tables"].items():
        entry = ledger["tables"].setdefault(relid, {"table": part["table"], "seq_scan": 0, "seq_tup_read": 0})
        entry["table"] = part["table"]
        entry["seq_scan"] += part["seq_scan"]
        entry["seq_tup_read"] += part["seq_tup_read"]
    for queryid, part in delta["statements"].items():
        entry = ledger["statements"].setdefault(queryid, {"calls": 0, "total_ms": 0.0, "rows": 0})
        for key in ("calls", "total_ms", "rows"):
            entry[key] += part[key]
    seq_scans = sum(p["seq_scan"] for p in delta["tables"].values())
    calls = sum(p["calls"] for p in delta["statements"].values())
    ledger["operations"] = (ledger.get("operations", []) + [{
        "operation": operation, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seq_scans": seq_scans, "statement_calls": calls}])[-MAX_OPERATIONS:]
    return ledger


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with fs.exclusive_lock(path.with_suffix(".lock"), blocking=True):
        yield


def record(home: Path, url: str, operation: str, before: Snapshot | None, after: Snapshot) -> dict[str, Any]:
    """Add the difference to the database's ledger (locked, written whole); the difference."""
    delta = difference(before, after)
    path = ledger_path(home, url)
    with _locked(path):
        ledger = merge(read_ledger(path), after, delta, operation)
        fs.write_atomic(path, json.dumps(ledger, indent=1, sort_keys=True))
    return delta


@contextmanager
def measured(url: str, operation: str, home: Path | None = None) -> Iterator[None]:
    """Count what `operation` (a backup's dump and counts, a restore's checks) does to the statistics.

    Never breaks the operation: when the statistics cannot be read (no
    database, no permission) nothing is recorded and the reviews say less.
    """
    try:
        before: Snapshot | None = _snapshot(url)
    except Exception:  # noqa: BLE001 - measuring is a courtesy to the reviews, never a reason to fail
        before = None
    yield
    if before is None:
        return
    try:
        record(home or default_home(), url, operation, before, settled_snapshot(url, before))
    except Exception:  # noqa: BLE001 - see above
        pass


def adopt_all(url: str, operation: str, home: Path | None = None) -> None:
    """Count everything in the database's statistics as ccops' own: for a database ccops just created
    (a restore's new database, whose every scan so far was the restore's load, indexes and checks)."""
    try:
        after = settled_snapshot(url, _snapshot(url))
        path = ledger_path(home or default_home(), url)
        with _locked(path):
            path.unlink(missing_ok=True)
        record(home or default_home(), url, operation, None, after)
    except Exception:  # noqa: BLE001 - see measured()
        pass


# ---- what the reviews subtract -------------------------------------------------------------------

def current_ledger(home: Path, url: str, conn: Connection) -> dict[str, Any]:
    """The ledger when it still fits the database's counters: {} when the database was recreated,
    and without its table (statement) part when those statistics were reset since it was written."""
    ledger = read_ledger(ledger_path(home, url))
    if not ledger:
        return {}
    row = conn.execute(text(DATABASE_SQL)).mappings().one()
    if ledger.get("database_oid") != int(row["oid"]):
        return {}
    if ledger.get("stats_reset") != row["stats_reset"]:
        ledger["tables"] = {}
    found = _statements_view(conn)
    if found is None or found[1] != ledger.get("statements_reset"):
        ledger["statements"] = {}
    return ledger


def own_table_scans(ledger: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """relid -> {seq_scan, seq_tup_read} that ccops caused."""
    return {int(k): v for k, v in ledger.get("tables", {}).items()}


def own_statements(ledger: dict[str, Any]) -> dict[str, dict[str, float]]:
    """queryid (text) -> {calls, total_ms, rows} that ccops' measured operations caused."""
    return dict(ledger.get("statements", {}))
