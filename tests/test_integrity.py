"""amcheck finds an index damaged on disk for real, and REINDEX repairs it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from ccops.checks import integrity
from ccops.core import localpg
from ccops.core.db import dispose_all, normalize_url


def damage_index_on_disk(cluster: localpg.Cluster, url: str, index: str) -> None:
    """Overwrite the middle of an index file with garbage while the server is stopped."""
    engine = create_engine(normalize_url(url))
    with engine.connect() as conn:
        relative = conn.execute(text("SELECT pg_relation_filepath(:i)"), {"i": index}).scalar()
        conn.execute(text("CHECKPOINT"))
    engine.dispose()
    dispose_all()
    cluster.stop()
    path = Path(cluster.status().datadir) / relative
    size = path.stat().st_size
    assert size >= 8192 * 4, "the index needs a few pages so the damage lands on leaf pages"
    with open(path, "r+b") as handle:
        handle.seek(8192 * 2)  # leave the meta page and first pages, hit leaves in the middle
        handle.write(b"\x7f" * 8192)
    cluster.start()


def test_damaged_index_is_found_and_rebuilt(tmp_path):
    cluster = localpg.Cluster(tmp_path / "pg")
    cluster.start()
    try:
        url = cluster.create_database("corrupt")
        engine = create_engine(normalize_url(url))
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE agent_logs_copy (id serial primary key, agent_name text, n int)"))
            conn.execute(text("INSERT INTO agent_logs_copy (agent_name, n) "
                              "SELECT 'Agent' || (g % 17), g FROM generate_series(1, 20000) g"))
            conn.execute(text("CREATE INDEX ix_copy_n ON agent_logs_copy (n)"))
        engine.dispose()

        before = integrity.check_integrity(url)
        assert before.clean and set(before.indexes["index"]) == {"agent_logs_copy_pkey", "ix_copy_n"}

        damage_index_on_disk(cluster, url, "ix_copy_n")
        url = cluster.url("corrupt")  # the port is kept when free, but do not rely on it
        found = integrity.check_integrity(url)
        assert found.damaged_indexes == ["ix_copy_n"]
        assert found.damaged_tables == []
        findings = {f.check: f for f in integrity.report_findings(found)}
        assert findings["integrity.indexes"].status.value == "CRITICAL"
        assert "ix_copy_n" in findings["integrity.indexes"].summary

        results = integrity.reindex(url, found.damaged_indexes)
        assert results[0]["ok"], results
        after = integrity.check_integrity(url)
        assert after.clean
    finally:
        dispose_all()
        cluster.destroy()


def test_production_schema_database_is_clean(make_database):
    report = integrity.check_integrity(make_database("production"))
    assert report.clean
    assert len(report.indexes) == 37, "16 primary keys, 18 ix_ indexes and 3 unique constraints"
