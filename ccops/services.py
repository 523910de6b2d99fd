"""Service backends: docker compose, systemd, the local demo, or none.

Runbooks speak of two logical services, "app" and "db"; a backend maps them to
compose services, systemd units or the demo's processes, reports their state
in one shape (ServiceState), and carries out start/stop/restart. Every backend
can also say, without doing it, the exact command it would run, so a dry run
shows the operator what a real run will do.

The compose and systemd parsers take the tools' real output formats, because
those are what break: `docker compose ps --format json` printed one JSON array
up to compose v2.20 (keys ID, Name, Command, Project, Service, State, Health,
ExitCode, Publishers) and one object per line, with docker ps' keys added,
since v2.21; `systemctl show` prints KEY=VALUE blocks separated by blank lines.
Restart counts are not in compose's ps output at all, so they come from
`docker inspect`.

Failures (docker missing, engine down, systemd not running, a timeout) raise
BackendError with one line an operator can act on, never a traceback.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccops.config import Settings
from ccops.errors import CcopsError
from ccops.scrub import excerpt

LOGICAL = ("db", "app")  # start order; stop goes the other way
STATUS_TIMEOUT = 60.0
ACTION_TIMEOUT = 600.0
SYSTEMD_PROPERTIES = "Id,ActiveState,SubState,NRestarts,ExecMainStatus,Result,LoadState"
INSPECT_FORMAT = "{{.Name}} {{.RestartCount}}"
NO_BACKEND = "no service backend configured: set service.backend (compose, systemd or local) or CCOPS_BACKEND"


class BackendError(CcopsError):
    """The service backend cannot do what was asked; the message is one line."""


@dataclass
class ServiceState:
    """One service as `docker compose ps` would show it, whatever the backend."""

    service: str
    state: str  # running, exited, stopped, failed, restarting, starting, paused, dead, created, not-found, unknown
    health: str = ""  # healthy, unhealthy, starting, or "" when the service has no health check
    restarts: int | None = None  # None: the backend does not know
    detail: str = ""
    name: str = ""  # the backend's own name: container, unit, or process id

    @property
    def running(self) -> bool:
        return self.state == "running" and self.health != "unhealthy"


# ---- docker compose -----------------------------------------------------------------------

_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def parse_compose_ps(text: str) -> list[ServiceState]:
    """`docker compose ps --all --format json`: a JSON array (compose <= 2.20) or NDJSON (>= 2.21)."""
    text = text.strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            items: Any = json.loads(text)
        else:
            items = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        first = excerpt(text.splitlines()[0], 120)
        raise BackendError(f"docker compose ps did not print JSON: {first}") from None
    if isinstance(items, dict):
        items = [items]
    return [_compose_state(item) for item in items or [] if isinstance(item, dict)]


def _compose_state(item: dict[str, Any]) -> ServiceState:
    raw_state = str(item.get("State") or "").strip()
    # very early v2 releases printed "exited (1)" here; the first word is the state
    state = raw_state.split()[0].lower() if raw_state else "unknown"
    status = str(item.get("Status") or "")
    health = str(item.get("Health") or "").lower()
    if not health:  # older engines leave Health empty and put it in Status: "Up 2 hours (healthy)"
        match = _HEALTH_IN_STATUS.search(status)
        health = {"health: starting": "starting"}.get(match.group(1), match.group(1)) if match else ""
    name = str(item.get("Name") or item.get("Names") or "")
    if not status:  # the pre-2.21 array has no Status: say what it does have
        status = state + (f", exit code {item['ExitCode']}" if state == "exited" and "ExitCode" in item else "")
    return ServiceState(
        service=str(item.get("Service") or name or "?"),
        state=state,
        health=health,
        detail=f"{name}: {status}" if name else status,
        name=name,
    )


def parse_inspect_restarts(text: str) -> dict[str, int]:
    """`docker inspect --format '{{.Name}} {{.RestartCount}}' NAME...` -> container name: restarts."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0].lstrip("/")] = int(parts[1])
    return counts


# ---- systemd --------------------------------------------------------------------------------

