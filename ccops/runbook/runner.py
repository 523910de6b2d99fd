"""`ccops run`: one runbook, executed by papermill under supervision, then archived.

Cron runs these unattended, so the runner is built around what goes wrong
unattended: a typo in a parameter (refused before any kernel starts, exit 64),
two overlapping runs (a per-runbook lock, exit 75), a cell that hangs (a
wall-clock limit that kills papermill *and* its kernel, which jupyter_client
starts in a session of its own), a cell that raises (archived as "failed" with
the error). Every run that got as far as starting leaves an executed notebook,
its HTML and a run record in the archive, scrubbed of secrets, and the index
is rebuilt from the records.

The notebook reports its findings through a JSON-lines file
(CCOPS_FINDINGS_FILE) as cells run, so the outcome survives a run that is
killed half-way:

- SIGTERM, SIGHUP or SIGINT (systemd stop, `timeout`, a dropped SSH session,
  Ctrl-C) stop the kernel and papermill, archive the run as `killed` with the
  findings it had, and only then release the lock (a signal ignored when ccops
  started, as under nohup, stays ignored).
- SIGKILL cannot be caught, so every run leaves a note in its work dir
  (run.json: runbook, parameters, the runner's and papermill's pids). The next
  run of any runbook looks for work dirs whose runbook lock is free: their
  runner died. It stops what is left of that run (the stop is what the kill
  asked for), archives it as `killed`, raises its alerts and removes the dir.

A full disk must not lose a run: the work dir goes to the system temp dir
when ccops' home has no room (always, for the out-of-disk runbook, which must
write nothing to the full disk before it has freed space); the lock needs no
free block; the outcome goes to the alert channels before the archive is
written; and an archive that cannot be written leaves no partial file and is
one line naming the path and ENOSPC, exit 3.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ccops
from ccops import archive
from ccops.archive.header import actions_of, tidy_numbers
from ccops.core import fs
from ccops.core.context import RUN_ID_ENV
from ccops.core.errors import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING, AlreadyRunning, CcopsError, UsageError
from ccops.core.findings import FINDINGS_FILE_ENV, Assessment, Finding, Status, assess, read_recorded
from ccops.core.paths import display_path
from ccops.core.runbooks import locate
from ccops.core.scrub import Scrubber
from ccops.core.settings import Settings, is_secret_name
from ccops.logs.snapshot import SNAPSHOT_ENV
from ccops.runbook import progress
from ccops.runbook.indexes import refresh_indexes
from ccops.runbook.papermill_entry import (
    HEADLESS_KERNEL,
    KERNEL_SOCKETS_ENV,
    kernel_socket_dir,
    skip_unused_format_checkers,
)
from ccops.runbook.parameters import convert, declared_parameters, parameter_type, runbook_sections

WARM_AFTER_HELPER_SECONDS = 10.0  # the renderer's warm-up waits at most this long for the log helper
KERNEL = "python3"
KILL_GRACE_SECONDS = 5.0
RUN_META = "run.json"  # in each work dir: what the next run needs to archive this one if its runner dies
OUT_OF_DISK_RUNBOOK = "emergency/out_of_disk_space"  # runs with its work dir off the (full) disk, always
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
OUTCOME_EXIT = {
    "ok": EXIT_OK,
    "warning": EXIT_WARNING,
    "critical": EXIT_CRITICAL,
    "unknown": EXIT_UNKNOWN,
    "failed": EXIT_UNKNOWN,
    "timed-out": EXIT_UNKNOWN,
    "killed": EXIT_UNKNOWN,
}
STATUS_OUTCOME = {
    Status.OK: "ok",
    Status.INFO: "ok",
    Status.WARNING: "warning",
    Status.CRITICAL: "critical",
    Status.UNKNOWN: "unknown",
}
STATUS_CELL_TAG = "ccops-run-status"


@dataclass
class RunResult:
    """What `ccops run` reports: the run record, the exit code and the archived files."""

    record: dict[str, Any]
    exit_code: int
    paths: dict[str, Path] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the terminal / cron mail.

        Exit 3 means either "a check could not decide" or "the run broke"; the
        line says which, and names the checks or the error.
        """
        r = self.record
        text = f"{r['runbook']}: {r['outcome']} in {float(r.get('duration_s') or 0):.1f}s"
        if r.get("error"):
            text += f" (the run broke: {r['error']})" if r["outcome"] == "failed" else f" ({r['error']})"
        notes = []
        if r.get("incident"):
            notes.append(f"incident resolved: [{r['incident']['status']}] {r['incident']['check']}")
        if r.get("undecided"):
            notes.append(f"could not decide ({len(r['undecided'])}): {', '.join(dict.fromkeys(r['undecided']))}")
        if r.get("not_configured"):
            items = r["not_configured"]
            keys = ", ".join(dict.fromkeys(i["setting"] for i in items if i.get("setting")))
            notes.append(f"not configured ({len(items)}): {', '.join(dict.fromkeys(i['check'] for i in items))}"
                         + (f" - set {keys}" if keys else ""))
        if r.get("alerts", {}).get("backdated"):
            notes.append("backdated: live alerts untouched")
        if (r.get("mirror") or {}).get("status") == "failed":
            notes.append("not in the bucket yet: mirror failed, pending for the next run or `ccops reports sync`")
        if notes:
            text += " [" + "; ".join(notes) + "]"
        report = self.paths.get("html")
        if report:
            text += f" -> {display_path(report)}"
        return text


