"""What every service backend shares: the Backend interface, ServiceState, and running the tools.

Runbooks speak of two logical services, "app" and "db"; a backend maps them to
whatever the deployment runs, reports their state in one shape
(ServiceState), and carries out start/stop/restart. Every backend can also
say, without doing it, the exact command it would run, so a dry run shows
the operator what a real run will do.

Failures (a tool missing, an engine down, a timeout) raise BackendError
with one line an operator can act on, never a traceback.
"""

from __future__ import annotations

import shlex
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ccops.core.errors import CcopsError, UsageError

LOGICAL = ("db", "app")  # start order; stop goes the other way
VERBS = ("start", "stop", "restart", "status", "logs")
STATUS_TIMEOUT = 60.0
ACTION_TIMEOUT = 600.0


class BackendError(CcopsError):
    """The service backend cannot do what was asked; the message is one line."""


class UnknownBackend(BackendError, UsageError):
    """service.backend names a backend nothing installed provides: bad usage (exit 64), not an outage.

    Still a BackendError, so whoever handles a backend's failures (restore's
    stop-the-app step, the emergency actions) handles this one the same way.
    """


@dataclass
class ServiceState:
    """One service as `docker compose ps` would show it, whatever the backend."""

    service: str
    state: str  # running, exited, stopped, failed, restarting, starting, paused, dead, created, not-found, unknown
    health: str = ""  # healthy, unhealthy, starting, or "" when the service has no health check
    restarts: int | None = None  # None: the backend does not know
    detail: str = ""
    name: str = ""  # the backend's own name: container, unit, or process id
    reason: str = ""  # why it is down, when the backend knows (a crash's last words, a missing setting)

    @property
    def running(self) -> bool:
        return self.state == "running" and self.health != "unhealthy"


def check_verb(verb: str) -> None:
    """describe_action's verbs are the interface's; anything else is a caller's typo, said as such."""
    if verb not in VERBS:
        raise BackendError(f"unknown action {verb!r}: expected start, stop, restart, status or logs")


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


class CommandBackend(Backend):
    """A backend where each action is one run of a command-line tool (docker compose, systemctl).

    Such backends differ only in the command each verb becomes, so start, stop,
    restart, logs and the dry run's description are written once, here, and
    what is run is exactly what describe_action shows.
    """

    @abstractmethod
    def command(self, verb: str, service: str | None, tail: int = 100) -> list[str]:
        """The argv `verb` runs for `service` (None: all services)."""

    def start(self, service: str | None = None) -> None:
        run_tool(self.command("start", service), ACTION_TIMEOUT)

    def stop(self, service: str | None = None) -> None:
        run_tool(self.command("stop", service), ACTION_TIMEOUT)

    def restart(self, service: str | None = None) -> None:
        run_tool(self.command("restart", service), ACTION_TIMEOUT)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        return run_tool(self.command("logs", service, tail), STATUS_TIMEOUT).splitlines()

    def describe_action(self, verb: str, service: str | None = None) -> str:
        return shlex.join(self.command(verb, service))


# ---- running commands -------------------------------------------------------------------------

def exec_tool(command: list[str], timeout: float, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool and keep what it said; a missing tool or a timeout is a BackendError naming the command."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL, errors="replace")
    except FileNotFoundError:
        raise BackendError(f"{command[0]} not found on this machine: cannot run `{shlex.join(command)}`") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"`{shlex.join(command)}` timed out after {timeout:g} s") from None


def run_tool(command: list[str], timeout: float) -> str:
    """A tool's stdout; a non-zero exit is a BackendError with the tool's own headline."""
    proc = exec_tool(command, timeout)
    if proc.returncode != 0:
        raise BackendError(tool_failure(command, proc))
    return proc.stdout


_NOISE = ("Usage:", "Run '", "See '")


def tool_failure(command: list[str], proc: subprocess.CompletedProcess[str]) -> str:
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
    duplicates = [line for line in said if "mapping key" in line and "already defined" in line]
    if duplicates:  # compose's YAML parser refuses repeated keys (FACTS: the real file repeats version/services)
        return (f"docker compose cannot read the compose file: {'; '.join(duplicates[:4])} "
                "(the file repeats keys; fix the file, compose will not pick one)")
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
