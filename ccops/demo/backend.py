"""The "local" service backend: the demo's `db` (the private cluster) and `app` (the status server).

The emergency runbooks check, stop, start and restart services through a
backend (compose, systemd, local). For the embedded demo those services are
real processes on this machine, so the system-down runbook can be practised
for real: stop the db and /health turns 503; start it and it comes back.
docker compose reports a restart count per container; we keep the same
number in `demo_dir/services.json`, bumped by every restart_service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ccops import localpg
from ccops.config import Settings
from ccops.demo import appenv
from ccops.errors import CcopsError, UsageError

SERVICE_NAMES = ("db", "app")
SERVER_MODULE = "ccops.demo.server"
_CHILDREN: dict[int, subprocess.Popen] = {}


class DemoError(CcopsError):
    """A demo service could not be started or stopped."""


# ---- the app (status server) ---------------------------------------------------------

def server_file(settings: Settings) -> Path:
    return settings.demo_dir / "server.json"


def server_state(settings: Settings) -> dict[str, Any]:
    try:
        state = json.loads(server_file(settings).read_text())
        return {"pid": int(state["pid"]), "port": int(state["port"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _alive(pid: int | None) -> bool:
    """True if pid is a live (not zombie) status server: pids get reused, so check the command line."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and SERVER_MODULE in cmdline


def server_running(settings: Settings) -> dict[str, Any]:
    """The server's {pid, port} if it is running, else {}."""
    state = server_state(settings)
    return state if _alive(state.get("pid")) else {}


def start_server(settings: Settings, timeout: float = 15) -> dict[str, Any]:
    """Start the detached status server unless it runs; keep its previous port when that is free."""
    running = server_running(settings)
    if running:
        return running
    previous = server_state(settings).get("port")
    port = previous if previous and localpg.port_is_free(previous) else 0
    settings.demo_dir.mkdir(parents=True, exist_ok=True)
    state_path = server_file(settings)
    state_path.unlink(missing_ok=True)
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    log_path = settings.demo_dir / "server.log"
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--port", str(port),
             "--env-file", str(Path(settings.effective_app_env_file).resolve()), "--state-file", str(state_path.resolve())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(settings.demo_dir), env=env,
        )
    _CHILDREN[child.pid] = child
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server_state(settings)
        if state.get("pid") == child.pid:
            return state
        if child.poll() is not None:
            break
        time.sleep(0.05)
    if child.poll() is None:
        _terminate(child.pid)
    tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
    raise DemoError(f"status server did not start{': ' + tail[0] if tail else ''} (log: {log_path})")


def stop_server(settings: Settings, timeout: float = 5) -> bool:
    """Stop the server if it runs (TERM, then KILL); True if it was running. server.json is kept."""
    pid = server_running(settings).get("pid")
    if not pid:
        return False
    _terminate(pid, timeout)
    return True


def _terminate(pid: int, timeout: float = 5) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            child = _CHILDREN.get(pid)
            if child is not None:
                try:
                    child.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                _CHILDREN.pop(pid, None)
                return
            if not Path(f"/proc/{pid}").exists() or not _alive(pid):
                return
            time.sleep(0.05)


def probe(url: str, timeout: float = 3) -> tuple[int | None, dict[str, Any]]:
    """(HTTP status, JSON body) of a GET; (None, {"error": ...}) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        return exc.code, body
    except (OSError, ValueError) as exc:
        return None, {"error": str(getattr(exc, "reason", exc))}


# ---- the db (private cluster) -----------------------------------------------------------

def cluster(settings: Settings) -> localpg.Cluster:
    return localpg.demo_cluster(settings.home)


def app_database_url(settings: Settings) -> str:
    """The demo database's URL in the app's own `postgresql://` form, real password included."""
    return cluster(settings).url(localpg.DEMO_DATABASE, driver="postgresql")


def db_health(settings: Settings) -> tuple[bool, str]:
    from ccops.demo.server import check_database

    try:
        url = app_database_url(settings)
    except localpg.LocalPgError as exc:
        return False, str(exc)
    return check_database(url)


def start_db(settings: Settings) -> None:
    cluster(settings).start()
    appenv.set_database_url(settings.effective_app_env_file, app_database_url(settings))


# ---- the backend interface ------------------------------------------------------------------

def _counts_file(settings: Settings) -> Path:
    return settings.demo_dir / "services.json"


def restart_counts(settings: Settings) -> dict[str, int]:
    try:
        data = json.loads(_counts_file(settings).read_text())
        return {name: int(data.get(name, {}).get("restarts", 0)) for name in SERVICE_NAMES}
    except (OSError, ValueError, AttributeError, TypeError):
        return dict.fromkeys(SERVICE_NAMES, 0)


def _bump_restarts(settings: Settings, name: str) -> None:
    counts = restart_counts(settings)
    counts[name] += 1
    settings.demo_dir.mkdir(parents=True, exist_ok=True)
    path = _counts_file(settings)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({key: {"restarts": value} for key, value in counts.items()}))
    os.replace(tmp, path)


def _check_name(name: str) -> None:
    if name not in SERVICE_NAMES:
        raise UsageError(f"unknown demo service {name!r}: expected one of {', '.join(SERVICE_NAMES)}")


def service(settings: Settings, name: str) -> dict[str, Any]:
    """One service as `docker compose ps` would describe it."""
    _check_name(name)
    restarts = restart_counts(settings)[name]
    if name == "db":
        status = cluster(settings).status()
        if not status.running:
            return {"service": "db", "state": "stopped", "health": "", "restarts": restarts, "pid": None,
                    "detail": f"PostgreSQL stopped, data in {status.datadir}"}
        healthy, reason = db_health(settings)
        return {"service": "db", "state": "running", "health": "healthy" if healthy else "unhealthy",
                "restarts": restarts, "pid": status.pid,
                "detail": f"PostgreSQL on 127.0.0.1:{status.port}" + ("" if healthy else f": {reason}")}
    running = server_running(settings)
    if not running:
        port = server_state(settings).get("port")
        return {"service": "app", "state": "stopped", "health": "", "restarts": restarts, "pid": None,
                "detail": "status server stopped" + (f" (last on port {port})" if port else "")}
    code, body = probe(f"http://127.0.0.1:{running['port']}/health")
    health = "healthy" if code == 200 else "unhealthy"
    detail = f"status server on 127.0.0.1:{running['port']}"
    if code != 200:
        detail += f": /health {code or 'no answer'} {body.get('error') or body.get('database') or ''}".rstrip()
    return {"service": "app", "state": "running", "health": health, "restarts": restarts,
            "pid": running["pid"], "detail": detail}


def services(settings: Settings) -> list[dict[str, Any]]:
    return [service(settings, name) for name in SERVICE_NAMES]


def start_service(settings: Settings, name: str) -> dict[str, Any]:
    _check_name(name)
    if name == "db":
        start_db(settings)
    else:
        start_server(settings)
    return service(settings, name)


def stop_service(settings: Settings, name: str) -> dict[str, Any]:
    _check_name(name)
    if name == "db":
        cluster(settings).stop()
    else:
        stop_server(settings)
    return service(settings, name)


def restart_service(settings: Settings, name: str) -> dict[str, Any]:
    _check_name(name)
    if name == "db":
        cluster(settings).stop()
        start_db(settings)
    else:
        stop_server(settings)
        start_server(settings)
    _bump_restarts(settings, name)
    return service(settings, name)
