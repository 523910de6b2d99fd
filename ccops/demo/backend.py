"""The "local" service backend: the demo's `db` (the private cluster) and `app` (the app's process).

The emergency runbooks check, stop, start and restart services through a
backend (compose, systemd, process, local). For the embedded demo those
services are real processes on this machine, deployed the way production
was (FACTS.md, plain processes): the app is `python main.py --scheduled`,
started by the app dir's `scripts/start_content_creator.sh` and stopped by
`scripts/stop_content_creator.sh`, and "running" means such a process with the
app dir as its working directory. An app that dies at start (a `.env` key
its settings refuse) is reported with the tail of `logs/error.log`, never as
started. Beside it runs a small status server answering what the app's API
mode answers (`/api/status`), started and stopped with the app. docker
compose reports a restart count per container; we keep the same number in
`demo_dir/services.json`, bumped by every restart_service.
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
from urllib.parse import urlsplit

from ccops.core import fs, localpg
from ccops.core.errors import CcopsError, UsageError
from ccops.core.settings import Settings
from ccops.demo import appdir, appenv
from ccops.demo.places import demo_dir, places, republish
from ccops.deploy.backends.base import LOGICAL, Backend, BackendError, ServiceState, check_verb, tail_lines

SERVICE_NAMES = ("db", "app")
SERVER_MODULE = "ccops.demo.server"
SCRIPT_TIMEOUT_SECONDS = 15
START_SETTLE_SECONDS = 60  # how long a start may take to log its first record (the wait ends as soon as it does; a busy 2-core CI took over 10 s)
_CHILDREN: dict[int, subprocess.Popen] = {}


class DemoError(CcopsError):
    """A demo service could not be started or stopped."""


# ---- the app (python main.py --scheduled) -----------------------------------------------

def app_dir(settings: Settings) -> Path:
    return demo_dir(settings) / "app"


def app_pids(settings: Settings) -> list[int]:
    """Live processes running this demo's app: command line and working directory both match."""
    here = os.path.realpath(app_dir(settings))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if appdir.MATCH not in cmdline or os.readlink(entry / "cwd") != here:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


