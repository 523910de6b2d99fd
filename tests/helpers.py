"""Small helpers shared by tests that seed a database through a RunContext."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from ccops.core.context import RunContext
from ccops.core.db import normalize_url


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ccops setting (CCOPS_*, DATABASE_URL), plus `extra`.

    What a ccops started by a test as its own process gets: the developer's or CI's
    own settings never leak into it, as an operator's shell would not have them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


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


def write_notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """A runbook-shaped notebook from (kind, source) pairs: kind is markdown, code or parameters."""
    made = []
    for kind, source in cells:
        if kind == "markdown":
            made.append(nbformat.v4.new_markdown_cell(source))
            continue
        cell = nbformat.v4.new_code_cell(source)
        if kind == "parameters":
            cell.metadata["tags"] = ["parameters"]
        made.append(cell)
    notebook = nbformat.v4.new_notebook(cells=made)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


def autocommit(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CONCURRENTLY and VACUUM need that), then flush this
    backend's statistics counters, so the next read of pg_stat_* sees them without sleeping."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    with engine.connect() as raw:
        conn = raw.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            conn.execute(text(statement))
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        conn.execute(text("SELECT 1"))
    engine.dispose()


def scalar(url: str, sql: str):
    """One value, read in a connection of its own (what psql would print)."""
    found = row(url, sql)
    return None if found is None else found[0]


def row(url: str, sql: str):
    """The first row, read in a connection of its own."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    with engine.connect() as conn:
        result = conn.execute(text(sql)).first()
    engine.dispose()
    return result


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` (e.g. "2m") mounted on `folder` (made here) for the block, unmounted after.

    Full-disk behaviour is tested on a real filesystem that fills up, never on a mock. The test is
    skipped, with the reason, where the machine refuses the mount (not root, no tmpfs).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def backup_source(make_demo_database, ccops_env: Path, monkeypatch: pytest.MonkeyPatch, seed: int, days: int) -> str:
    """A demo-filled database of the test's own as this invocation's database, and a backup dir under tmp.

    What every backup test starts from: no service backend (nothing to stop), the
    environment naming the database and the dir, as an operator's would. The database is a
    copy of the session's (seed, days) demo data (conftest's make_demo_database).
    """
    url = make_demo_database(seed, days)
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    return url
