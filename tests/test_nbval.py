"""Every runbook under nbval, the way notebook people test notebooks (issue 19).

Each runbook (emergency ones included, with their safe defaults) is prepared by
papermill's own parameterisation (`prepare_only`: the injected-parameters cell,
nothing executed) with the demo's fixed `as_of`, into a temporary copy of the
runbooks tree; then ONE `pytest --nbval-lax` subprocess runs them all in the
demo's environment (the one `ccops run` gives papermill). `--nbval-lax` means a
cell fails only by raising, so nbval's report names the cell and the error, and
that report is the assertion message.

The shared session demo is not changed: the archive goes to tmp and the backup
runbook (its default takes a backup) writes into a copy of the demo's backups.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import DEMO_AS_OF, REPO, stored_runbooks

RUNBOOKS = REPO / "runbooks"
NBVAL_TIMEOUT_S = 900
# `python -m pytest`, without jsonschema's unused format checkers as conftest.py and ccops' runner do: nbval imports
# nbformat, whose jsonschema would compile rfc3987_syntax's grammars (about 1 s) for a format the notebook schema never uses
NBVAL_PYTEST = ("from ccops.runbook.papermill_entry import skip_unused_format_checkers; skip_unused_format_checkers(); "
                "import pytest; raise SystemExit(pytest.console_main())")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the kernel colours its tracebacks; the assertion message should read plain


def prepare(source: Path, target: Path, as_of: str) -> None:
    """papermill's parameterisation without execution: the runbook with `as_of` injected, as nbval will run it."""
    import papermill

    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(target), parameters={"as_of": as_of},
                               prepare_only=True, progress_bar=False, kernel_name=runner.KERNEL)


def nbval_environment(work: Path) -> dict[str, str]:
    """The environment `ccops run` gives papermill, with the backups dir a copy (the backup runbook writes there)."""
    settings = load_settings()
    env = runner.child_environment(settings, RUNBOOKS, "nbval-" + work.name, work / "findings.jsonl")
    backups = work / "backups"
    source = Path(settings.effective_backup_dir)
    if source.is_dir():
        shutil.copytree(source, backups, symlinks=True)
    else:
        backups.mkdir()
    env["CCOPS_BACKUP_DIR"] = str(backups)
    env["CCOPS_RUNBOOKS_DIR"] = str(work / "runbooks")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def run_nbval(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One pytest process for all notebooks under folder: nbval-lax, this venv's kernel, no cache, no ini."""
    ini = folder / "pytest.ini"
    ini.write_text("[pytest]\n")
    cmd = [sys.executable, "-c", NBVAL_PYTEST, "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
           "-c", str(ini), "--rootdir", str(folder), "-q", "-rf", "--color=no", str(folder)]
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=NBVAL_TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, ANSI.sub("", proc.stdout), ANSI.sub("", proc.stderr))


def test_runbook_inventory_includes_the_emergencies():
    names = {p.relative_to(RUNBOOKS).as_posix() for p in stored_runbooks(RUNBOOKS)}
    assert {"daily.ipynb", "emergency/system_down.ipynb"} <= names


@pytest.mark.slow
def test_every_runbook_passes_nbval_on_the_demo(demo_env: Path, tmp_path: Path):
    work = tmp_path / "nbval"
    notebooks = work / "runbooks"
    for source in stored_runbooks(RUNBOOKS):
        prepare(source, notebooks / source.relative_to(RUNBOOKS), DEMO_AS_OF)
    env = nbval_environment(work)
    t0 = time.monotonic()
    proc = run_nbval(notebooks, env)
    seconds = time.monotonic() - t0
    report = f"{proc.stdout}\n{proc.stderr}"
    print(f"nbval over {len(stored_runbooks(RUNBOOKS))} runbooks: {seconds:.1f}s")
    assert proc.returncode == 0, f"nbval failed (exit {proc.returncode}) after {seconds:.0f}s:\n{report[-20000:]}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout, report


def test_a_raising_cell_fails_with_nbval_naming_the_cell_and_the_error(tmp_path: Path):
    """The harness itself: a runbook cell that raises makes the subprocess fail with nbval's cell report."""
    import nbformat

    notebooks = tmp_path / "runbooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("as_of = ''", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise RuntimeError(f'broken step at {as_of}')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "broken.ipynb"))
    prepare(tmp_path / "broken.ipynb", notebooks / "broken.ipynb", DEMO_AS_OF)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    proc = run_nbval(notebooks, env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "broken.ipynb::Cell 2" in proc.stdout  # papermill's injected cell is Cell 1
    assert f"RuntimeError: broken step at {DEMO_AS_OF}" in proc.stdout
