"""ccops.core.localpg: a real private cluster, as root (server as `postgres`) and as a normal user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ccops.core import localpg

REPO = Path(__file__).resolve().parent.parent


def test_start_is_idempotent_stop_is_clean_and_extensions_are_preloaded(tmp_path):
    cluster = localpg.Cluster(tmp_path / "pg")
    try:
        url = cluster.start()
        first = cluster.status()
        assert first.running and first.port
        assert cluster.start() == url, "a second start keeps the running server"
        assert cluster.status().pid == first.pid
        engine = create_engine(cluster.create_database("probe"))
        with engine.connect() as conn:
            preload = conn.execute(text("SHOW shared_preload_libraries")).scalar()
            extensions = {r[0] for r in conn.execute(text("SELECT extname FROM pg_extension"))}
            listen = conn.execute(text("SHOW listen_addresses")).scalar()
        engine.dispose()
        assert "pg_stat_statements" in preload
        assert {"pg_stat_statements", "amcheck"} <= extensions
        assert listen == "127.0.0.1"
        if os.geteuid() == 0:
            owner = Path(first.datadir).stat().st_uid
            assert owner == __import__("pwd").getpwnam("postgres").pw_uid, "as root the server runs as postgres"
        assert oct((tmp_path / "pg" / "state.json").stat().st_mode)[-3:] == "600"
        cluster.stop()
        assert not cluster.status().running
        cluster.stop()  # stopping a stopped cluster is fine
    finally:
        cluster.destroy()
    assert not (tmp_path / "pg").exists()


def test_a_detached_destroy_stops_at_once_and_the_files_go_after(tmp_path):
    """destroy(detach=True) returns with the server stopped; a background rm then removes data dir and root."""
    import time

    cluster = localpg.Cluster(tmp_path / "pg")
    cluster.start()
    for number in range(20):
        cluster.psql(f"CREATE DATABASE filler_{number}")
    datadir = Path(cluster.status().datadir)
    cluster.destroy(detach=True)
    assert not cluster.status().running
    deadline = time.monotonic() + 30
    while (datadir.exists() or (tmp_path / "pg").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not datadir.exists() and not (tmp_path / "pg").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_start_and_stop_as_a_normal_user():
    # pytest's tmp dirs are private to root, so the unprivileged user gets its own under /tmp
    home = Path(tempfile.mkdtemp(prefix="ccops-nobody-"))
    home.chmod(0o755)
    shutil.chown(home, "nobody", "nogroup")
    script = (
        "import sys; from ccops.core.localpg import Cluster; c = Cluster(sys.argv[1]); c.start(); "
        "s = c.status(); import os; print(s.running, s.port, os.stat(s.datadir).st_uid == os.getuid()); "
        "c.stop(); print(c.status().running); "
        "import pathlib; print(any(pathlib.Path(sys.argv[1]).parent.glob('.cache/ccops/ccops-pgtemplate-*/ready')))"
    )
    # localpg needs only the standard library, so any Python the user can run will do
    # (the venv's interpreter may live under root's private home).
    # runuser sets HOME to the user's own (nobody's does not exist); the cache dir follows XDG_CACHE_HOME
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "PYTHONPATH": str(REPO)}
    python = next((p for p in (sys.executable, "/usr/bin/python3") if _runs_as_nobody(p, env)), None)
    if python is None:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip("no Python interpreter that the user nobody may run, or the checkout is private")
    proc = subprocess.run(
        ["runuser", "-u", "nobody", "--", python, "-c", script, str(home / "pg")],
        capture_output=True, text=True, cwd=home, timeout=120, env=env,
    )
    shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    running, port, owned, stopped, templated = proc.stdout.split()
    assert running == "True" and int(port) > 0 and stopped == "False"
    assert templated == "True", "a normal user's initdb template lives in that user's cache dir"
    assert owned == "True", "a normal user's cluster belongs to that user, no runuser involved"


def _runs_as_nobody(python: str, env: dict[str, str]) -> bool:
    probe = subprocess.run(["runuser", "-u", "nobody", "--", python, "-c", "import ccops.core.localpg"],
                           capture_output=True, text=True, env=env, cwd="/")
    return probe.returncode == 0


def test_missing_binaries_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CCOPS_PG_BINDIR", str(tmp_path))
    with pytest.raises(localpg.LocalPgError, match="apt-get install postgresql"):
        localpg.find_bindir()


def _connects(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as error:
        assert "password authentication failed" in str(error), error
        return False
    return True


def test_clusters_copied_from_the_initdb_template_each_have_their_own_password(tmp_path):
    """Two clusters made from the one initdb template: each answers only its own password, as initdb's would.

    Checked the way an operator would with psql: the role's stored secret is a SCRAM-SHA-256 verifier
    (no plain text, no md5), host and local auth stay scram, the catalog is UTF8 and C.UTF-8.
    """
    first, second = localpg.Cluster(tmp_path / "a"), localpg.Cluster(tmp_path / "b")
    try:
        urls = [first.start(), second.start()]
        template = first._initdb_template()
        assert template is not None and (template.parent / localpg.TEMPLATE_READY).exists()
        assert _connects(first.url(driver="postgresql")) and _connects(second.url(driver="postgresql"))
        swapped = first.url(driver="postgresql").replace(f":{first._state()['port']}/", f":{second._state()['port']}/")
        assert not _connects(swapped), "one cluster's password opens no other cluster made from the same template"
        secrets_seen = set()
        for cluster in (first, second):
            row = cluster.psql("SELECT rolpassword, current_setting('server_encoding'), datcollate FROM pg_authid, "
                               "pg_database WHERE rolname = 'postgres' AND datname = 'postgres'").strip().split("|")
            assert row[0].startswith("SCRAM-SHA-256$4096:") and row[1:] == ["UTF8", "C.UTF-8"], row
            secrets_seen.add(row[0])
            hba = cluster.psql("SELECT DISTINCT type || ' ' || auth_method FROM pg_hba_file_rules").split()
            assert set(hba) - {"local", "host", "scram-sha-256"} == set(), hba
        assert len(secrets_seen) == 2
        assert all(url.startswith("postgresql+psycopg://postgres:") for url in urls)
    finally:
        first.destroy()
        second.destroy()


def test_without_a_usable_template_folder_initdb_makes_the_cluster(tmp_path, monkeypatch):
    """A template folder that cannot be made (here its parent is a file) costs the initdb, never the cluster."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    monkeypatch.setattr(localpg, "_template_parent", lambda: blocker)
    cluster = localpg.Cluster(tmp_path / "pg")
    try:
        assert cluster._initdb_template() is None
        cluster.start()
        assert _connects(cluster.url(driver="postgresql"))
    finally:
        cluster.destroy()


def test_scram_verifier_is_the_secret_postgres_computes(tmp_path, monkeypatch):
    """Our verifier for a password, with PostgreSQL's salt and iterations, equals the one the server stored."""
    import base64

    cluster = localpg.Cluster(tmp_path / "pg")
    try:
        cluster.start()
        cluster.psql("SET password_encryption = 'scram-sha-256'; CREATE ROLE probe LOGIN PASSWORD 'Pr0be-passw0rd_x'")
        stored = cluster.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'probe'").strip()
        salt = base64.b64decode(stored.split("$")[1].split(":")[1])
        monkeypatch.setattr(localpg.secrets, "token_bytes", lambda n: salt)
        assert localpg.scram_verifier("Pr0be-passw0rd_x") == stored
    finally:
        cluster.destroy()
