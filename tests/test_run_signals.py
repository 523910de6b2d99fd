"""Killing `ccops run` leaves nothing running and nothing unrecorded (issue 12, item 5).

Each test starts a real `ccops run hang` in a subprocess, waits until the
kernel is inside the hung cell, and signals the runner the way systemd stop,
`timeout`, a dropped SSH session or Ctrl-C would (SIGTERM, SIGHUP, SIGINT), or
kills it outright (SIGKILL). Afterwards /proc is scanned, independently of
the runner's own code, for any process carrying the run's id; the archive
must hold a `killed` record with the finding made before the hang, and no
work dir may be left in `.ccops/runs/` (nor in the spare dir in /tmp).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccops import archive
from ccops.runbook import runner
from tests.helpers import clean_env
from tests.test_runner import live_processes_of_run

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


def _environment(root: Path) -> dict[str, str]:
    return clean_env(CCOPS_HOME=str(root / "home"), CCOPS_ARCHIVE_DIR=str(root / "outputs"),
                     CCOPS_RUNBOOKS_DIR=str(NOTEBOOKS))


def _default_signals() -> None:
    """What a terminal gives a command: SIGINT and SIGHUP at their defaults (a background test runner may ignore them)."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def start_run(root: Path, runbook: str = "hang") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ccops.cli", "run", runbook, "--timeout", "300"],
        cwd=root, env=_environment(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_signals,
    )