# ---- locating the runbook and checking its parameters ------------------------------

def check_parameters(runbook: str, path: Path, params: list) -> tuple[dict[str, Any], dict[str, Any]]:
    """(typed values of the given parameters, the declared parameters); runs no kernel."""
    declared = declared_parameters(path)
    values: dict[str, Any] = {}
    for pair in params or []:
        if len(pair) != 2:
            raise UsageError(f"parameter {pair!r}: expected NAME VALUE")
        name, raw = str(pair[0]), str(pair[1])
        if name not in declared:
            known = ", ".join(declared) or "(none)"
            raise UsageError(f"unknown parameter {name!r} for runbook {runbook}; known: {known}")
        value = convert(runbook, name, raw, parameter_type(declared[name]))
        if name == "part":
            parts = runbook_sections(path)
            if parts and value not in ("all", *parts):
                raise UsageError(f"parameter 'part': expected one of all, {', '.join(parts)}; got {raw!r}")
        if name == "as_of" and isinstance(value, str) and value.strip():
            from ccops.core.context import parse_as_of

            parse_as_of(value)  # a bad timestamp is a usage error now, not a failed run later
        values[name] = value
    return values, declared


# ---- the home, the lock and work dirs ------------------------------------------------------

class RunNotArchived(CcopsError):
    """The run ended but its files could not be written (a full disk); nothing partial is left. Exit 3."""


def ensure_home(home: Path) -> Path:
    """CCOPS_HOME, absolute, created 0700 (and made 0700): it holds locks, alert state and unscrubbed work dirs."""
    home = Path(home).resolve()
    try:
        archive.make_dirs(home)
    except OSError as exc:
        if not home.is_dir():
            raise CcopsError(f"cannot create {home}: {archive.describe_os_error(exc)}") from None
    return home


def lock_path(home: Path, runbook: str) -> Path:
    return Path(home) / "locks" / (runbook.replace("/", "__") + ".lock")


@contextmanager
def runbook_lock(home: Path, runbook: str) -> Iterator[Path]:
    """Hold the runbook's lock for the block; AlreadyRunning (exit 75) when another run has it.

    flock dies with its holder, so a crashed run never leaves a stale lock; the
    pid in the file is only for the message. The descriptor is close-on-exec,
    so papermill and the kernel do not inherit it. Taking the lock needs no
    free block: the file is empty between runs, a pid that cannot be written on
    a full disk is skipped, and when the lock file cannot even be created
    there, the lock is taken in the home's spare dir (spare_roots) instead.
    """
    path = lock_path(home, runbook)
    with ExitStack() as stack:
        try:
            fd = stack.enter_context(_lock(path, runbook))
        except OSError as exc:
            if exc.errno not in FULL_DISK:
                raise CcopsError(f"cannot take the lock {path}: {archive.describe_os_error(exc)}") from None
            fd = -1
            for spare in spare_roots(home):
                try:
                    _private_dir(spare)
                    path = lock_path(spare, runbook)
                    fd = stack.enter_context(_lock(path, runbook))
                    break
                except OSError:
                    continue
            if fd < 0:
                raise CcopsError(f"cannot take the lock {lock_path(home, runbook)}: "
                                 f"{archive.describe_os_error(exc)}") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # a full disk: the pid is only for the "already running" message
            pass
        try:
            yield path
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass


def _lock(path: Path, runbook: str) -> AbstractContextManager[int]:
    if not path.parent.is_dir():
        archive.make_dirs(path.parent)

    def busy(fd: int) -> AlreadyRunning:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        return AlreadyRunning(f"{runbook} is already running (pid {holder})")

    return fs.exclusive_lock(path, busy=busy)


def spare_roots(home: Path) -> list[Path]:
    """Where a run keeps its files when home's disk is full: the system temp dir, then /dev/shm (memory).

    One private folder per home, so runs of two homes never see each other's work dirs.
    """
    tag = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:12]
    roots: list[Path] = []
    for base in (Path(tempfile.gettempdir()), Path("/dev/shm")):
        candidate = base / f"ccops-{os.geteuid()}-{tag}"
        if base.is_dir() and candidate not in roots:
            roots.append(candidate)
    return roots


