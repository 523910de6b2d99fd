"""The plain-process deployment: the app's own start/stop scripts, found again in /proc, and pg_ctl.

FACTS: production ran `nohup python main.py --scheduled > logs/output.log
2> logs/error.log &` from scripts/start_content_creator.sh, with PostgreSQL
started by pg_ctl. There is no service manager to ask, so the state comes
from /proc and a libpq ping, and a crash's reason from the app's error.log.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ccops.core.scrub import excerpt
from ccops.core.settings import Settings
from ccops.deploy.backends.base import (
    ACTION_TIMEOUT,
    LOGICAL,
    Backend,
    BackendError,
    ServiceState,
    check_verb,
    tail_lines,
)

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
            send_signal(proc.pid, signal.SIGTERM)
        left = self._wait_gone(KILL_AFTER_S)
        for proc in left:
            send_signal(proc.pid, signal.SIGKILL)
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
        check_verb(verb)
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


def send_signal(pid: int, sig: signal.Signals) -> None:
    """A process already gone is what a stop wanted; another user's is one line, not a traceback."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        raise BackendError(f"not allowed to signal pid {pid} (another user's process)") from None
