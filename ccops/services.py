"""Service backends: docker compose, systemd, the local demo, or none.

Runbooks speak of two logical services, "app" and "db"; the backend maps them
to compose services, systemd units or the demo's processes, reports their
state in one shape (ServiceState), and carries out start/stop/restart. The
compose and systemd parsers take the tools' real output formats, because
those are what break: `docker compose ps --format json` printed one JSON array
up to compose v2.20 and one object per line since; `systemctl show` prints
KEY=VALUE blocks separated by blank lines.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccops.config import Settings
from ccops.errors import CcopsError

LOGICAL = ("db", "app")


class BackendError(CcopsError):
    """The service backend cannot do what was asked; the message is one line."""


@dataclass
class ServiceState:
    service: str
    state: str
    health: str = ""
    restarts: int | None = None
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running" and self.health != "unhealthy"


# ---- parsers of real output formats --------------------------------------------------

def parse_compose_ps(text: str) -> list[ServiceState]:
    """`docker compose ps --all --format json`: a JSON array (older compose) or NDJSON (newer)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        items = json.loads(text)
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    states = []
    for item in items:
        state = str(item.get("State", "unknown")).lower()
        states.append(ServiceState(
            service=item.get("Service") or item.get("Name", "?"),
            state=state,
            health=str(item.get("Health") or "").lower(),
            detail=f"{item.get('Name', '')}: {item.get('Status', '')}".strip(": "),
        ))
    return states


def parse_inspect_restarts(text: str) -> dict[str, int]:
    """`docker inspect --format '{{.Name}} {{.RestartCount}}' ...` -> container name: restarts."""
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0].lstrip("/")] = int(parts[1])
    return counts


def parse_systemctl_show_many(text: str) -> list[dict[str, str]]:
    blocks, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, _, value = line.partition("=")
        current[key] = value
    if current:
        blocks.append(current)
    return blocks


def systemd_state(props: dict[str, str], service: str) -> ServiceState:
    active, sub = props.get("ActiveState", "unknown"), props.get("SubState", "")
    state = "running" if active == "active" and sub in ("running", "exited", "") else (
        "restarting" if active in ("activating", "reloading") else "stopped" if active in ("inactive", "failed") else active)
    restarts = int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None
    health = "unhealthy" if active == "failed" else ""
    detail = f"{props.get('Id', service)}: {active}/{sub}, result {props.get('Result', '?')}"
    return ServiceState(service, state, health, restarts, detail)


