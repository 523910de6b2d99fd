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
killed half-way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ccops
from ccops import archive
from ccops.config import Settings, is_secret_name
from ccops.errors import EXIT_CRITICAL, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING, AlreadyRunning, UsageError
from ccops.findings import FINDINGS_FILE_ENV, Finding, Status, read_recorded, worst
from ccops.parameters import convert, declared_parameters, parameter_type, runbook_sections
from ccops.scrub import Scrubber

RUN_ID_ENV = "CCOPS_RUN_ID"
KERNEL = "python3"
KILL_GRACE_SECONDS = 5.0
OUTCOME_EXIT = {
    "ok": EXIT_OK,
    "warning": EXIT_WARNING,
    "critical": EXIT_CRITICAL,
    "unknown": EXIT_UNKNOWN,
    "failed": EXIT_UNKNOWN,
    "timed-out": EXIT_UNKNOWN,
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
        """One line for the terminal / cron mail."""
        r = self.record
        text = f"{r['runbook']}: {r['outcome']} in {float(r.get('duration_s') or 0):.1f}s"
        if r.get("error"):
            text += f" ({r['error']})"
        report = self.paths.get("html")
        if report:
            text += f" -> {_display_path(report)}"
        return text


# ---- locating the runbook and checking its parameters ------------------------------

def locate(runbooks_dir: Path, runbook: str) -> tuple[str, Path]:
    """(normalised name, notebook path); UsageError naming the available runbooks when unknown."""
    name = runbook.strip().removesuffix(".ipynb").strip("/")
    parts = name.split("/")
    if (not name or runbook.strip().startswith("/") or "\\" in name
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise UsageError(f"bad runbook name {runbook!r}: use a name such as daily or emergency/system_down")
    path = Path(runbooks_dir) / f"{name}.ipynb"
    if not path.is_file():
        known = available(runbooks_dir)
        raise UsageError(f"unknown runbook {runbook!r}; available: {', '.join(known) or '(none in ' + str(runbooks_dir) + ')'}")
    return name, path


def available(runbooks_dir: Path) -> list[str]:
    root = Path(runbooks_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.rglob("*.ipynb")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


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
            from ccops.context import parse_as_of

            parse_as_of(value)  # a bad timestamp is a usage error now, not a failed run later
        values[name] = value
    return values, declared


# ---- the lock -------------------------------------------------------------------------

def lock_path(home: Path, runbook: str) -> Path:
    return Path(home) / "locks" / (runbook.replace("/", "__") + ".lock")


@contextmanager
def runbook_lock(home: Path, runbook: str) -> Iterator[Path]:
    """Hold the runbook's lock for the block; AlreadyRunning (exit 75) when another run has it.

    flock dies with its holder, so a crashed run never leaves a stale lock; the
    pid in the file is only for the message. The descriptor is close-on-exec,
    so papermill and the kernel do not inherit it.
    """
    path = lock_path(home, runbook)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise AlreadyRunning(f"{runbook} is already running (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


# ---- running ---------------------------------------------------------------------------

@dataclass
class Execution:
    returncode: int | None
    timed_out: bool
    seconds_limit: int
    log_tail: str
    output: Path


def run_runbook(
    settings: Settings,
    runbook: str,
    params: list,
    timeout: int | None = None,
    runbooks_dir: Path | None = None,
) -> RunResult:
    """Run one runbook headlessly and archive it; the result's exit code follows the monitoring convention."""
    root = Path(runbooks_dir or settings.effective_runbooks_dir).resolve()
    name, path = locate(root, runbook)
    values, declared = check_parameters(name, path, params)
    limit = int(timeout if timeout is not None else settings.run_timeout_seconds)
    if limit <= 0:
        raise UsageError(f"--timeout: expected a positive number of seconds, got {limit}")

    with runbook_lock(settings.home, name):
        started = datetime.now(UTC).replace(microsecond=0)
        t0 = time.monotonic()
        if "as_of" in declared and not str(values.get("as_of") or "").strip():
            values["as_of"] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
        run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        work = Path(settings.home).resolve() / "runs" / run_id
        work.mkdir(parents=True, mode=0o700)
        warm = threading.Thread(target=_warm_renderer, name="ccops-warm-renderer", daemon=True)
        warm.start()  # papermill runs in a child; meanwhile this process readies the HTML renderer
        try:
            execution = _execute(settings, root, path, values, run_id, work, limit)
            warm.join()
            ended = datetime.now(UTC).replace(microsecond=0)
            result = _archive(settings, root, name, path, values, run_id, started, ended,
                              time.monotonic() - t0, execution, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        archive.rebuild_index(Path(settings.archive_dir))
    # DESIGN: WARNING/CRITICAL findings of any run raise alerts through the same path as
    # `ccops alerts check`; raise_from_run never raises (a problem is one line on stderr).
    from ccops.alerts import raise_from_run

    raise_from_run(settings, result.record)
    return result


def _warm_renderer() -> None:
    try:
        archive.warm_renderer()
    except Exception:  # noqa: BLE001 - a broken renderer shows in the real render, with its error
        pass


def _execute(settings: Settings, root: Path, path: Path, values: dict[str, Any], run_id: str,
             work: Path, limit: int) -> Execution:
    import yaml

    params_file = work / "parameters.yaml"
    params_file.write_text(yaml.safe_dump(values, allow_unicode=True, default_flow_style=False), encoding="utf-8")
    output = work / path.name
    log_path = work / "papermill.log"
    cmd = [
        sys.executable, "-m", "ccops.papermill_entry", str(path), str(output),
        "-f", str(params_file), "-k", KERNEL, "--cwd", str(path.parent),
        "--no-progress-bar", "--request-save-on-cell-execute",
    ]
    env = child_environment(settings, root, run_id, work / "findings.jsonl")
    timed_out = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            returncode: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            terminate_run(proc, run_id)
            returncode = proc.returncode
        except BaseException:  # Ctrl-C or a bug here: never leave a kernel behind
            terminate_run(proc, run_id, grace=1.0)
            raise
    return Execution(returncode, timed_out, limit, _tail(log_path), output)


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
    deadline = time.monotonic() + grace
    kernels = _kernel_groups(run_id, proc.pid)
    _signal_groups(kernels, signal.SIGTERM)
    if kernels:  # papermill notices the dead kernel, saves the notebook and exits
        _wait(lambda: proc.poll() is not None, min(deadline, time.monotonic() + grace / 2))
    groups = {proc.pid} | kernels | _kernel_groups(run_id, proc.pid)
    _signal_groups(groups, signal.SIGTERM)
    _wait(lambda: proc.poll() is not None and not _live_members(groups), deadline)
    groups |= _kernel_groups(run_id, proc.pid)
    _signal_groups(groups, signal.SIGKILL)
    proc.wait()
    _wait(lambda: not _live_members(groups), time.monotonic() + 2.0)


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
        if b"ipykernel" in cmdline:
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


# ---- archiving -----------------------------------------------------------------------------

def _archive(settings: Settings, root: Path, name: str, path: Path, values: dict[str, Any], run_id: str,
             started: datetime, ended: datetime, seconds: float, execution: Execution, work: Path) -> RunResult:
    import nbformat

    findings = read_recorded(work / "findings.jsonl")
    notebook, executed = _load_notebook(execution.output, path)
    error = None
    if execution.timed_out:
        outcome = "timed-out"
        error = _timeout_message(notebook if executed else None, execution.seconds_limit)
    elif execution.returncode != 0:
        outcome = "failed"
        error = _failure_message(notebook if executed else None, execution)
    else:
        outcome = STATUS_OUTCOME[worst(f.status for f in findings)]
    if error:
        notebook.cells.insert(0, _status_cell(outcome, error, executed))

    # a secret-named parameter (DESIGN says there should be none) is hidden like every other secret
    secret_keys = {k for k, v in values.items() if is_secret_name(k) and v not in (None, "")}
    scrub = Scrubber(settings, extra=[str(values[k]) for k in secret_keys])
    stem = archive.reserve_stem(Path(settings.archive_dir), name, started)
    archive_root = Path(settings.archive_dir)
    files = {
        "ipynb": stem.with_name(stem.name + ".ipynb"),
        "html": stem.with_name(stem.name + ".html"),
        "report_html": stem.with_name(stem.name + ".report.html"),
        "json": stem.with_name(stem.name + ".json"),
    }
    rel = {key: p.relative_to(archive_root).as_posix() for key, p in files.items()}

    clean = nbformat.from_dict(scrub.data(notebook))
    archive.write_atomic(files["ipynb"], scrub.text(nbformat.writes(clean)))
    archive.write_atomic(files["html"], scrub.text(archive.render_html(clean)))
    archive.write_atomic(files["report_html"], scrub.text(archive.render_html(clean, exclude_input=True)))

    record = {
        "runbook": name,
        "run_id": run_id,
        "parameters": {k: ("***" if k in secret_keys else v) for k, v in values.items()},
        "as_of": values.get("as_of"),
        "start": _iso(started),
        "end": _iso(ended),
        "duration_s": round(seconds, 3),
        "outcome": outcome,
        "exit_code": OUTCOME_EXIT[outcome],
        "error": error,
        "findings": [f.to_dict() for f in findings],
        "counts": _counts(findings),
        "ccops_version": ccops.__version__,
        "git": git_info(root, path),
        "host": socket.gethostname(),
        "paths": rel,
    }
    record = scrub.data(record)
    archive.write_atomic(files["json"], scrub.json_dumps(record, indent=1))
    return RunResult(record=record, exit_code=record["exit_code"], paths=files)


def _load_notebook(output: Path, original: Path) -> tuple[Any, bool]:
    """(notebook, executed?): papermill's output (partial after a kill), else the input notebook."""
    import nbformat

    if output.is_file():
        try:
            return nbformat.read(str(output), as_version=4), True
        except Exception:  # torn by a kill mid-save: fall back to the input
            pass
    return nbformat.read(str(original), as_version=4), False


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

    what = "was stopped at its time limit" if outcome == "timed-out" else "failed"
    after = ("The output below is what had been saved when it stopped; later cells did not run."
             if executed else "No executed notebook was saved; this is the runbook as it was given to papermill.")
    text = (f"## This run {what}\n\n**{outcome}**: {error}\n\n{after} "
            "Findings recorded before the stop are in the run record.")
    cell = nbformat.v4.new_markdown_cell(text)
    cell.metadata["tags"] = [STATUS_CELL_TAG]
    return cell


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {s.value: sum(1 for f in findings if f.status == s) for s in Status}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def git_info(root: Path, path: Path) -> dict[str, Any] | None:
    """The commit that last changed the runbook file, and whether it has uncommitted changes; None outside git."""
    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None

    inside = git("rev-parse", "--is-inside-work-tree")
    if inside is None or inside.returncode != 0 or inside.stdout.strip() != "true":
        return None
    log = git("log", "-1", "--format=%H", "--", str(path))
    status = git("status", "--porcelain", "--", str(path))
    commit = log.stdout.strip() if log is not None and log.returncode == 0 else ""
    dirty = bool(status.stdout.strip()) if status is not None and status.returncode == 0 else None
    return {"commit": commit or None, "dirty": dirty}


def _display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative

