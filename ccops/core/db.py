"""Database access for checks: one engine per URL, read-only sessions with timeouts.

Checks run against production while the app writes to it. Every check session
is READ ONLY and carries statement_timeout and lock_timeout, so a slow
catalog query or a table lock held by a migration makes a check report
UNKNOWN instead of hanging a cron job or blocking the app.

ccops must not measure itself. Every session it opens says who it is twice:
`application_name = ccops/<verb or runbook>` (pg_stat_activity, the server log's
connection lines; PGAPPNAME for pg_dump, pg_restore and psql children) and the
comment MARKER in front of every statement it sends through an engine, which
pg_stat_statements keeps in the statement's text. The query reviews leave
statements that start with MARKER out (ccops.checks.postgres.queries).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ccops.core.settings import Settings, mask_url

if TYPE_CHECKING:  # imported where used: `ccops health` (cron, hourly) needs the URL helpers, not these
    import pandas as pd
    from sqlalchemy.engine import Connection, Engine

_ENGINES: dict[str, Engine] = {}

MARKER = "/* ccops */"
APPLICATION_ENV = "CCOPS_APPLICATION_NAME"
_APPLICATION: dict[str, str] = {}


def set_application_name(label: str) -> None:
    """Name the sessions ccops opens from now on (`ccops/weekly`, `ccops/backup`): the runbook or verb."""
    _APPLICATION["name"] = label[:63]  # PostgreSQL keeps 63 bytes of application_name


def application_name() -> str:
    """The name ccops' sessions carry: set by the run or verb, else CCOPS_APPLICATION_NAME, else `ccops`."""
    return _APPLICATION.get("name") or os.environ.get(APPLICATION_ENV) or "ccops"


def marked(statement: str) -> str:
    """`statement` with ccops' marker comment in front (once): pg_stat_statements keeps it in the text."""
    return statement if statement.lstrip().startswith(MARKER) else f"{MARKER} {statement}"


def normalize_url(url: str) -> str:
    """Accept the app's URL shapes (postgres://, postgresql://) and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def libpq_url(url: str) -> str:
    """The same URL for libpq tools (psql, pg_dump): no SQLAlchemy driver suffix."""
    url = normalize_url(url)
    return "postgresql://" + url[len("postgresql+psycopg://"):]


def get_engine(url: str, connect_timeout: int = 5) -> Engine:
    """A cached engine; NullPool because ccops runs are short and must not hold connections."""
    url = normalize_url(url)
    engine = _ENGINES.get(url)
    if engine is None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import NullPool

        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": connect_timeout})
        event.listen(engine, "do_connect", _name_session)
        event.listen(engine, "before_cursor_execute", _mark_statement, retval=True)
        _ENGINES[url] = engine
    return engine


def _name_session(dialect, conn_rec, cargs, cparams) -> None:  # noqa: ANN001 - SQLAlchemy's event signature
    """Read the name at connect time, so one cached engine serves every run and verb under its own name."""
    cparams["application_name"] = application_name()


def _mark_statement(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
    """Put MARKER in front of every statement an engine sends (SQLAlchemy's cursor hook, retval form)."""
    return marked(statement), parameters


def dispose_all() -> None:
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


@contextmanager
def connect(
    url: str,
    read_only: bool = True,
    statement_timeout_ms: int = 30_000,
    lock_timeout_ms: int = 5_000,
) -> Iterator[Connection]:
    """A connection in one transaction with the safety settings applied (SET LOCAL)."""
    from sqlalchemy import text

    engine = get_engine(url)
    with engine.connect() as conn:
        with conn.begin():
            for statement in session_settings(read_only, statement_timeout_ms, lock_timeout_ms):
                conn.execute(text(statement))
            yield conn


def session_settings(read_only: bool, statement_timeout_ms: int, lock_timeout_ms: int) -> list[str]:
    """What makes a ccops session safe, run first in its transaction: read-only unless it acts, and
    bounded waits. One list for connect() and for the light psycopg path `ccops health` takes."""
    return [*(["SET TRANSACTION READ ONLY"] if read_only else []),
            f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}",
            f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"]


@contextmanager
def get_db(settings: Settings, read_only: bool = True) -> Iterator[Connection]:
    """The guide's get_db(), for ccops: a safe connection to the configured database."""
    with connect(
        settings.resolved_database_url(),
        read_only=read_only,
        statement_timeout_ms=settings.statement_timeout_ms,
        lock_timeout_ms=settings.lock_timeout_ms,
    ) as conn:
        yield conn


def query_df(conn: Connection, sql: str, **params: Any) -> pd.DataFrame:
    import pandas as pd
    from sqlalchemy import text

    result = conn.execute(text(sql), params)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def scalar(conn: Connection, sql: str, **params: Any) -> Any:
    from sqlalchemy import text

    return conn.execute(text(sql), params).scalar()


def describe_error(exc: BaseException, url: str = "") -> str:
    """One line for an operator: the driver's first line, the URL without its password."""
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = message[0] if message else exc.__class__.__name__
    where = f" ({mask_url(url)})" if url else ""
    return f"{first}{where}"


def install_query_logger(engine: Engine, sink: list[str]) -> None:
    """Collect every statement an engine runs (used by tests and the benchmark's EXPLAIN)."""
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def _log(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        sink.append(statement)


def libpq_env(url: str) -> dict[str, str]:
    """PG* variables for libpq tools (pg_dump, psql): the password never on a command line."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(libpq_url(url))
    env = {"PGDATABASE": unquote(parts.path.lstrip("/")) or "postgres"}
    if parts.hostname:
        env["PGHOST"] = parts.hostname
    if parts.port:
        env["PGPORT"] = str(parts.port)
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    env["PGAPPNAME"] = application_name()
    return env


def client_tool(name: str) -> str:
    """A PostgreSQL client binary: the server's bindir (matching major) first, then PATH."""
    import shutil
    from pathlib import Path

    from ccops.core import localpg

    try:
        candidate = Path(localpg.find_bindir()) / name
        if candidate.exists():
            return str(candidate)
    except Exception:  # noqa: BLE001 - no server binaries here: fall back to PATH
        pass
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the PostgreSQL client (apt-get install postgresql-client)")
    return found