def _private_dir(path: Path) -> Path:
    """A folder in a world-writable place: created 0700, refused unless it is a real folder of this user."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(errno.EPERM, "not a folder owned by this user", str(path))
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def runs_dirs(home: Path) -> list[Path]:
    """Every place a work dir may be: home's runs/, then the spare roots' runs/."""
    return [Path(home) / "runs"] + [root / "runs" for root in spare_roots(home)]


def make_work_dir(home: Path, runbook: str, run_id: str, meta: dict[str, Any]) -> Path:
    """The run's private work dir, holding its note (run.json) from the moment it is visible.

    In home's runs/ unless that disk is full (ENOSPC) or the runbook is the
    out-of-disk one; then in the first spare root that takes it.
    """
    places = runs_dirs(home)
    if runbook == OUT_OF_DISK_RUNBOOK:
        places = places[1:] or places
    failure: tuple[Path, OSError] | None = None
    for runs in places:
        try:
            if runs.parent != Path(home):
                _private_dir(runs.parent)
            archive.make_dirs(runs)
            return _new_work_dir(runs, run_id, meta)
        except OSError as exc:
            failure = failure or (runs, exc)
            if runs.parent == Path(home) and exc.errno not in FULL_DISK:
                break
    where, error = failure if failure else (places[0], OSError(errno.ENOENT, "no place for a work dir"))
    raise CcopsError(f"cannot create the run's work dir in {where}: {archive.describe_os_error(error)}")


def _new_work_dir(runs: Path, run_id: str, meta: dict[str, Any]) -> Path:
    """Made under a dot-name and renamed, so every visible work dir has its note."""
    tmp = runs / f".{run_id}.new"
    tmp.mkdir(mode=0o700)
    try:
        _write_meta(tmp, meta)
        final = runs / run_id
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_meta(work: Path, meta: dict[str, Any]) -> None:
    fs.write_atomic(work / RUN_META, json.dumps(meta, default=str))


def _read_meta(work: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((work / RUN_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("runbook") else None


def _note_papermill(work: Path, meta: dict[str, Any], pid: int) -> None:
    meta["papermill_pid"] = pid
    try:
        _write_meta(work, meta)
    except OSError:  # the note keeps the runner's pid; the run id in the environment finds papermill anyway
        pass


# ---- signals ------------------------------------------------------------------------------

class RunKilled(BaseException):
    """A stop signal arrived while papermill ran; a BaseException, so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class SignalGuard:
    """SIGTERM, SIGHUP and SIGINT for the length of a run.

    While papermill runs (`armed`) the first one raises RunKilled, so the run
    is stopped and archived as killed. At any other moment (taking the lock,
    archiving) it is only remembered: the archive is never cut in half, and a
    signal before papermill starts means papermill never starts. A signal
    that was ignored when ccops started (nohup) stays ignored.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._armed = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        if self._armed:
            self._armed = False
            raise RunKilled(signum)

    def check(self) -> None:
        if self.received is not None:
            raise RunKilled(self.received)

    @contextmanager
    def armed(self) -> Iterator[None]:
        self._armed = True
        try:
            if self.received is not None:
                self._armed = False
                raise RunKilled(self.received)
            yield
        finally:
            self._armed = False


# ---- running ---------------------------------------------------------------------------

@dataclass
class Execution:
    returncode: int | None
    timed_out: bool
    seconds_limit: int
    log_tail: str
    output: Path
    killed: str | None = None  # the stop signal's name
    abandoned: str | None = None  # why a run whose runner died was archived by another


def run_runbook(
    settings: Settings,
    runbook: str,
    params: list,
    timeout: int | None = None,
    runbooks_dir: Path | None = None,
) -> RunResult:
    """Run one runbook headlessly and archive it; the result's exit code follows the monitoring convention.

    RunNotArchived (exit 3, one line) when the run's files or the index could
    not be written; its alerts have been raised all the same.
    """
    root = Path(runbooks_dir or settings.effective_runbooks_dir).resolve()
    name, path = locate(root, runbook)
    values, declared = check_parameters(name, path, params)
    limit = int(timeout if timeout is not None else settings.run_timeout_seconds)
    if limit <= 0:
        raise UsageError(f"--timeout: expected a positive number of seconds, got {limit}")
    perms = archive.Permissions.for_settings(settings)  # a bad archive.group: exit 64 before anything runs
    home = ensure_home(settings.home)
    # nbformat (the renderer's warm-up beside the kernel, the archive) imports in 1 s instead of 2.5 s of CPU
    skip_unused_format_checkers()

    guard = SignalGuard()
    guard.install()
    try:
        with runbook_lock(home, name):
            recovered = recover_abandoned(settings, holding=name, perms=perms)
            started = datetime.now(UTC).replace(microsecond=0)
            t0 = time.monotonic()
            if "as_of" in declared and not str(values.get("as_of") or "").strip():
                values["as_of"] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
            run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
            meta = {"run_id": run_id, "runbook": name, "notebook": str(path), "root": str(root),
                    "parameters": values, "start": _iso(started), "timeout": limit, "runner_pid": os.getpid(),
                    "papermill_pid": None}
            work = make_work_dir(home, name, run_id, meta)
            # papermill runs in a child; meanwhile this process readies the HTML renderer, once the log
            # helper (which the kernel's first log step waits for) has had the spare core to itself
            helper_done = threading.Event()
            warm = threading.Thread(target=_warm_renderer, args=(helper_done,), name="ccops-warm-renderer",
                                    daemon=True)
            warm.start()
            try:
                execution = _execute(settings, root, path, values, run_id, work, limit, guard, meta, helper_done)
                warm.join()
                # nbconvert, jinja, pygments and bs4 are a million objects by now, which every full collection
                # the archiving sets off would walk again: set them aside (halves the render, 0.25 s here)
                gc.freeze()
                ended = datetime.now(UTC).replace(microsecond=0)
                result, failure = _finish(settings, perms, root, name, path, values, run_id, started, ended,
                                          time.monotonic() - t0, execution, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if failure is None or recovered:
                try:
                    refresh_indexes(settings, perms)
                except archive.ArchiveError as exc:
                    if failure is None:
                        raise RunNotArchived(f"{name}: archived as {result.record['outcome']}, "
                                             f"but the index was not rebuilt: {exc}") from None
            if failure is None and settings.archive_remote:  # the archive names a bucket: copy the run there
                from ccops.archive import remote  # fsspec/s3fs only when a bucket is configured

                remote.mirror_after_run(settings, result.record, result.paths["json"], perms)
    finally:
        gc.unfreeze()
        guard.restore()
    if failure is not None:
        raise RunNotArchived(f"{name}: the run ended {result.record['outcome']} but was not archived: {failure}")
    return result


def _warm_renderer(after: threading.Event | None = None) -> None:
    if after is not None:
        after.wait(WARM_AFTER_HELPER_SECONDS)
    try:
        archive.warm_renderer()
    except Exception:  # noqa: BLE001 - a broken renderer shows in the real render, with its error
        pass


def _execute(settings: Settings, root: Path, path: Path, values: dict[str, Any], run_id: str,
             work: Path, limit: int, guard: SignalGuard | None = None,
             meta: dict[str, Any] | None = None, helper_done: threading.Event | None = None) -> Execution:
    import yaml

    guard = guard or SignalGuard()
    params_file = work / "parameters.yaml"
    params_file.write_text(yaml.safe_dump(values, allow_unicode=True, default_flow_style=False), encoding="utf-8")
    output = work / path.name
    log_path = work / "papermill.log"
    cmd = [
        sys.executable, "-m", "ccops.runbook.papermill_entry", str(path), str(output),
        "-f", str(params_file), "-k", KERNEL, "--cwd", str(path.parent),
        "--no-progress-bar", "--request-save-on-cell-execute",
    ]
    env = child_environment(settings, root, run_id, work / "findings.jsonl")
    timed_out = False
    killed = None
    with open(log_path, "wb") as log, _log_prefetch(path, params_file, work, env, helper_done) as prefetched, \
            _kernel_sockets(env):
        try:
            guard.check()
        except RunKilled as exc:  # stopped before papermill started: it never will
            return Execution(None, False, limit, "", output, killed=signal_name(exc.signum))
        if prefetched:
            env[SNAPSHOT_ENV] = str(work / "logs.snapshot")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        if meta is not None:
            _note_papermill(work, meta, proc.pid)
        watcher = progress.start(output, path.stem)  # "step k of n: title" on a terminal; quiet under cron
        try:
            with guard.armed():
                returncode: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            terminate_run(proc, run_id)
            returncode = proc.returncode
        except RunKilled as exc:
            killed = signal_name(exc.signum)
            terminate_run(proc, run_id)
            returncode = proc.returncode
        except BaseException:  # a bug here: never leave a kernel behind
            terminate_run(proc, run_id, grace=1.0)
            raise
        finally:
            if watcher is not None:
                watcher.stop()
    return Execution(returncode, timed_out, limit, _tail(log_path), output, killed=killed)


@contextmanager
def _kernel_sockets(env: dict[str, str]) -> Iterator[None]:
    """The private directory of the kernel's Unix sockets (ccops.runbook.papermill_entry), removed after papermill.

    Removed here rather than by papermill, which a timeout or a stop signal kills before its exit handlers run.
    """
    sockets = kernel_socket_dir()
    env[KERNEL_SOCKETS_ENV] = sockets
    try:
        yield
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


@contextmanager
def _log_prefetch(path: Path, params_file: Path, work: Path, env: dict[str, str],
                  done: threading.Event | None = None) -> Iterator[bool]:
    """Read the runbook's log window in a helper process while papermill and the kernel start (ccops.runbook.prefetch).

    Yields whether a helper runs. It holds an exclusive lock on the snapshot's lock file
    from before papermill starts until its answers are written, so the kernel's log steps
    wait for them instead of reading the same bytes on the kernel's one core; a helper that
    fails leaves no answers and the kernel reads the logs itself. The helper is stopped
    when the run ends, whatever happened to it. `done` is set once it has ended (at once without one).
    """
    import fcntl

    from ccops.runbook.prefetch import log_steps

    done = done or threading.Event()
    if not log_steps(path):
        done.set()
        yield False
        return
    target = work / "logs.snapshot"
    fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    helper = None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        helper_env = {k: v for k, v in env.items() if k != FINDINGS_FILE_ENV}
        with open(work / "prefetch.log", "wb") as log:
            helper = subprocess.Popen(
                [sys.executable, "-m", "ccops.runbook.prefetch", str(path), str(params_file), str(target), str(fd)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=helper_env, pass_fds=(fd,),
                cwd=str(path.parent))  # where papermill runs the kernel (--cwd): the same settings, found the same way
    except OSError:
        helper = None
    finally:
        os.close(fd)  # the helper holds the lock now (or nobody does: the kernel then reads the logs itself)
    if helper is None:
        done.set()
    else:
        threading.Thread(target=_set_when_ended, args=(helper, done), name="ccops-log-helper", daemon=True).start()
    try:
        yield helper is not None
    finally:
        if helper is not None:
            if helper.poll() is None:
                helper.kill()
            helper.wait()
        done.set()


def _set_when_ended(helper: subprocess.Popen, done: threading.Event) -> None:
    try:
        helper.wait()
    finally:
        done.set()


def child_environment(settings: Settings, root: Path, run_id: str, findings_file: Path) -> dict[str, str]:
    """The environment of papermill and its kernel: ours, plus where to record findings.

    The kernel runs in the runbook's directory, so every relative path the
    parent resolved (home, archive, config file) is handed down absolute:
    the notebook must see the same settings the runner saw.
    """
    env = dict(os.environ)
    env[FINDINGS_FILE_ENV] = str(findings_file)
    env[RUN_ID_ENV] = run_id
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYTHONUNBUFFERED"] = "1"
    if settings.config_file:
        env["CCOPS_CONFIG"] = str(Path(settings.config_file).resolve())
    env["CCOPS_HOME"] = str(Path(settings.home).resolve())
    env["CCOPS_ARCHIVE_DIR"] = str(Path(settings.archive_dir).resolve())
    env["CCOPS_RUNBOOKS_DIR"] = str(root)
    if settings.target:  # the kernel loads this target's settings, not the fleet's default
        env["CCOPS_TARGET"] = settings.target
    for attr, var in (("log_dir", "CCOPS_LOG_DIR"), ("backup_dir", "CCOPS_BACKUP_DIR"),
                      ("app_env_file", "CCOPS_APP_ENV_FILE")):
        value = getattr(settings, attr)
        if value:
            env[var] = str(Path(value).resolve())
    package_root = str(Path(ccops.__file__).resolve().parent.parent)
    if "site-packages" not in package_root:  # a source checkout: the kernel must import this ccops
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---- stopping a run ------------------------------------------------------------------------

def terminate_run(proc: subprocess.Popen, run_id: str, grace: float = KILL_GRACE_SECONDS) -> None:
    """Stop papermill and its kernel: SIGTERM, then SIGKILL after `grace` seconds.

    jupyter_client starts the kernel in a session of its own, so killing
    papermill's process group alone would orphan a kernel still running the
    hung cell. Kernels are found by the run id in their environment. The
    kernel is signalled first, so papermill can still save the notebook with
    the interrupted cell; processes a cell deliberately detached into a
    session of their own (a restarted service) are left alone.
    """
    groups = _stop(run_id, proc.pid, lambda: proc.poll() is not None, grace)
    proc.wait()
    _wait(lambda: not _live_members(groups), time.monotonic() + 2.0)


def stop_orphan(run_id: str, papermill_pid: int | None = None, grace: float = KILL_GRACE_SECONDS) -> bool:
    """Stop what is left of a run whose runner died (the same way as terminate_run); True if anything ran."""
    pids = run_processes(run_id)
    if not pids:
        return False
    leader = papermill_pid if papermill_pid in pids else next(
        (pid for pid in pids if b"papermill" in _cmdline(pid)), None)

    def exited() -> bool:
        return leader is None or _state(leader)[0] in ("", "Z", "X")

    groups = _stop(run_id, leader or 0, exited, grace)
    _wait(lambda: exited() and not _live_members(groups), time.monotonic() + 2.0)
    return True


def _stop(run_id: str, leader: int, exited: Any, grace: float) -> set[int]:
    """Kernels first (papermill then saves the notebook), then papermill's group; SIGKILL what is left at the end."""
    deadline = time.monotonic() + grace
    kernels = _kernel_groups(run_id, leader)
    _signal_groups(kernels, signal.SIGTERM)
    if kernels:  # papermill notices the dead kernel, saves the notebook and exits
        _wait(exited, min(deadline, time.monotonic() + grace / 2))
    groups = ({leader} if leader else set()) | kernels | _kernel_groups(run_id, leader)
    _signal_groups(groups, signal.SIGTERM)
    _wait(lambda: exited() and not _live_members(groups), deadline)
    groups |= _kernel_groups(run_id, leader)
    _signal_groups(groups, signal.SIGKILL)
    return groups


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def run_processes(run_id: str) -> list[int]:
    """Live (non-zombie) processes carrying this run's id in their environment."""
    needle = f"\0{RUN_ID_ENV}={run_id}\0".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in b"\0" + environ + b"\0" and _state(int(entry.name))[0] not in ("Z", "X", ""):
            found.append(int(entry.name))
    return found


