"""Small helpers shared by tests that seed a database through a RunContext."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from ccops.context import RunContext
from ccops.db import normalize_url


def insert(ctx: RunContext, sql: str, rows: list[dict] | dict) -> None:
    """Run one INSERT (for each row) against the context's database, committed."""
    engine = create_engine(normalize_url(ctx.settings.resolved_database_url()))
    with engine.begin() as conn:
        conn.execute(text(sql), rows)
    engine.dispose()


def one(findings, check_id):
    """The single finding with this check id."""
    matches = [f for f in findings if f.check == check_id]
    assert len(matches) == 1, [str(f) for f in findings]
    return matches[0]
