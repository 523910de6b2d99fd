"""Service backends: docker compose, systemd, plain processes, the local demo, or none.

Runbooks speak of two logical services, "app" and "db"; a backend maps them to
compose services, systemd units, the app's own start/stop scripts (the plain-process
deployment production ran) or the demo's processes, reports their state
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
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccops.core.errors import CcopsError
from ccops.core.scrub import excerpt
from ccops.core.settings import Settings

LOGICAL = ("db", "app")  # start order; stop goes the other way
STATUS_TIMEOUT = 60.0
ACTION_TIMEOUT = 600.0
SYSTEMD_PROPERTIES = "Id,ActiveState,SubState,NRestarts,ExecMainStatus,Result,LoadState"
INSPECT_FORMAT = "{{.Name}} {{.RestartCount}}"
NO_BACKEND = "no service backend configured: set service.backend (compose, systemd, process or local) or CCOPS_BACKEND"


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
    reason: str = ""  # why it is down, when the backend knows (a crash's last words, a missing setting)

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
        self.containers = {"app": self.compose.app_container, "db": self.compose.db_container}

    def defined_services(self) -> list[str]:
        """The services the compose file defines, as docker compose itself reads the file.

        Never parsed here: the real file repeats its top-level keys, where a YAML
        loader silently keeps the second half and compose refuses the file.
        """
        return parse_compose_services(_run([*self.base(), "config", "--services"], STATUS_TIMEOUT))

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
        defined = self.defined_services()
        ps_text = _run(self._command("status", None), STATUS_TIMEOUT)
        names = [s.name for s in parse_compose_ps(ps_text) if s.name]
        # best effort: a container removed between ps and inspect leaves its count unknown
        inspect = _exec(["docker", "inspect", "--format", INSPECT_FORMAT, *names], STATUS_TIMEOUT).stdout if names else ""
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
        from ccops.core import localpg

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


# ---- plain processes: the app's start/stop scripts, /proc, pg_ctl ------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TRACEBACK = "Traceback (most recent call last):"
_FILE_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')
KILL_AFTER_S = 2.0  # FACTS' stop_content_creator.sh: SIGTERM, then SIGKILL after 2 s
POLL_S = 0.2


def strip_ansi(line: str) -> str:
    """A line of output.log without loguru's colour codes, as an operator wants to read it."""
    return ANSI.sub("", line)


def _program(token: str) -> str:
    """`/usr/bin/python3.11` and `python` name the same program: basename without its version."""
    return re.sub(r"[\d.]+$", "", Path(token).name)


def cmdline_matches(argv: list[str], match: str) -> bool:
    """Does a process' argv run `match` (e.g. `python main.py --scheduled`)?

    Word for word, except that the program is compared by name without path or
    version, since Termux runs `python`, Debian `python3` and a venv a full path.
    """
    want = shlex.split(match)
    if not want or len(argv) != len(want):
        return False
    return _program(argv[0]) == _program(want[0]) and argv[1:] == want[1:]


@dataclass
class Proc:
    """One live process as /proc shows it."""

    pid: int
    argv: list[str]
    cwd: str | None  # None: not ours to read (another user's process)
    uptime_s: float | None


def read_proc(pid: int) -> Proc | None:
    """The process `pid`, or None when it is gone or a zombie (a dead app that nobody reaped)."""
    base = Path(f"/proc/{pid}")
    try:
        stat = (base / "stat").read_text()
        raw = (base / "cmdline").read_bytes()
    except OSError:
        return None
    fields_after_name = stat.rsplit(")", 1)[-1].split()
    if not fields_after_name or fields_after_name[0] in ("Z", "X"):
        return None
    try:
        cwd: str | None = os.readlink(base / "cwd")
    except OSError:
        cwd = None
    return Proc(pid, [a.decode(errors="replace") for a in raw.split(b"\0") if a], cwd, _uptime(fields_after_name))