def _script(settings: Settings, name: str) -> subprocess.CompletedProcess[str]:
    """Run one of the app's scripts from the app dir, as an operator would."""
    app = app_dir(settings)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    try:
        return subprocess.run(["sh", name], cwd=app, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=SCRIPT_TIMEOUT_SECONDS, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DemoError(f"{name} in {app} did not finish: {exc}") from None


def error_tail(settings: Settings, lines: int = 3) -> str:
    """The last lines of the app's logs/error.log (where a crash at start shows), joined by ' / '."""
    try:
        text = (app_dir(settings) / "logs" / "error.log").read_text(errors="replace")
    except OSError:
        return ""
    return " / ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def start_app(settings: Settings, timeout: float = START_SETTLE_SECONDS) -> list[int]:
    """Start the app with its start script unless it runs; its pids once it logged its first record.

    Raises DemoError with error.log's tail when the process is gone before that (e.g. its settings
    refused the .env): a crash at start must never read as "started".
    """
    running = app_pids(settings)
    if running:
        return running
    if not (app_dir(settings) / appdir.START_SCRIPT).exists():  # never brought up: lay the app out first
        appdir.install(app_dir(settings), Path(settings.optional("backup_dir") or settings.home / "backups"))
    output = app_dir(settings) / "logs" / "output.log"
    proc = _script(settings, appdir.START_SCRIPT)
    if proc.returncode != 0:
        raise DemoError(f"{appdir.START_SCRIPT} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    deadline = time.monotonic() + timeout
    gone_since: float | None = None  # the pid file is rewritten as the script hands over: one empty look is no crash
    while time.monotonic() < deadline:
        pids = app_pids(settings)
        if output.exists() and "Starting Content Creator" in output.read_text(errors="replace") and pids:
            return pids
        if pids:
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since > 1.0:
            break
        time.sleep(0.05)
    time.sleep(0.05)
    if app_pids(settings):
        raise DemoError(f"app started but logged nothing within {timeout:g} s (see {output})")
    raise DemoError(f"app crashed at start: {error_tail(settings) or 'no output in logs/error.log'}")


def stop_app(settings: Settings) -> bool:
    """Stop the app with its stop script (SIGTERM, SIGKILL after 2 s); True if it was running."""
    was_running = bool(app_pids(settings))
    if was_running:
        proc = _script(settings, appdir.STOP_SCRIPT)
        if proc.returncode != 0 or app_pids(settings):
            raise DemoError(f"{appdir.STOP_SCRIPT} did not stop the app: {(proc.stderr or proc.stdout).strip()}")
    return was_running


# ---- the app's API face (status server) ------------------------------------------------------

def server_file(settings: Settings) -> Path:
    return demo_dir(settings) / "server.json"


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
    demo_dir(settings).mkdir(parents=True, exist_ok=True)
    state_path = server_file(settings)
    state_path.unlink(missing_ok=True)
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    log_path = demo_dir(settings) / "server.log"
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--port", str(port), "--state-file", str(state_path.resolve())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(demo_dir(settings)), env=env,
        )
    _CHILDREN[child.pid] = child
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = server_state(settings)
        if state.get("pid") == child.pid:
            republish(settings)
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
    """(answering, reason): one connection and SELECT 1 to the demo database."""
    import psycopg

    from ccops.core.db import libpq_url

    try:
        url = app_database_url(settings)
        with psycopg.connect(libpq_url(url), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True, ""
    except localpg.LocalPgError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        reason = lines[0] if lines else exc.__class__.__name__
        password = urlsplit(url).password
        return False, reason.replace(password, "***") if password else reason


def start_db(settings: Settings) -> None:
    cluster(settings).start()
    appenv.set_database_url(places(settings)["app_env_file"], app_database_url(settings))
    republish(settings)


# ---- the backend interface ------------------------------------------------------------------

def _counts_file(settings: Settings) -> Path:
    return demo_dir(settings) / "services.json"


def restart_counts(settings: Settings) -> dict[str, int]:
    try:
        data = json.loads(_counts_file(settings).read_text())
        return {name: int(data.get(name, {}).get("restarts", 0)) for name in SERVICE_NAMES}
    except (OSError, ValueError, AttributeError, TypeError):
        return dict.fromkeys(SERVICE_NAMES, 0)


def _bump_restarts(settings: Settings, name: str) -> None:
    counts = restart_counts(settings)
    counts[name] += 1
    demo_dir(settings).mkdir(parents=True, exist_ok=True)
    path = _counts_file(settings)
    fs.write_atomic(path, json.dumps({key: {"restarts": value} for key, value in counts.items()}), None)


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
    pids = app_pids(settings)
    server = server_running(settings)
    api = f"status server on 127.0.0.1:{server['port']}" if server else "status server stopped"
    if not pids:
        crashed = error_tail(settings, 1)
        return {"service": "app", "state": "stopped", "health": "", "restarts": restarts, "pid": None,
                "detail": f"no '{appdir.MATCH}' process in {app_dir(settings)}"
                          + (f"; error.log: {crashed}" if crashed else "") + f"; {api}"}
    return {"service": "app", "state": "running", "health": "", "restarts": restarts, "pid": pids[0],
            "detail": f"'{appdir.MATCH}' (pid {', '.join(map(str, pids))}) in {app_dir(settings)}; {api}"}


def services(settings: Settings) -> list[dict[str, Any]]:
    return [service(settings, name) for name in SERVICE_NAMES]


def start_service(settings: Settings, name: str) -> dict[str, Any]:
    _check_name(name)
    if name == "db":
        start_db(settings)
    else:
        start_app(settings)
        start_server(settings)
    return service(settings, name)


def stop_service(settings: Settings, name: str) -> dict[str, Any]:
    _check_name(name)
    if name == "db":
        cluster(settings).stop()
    else:
        stop_server(settings)
        stop_app(settings)
    return service(settings, name)


def restart_service(settings: Settings, name: str) -> dict[str, Any]:
    _check_name(name)
    if name == "db":
        cluster(settings).stop()
        start_db(settings)
    else:
        stop_server(settings)
        stop_app(settings)
        _bump_restarts(settings, name)  # counted even when the start fails: it was restarted
        start_app(settings)
        start_server(settings)
        return service(settings, name)
    _bump_restarts(settings, name)
    return service(settings, name)


# ---- the service backend runbooks use (service.backend = "local", an entry point of ccops.backends) ----

class LocalBackend(Backend):
    """The embedded demo: the private PostgreSQL cluster is "db", the app's process "app".

    Registered as the `local` entry point of `ccops.backends`, so ccops finds it
    the way it would find any other package's backend, without importing the demo.
    """

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _names(self, service: str | None, reverse: bool = False) -> list[str]:
        if service is None:
            return list(reversed(LOGICAL)) if reverse else list(LOGICAL)
        if service not in LOGICAL:
            raise BackendError(f"unknown demo service {service!r}: expected db or app")
        return [service]

    def status(self) -> list[ServiceState]:
        states = []
        for row in services(self.settings):
            pid = row.get("pid")
            states.append(ServiceState(row["service"], row["state"], row.get("health") or "", row.get("restarts"),
                                       row.get("detail") or "", f"pid {pid}" if pid else ""))
        return states

    def _each(self, verb: str, service: str | None) -> None:
        action = {"start": start_service, "stop": stop_service, "restart": restart_service}[verb]
        for name in self._names(service, reverse=verb == "stop"):
            try:
                action(self.settings, name)
            except BackendError:
                raise
            except CcopsError as exc:
                raise BackendError(f"demo {name}: {verb} failed: {exc}") from None

    def start(self, service: str | None = None) -> None:
        self._each("start", service)

    def stop(self, service: str | None = None) -> None:
        self._each("stop", service)

    def restart(self, service: str | None = None) -> None:
        self._each("restart", service)

    def log_file(self, service: str) -> Path:
        """The file `logs` reads: the app's newest log, or the cluster's server log."""
        self._names(service)
        if service == "db":
            return localpg.demo_cluster(self.settings.home).logfile
        log_dir = Path(self.settings.effective_log_dir)
        files = [p for p in log_dir.glob("*.log") if p.is_file()] if log_dir.is_dir() else []
        if not files:
            raise BackendError(f"no app log file (*.log) in {log_dir}")
        return max(files, key=lambda p: (p.stat().st_mtime, p.name))

    def logs(self, service: str, tail: int = 100) -> list[str]:
        path = self.log_file(service)
        try:
            return tail_lines(path, int(tail))
        except OSError as exc:
            raise BackendError(f"cannot read {path}: {exc.strerror or exc}") from None

    def describe_action(self, verb: str, service: str | None = None) -> str:
        check_verb(verb)
        if verb == "status":
            return "ccops.demo.services(settings)"
        if verb == "logs":
            try:
                return f"last lines of {self.log_file(service or 'app')}"
            except BackendError as exc:
                return str(exc)
        return "; ".join(f"ccops.demo.{verb}_service(settings, {name!r})"
                         for name in self._names(service, reverse=verb == "stop"))
