"""`docker compose`: the services named in [compose], in the project directory.

The parsers take the tool's real output formats, because those are what
break: `docker compose ps --format json` printed one JSON array up to
compose v2.20 (keys ID, Name, Command, Project, Service, State, Health,
ExitCode, Publishers) and one object per line, with docker ps' keys added,
since v2.21. Restart counts are not in compose's ps output at all, so they
come from `docker inspect`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ccops.core.scrub import excerpt
from ccops.core.settings import Settings
from ccops.deploy.backends.base import (
    STATUS_TIMEOUT,
    BackendError,
    CommandBackend,
    ServiceState,
    check_verb,
    exec_tool,
    run_tool,
)

INSPECT_FORMAT = "{{.Name}} {{.RestartCount}}"
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


def parse_compose_services(text: str) -> list[str]:
    """`docker compose config --services`: one service name per line (profiles not enabled are left out)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def parse_inspect_restarts(text: str) -> dict[str, int]:
    """`docker inspect --format '{{.Name}} {{.RestartCount}}' NAME...` -> container name: restarts."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0].lstrip("/")] = int(parts[1])
    return counts


class ComposeBackend(CommandBackend):
    """`docker compose` in the project directory, with the services named in [compose]."""

    name = "compose"

    def __init__(self, settings: Settings) -> None:
        self.compose = settings.compose
        self.names = {"app": self.compose.app_service, "db": self.compose.db_service}
        self.containers = {"app": self.compose.app_container, "db": self.compose.db_container}

    def defined_services(self) -> list[str]:
        """The services the compose file defines, as docker compose itself reads the file.

        Never parsed here: the real file repeats its top-level keys, where a YAML
        loader silently keeps the second half and compose refuses the file.
        """
        return parse_compose_services(run_tool([*self.base(), "config", "--services"], STATUS_TIMEOUT))

    def base(self) -> list[str]:
        # the same form ccops.logs uses for `docker compose logs`, so both find the same project
        command = ["docker", "compose"]
        if self.compose.file:
            command += ["-f", self.compose.file]
        return command + ["--project-directory", self.compose.project_dir or "."]

    def _targets(self, service: str | None) -> list[str]:
        return [self.names.get(service, service)] if service else []

    def command(self, verb: str, service: str | None, tail: int = 100) -> list[str]:
        check_verb(verb)
        sub = {
            "start": ["up", "-d"],  # creates what `down` removed, as the guide's full reset needs
            "stop": ["stop"],
            "restart": ["restart"],
            "status": ["ps", "--all", "--format", "json"],
            "logs": ["logs", "--no-color", f"--tail={int(tail)}"],
        }[verb]
        return [*self.base(), *sub, *self._targets(service)]

    def status(self) -> list[ServiceState]:
        defined = self.defined_services()
        ps_text = run_tool(self.command("status", None), STATUS_TIMEOUT)
        names = [s.name for s in parse_compose_ps(ps_text) if s.name]
        # best effort: a container removed between ps and inspect leaves its count unknown
        inspect = exec_tool(["docker", "inspect", "--format", INSPECT_FORMAT, *names], STATUS_TIMEOUT).stdout if names else ""
        return self.states(defined, ps_text, inspect)

    def states(self, defined: list[str], ps_text: str, inspect_text: str = "") -> list[ServiceState]:
        """The services in our names, from what `config --services`, `ps` and `inspect` printed."""
        states = parse_compose_ps(ps_text)
        restarts = parse_inspect_restarts(inspect_text)
        for state in states:
            state.restarts = restarts.get(state.name)
        logical = {compose_name: ours for ours, compose_name in self.names.items()}
        by_container = {container: ours for ours, container in self.containers.items() if container}
        for state in states:
            state.service = by_container.get(state.name) or logical.get(state.service, state.service)
        return states + self._undefined(defined, {s.service for s in states})

    def _undefined(self, defined: list[str], seen: set[str]) -> list[ServiceState]:
        """A configured service the compose file does not define: name what it does define."""
        missing = []
        for ours, compose_name in self.names.items():
            if ours not in seen and compose_name not in defined:
                missing.append(ServiceState(ours, "not-found", "", None, f"no service {compose_name!r} in the compose file",
                                            "", f"the compose file defines no service {compose_name!r} (it defines: "
                                            f"{', '.join(defined) or 'none'}); set compose.{ours}_service"))
        return missing
