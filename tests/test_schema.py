"""ccops.core.schema must create exactly the tables production has (compared with the real dump)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from ccops.core import schema
from ccops.core.db import normalize_url
from tests.conftest import PRODUCTION_SCHEMA

CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, character_maximum_length,
               is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, column_name""",
    "enums": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        ORDER BY t.typname, e.enumsortorder""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY tablename, indexname""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY 1, 2""",
    "sequences": """
        SELECT sequence_name, data_type FROM information_schema.sequences
        WHERE sequence_schema = 'public' ORDER BY 1""",
}


def catalog(url: str) -> dict[str, list[tuple]]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in CATALOG_QUERIES.items()}
    finally:
        engine.dispose()


@pytest.mark.skipif(not PRODUCTION_SCHEMA.exists(), reason=f"{PRODUCTION_SCHEMA} not beside the checkout")
def test_ccops_schema_matches_production_dump(make_database):
    ours = catalog(make_database("ccops"))
    production = catalog(make_database("production"))
    for part in CATALOG_QUERIES:
        assert ours[part] == production[part], part
    tables = {row[0] for row in production["columns"]} - {"pg_stat_statements", "pg_stat_statements_info"}
    assert tables == set(schema.TABLE_NAMES)


def test_schema_knows_all_sixteen_tables():
    assert len(schema.TABLE_NAMES) == 16
    assert "published_content" in schema.TABLE_NAMES
    indexed = {c.name for c in schema.published_content.c if c.index}
    assert indexed == {"published_at"}, "created_at is deliberately unindexed, as in production"