def _kernel_groups(run_id: str, papermill_pgid: int) -> set[int]:
    groups = set()
    own = os.getpgrp()
    for pid in run_processes(run_id):
        _, pgid = _state(pid)
        if pgid in (own, papermill_pgid, 0):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel" in cmdline or HEADLESS_KERNEL.encode() in cmdline:  # the kernel's own process group
            groups.add(pgid)
    return groups


def _state(pid: int) -> tuple[str, int]:
    """(state letter, process group) from /proc/<pid>/stat; ('', 0) when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[2])


def _live_members(groups: set[int]) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            state, pgid = _state(int(entry.name))
            if pgid in groups and state not in ("Z", "X", ""):
                members.append(int(entry.name))
    return members


def _signal_groups(groups: set[int], sig: int) -> None:
    own = os.getpgrp()
    for pgid in groups:
        if pgid and pgid != own:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _wait(done: Any, deadline: float) -> None:
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.1)


# ---- runs whose runner died ------------------------------------------------------------------

def recover_abandoned(settings: Settings, holding: str, perms: archive.Permissions | None = None) -> list[dict]:
    """Archive, as killed, every run whose runner died (SIGKILL, OOM, a crash); their records.

    Called by every run, holding its own runbook's lock. A work dir of
    another runbook is abandoned when that runbook's lock is free (its runner
    would hold it); one of our own runbook is abandoned since we hold the lock.
    What still runs of it is stopped, the run is archived as `killed` with the
    findings it had, its alerts are raised and the work dir is removed. A run
    that cannot be archived yet (a full disk) keeps its work dir for the next try.
    While another runbook's orphan is being recovered, its lock is held here,
    so a run of that runbook starting in those seconds gets exit 75.
    """
    home = Path(settings.home).resolve()
    records = []
    for runs in runs_dirs(home):
        try:
            entries = sorted(runs.iterdir())
        except OSError:
            continue
        for work in entries:
            try:
                record = _recover(settings, home, work, holding, perms)
            except AlreadyRunning:  # its runner is alive
                continue
            except (CcopsError, OSError) as exc:
                print(f"ccops: the abandoned run in {work} is not archived yet: {exc}", file=sys.stderr)
                continue
            if record is not None:
                records.append(record)
    return records


def _recover(settings: Settings, home: Path, work: Path, holding: str,
             perms: archive.Permissions | None) -> dict | None:
    if work.name.startswith("."):
        if _age(work) > 3600:  # a work dir that was never finished being made
            shutil.rmtree(work, ignore_errors=True)
        return None
    if not work.is_dir():
        return None
    meta = _read_meta(work)
    if meta is None:  # left by an older ccops, or its note is unreadable: nothing to archive it with
        stop_orphan(work.name)
        shutil.rmtree(work, ignore_errors=True)
        return None
    runbook = str(meta["runbook"])
    with nullcontext() if runbook == holding else runbook_lock(home, runbook):
        if not (work / RUN_META).is_file():
            return None  # it finished while we waited
        return _archive_abandoned(settings, work, meta, perms)


def _archive_abandoned(settings: Settings, work: Path, meta: dict[str, Any],
                       perms: archive.Permissions | None) -> dict:
    run_id = str(meta.get("run_id") or work.name)
    papermill_pid = meta.get("papermill_pid") if isinstance(meta.get("papermill_pid"), int) else None
    stopped = stop_orphan(run_id, papermill_pid)
    name = str(meta["runbook"])
    path = Path(str(meta.get("notebook") or ""))
    root = Path(str(meta.get("root") or path.parent))
    given = meta.get("parameters")
    values: dict[str, Any] = given if isinstance(given, dict) else {}
    started = _parse_iso(meta.get("start")) or datetime.fromtimestamp(_mtime(work), UTC).replace(microsecond=0)
    ended = (datetime.now(UTC) if stopped else datetime.fromtimestamp(_latest_mtime(work), UTC)).replace(microsecond=0)
    what = "papermill was still running and was stopped" if stopped else "papermill had ended"
    note = (f"its ccops process (pid {meta.get('runner_pid', '?')}) died without archiving the run "
            f"(SIGKILL or a crash); {what} by the next ccops run (pid {os.getpid()})")
    execution = Execution(None, False, int(meta.get("timeout") or 0), _tail(work / "papermill.log"),
                          work / path.name, abandoned=note)
    result, failure = _finish(settings, perms or archive.Permissions.for_settings(settings), root, name, path,
                              values, run_id, started, ended, max(0.0, (ended - started).total_seconds()),
                              execution, work, stopped=stopped)
    if failure is not None:
        raise failure
    shutil.rmtree(work, ignore_errors=True)
    print(f"ccops: archived an abandoned run: {result.line()}", file=sys.stderr)
    return result.record


def _age(path: Path) -> float:
    return time.time() - _mtime(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _latest_mtime(work: Path) -> float:
    times = [_mtime(work)]
    for child in work.iterdir():
        times.append(_mtime(child))
    return max(times)


def _parse_iso(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


# ---- archiving -----------------------------------------------------------------------------

def _finish(settings: Settings, perms: archive.Permissions, root: Path, name: str, path: Path,
            values: dict[str, Any], run_id: str, started: datetime, ended: datetime, seconds: float,
            execution: Execution, work: Path, stopped: bool = True) -> tuple[RunResult, archive.ArchiveError | None]:
    """Decide the outcome, raise its alerts, then write the archive; (result, the write's failure or None).

    The alerts go first, so a disk too full for the archive does not lose them;
    what the alert path did (and what it could not deliver) goes in the record.
    """
    import nbformat

    findings = read_recorded(work / "findings.jsonl")
    verdict = assess(findings)
    notebook, executed = _load_notebook(execution.output, path)
    error = None
    if execution.killed or execution.abandoned:
        outcome = "killed"
        error = _killed_message(notebook if executed and stopped else None, execution)
    elif execution.timed_out:
        outcome = "timed-out"
        error = _timeout_message(notebook if executed else None, execution.seconds_limit)
    elif execution.returncode != 0:
        outcome = "failed"
        error = _failure_message(notebook if executed else None, execution)
    else:
        outcome = STATUS_OUTCOME[verdict.status]
    if error:
        notebook.cells.insert(0, _status_cell(outcome, error, executed))

    # a secret-named parameter (DESIGN says there should be none) is hidden like every other secret
    secret_keys = {k for k, v in values.items() if is_secret_name(k) and v not in (None, "")}
    scrub = Scrubber(settings, extra=[str(values[k]) for k in secret_keys])
    record: dict[str, Any] = scrub.data({
        "runbook": name,
        "run_id": run_id,
        "target": settings.target or None,
        "parameters": {k: ("***" if k in secret_keys else v) for k, v in values.items()},
        "parameter_defaults": parameter_defaults(path, values),
        "as_of": values.get("as_of"),
        "start": _iso(started),
        "end": _iso(ended),
        "duration_s": round(seconds, 3),
        "outcome": outcome,
        "exit_code": OUTCOME_EXIT[outcome],
        "error": error,
        "findings": _finding_dicts(findings, verdict),
        "counts": _counts(findings),
        "incident": verdict.incident_record(),
        "not_configured": verdict.not_configured_record(),
        "undecided": [f.check for f in verdict.undecided],
        "actions": actions_of(_finding_dicts(findings, verdict)),
        **provenance(path),
    })
    # DESIGN: WARNING/CRITICAL findings of any run raise alerts through the same path as `ccops alerts check`;
    # a run looking back at the past raises none: it records what it would have raised
    from ccops.alerts.engine import alerts_for_run, would_raise

    as_of = _parse_iso(record["as_of"]) if record.get("as_of") else None
    if is_backdated(as_of, started):
        record["alerts"] = scrub.data(would_raise(record))
    else:
        record["alerts"] = scrub.data(alerts_for_run(settings, record))

    archive_root = Path(settings.archive_dir)
    stem = archive.reserve_stem(archive_root, name, started)
    files = {
        "ipynb": stem.with_name(stem.name + ".ipynb"),
        "html": stem.with_name(stem.name + ".html"),
        "report_html": stem.with_name(stem.name + ".report.html"),
        "json": stem.with_name(stem.name + ".json"),
    }
    record["paths"] = {key: p.relative_to(archive_root).as_posix() for key, p in files.items()}
    record = tidy_numbers(record)
    clean = nbformat.from_dict(scrub.data(notebook))
    full_page, report_page = archive.render_reports(clean, record)
    contents = [
        (files["ipynb"], scrub.text(nbformat.writes(clean))),
        (files["html"], scrub.text(full_page)),
        (files["report_html"], scrub.text(report_page)),
        (files["json"], scrub.json_dumps(record, indent=1)),  # last: a record on disk means a complete run
    ]
    try:
        archive.write_files(contents, perms, top=archive_root)
    except archive.ArchiveError as exc:
        record["paths"] = None
        return RunResult(record=record, exit_code=EXIT_UNKNOWN), exc
    return RunResult(record=record, exit_code=record["exit_code"], paths=files), None


def parameter_defaults(path: Path, given: dict[str, Any]) -> dict[str, Any]:
    """The runbook's defaults for the parameters not given, as values (the report shows what the run used).

    Defaults that are not literals, secret-named ones, and a runbook since
    removed are left out.
    """
    import ast

    try:
        declared = declared_parameters(path)
    except (OSError, CcopsError, ValueError):
        return {}
    found: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given or is_secret_name(name):
            continue
        try:
            found[name] = ast.literal_eval(str(spec.get("default") or ""))
        except (ValueError, SyntaxError):
            continue
    return found


def _load_notebook(output: Path, original: Path) -> tuple[Any, bool]:
    """(notebook, executed?): papermill's output (partial after a kill), else the input notebook."""
    import nbformat

    if output.is_file():
        try:
            return nbformat.read(str(output), as_version=4), True
        except Exception:  # torn by a kill mid-save: fall back to the input
            pass
    try:
        return nbformat.read(str(original), as_version=4), False
    except (OSError, ValueError):  # an abandoned run whose runbook was since removed
        return nbformat.v4.new_notebook(), False


def _cells_with_errors(notebook: Any) -> Iterator[tuple[int, Any, Any]]:
    for index, cell in enumerate(notebook.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                yield index, cell, out


def _failure_message(notebook: Any, execution: Execution) -> str:
    if notebook is not None:
        for _, cell, out in _cells_with_errors(notebook):
            where = _cell_label(cell)
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')} in {where}".strip()
    lines = [line.strip() for line in execution.log_tail.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    return f"papermill exited with status {execution.returncode}: {last}"


def _killed_message(notebook: Any, execution: Execution) -> str:
    cell = _interrupted_cell(notebook) if notebook is not None else None
    where = f" while running {_cell_label(cell)}" if cell is not None else ""
    if execution.abandoned:
        return f"abandoned{where}: {execution.abandoned}"
    return f"killed by {execution.killed}{where}"


def _timeout_message(notebook: Any, limit: int) -> str:
    message = f"timed out after {limit} s"
    cell = _interrupted_cell(notebook) if notebook is not None else None
    return f"{message} while running {_cell_label(cell)}" if cell is not None else message


def _interrupted_cell(notebook: Any) -> Any:
    """The cell that was running when the run was stopped.

    papermill marks it "running" in the last save before a hard kill; when the
    kernel went first, papermill finishes by marking every cell "completed", so
    the last cell that started but never got a reply is the one.
    """
    started = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {})
        if meta.get("papermill", {}).get("status") == "running":
            return cell
        if cell.cell_type == "code" and meta.get("papermill", {}).get("start_time"):
            started.append(cell)
    unanswered = [c for c in started if "shell.execute_reply" not in c.get("metadata", {}).get("execution", {})]
    return (unanswered or started or [None])[-1]


def _cell_label(cell: Any) -> str:
    first = next((line.strip() for line in str(cell.get("source", "")).splitlines() if line.strip()), "")
    if len(first) > 60:
        first = first[:57] + "..."
    count = cell.get("execution_count")
    return f"cell [{count}] `{first}`" if count else f"cell `{first}`"


def _status_cell(outcome: str, error: str, executed: bool) -> Any:
    import nbformat

    what = {"timed-out": "was stopped at its time limit", "killed": "was killed"}.get(outcome, "failed")
    after = ("The output below is what had been saved when it stopped; later cells did not run."
             if executed else "No executed notebook was saved; this is the runbook as it was given to papermill.")
    text = (f"## This run {what}\n\n**{outcome}**: {error}\n\n{after} "
            "Findings recorded before the stop are in the run record.")
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = [STATUS_CELL_TAG]
    return cell


def _finding_dicts(findings: list[Finding], verdict: Assessment) -> list[dict[str, Any]]:
    """Each finding as recorded; one a later verified recovery resolved says which (`resolved_by`)."""
    out = []
    for i, finding in enumerate(findings):
        item = finding.to_dict()
        if i in verdict.resolved_by:
            item["resolved_by"] = verdict.resolved_by[i]
        out.append(item)
    return out


BACKDATED_TOLERANCE = timedelta(minutes=10)


def is_backdated(as_of: datetime | None, started: datetime) -> bool:
    """True when the run reports on the past (as_of more than BACKDATED_TOLERANCE before its start).

    Such a run reproduces an old report; its findings describe then, not now,
    so it must not open, update or resolve live alerts.
    """
    if as_of is None:
        return False
    as_of = as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    return as_of < started - BACKDATED_TOLERANCE


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {s.value: sum(1 for f in findings if f.status == s) for s in Status}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


RUN_MODE_ENV = "CCOPS_RUN_MODE"
RUN_MODES = ("scheduled", "interactive", "cli")


def run_mode() -> str:
    """How the run was started: CCOPS_RUN_MODE when it names a mode (the crontab line sets
    `scheduled`), else `interactive` when an operator's terminal is attached, else `cli`
    (a script or another program)."""
    named = os.environ.get(RUN_MODE_ENV, "").strip().lower()
    if named in RUN_MODES:
        return named
    try:
        return "interactive" if os.isatty(0) and os.isatty(2) else "cli"
    except OSError:
        return "cli"


def user_at_host() -> str:
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.geteuid())
    return f"{user}@{socket.gethostname()}"


def file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:  # an abandoned run whose runbook was since removed
        return None


def provenance(path: Path) -> dict[str, Any]:
    """What produced the record: ccops' version, the commit of the code that ran, the runbook's bytes,
    who and where, and how the run was started."""
    return {
        "mode": run_mode(),
        "user_host": user_at_host(),
        "host": socket.gethostname(),
        "ccops_version": ccops.__version__,
        "git": git_info(Path(ccops.__file__).resolve().parent.parent),
        "runbook_sha256": file_sha256(path),
    }


def git_info(root: Path, path: Path | None = None) -> dict[str, Any] | None:
    """The checkout's HEAD commit and whether a tracked file differs from it (or `path`, when given); None outside git.

    Called with the ccops package's checkout: the commit is the code that ran,
    not the last commit that touched the notebook. Notebooks are left out of the
    dirty check: the record pins the runbook by its sha256 already, and git would
    run the nbstripout clean filter on every recently touched notebook (about a
    second each), which made a busy fresh clone time out and report "unknown".
    `--no-optional-locks`: a plain `git status` takes the index lock to refresh
    its stat cache, and a status killed at the timeout (a loaded host) left
    `.git/index.lock` behind, so the operator's next `git commit` failed.
    """
    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None

    inside = git("rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    head = git("rev-parse", "HEAD")
    pathspec = [str(path)] if path else [".", ":(exclude)*.ipynb", ":(exclude)*.zpln"]
    status = git("status", "--porcelain", "--untracked-files=no", "--", *pathspec)
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else ""
    dirty = bool(status.stdout.strip()) if status is not None and status.returncode == 0 else None
    return {"commit": commit or None, "dirty": dirty}
