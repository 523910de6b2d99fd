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
        "c.stop(); print(c.status().running)"
    )
    # localpg needs only the standard library, so any Python the user can run will do
    # (the venv's interpreter may live under root's private home).
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
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
    running, port, owned, stopped = proc.stdout.split()
    assert running == "True" and int(port) > 0 and stopped == "False"
    assert owned == "True", "a normal user's cluster belongs to that user, no runuser involved"


def _runs_as_nobody(python: str, env: dict[str, str]) -> bool:
    probe = subprocess.run(["runuser", "-u", "nobody", "--", python, "-c", "import ccops.core.localpg"],
                           capture_output=True, text=True, env=env, cwd="/")
    return probe.returncode == 0


def test_missing_binaries_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CCOPS_PG_BINDIR", str(tmp_path))
    with pytest.raises(localpg.LocalPgError, match="apt-get install postgresql"):
        localpg.find_bindir()
