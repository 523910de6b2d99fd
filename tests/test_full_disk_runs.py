"""A run whose files or alerts cannot be delivered is never lost (issue 12, items 6, 7 and 8).

Full disks are real: a 3 MB tmpfs, filled to 100 % with a file written until
ENOSPC, holds the archive, ccops' home, or both. The runs are real `ccops run`
processes (papermill, a kernel) of tiny test notebooks; the alert channel is a
real webhook receiver on 127.0.0.1, so "the outcome still goes to the alert
channels" is checked where it arrives. A webhook on a closed port stands for a
channel that is down.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ccops import archive
from ccops.runbook import runner
from tests.helpers import clean_env, tmpfs
from tests.test_alerts import Receiver

NOTEBOOK_SOURCE = """import os

from ccops.core.findings import Finding, record

if filler:
    os.unlink(filler)  # what the out-of-disk runbook does first: free space
work = os.path.dirname(os.environ["CCOPS_FINDINGS_FILE"])
record([Finding("t.disk", "OK" if filler else "CRITICAL", "work dir " + work)])
"""


def _notebook() -> nbformat.NotebookNode:
    params = nbformat.v4.new_code_cell('filler = ""  # a file to delete before anything else')
    params.metadata["tags"] = ["parameters"]
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Full disk test"), params, nbformat.v4.new_code_cell(NOTEBOOK_SOURCE)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    root = tmp_path / "runbooks"
    (root / "emergency").mkdir(parents=True)
    nbformat.write(_notebook(), str(root / "crit.ipynb"))
    nbformat.write(_notebook(), str(root / "emergency" / "out_of_disk_space.ipynb"))
    return root


@pytest.fixture
def disk(tmp_path: Path):
    """A 3 MB tmpfs, unmounted afterwards; skipped only where the machine refuses the mount."""
    with tmpfs(tmp_path / "disk", "3m") as mount:
        yield mount


def fill(mount: Path) -> Path:
    """Write one file until ENOSPC: the disk is then at 100 %."""
    filler = mount / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    for size in (4096, 1):  # top up what the 64 KiB blocks left
        try:
            with open(filler, "ab") as handle:
                while True:
                    handle.write(b"\0" * size)
                    handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert os.statvfs(mount).f_bavail == 0
    return filler


@pytest.fixture
def hook(monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("ALERT_HOOK_URL", receiver.url + "/hook?token=s3cr3t-hook-token")
    yield receiver
    receiver.close()


CONFIG = """
[[alerts.channels]]
type = "webhook"
name = "ops"
url_env = "ALERT_HOOK_URL"
timeout_seconds = 5
"""


def ccops_run(tmp_path: Path, runbooks: Path, home: Path, outputs: Path, *argv: str) -> subprocess.CompletedProcess:
    env = clean_env(CCOPS_HOME=str(home), CCOPS_ARCHIVE_DIR=str(outputs), CCOPS_RUNBOOKS_DIR=str(runbooks),
                    CCOPS_CONFIG=str(tmp_path / "ccops.toml"))
    (tmp_path / "ccops.toml").write_text(CONFIG)
    return subprocess.run([sys.executable, "-m", "ccops.cli", "run", *argv, "--timeout", "120"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)


def files_on(mount: Path) -> dict[str, int]:
    return {p.relative_to(mount).as_posix(): p.stat().st_size for p in mount.rglob("*") if p.is_file()}


def assert_no_partial_files(mount: Path) -> None:
    """Only the filler holds data; what else is there is an empty lock file (no free block needed)."""
    files = files_on(mount)
    assert {name: size for name, size in files.items() if size and name != "filler"} == {}, files
    assert not [n for n in files if n.endswith((".tmp", ".ipynb", ".html", ".json"))], files


def assert_no_work_dirs(home: Path) -> None:
    assert [p for runs in runner.runs_dirs(home) if runs.is_dir() for p in runs.iterdir()] == []


def one_line_naming(stderr: str, path_part: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "ENOSPC" in line]
    assert len(lines) == 1, stderr
    assert path_part in lines[0] and "No space left on device (ENOSPC)" in lines[0], lines
    return lines[0]


def hook_severities(hook: Receiver) -> list[str]:
    return [body["severity"] for body in hook.at("/hook?token=s3cr3t-hook-token")]


def test_archive_on_a_full_disk_exits_3_in_one_line_and_the_alert_still_goes_out(tmp_path, runbooks, disk, hook):
    filler = fill(disk)
    outputs = disk / "outputs"
    done = ccops_run(tmp_path, runbooks, tmp_path / "home", outputs, "crit")
    assert done.returncode == 3, (done.stdout, done.stderr)
    line = one_line_naming(done.stderr, str(outputs / "crit"))
    assert line.startswith("ccops: crit: the run ended critical but was not archived: cannot write "), line
    assert hook_severities(hook) == ["critical"], "the CRITICAL outcome reached the alert channel"
    assert files_on(disk) == {"filler": filler.stat().st_size}, "no stray notebook, no temp file, no folder"
    assert not outputs.exists()
    assert_no_work_dirs(tmp_path / "home")

    filler.unlink()
    again = ccops_run(tmp_path, runbooks, tmp_path / "home", outputs, "crit")
    assert again.returncode == 2, (again.stdout, again.stderr)
    assert "Traceback" not in again.stderr
    [record] = archive.list_records(outputs)
    assert record["outcome"] == "critical" and (outputs / "index.html").is_file()


def test_home_on_a_full_disk_still_runs_and_archives(tmp_path, runbooks, disk, hook):
    home = disk / "home"
    home.mkdir()
    runner.lock_path(home, "crit").parent.mkdir(mode=0o700)
    runner.lock_path(home, "crit").touch()  # an existing, empty lock file: taking it needs no free block
    fill(disk)
    outputs = tmp_path / "outputs"
    done = ccops_run(tmp_path, runbooks, home, outputs, "crit")
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = one_line_naming(done.stderr, str(home / "alerts"))
    assert "alert state not saved" in line
    assert hook_severities(hook) == ["critical"]
    [record] = archive.list_records(outputs)
    assert record["outcome"] == "critical"
    full = json.loads((outputs / record["paths"]["json"]).read_text())
    assert not full["findings"][0]["summary"].startswith("work dir " + str(home)), "the work dir went elsewhere"
    assert full["alerts"]["delivered"] == ["ops"]
    assert_no_partial_files(disk)
    assert_no_work_dirs(home)


def test_home_and_archive_on_one_full_disk_then_space_freed(tmp_path, runbooks, disk, hook):
    """Item 7, the runner's half: a run executes on a 100 % full disk; archived once there is room."""
    filler = fill(disk)
    home, outputs = disk / "home", disk / "outputs"
    done = ccops_run(tmp_path, runbooks, home, outputs, "crit")
    assert done.returncode == 3, (done.stdout, done.stderr)
    state_line = [line for line in done.stderr.splitlines() if "alert state not saved" in line]
    assert len(state_line) == 1 and str(home / "alerts" / "state.json") in state_line[0], done.stderr
    rest = "\n".join(line for line in done.stderr.splitlines() if line not in state_line)
    assert one_line_naming(rest, str(outputs / "crit")).startswith("ccops: crit: the run ended critical but was not")
    assert hook_severities(hook) == ["critical"]
    assert_no_partial_files(disk)
    assert not list(outputs.rglob("*.json")) if outputs.exists() else True
    assert_no_work_dirs(home)

    filler.unlink()
    again = ccops_run(tmp_path, runbooks, home, outputs, "crit")
    assert again.returncode == 2 and "Traceback" not in again.stderr, (again.stdout, again.stderr)
    [record] = archive.list_records(outputs)
    assert record["outcome"] == "critical"
    assert_no_work_dirs(home)


