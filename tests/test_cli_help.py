"""The command line as a newcomer meets it: what each runbook is for, its parameters, progress on a
terminal (silence under cron), readable text instead of Python reprs, and `--yes` for changing verbs.

Every `ccops` here is a real process; the progress test gives it a real pseudo-terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccops.runbook import progress
from ccops.runbook.parameters import describe_parameters, runbook_purpose, step_titles

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "tests" / "notebooks"
RUNBOOKS = REPO / "runbooks"


def _env(root: Path, runbooks: Path = RUNBOOKS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_") and k != "DATABASE_URL"}
    env.update({"CCOPS_HOME": str(root / "home"), "CCOPS_ARCHIVE_DIR": str(root / "outputs"),
                "CCOPS_RUNBOOKS_DIR": str(runbooks), "CCOPS_CRONTAB_CMD": str(root / "no-crontab")})
    return env


def ccops(root: Path, *argv: str, runbooks: Path = RUNBOOKS) -> subprocess.CompletedProcess[str]:
    """`ccops ARGV` as cron runs it: stdin not a terminal, output captured."""
    return subprocess.run([sys.executable, "-m", "ccops.cli", *argv], cwd=root, env=_env(root, runbooks),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_runbooks_lists_each_runbooks_purpose_from_its_first_heading_and_sentence(tmp_path):
    proc = ccops(tmp_path, "runbooks")
    assert proc.returncode == 0, proc.stderr
    assert "daily\n  Daily maintenance: The maintenance guide's daily routine" in proc.stdout
    assert "emergency/system_down\n  Emergency: system down: The maintenance guide's \"System Down\" procedure." \
        in proc.stdout
    rows = json.loads(ccops(tmp_path, "runbooks", "--json").stdout)
    daily = next(row for row in rows if row["runbook"] == "daily")
    assert daily["purpose"].startswith("Daily maintenance: ")
    assert daily["parameters"]["error_limit"] == {"type": "int", "default": "20",
                                                  "help": "how many of the latest error records to list in step 2"}


def test_run_runbook_help_lists_parameters_with_type_default_and_comment_and_runs_nothing(tmp_path):
    proc = ccops(tmp_path, "run", "daily", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "runbook daily: Daily maintenance:" in proc.stdout
    table = proc.stdout.split("parameters (set with -p NAME VALUE", 1)[1].splitlines()[1:]
    lines = {line.split()[0]: line.split(None, 3) for line in table if line.strip()}
    assert lines["error_limit"] == ["error_limit", "int", "20", "how many of the latest error records to list in step 2"]
    assert lines["part"][:3] == ["part", "str", '"all"']
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "home" / "runs").exists()
    # -p before --help, as the README's lines are checked: still help, still nothing run
    assert ccops(tmp_path, "run", "weekly", "-p", "dry_run", "False", "--help").returncode == 0
    assert not (tmp_path / "outputs").exists()


def test_run_help_without_a_runbook_names_the_runbooks(tmp_path):
    proc = ccops(tmp_path, "run", "--help")
    assert proc.returncode == 0 and "runbooks: backup, daily," in proc.stdout, proc.stderr


def test_describe_parameters_types_follow_what_run_p_accepts():
    lines = describe_parameters(RUNBOOKS / "weekly.ipynb")
    dry = next(line for line in lines if line.startswith("dry_run "))
    assert dry.split()[1:3] == ["bool", "True"]


@pytest.mark.parametrize("argv", [["demo", "up"], ["demo", "down"]])
def test_demo_up_and_down_need_yes_without_a_terminal(tmp_path, argv):
    proc = ccops(tmp_path, *argv)
    assert proc.returncode == 64 and "not confirmed (pass --yes)" in proc.stderr, proc.stderr
    assert not (tmp_path / "home" / "demo").exists()


def test_demo_status_and_config_show_print_text_not_python_reprs(tmp_path):
    status = ccops(tmp_path, "demo", "status")
    assert status.returncode == 0, status.stderr
    assert "services:\n  db: state stopped" in status.stdout
    shown = ccops(tmp_path, "config", "show")
    assert shown.returncode == 0, shown.stderr
    for text in (status.stdout, shown.stdout):
        for repr_mark in ("[{", "{'", "['", "= None", ": None", "= []", "= True", "= False"):
            assert repr_mark not in text, (repr_mark, text)
    assert "disk_paths = /, /var" in shown.stdout


def test_step_titles_are_the_markdown_headings_above_each_code_cell():
    notebook = json.loads((RUNBOOKS / "daily.ipynb").read_text())
    titles = step_titles(notebook)
    assert len(titles) == sum(c["cell_type"] == "code" for c in notebook["cells"])
    assert "2. Application errors" in titles and titles[-1] == "Summary"
    assert runbook_purpose(RUNBOOKS / "weekly.ipynb").startswith("Weekly maintenance: ")


def test_progress_stays_quiet_without_a_terminal(tmp_path):
    with open(tmp_path / "log", "w") as pipe_like:
        assert progress.start(tmp_path / "x.ipynb", "x", pipe_like) is None


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_names_every_step_of_a_notebook_that_ran_between_two_polls(tmp_path):
    """All cells done before the watcher's first poll (a small runbook): stop() still names each step once, in order."""
    notebook = json.loads((RUNBOOKS / "daily.ipynb").read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    for cell in code:
        cell.setdefault("metadata", {})["papermill"] = {"status": "completed"}
    output = tmp_path / "daily.ipynb"
    output.write_text(json.dumps(notebook))
    terminal = _Terminal()
    watcher = progress.start(output, "daily", terminal)
    assert watcher is not None
    watcher.stop()
    lines = terminal.getvalue().splitlines()
    titles = step_titles(notebook)
    assert lines == [f"daily: step {k} of {len(code)}: {titles[k - 1]}" for k in range(1, len(code) + 1)]
    watcher.poll()  # a later poll repeats nothing
    assert terminal.getvalue().splitlines() == lines


def _read_pty(master: int, proc: subprocess.Popen, deadline: float) -> str:
    chunks = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode("utf-8", "replace")


def test_run_on_a_terminal_shows_step_k_of_n_with_the_steps_title(tmp_path):
    """A real run of a small notebook under a pseudo-terminal: one line per step, none under cron (above)."""
    master, slave = pty.openpty()
    env = _env(tmp_path, NOTEBOOKS)
    env["CCOPS_DATABASE_URL"] = "postgresql://app:x@127.0.0.1:1/x"
    proc = subprocess.Popen([sys.executable, "-m", "ccops.cli", "run", "ok", "-p", "count", "3"], cwd=tmp_path,
                            env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        text = _read_pty(master, proc, time.monotonic() + 120)
    finally:
        os.close(master)
        proc.wait(timeout=30)
    cells = json.loads((NOTEBOOKS / "ok.ipynb").read_text())["cells"]
    steps = sum(c["cell_type"] == "code" for c in cells) + 1  # papermill's injected-parameters cell is a step
    assert f"ok: step 1 of {steps}: Runner test: ok" in text, text
    assert proc.returncode in (0, 1, 2), text


def test_contributed_verbs_come_from_entry_points_and_only_when_asked_for(tmp_path):
    """`ccops demo` is the demo package's `ccops.commands` entry point; a built-in verb never reads them."""
    code = ("import sys; import ccops.cli as c; "
            "p = c.build_parser('health'); "
            "print(sorted(m for m in sys.modules if m.startswith('ccops.demo')), 'importlib.metadata' in sys.modules); "
            "c.build_parser(None); print(sorted(m for m in sys.modules if m == 'ccops.demo.cli'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[] False", "['ccops.demo.cli']"]
    help_text = ccops(tmp_path, "--help").stdout
    assert "demo                the embedded Content Creator stand-in" in help_text
    proc = ccops(tmp_path, "demo", "status", "--bogus")
    assert proc.returncode == 64 and "unrecognized arguments: --bogus" in proc.stderr