def wait_in_hung_cell(root: Path, proc: subprocess.Popen, timeout: float = 90, other_than: str = "") -> str:
    """The run id, once the finding before the hang is recorded (the kernel is then in the sleeping cell)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for work in (root / "home" / "runs").glob("*"):
            if work.name == other_than:
                continue
            findings = work / "findings.jsonl"
            if findings.is_file() and "t.before_hang" in findings.read_text():
                # let the kernel enter the next cell: papermill marks it running (and saves the notebook in the
                # work dir) just before sending it to the kernel; at most 1 s, as a fixed sleep once waited
                settle = time.monotonic() + 1.0
                while time.monotonic() < settle and not hang_cell_running(work):
                    time.sleep(0.05)
                time.sleep(0.2)
                return work.name
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the run never reached the hung cell: {proc.communicate()}")


def hang_cell_running(work: Path) -> bool:
    """Whether papermill's copy of the notebook in the run's work dir shows the sleeping cell as running."""
    for notebook in work.glob("*.ipynb"):
        try:
            cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError):
            continue  # being replaced right now
        for cell in cells:
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            if "time.sleep(600)" in source and cell.get("metadata", {}).get("papermill", {}).get("status") == "running":
                return True
    return False


def leftover_work_dirs(root: Path) -> list[Path]:
    home = root / "home"
    return [p for runs in runner.runs_dirs(home) if runs.is_dir() for p in runs.iterdir()]


def archived(root: Path, run_id: str) -> dict:
    records = [r for r in archive.list_records(root / "outputs") if r["run_id"] == run_id]
    assert len(records) == 1, records
    return json.loads((root / "outputs" / records[0]["paths"]["json"]).read_text())


def assert_lock_free(root: Path, runbook: str = "hang") -> None:
    with runner.runbook_lock(root / "home", runbook):
        pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_stops_kernel_and_papermill_and_archives_the_run_as_killed(tmp_path, sig):
    proc = start_run(tmp_path)
    run_id = wait_in_hung_cell(tmp_path, proc)
    assert live_processes_of_run(run_id), "papermill and the kernel run before the signal"
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < runner.KILL_GRACE_SECONDS + 20
    assert proc.returncode == 3, (out, err)
    assert "Traceback" not in err, err
    assert out.startswith("hang: killed in ") and f"killed by {sig.name}" in out, out

    assert live_processes_of_run(run_id) == [], "nothing of the run may survive its runner"
    record = archived(tmp_path, run_id)
    assert record["outcome"] == "killed" and record["exit_code"] == 3
    assert record["error"].startswith(f"killed by {sig.name} while running cell") and "import time" in record["error"]
    assert [f["check"] for f in record["findings"]] == ["t.before_hang"], "the findings it had are kept"
    notebook = (tmp_path / "outputs" / record["paths"]["ipynb"]).read_text()
    assert "This run was killed" in notebook
    assert (tmp_path / "outputs" / record["paths"]["report_html"]).is_file()
    assert [r["run_id"] for r in json.loads((tmp_path / "outputs" / "index.json").read_text())] == [run_id]
    assert leftover_work_dirs(tmp_path) == []
    assert_lock_free(tmp_path)
    # the killed run raised its alert like a failed one
    assert "Runbook hang killed" in (tmp_path / "home" / "alerts" / "alerts.log").read_text()


def test_after_sigkill_the_next_run_of_any_runbook_stops_the_orphan_and_archives_it(tmp_path):
    proc = start_run(tmp_path)
    run_id = wait_in_hung_cell(tmp_path, proc)
    work = tmp_path / "home" / "runs" / run_id
    note = json.loads((work / runner.RUN_META).read_text())
    assert note["runner_pid"] == proc.pid and note["runbook"] == "hang"
    assert isinstance(note["papermill_pid"], int), "the pid of papermill is recorded in the run dir"

    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(1.0)
    orphans = live_processes_of_run(run_id)
    assert any("papermill" in p for p in orphans) and any("ccops.runbook.headless_kernel" in p for p in orphans), orphans
    assert work.is_dir(), "the SIGKILLed runner could not clean up"

    # the next run, of another runbook, finds the orphan through the free lock of `hang`
    nxt = subprocess.run([sys.executable, "-m", "ccops.cli", "run", "ok", "--timeout", "120"], cwd=tmp_path,
                         env=_environment(tmp_path), capture_output=True, text=True, timeout=180)
    assert nxt.returncode == 1, (nxt.stdout, nxt.stderr)  # ok.ipynb records one WARNING
    assert "Traceback" not in nxt.stderr, nxt.stderr
    assert "archived an abandoned run: hang: killed" in nxt.stderr

    assert live_processes_of_run(run_id) == [], "the orphan was stopped"
    record = archived(tmp_path, run_id)
    assert record["outcome"] == "killed" and record["exit_code"] == 3
    assert record["error"].startswith("abandoned while running cell") and f"pid {proc.pid}" in record["error"]
    assert [f["check"] for f in record["findings"]] == ["t.before_hang"]
    assert {r["runbook"] for r in archive.list_records(tmp_path / "outputs")} == {"hang", "ok"}
    assert leftover_work_dirs(tmp_path) == []
    assert_lock_free(tmp_path)
    assert_lock_free(tmp_path, "ok")


def test_a_second_run_of_the_same_runbook_never_overlaps_an_orphan(tmp_path):
    """The lock of a SIGKILLed runner is free; the next run of that runbook must first stop its orphan."""
    proc = start_run(tmp_path)
    run_id = wait_in_hung_cell(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert live_processes_of_run(run_id)

    second = start_run(tmp_path)
    second_id = wait_in_hung_cell(tmp_path, second, other_than=run_id)
    try:
        assert live_processes_of_run(run_id) == [], "the orphan was stopped before the new kernel started"
        assert archived(tmp_path, run_id)["outcome"] == "killed"
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=60)
    assert live_processes_of_run(second_id) == []
    assert leftover_work_dirs(tmp_path) == []


def test_stale_work_dirs_without_a_note_are_removed(tmp_path, monkeypatch):
    """Work dirs left by an older ccops (no run.json) and half-made ones are removed by the next run."""
    home = tmp_path / "home"
    old = home / "runs" / "20260101T000000Z-deadbeef"
    old.mkdir(parents=True)
    (old / "findings.jsonl").write_text("{}\n")
    half = home / "runs" / ".20260101T000000Z-cafecafe.new"
    half.mkdir()
    os.utime(half, (time.time() - 7200, time.time() - 7200))
    for name in list(os.environ):
        if name.startswith("CCOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CCOPS_HOME", str(home))
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", str(tmp_path / "outputs"))
    from ccops.core.settings import load_settings

    assert runner.recover_abandoned(load_settings(), holding="ok") == []
    assert list((home / "runs").iterdir()) == []