def test_the_out_of_disk_runbook_frees_space_first_and_archives_at_the_end(tmp_path, runbooks, disk, hook):
    filler = fill(disk)
    home, outputs = disk / "home", disk / "outputs"
    done = ccops_run(tmp_path, runbooks, home, outputs, "emergency/out_of_disk_space", "-p", "filler", str(filler))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "ENOSPC" not in done.stderr, done.stderr
    assert not filler.exists()
    [record] = archive.list_records(outputs)
    assert record["runbook"] == "emergency/out_of_disk_space" and record["outcome"] == "ok"
    full = json.loads((outputs / record["paths"]["json"]).read_text())
    work = full["findings"][0]["summary"].removeprefix("work dir ")
    assert not work.startswith(str(disk)), f"the runbook's files were held off the full disk, not in {work}"
    assert_no_work_dirs(home)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_undelivered_alerts_of_a_run_are_one_line_and_in_the_run_record(tmp_path, runbooks, monkeypatch):
    monkeypatch.setenv("ALERT_HOOK_URL", f"http://127.0.0.1:{closed_port()}/hook?token=s3cr3t-hook-token")
    outputs = tmp_path / "outputs"
    done = ccops_run(tmp_path, runbooks, tmp_path / "home", outputs, "crit")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "not delivered" in line]
    assert len(lines) == 1 and "ops: webhook not reachable" in lines[0], done.stderr
    assert "s3cr3t-hook-token" not in done.stderr
    [summary] = archive.list_records(outputs)
    record = json.loads((outputs / summary["paths"]["json"]).read_text())
    assert record["alerts"]["notifications"] == 1
    assert record["alerts"]["delivered"] == []
    [undelivered] = record["alerts"]["undelivered"]
    assert undelivered.startswith("ops: webhook not reachable") and "s3cr3t" not in undelivered
    state = json.loads((tmp_path / "home" / "alerts" / "state.json").read_text())
    assert len(state["pending"]["ops"]) == 1, "queued for the next attempt"