def _uptime(stat_fields: list[str]) -> float | None:
    """Seconds since the process started: field 22 of /proc/PID/stat is its start in clock ticks after boot."""
    try:
        started = int(stat_fields[19]) / os.sysconf("SC_CLK_TCK")
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (IndexError, ValueError, OSError):
        return None


def find_processes(match: str, workdir: str = "") -> list[Proc]:
    """Live processes running `match`, in `workdir` when given (main.py is relative: the cwd tells apps apart)."""
    found = []
    wanted_dir = os.path.realpath(workdir) if workdir else ""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        proc = read_proc(int(entry.name))
        if proc is None or not cmdline_matches(proc.argv, match):
            continue
        if wanted_dir and proc.cwd is not None and os.path.realpath(proc.cwd) != wanted_dir:
            continue
        found.append(proc)
    return sorted(found, key=lambda p: p.pid)


def crash_reason(text: str, root: str = "") -> str:
    """The last words of a Python that died: its exception line and where it was raised.

    The real app's head dies at import: `SyntaxError: invalid syntax. Perhaps you
    forgot a comma?` after a `File "src/database/models.py", line N` line; a
    pydantic ValidationError adds the offending key on the next lines. Without a
    traceback (nohup: command not found, a shell error) it is the last line said.
    """
    lines = [strip_ansi(line).rstrip() for line in text.splitlines()]
    starts = [i for i, line in enumerate(lines) if line.strip() == TRACEBACK]
    if not starts:
        said = [line.strip() for line in lines if line.strip()]
        return said[-1] if said else ""
    body = lines[starts[-1] + 1:]
    at = next((i for i, line in enumerate(body) if line and not line[0].isspace()), None)
    if at is None:
        return "traceback without an exception line"
    exception = body[at].strip()
    after = [line.strip() for line in body[at + 1:] if line.strip()][:2]
    where = [m for m in (_FILE_LINE.match(line) for line in body[:at]) if m]
    reason = "; ".join([exception, *after])
    if where:
        file = where[-1]["file"]
        if root and file.startswith(root.rstrip("/") + "/"):
            file = file[len(root.rstrip("/")) + 1:]
        reason += f" ({file}, line {where[-1]['line']})"
    return reason


def _shell(command: str, cwd: str | None, timeout: float) -> tuple[int, str]:
    """Run an operator's shell command; (exit status, what it printed).

    Output goes to a file, not a pipe: a start script that leaves `nohup app &`
    holding its stdout would otherwise keep us waiting until the app exits. Its
    own session keeps the app alive when the papermill kernel's group is ended.
    """
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(["sh", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise BackendError(f"`{command}` timed out after {timeout:g} s") from None
        except OSError as exc:
            raise BackendError(f"cannot run `{command}` in {cwd}: {exc.strerror or exc}") from None
        out.seek(0)
        return proc.returncode, out.read().decode("utf-8", "replace")


def _expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path)) if path else ""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f", up {seconds / size:.0f} {unit}"
    return f", up {seconds:.0f} s"