def systemctl_blocks(text: str) -> list[dict[str, str]]:
    """`systemctl show` output as one dict per unit (blocks separated by blank lines)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def systemd_state(props: dict[str, str], service: str | None = None) -> ServiceState:
    """One unit's properties in compose's vocabulary.

    active/exited counts as running: Debian's postgresql.service is a oneshot
    wrapper that stays active/exited while the cluster units do the work.
    """
    unit = props.get("Id", service or "?")
    load = props.get("LoadState", "")
    active, sub = props.get("ActiveState", ""), props.get("SubState", "")
    if load in ("not-found", "masked", "bad-setting", "error"):
        state = "not-found" if load == "not-found" else load
    elif active in ("active", "reloading"):
        state = "running"
    elif active == "activating":
        state = "restarting" if sub == "auto-restart" else "starting"
    elif active == "deactivating":
        state = "stopping"
    elif active == "inactive":
        state = "stopped"
    elif active == "failed":
        state = "failed"
    else:
        state = "unknown"
    restarts = int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None
    detail = f"{unit}: {active or '?'}/{sub or '?'}"
    if load and load != "loaded":
        detail += f", unit {load}"
    if props.get("Result") and props["Result"] != "success":
        detail += f", result {props['Result']}"
    if props.get("ExecMainStatus") not in (None, "", "0"):
        detail += f", exit status {props['ExecMainStatus']}"
    return ServiceState(service or unit, state, "", restarts, detail, unit)


def parse_systemctl_show(text: str) -> ServiceState:
    """`systemctl show UNIT --property=...` for one unit."""
    blocks = systemctl_blocks(text)
    if not blocks:
        raise BackendError("systemctl show printed no properties")
    return systemd_state(blocks[0])


def parse_systemctl_show_many(text: str) -> list[ServiceState]:
    """`systemctl show UNIT1 UNIT2 ...`: one state per unit, in the order printed (= the order asked)."""
    return [systemd_state(block) for block in systemctl_blocks(text)]


def _unit_id(unit: str) -> str:
    """systemd's Id for a configured unit name: `content-creator` means `content-creator.service`."""
    return unit if re.search(r"\.(service|socket|target|timer|mount|scope|slice|path)$", unit) else f"{unit}.service"


# ---- running commands -------------------------------------------------------------------------

def _exec(command: list[str], timeout: float, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL, errors="replace")
    except FileNotFoundError:
        raise BackendError(f"{command[0]} not found on this machine: cannot run `{shlex.join(command)}`") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"`{shlex.join(command)}` timed out after {timeout:g} s") from None


def _run(command: list[str], timeout: float) -> str:
    proc = _exec(command, timeout)
    if proc.returncode != 0:
        raise BackendError(_failure(command, proc))
    return proc.stdout


_NOISE = ("Usage:", "Run '", "See '")


def _failure(command: list[str], proc: subprocess.CompletedProcess[str]) -> str:
    """One line from what the tool said: the headline, not the usage text docker appends."""
    said = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    useful = [line for line in said if not line.startswith(_NOISE)]
    reason = useful[0] if useful else (said[0] if said else f"exit status {proc.returncode}")
    text = "\n".join(said)
    if "Cannot connect to the Docker daemon" in text or "docker daemon is not running" in text.lower():
        return f"docker engine not running: {reason}"
    if command[:2] == ["docker", "compose"] and (
        "is not a docker command" in text or "unknown command: docker compose" in text
        or "Usage:  docker [OPTIONS] COMMAND" in text  # the docker CLI itself rejected compose's flags
    ):
        return f"docker compose (v2 plugin) not installed: docker said: {reason}"
    if "has not been booted with systemd" in text or "Failed to connect to bus" in text:
        return f"systemd not running on this machine: {reason}"
    return f"`{shlex.join(command)}` failed: {reason}"


def tail_lines(path: Path, count: int, block: int = 65536) -> list[str]:
    """The last `count` lines of a file, reading back from the end: app logs can be gigabytes."""
    if count <= 0:
        return []
    with open(path, "rb") as handle:
        position = handle.seek(0, 2)
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


# ---- backends ------------------------------------------------------------------------------------

class Backend(ABC):
    """What runbooks do to services. `service` is "app" or "db"; None means all of them."""

    name = ""

    @abstractmethod
    def status(self) -> list[ServiceState]: ...

    @abstractmethod
    def start(self, service: str | None = None) -> None: ...

    @abstractmethod
    def stop(self, service: str | None = None) -> None: ...

    @abstractmethod
    def restart(self, service: str | None = None) -> None: ...

    @abstractmethod
    def logs(self, service: str, tail: int = 100) -> list[str]: ...

    @abstractmethod
    def describe_action(self, verb: str, service: str | None = None) -> str:
        """The exact command `verb` (start, stop, restart, status, logs) would run, for dry runs."""


def _check_verb(verb: str) -> None:
    if verb not in ("start", "stop", "restart", "status", "logs"):
        raise BackendError(f"unknown action {verb!r}: expected start, stop, restart, status or logs")


class NoneBackend(Backend):
    """Nothing configured: report no services and refuse to act, saying how to configure one."""

    name = "none"

    def status(self) -> list[ServiceState]:
        return []

    def start(self, service: str | None = None) -> None:
        raise BackendError(NO_BACKEND)

    def stop(self, service: str | None = None) -> None:
        raise BackendError(NO_BACKEND)

    def restart(self, service: str | None = None) -> None:
        raise BackendError(NO_BACKEND)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        raise BackendError(NO_BACKEND)

    def describe_action(self, verb: str, service: str | None = None) -> str:
        _check_verb(verb)
        return f"{verb} {service or 'all services'} by hand (no service backend configured)"


