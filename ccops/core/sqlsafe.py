"""Statements that name database objects: composed with psycopg.sql, never spliced into a string.

A name read from the catalog is data. A table called `a",public.pwn()"b` must
reach the server as one quoted identifier, never as SQL. So every statement
that names a table, index, schema, role or database is a `psycopg.sql`
composition (`sql.Identifier` for the names, placeholders for values) and runs
here, on the DBAPI cursor of the SQLAlchemy connection: the same session and
transaction, but without SQLAlchemy's text(), which would read a `:word` inside
a quoted identifier as a bind parameter. Driver errors come back as
SQLAlchemy's DBAPIError, the type the callers already handle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:  # imported by query_df alone: backup and restore quote names here and never build a frame
    import pandas as pd

Params = Mapping[str, Any] | Sequence[Any] | None


def ident(*parts: str) -> sql.Identifier:
    """A (possibly qualified) name, quoted by psycopg: ident("public", 'odd"name') -> "public"."odd""name"."""
    return sql.Identifier(*parts)


def _raw(conn: Any) -> psycopg.Connection:
    """The psycopg connection under a SQLAlchemy Connection (or the psycopg connection itself)."""
    if isinstance(conn, psycopg.Connection):
        return conn
    return conn.connection.driver_connection


def render(statement: sql.Composable, conn: Any = None) -> str:
    """The statement as the server receives it (for reports: what ran, or would run)."""
    return statement.as_string(_raw(conn) if conn is not None else None)


def _percent_safe(statement: sql.Composable, raw: psycopg.Connection) -> sql.Composable:
    """With parameters psycopg reads every `%` of the rendered statement as a placeholder, those
    inside quoted names too: a table called `col %s` would take a parameter's place. Names are
    rendered here with their `%` doubled, which psycopg turns back into one."""
    if isinstance(statement, sql.Composed):
        return sql.Composed([_percent_safe(part, raw) for part in statement])
    if isinstance(statement, sql.Identifier):
        return sql.SQL(statement.as_string(raw).replace("%", "%%"))
    return statement


def _run(conn: Any, statement: sql.Composable, params: Params) -> tuple[list[str], list[tuple]]:
    raw = _raw(conn)
    from ccops.core.db import MARKER  # ccops' statements carry its marker, these too (see ccops.core.db)

    statement = sql.Composed([sql.SQL(MARKER + " "), statement])
    try:
        with raw.cursor() as cursor:
            query = statement if params is None else sql.Composed([_percent_safe(statement, raw)])
            cursor.execute(query, params)
            if cursor.description is None:
                return [], []
            return [c.name for c in cursor.description], cursor.fetchall()
    except psycopg.Error as exc:
        raise DBAPIError.instance(render(statement, conn), params, exc, psycopg.Error) from exc


def execute(conn: Any, statement: sql.Composable, params: Params = None) -> list[tuple]:
    """Run one composed statement; its rows (empty for a command)."""
    return _run(conn, statement, params)[1]


def scalar(conn: Any, statement: sql.Composable, params: Params = None) -> Any:
    rows = execute(conn, statement, params)
    return rows[0][0] if rows else None


def query_df(conn: Any, statement: sql.Composable, params: Params = None) -> pd.DataFrame:
    columns, rows = _run(conn, statement, params)
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)