def ping_database(url: str, timeout: int = 5) -> tuple[bool, str]:
    """pg_isready's question (libpq's PQping): does a server accept connections at `url`?

    A server that answers but refuses our role or password is up; that is a
    configuration problem, not an outage, and pg_isready reports it the same way.
    """
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    from ccops.core.db import libpq_url

    try:
        conninfo = make_conninfo(libpq_url(url), connect_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - psycopg's ProgrammingError on a malformed URL
        return False, f"not a usable database URL: {exc.__class__.__name__}"
    code = pq.PGconn.ping(conninfo.encode())
    return {
        0: (True, "accepting connections"),
        1: (True, "answering, but rejecting connections (starting up or shutting down?)"),
        2: (False, "no response"),
        3: (False, "no attempt made: bad connection parameters"),
    }.get(code, (False, f"ping code {code}"))


class ProcessBackend(Backend):
    """The plain-process deployment: the app's own start/stop scripts, found again in /proc.

    FACTS: production ran `nohup python main.py --scheduled > logs/output.log
    2> logs/error.log &` from scripts/start_content_creator.sh, with PostgreSQL
    started by pg_ctl. A start is only UP when the process still runs after
    `settle_seconds`: the real app's head dies at import, and "restarted" would
    be a lie. `last_result` says what the last action found, for the report.
    """

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conf = settings.process
        self.workdir = _expand(self.conf.workdir)
        self.last_result = ""

    # -- where things are ------------------------------------------------------------------
    def _need(self, key: str, value: str) -> str:
        if not value:
            raise BackendError(f"not configured: set process.{key} (or CCOPS_PROCESS_{key.upper()})")
        return value

    def log_path(self, kind: str) -> Path | None:
        """error.log, output.log or the db log: configured, else under <workdir>/logs."""
        configured = {"error": self.conf.error_log, "output": self.conf.output_log, "db": self.conf.db_log}[kind]
        if configured:
            path = Path(_expand(configured))
            return path if path.is_absolute() or not self.workdir else Path(self.workdir) / path
        if kind == "db" or not self.workdir:
            return None
        return Path(self.workdir) / "logs" / f"{kind}.log"

    def processes(self) -> list[Proc]:
        """The app's live processes: the pid file's when set (it wins), else those matching `match`."""
        if self.conf.pid_file:
            path = Path(_expand(self.conf.pid_file))
            if not path.is_absolute() and self.workdir:
                path = Path(self.workdir) / path
            try:
                pid = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                return []
            proc = read_proc(pid)
            return [proc] if proc else []
        return find_processes(self.conf.match, self.workdir)

    def _what(self) -> str:
        if self.conf.pid_file:
            return f"the process in {self.conf.pid_file}"
        return f"`{self.conf.match}`" + (f" in {self.workdir}" if self.workdir else "")

    def last_words(self, since: float | None = None) -> tuple[str, str]:
        """(crash reason, where it was read) from error.log, if it was written at or after `since`."""
        path = self.log_path("error")
        try:
            if path is None or (since is not None and path.stat().st_mtime < since - 1):
                return "", ""
            return crash_reason("\n".join(tail_lines(path, 60)), self.workdir), str(path)
        except OSError:
            return "", ""

    # -- status -----------------------------------------------------------------------------
    def app_state(self) -> ServiceState:
        procs = self.processes()
        if procs:
            pids = ", ".join(str(p.pid) for p in procs)
            return ServiceState("app", "running", "", None, f"pid {pids}: {self.conf.match}{_age(procs[0].uptime_s)}",
                                f"pid {pids}")
        reason, where = self.last_words()
        detail = f"no process {self._what()}"
        return ServiceState("app", "stopped", "", None, detail, "",
                            f"last words in {where}: {reason}" if reason else "")

    def db_state(self) -> ServiceState:
        url = self.settings.configured_database_url()
        if not url:
            return ServiceState("db", "unknown", "", None, "no database configured", "",
                                "not configured: set database.url or CCOPS_DATABASE_URL")
        from ccops.core.settings import mask_url

        up, said = ping_database(url)
        shown = mask_url(url)
        return ServiceState("db", "running" if up else "stopped", "", None, f"{shown}: {said}", "",
                            "" if up else f"database at {shown}: {said}")

    def status(self) -> list[ServiceState]:
        return [self.db_state(), self.app_state()]

    # -- app start/stop ------------------------------------------------------------------
    def _settle(self) -> list[Proc]:
        """Watch the app for settle_seconds; [] as soon as a process seen running is gone."""
        deadline = time.monotonic() + max(self.conf.settle_seconds, 0)
        seen: list[Proc] = []
        while True:
            procs = self.processes()
            if seen and not procs:
                return []
            seen = procs or seen
            if time.monotonic() >= deadline:
                return procs
            time.sleep(POLL_S)

    def start_app(self) -> str:
        command = self._need("start_command", self.conf.start_command)
        workdir = self._need("workdir", self.workdir)
        running = self.processes()
        if running:
            return f"app already running (pid {running[0].pid})"
        started = time.time()
        code, said = _shell(command, workdir, ACTION_TIMEOUT)
        if code != 0:
            reason = crash_reason(said) or f"exit status {code}"
            raise BackendError(f"app start failed: `{command}` exited {code}: {excerpt(reason, 300)}")
        procs = self._settle()
        if procs:
            return f"app UP: pid {procs[0].pid} still running {self.conf.settle_seconds:g} s after `{command}`"
        reason, where = self.last_words(since=started)
        if not reason:
            reason, where = crash_reason(said, self.workdir), f"the output of `{command}`"
        if not reason:
            raise BackendError(f"app not running {self.conf.settle_seconds:g} s after `{command}`: no process "
                               f"{self._what()}, and neither error.log nor the command said why")
        raise BackendError(f"app crashed at start: {excerpt(reason, 300)} (from {where})")

    def stop_app(self) -> str:
        procs = self.processes()
        if self.conf.stop_command:
            code, said = _shell(self.conf.stop_command, self.workdir or None, ACTION_TIMEOUT)
            if code != 0:
                raise BackendError(f"`{self.conf.stop_command}` exited {code}: {excerpt(crash_reason(said), 300)}")
            left = self._wait_gone(5.0)
            if left:
                raise BackendError(f"app still running after `{self.conf.stop_command}`: pid {left[0].pid}")
            return f"app stopped by `{self.conf.stop_command}`"
        if not procs:
            return "app was not running"
        for proc in procs:
            _signal(proc.pid, signal.SIGTERM)
        left = self._wait_gone(KILL_AFTER_S)
        for proc in left:
            _signal(proc.pid, signal.SIGKILL)
        if self._wait_gone(2.0):
            raise BackendError(f"app still running after SIGKILL: pid {left[0].pid}")
        how = "SIGKILL after SIGTERM was ignored for 2 s" if left else "SIGTERM"
        return f"app stopped (pid {', '.join(str(p.pid) for p in procs)}, {how})"

    def _wait_gone(self, seconds: float) -> list[Proc]:
        deadline = time.monotonic() + seconds
        while True:
            procs = self.processes()
            if not procs or time.monotonic() >= deadline:
                return procs
            time.sleep(POLL_S / 2)

    # -- db start/stop ----------------------------------------------------------------------
    def _db(self, verb: str) -> str:
        command = self._need(f"db_{verb}_command", getattr(self.conf, f"db_{verb}_command"))
        code, said = _shell(command, self.workdir or None, ACTION_TIMEOUT)
        if code != 0:
            raise BackendError(f"db {verb} failed: `{command}` exited {code}: {excerpt(crash_reason(said), 300)}")
        if verb == "start":
            state = self.db_state()
            if state.state != "running":
                raise BackendError(f"db not answering after `{command}`: {state.reason or state.detail}")
        return f"db {verb}: `{command}` done"

    def _db_configured(self, verb: str) -> bool:
        return bool(getattr(self.conf, f"db_{verb}_command"))

    # -- the Backend interface ------------------------------------------------------------
    def start(self, service: str | None = None) -> None:
        self._check_service(service)
        done = []
        if service in (None, "db") and (service == "db" or self._db_configured("start")):
            if service == "db" or self.db_state().state != "running":
                done.append(self._db("start"))
        if service in (None, "app"):
            done.append(self.start_app())
        self.last_result = "; ".join(done)

    def stop(self, service: str | None = None) -> None:
        self._check_service(service)
        done = []
        if service in (None, "app"):
            done.append(self.stop_app())
        if service == "db" or (service is None and self._db_configured("stop")):
            done.append(self._db("stop"))
        self.last_result = "; ".join(done)

    def restart(self, service: str | None = None) -> None:
        """Stop, then start: the app after the database, and UP only when it stays up."""
        self._check_service(service)
        done = []
        if service in (None, "app"):
            done.append(self.stop_app())
        if service == "db" or (service is None and self._db_configured("stop") and self._db_configured("start")):
            done += [self._db("stop"), self._db("start")]
        elif service is None and self._db_configured("start") and self.db_state().state != "running":
            done.append(self._db("start"))
        if service in (None, "app"):
            done.append(self.start_app())
        self.last_result = "; ".join(done)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        self._check_service(service)
        lines: list[str] = []
        for label, path in self.log_files(service):
            try:
                lines += [f"[{label}] {strip_ansi(line)}" for line in tail_lines(path, int(tail))]
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BackendError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not self.log_files(service):
            key = "process.db_log (the file pg_ctl -l writes)" if service == "db" else "process.workdir"
            raise BackendError(f"not configured: set {key}")
        if not lines and not any(path.exists() for _, path in self.log_files(service)):
            raise BackendError(f"no {service} log to read ({', '.join(str(p) for _, p in self.log_files(service))})")
        return lines

    def log_files(self, service: str) -> list[tuple[str, Path]]:
        """error.log first (a crash at start shows there), then output.log; the db's pg_ctl log."""
        kinds = ("error", "output") if service == "app" else ("db",)
        return [(path.name, path) for path in (self.log_path(k) for k in kinds) if path is not None]

    def _check_service(self, service: str | None) -> None:
        if service not in (None, *LOGICAL):
            raise BackendError(f"unknown service {service!r}: expected db or app")

    def describe_action(self, verb: str, service: str | None = None) -> str:
        _check_verb(verb)
        self._check_service(service)
        if verb == "status":
            return f"look for {self._what()} in /proc; ping the database (pg_isready)"
        if verb == "logs":
            return "last lines of " + ", ".join(str(p) for _, p in self.log_files(service or "app"))
        if verb == "restart" and service is None:
            parts = [self._describe_one("stop", "app"), self._describe_one("restart", "db"),
                     self._describe_one("start", "app")]
        else:
            targets = LOGICAL if service is None else (service,)
            order = targets if verb in ("start", "restart") else tuple(reversed(targets))
            parts = [self._describe_one(verb, name) for name in order]
        return "; then ".join(parts)

    def _describe_one(self, verb: str, name: str) -> str:
        if name == "db":
            commands = [getattr(self.conf, f"db_{v}_command") for v in (("stop", "start") if verb == "restart" else (verb,))]
            if not all(commands):
                keys = " and ".join(f"process.db_{v}_command" for v in (("stop", "start") if verb == "restart" else (verb,)))
                return f"db: left as it is (set {keys} to {verb} it)"
            return " && ".join(f"`{c}`" for c in commands)
        if verb == "stop":
            return (f"`{self.conf.stop_command}`" if self.conf.stop_command
                    else f"SIGTERM to {self._what()}, SIGKILL after {KILL_AFTER_S:g} s")
        if verb == "restart":
            return f"{self._describe_one('stop', 'app')}; then {self._describe_one('start', 'app')}"
        start = self.conf.start_command or "<process.start_command not set>"
        return (f"`cd {self.workdir or '<process.workdir not set>'} && {start}`, UP only if {self._what()} "
                f"still runs after {self.conf.settle_seconds:g} s")


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise BackendError(f"not allowed to signal pid {pid} (another user's process)") from None


BACKENDS: dict[str, Callable[[Settings], Backend]] = {
    "compose": ComposeBackend,
    "systemd": SystemdBackend,
    "process": ProcessBackend,
    "local": LocalBackend,
}


def get_backend(settings: Settings) -> Backend:
    """The backend settings.effective_backend names; NoneBackend for "none"."""
    kind = settings.effective_backend
    cls = BACKENDS.get(kind)
    return cls(settings) if cls else NoneBackend()