def _run(command: list[str], timeout: float = 120, cwd: str | None = None) -> str:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise BackendError(f"{command[0]} not found on this machine") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{shlex.join(command)} timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BackendError(f"{shlex.join(command)} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return proc.stdout


# ---- backends ----------------------------------------------------------------------------

class Backend:
    name = "none"

    def status(self) -> list[ServiceState]:
        return []

    def start(self, service: str | None) -> None:
        raise BackendError("no service backend configured: set service.backend (compose, systemd, local)")

    stop = restart = start

    def logs(self, service: str, tail: int) -> list[str]:
        raise BackendError("no service backend configured: set service.backend (compose, systemd, local)")

    def describe_action(self, verb: str, service: str | None) -> str:
        return f"{verb} {service or 'all services'} by hand (no service backend configured)"


class ComposeBackend(Backend):
    name = "compose"

    def __init__(self, settings: Settings) -> None:
        self.c = settings.compose
        self.names = {"app": self.c.app_service, "db": self.c.db_service}

    def base(self) -> list[str]:
        command = ["docker", "compose", "--project-directory", self.c.project_dir]
        return command + (["-f", self.c.file] if self.c.file else [])

    def _targets(self, service: str | None) -> list[str]:
        return [self.names.get(service, service)] if service else []

    def status(self) -> list[ServiceState]:
        states = parse_compose_ps(_run([*self.base(), "ps", "--all", "--format", "json"]))
        names = [s.detail.split(":")[0] for s in states if s.detail]
        if names:
            try:
                restarts = parse_inspect_restarts(_run(["docker", "inspect", "--format", "{{.Name}} {{.RestartCount}}", *names]))
            except BackendError:
                restarts = {}
            for state in states:
                state.restarts = restarts.get(state.detail.split(":")[0])
        logical = {v: k for k, v in self.names.items()}
        for state in states:
            state.service = logical.get(state.service, state.service)
        return states

    def start(self, service: str | None) -> None:
        _run([*self.base(), "up", "-d", *self._targets(service)], timeout=600)

    def stop(self, service: str | None) -> None:
        _run([*self.base(), "stop", *self._targets(service)], timeout=300)

    def restart(self, service: str | None) -> None:
        _run([*self.base(), "restart", *self._targets(service)], timeout=600)

    def logs(self, service: str, tail: int) -> list[str]:
        return _run([*self.base(), "logs", "--no-color", f"--tail={int(tail)}", *self._targets(service)]).splitlines()

    def describe_action(self, verb: str, service: str | None) -> str:
        sub = {"start": ["up", "-d"], "stop": ["stop"], "restart": ["restart"]}[verb]
        return shlex.join([*self.base(), *sub, *self._targets(service)])


class SystemdBackend(Backend):
    name = "systemd"

    def __init__(self, settings: Settings) -> None:
        self.units = {"app": settings.systemd.app_unit, "db": settings.systemd.db_unit}

    def _units(self, service: str | None) -> list[str]:
        return [self.units[service]] if service else [self.units[s] for s in LOGICAL]

    def status(self) -> list[ServiceState]:
        out = _run(["systemctl", "show", *self._units(None),
                    "--property=Id,ActiveState,SubState,NRestarts,ExecMainStatus,Result,LoadState"])
        return [systemd_state(props, name) for props, name in zip(parse_systemctl_show_many(out), LOGICAL, strict=False)]

    def start(self, service: str | None) -> None:
        _run(["systemctl", "start", *self._units(service)])

    def stop(self, service: str | None) -> None:
        _run(["systemctl", "stop", *reversed(self._units(service))])

    def restart(self, service: str | None) -> None:
        _run(["systemctl", "restart", *self._units(service)])

    def logs(self, service: str, tail: int) -> list[str]:
        return _run(["journalctl", "-u", self.units[service], "-n", str(int(tail)), "--no-pager"]).splitlines()

    def describe_action(self, verb: str, service: str | None) -> str:
        return shlex.join(["systemctl", verb, *self._units(service)])


class LocalBackend(Backend):
    """The embedded demo: the private PostgreSQL cluster is "db", the status server is "app"."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def status(self) -> list[ServiceState]:
        from ccops import demo

        return [ServiceState(s["service"], s["state"], s.get("health", ""), s.get("restarts"), s.get("detail", ""))
                for s in demo.services(self.settings)]

    def _each(self, verb: str, service: str | None) -> None:
        from ccops import demo

        action = {"start": demo.start_service, "stop": demo.stop_service, "restart": demo.restart_service}[verb]
        order = list(LOGICAL) if verb != "stop" else list(reversed(LOGICAL))
        for name in ([service] if service else order):
            action(self.settings, name)

    def start(self, service: str | None) -> None:
        self._each("start", service)

    def stop(self, service: str | None) -> None:
        self._each("stop", service)

    def restart(self, service: str | None) -> None:
        self._each("restart", service)

    def logs(self, service: str, tail: int) -> list[str]:
        from ccops import localpg

        if service == "db":
            path = localpg.demo_cluster(self.settings.home).logfile
        else:
            files = sorted(Path(self.settings.effective_log_dir).glob("content_creator_*.log"))
            if not files:
                return []
            path = files[-1]
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if Path(path).exists() else []
        return lines[-int(tail):]

    def describe_action(self, verb: str, service: str | None) -> str:
        return f"ccops demo: {verb} {service or 'db and app'}"


def get_backend(settings: Settings) -> Backend:
    kind = settings.effective_backend
    backends: dict[str, Any] = {"compose": ComposeBackend, "systemd": SystemdBackend, "local": LocalBackend}
    return backends[kind](settings) if kind in backends else Backend()