class ComposeBackend(Backend):
    """`docker compose` in the project directory, with the services named in [compose]."""

    name = "compose"

    def __init__(self, settings: Settings) -> None:
        self.compose = settings.compose
        self.names = {"app": self.compose.app_service, "db": self.compose.db_service}

    def base(self) -> list[str]:
        # the same form ccops.logs uses for `docker compose logs`, so both find the same project
        command = ["docker", "compose"]
        if self.compose.file:
            command += ["-f", self.compose.file]
        return command + ["--project-directory", self.compose.project_dir or "."]

    def _targets(self, service: str | None) -> list[str]:
        return [self.names.get(service, service)] if service else []

    def _command(self, verb: str, service: str | None, tail: int = 100) -> list[str]:
        _check_verb(verb)
        sub = {
            "start": ["up", "-d"],  # creates what `down` removed, as the guide's full reset needs
            "stop": ["stop"],
            "restart": ["restart"],
            "status": ["ps", "--all", "--format", "json"],
            "logs": ["logs", "--no-color", f"--tail={int(tail)}"],
        }[verb]
        return [*self.base(), *sub, *self._targets(service)]

    def status(self) -> list[ServiceState]:
        states = parse_compose_ps(_run(self._command("status", None), STATUS_TIMEOUT))
        names = [s.name for s in states if s.name]
        if names:
            # best effort: a container removed between ps and inspect leaves its count unknown
            inspect = _exec(["docker", "inspect", "--format", INSPECT_FORMAT, *names], STATUS_TIMEOUT)
            restarts = parse_inspect_restarts(inspect.stdout)
            for state in states:
                state.restarts = restarts.get(state.name)
        logical = {compose_name: ours for ours, compose_name in self.names.items()}
        for state in states:
            state.service = logical.get(state.service, state.service)
        return states

    def start(self, service: str | None = None) -> None:
        _run(self._command("start", service), ACTION_TIMEOUT)

    def stop(self, service: str | None = None) -> None:
        _run(self._command("stop", service), ACTION_TIMEOUT)

    def restart(self, service: str | None = None) -> None:
        _run(self._command("restart", service), ACTION_TIMEOUT)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        return _run(self._command("logs", service, tail), STATUS_TIMEOUT).splitlines()

    def describe_action(self, verb: str, service: str | None = None) -> str:
        return shlex.join(self._command(verb, service))


class SystemdBackend(Backend):
    """systemctl and journalctl on the units named in [systemd]."""

    name = "systemd"

    def __init__(self, settings: Settings) -> None:
        self.units = {"app": settings.systemd.app_unit, "db": settings.systemd.db_unit}

    def _units(self, service: str | None, reverse: bool = False) -> list[str]:
        if service:
            return [self.units.get(service, service)]
        order = reversed(LOGICAL) if reverse else LOGICAL
        return [self.units[name] for name in order]

    def _command(self, verb: str, service: str | None, tail: int = 100) -> list[str]:
        _check_verb(verb)
        if verb == "logs":
            return ["journalctl", "-u", self._units(service or "app")[0], "-n", str(int(tail)), "--no-pager"]
        if verb == "status":
            return ["systemctl", "show", *self._units(service), f"--property={SYSTEMD_PROPERTIES}"]
        return ["systemctl", verb, *self._units(service, reverse=verb == "stop")]

    def status(self) -> list[ServiceState]:
        states = parse_systemctl_show_many(_run(self._command("status", None), STATUS_TIMEOUT))
        by_id = {_unit_id(unit): ours for ours, unit in self.units.items()}
        for position, state in enumerate(states):
            fallback = LOGICAL[position] if position < len(LOGICAL) else state.service
            state.service = by_id.get(state.name, fallback)
        return states

    def start(self, service: str | None = None) -> None:
        _run(self._command("start", service), ACTION_TIMEOUT)

    def stop(self, service: str | None = None) -> None:
        _run(self._command("stop", service), ACTION_TIMEOUT)

    def restart(self, service: str | None = None) -> None:
        _run(self._command("restart", service), ACTION_TIMEOUT)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        return _run(self._command("logs", service, tail), STATUS_TIMEOUT).splitlines()

    def describe_action(self, verb: str, service: str | None = None) -> str:
        return shlex.join(self._command(verb, service))


class LocalBackend(Backend):
    """The embedded demo: the private PostgreSQL cluster is "db", the status server is "app"."""

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
        from ccops import demo

        states = []
        for row in demo.services(self.settings):
            pid = row.get("pid")
            states.append(ServiceState(row["service"], row["state"], row.get("health") or "", row.get("restarts"),
                                       row.get("detail") or "", f"pid {pid}" if pid else ""))
        return states

    def _each(self, verb: str, service: str | None) -> None:
        from ccops import demo

        action = {"start": demo.start_service, "stop": demo.stop_service, "restart": demo.restart_service}[verb]
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
        from ccops import localpg

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
        _check_verb(verb)
        if verb == "status":
            return "ccops.demo.services(settings)"
        if verb == "logs":
            try:
                return f"last lines of {self.log_file(service or 'app')}"
            except BackendError as exc:
                return str(exc)
        return "; ".join(f"ccops.demo.{verb}_service(settings, {name!r})"
                         for name in self._names(service, reverse=verb == "stop"))


BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "compose": ComposeBackend,
    "systemd": SystemdBackend,
    "local": LocalBackend,
}


def get_backend(settings: Settings) -> Backend:
    """The backend settings.effective_backend names; NoneBackend for "none"."""
    kind = settings.effective_backend
    cls = BACKENDS.get(kind)
    return cls(settings) if cls else NoneBackend()
