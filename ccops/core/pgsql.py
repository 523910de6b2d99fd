"""Helpers shared by the PostgreSQL checks and ccops.actions.maintenance.

Every catalog query ccops sends starts with the comment `/* ccops */`.
pg_stat_statements keeps a statement's first-seen text, comments included, so
the query reviews can leave ccops' own catalog reads out of the app's
statistics instead of ranking the monitor among the things it monitors.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

TAG = "/* ccops */"

# Schemas that hold the application's objects: everything but the catalogs, TOAST and temp schemas.
USER_SCHEMA_FILTER = (
    "{n}.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND {n}.nspname !~ '^pg_toast' AND {n}.nspname !~ '^pg_temp_'"
)

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"


def tagged(statement: str) -> str:
    """A constant catalog query with ccops' comment in front. Only for SQL text written in ccops'
    own modules: a name read from the database goes through ccops.core.sqlsafe, never through here."""
    return f"{TAG}\n{statement}"


def user_schemas(alias: str = "n") -> str:
    return USER_SCHEMA_FILTER.format(n=alias)


def pretty_bytes(value: Any) -> str:
    """pg_size_pretty's wording (kB, MB, GB, TB; 1024-based), computed client side."""
    if value is None or value != value:  # None or NaN
        return ""
    size = float(value)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def extension_schema(conn: Connection, name: str) -> str | None:
    """The schema an extension is installed in in this database, None when it is not created."""
    return conn.execute(
        text(tagged("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                    "WHERE e.extname = :name")),
        {"name": name},
    ).scalar()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error wrapped by SQLAlchemy (or raw psycopg), else None."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None)
