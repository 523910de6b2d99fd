"""An interactive run is a run (issue 15.3).

The daily runbook is executed in-process by nbclient, as JupyterLab's kernel runs it: no
`ccops run`, the kernel started with JPY_SESSION_NAME naming the notebook file, the notebook
saved after each cell. Its last cell archives the run (mode interactive, the operator's name)
with two checklist items ticked through the `checked` parameter. Saving the executed copy over
the stored runbook leaves `git status` clean once `make git-filter` installed nbstripout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ccops.runbook import session
from tests.conftest import DEMO_AS_OF

REPO = Path(__file__).resolve().parent.parent


def set_parameters(nb: nbformat.NotebookNode, **values: str) -> None:
    """Edit the parameters cell as an operator does in JupyterLab (the value typed over the default)."""
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        lines = [f"{name} = {value!r}" if line.startswith(f"{name} =") else line for line in lines]
    cell.source = "\n".join(lines)


def work_in_lab(notebook: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run every cell of `notebook` in a kernel as JupyterLab would, saving the file after each cell."""
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    monkeypatch.setenv("CCOPS_OPERATOR", "alice")
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(notebook.parent)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            nbformat.write(nb, notebook)  # JupyterLab's save (Ctrl-S) before the last cell
    return nb


def test_an_interactive_daily_run_is_archived_with_its_operator_and_ticks(demo_env, monkeypatch, tmp_path):
    notebook = tmp_path / "lab" / "daily.ipynb"
    notebook.parent.mkdir()
    nb = nbformat.read(REPO / "runbooks" / "daily.ipynb", as_version=4)
    set_parameters(nb, as_of=DEMO_AS_OF, checked="dashboards.1, daily.dashboards.2")
    nbformat.write(nb, notebook)

    executed = work_in_lab(notebook, monkeypatch)

    index = json.loads((demo_env / "outputs" / "index.json").read_text())
    runs = index if isinstance(index, list) else index.get("runs", index)
    text = json.dumps(runs)
    assert "interactive" in text and "alice@" in text, text[:2000]
    record_path = next((demo_env / "outputs" / "daily").rglob("*.json"))
    record = json.loads(record_path.read_text())
    assert record["mode"] == "interactive" and record["user_host"].startswith("alice@")
    assert record["parameters"]["checked"] == "dashboards.1, daily.dashboards.2"
    ticks = next(f for f in record["findings"] if f["check"] == "daily.dashboards")
    assert ticks["summary"].startswith("2 of 2 items ticked by alice at "), ticks
    assert ticks["status"] == "OK"
    archived = nbformat.read(demo_env / "outputs" / record["paths"]["ipynb"], as_version=4)
    assert any(c.get("outputs") for c in archived.cells if c.cell_type == "code"), "the executed notebook, as saved"
    last = executed.cells[-1]
    assert "archived as daily/" in json.dumps(last.outputs)


def test_under_ccops_run_the_last_cell_does_not_archive_again(demo_env):
    from ccops.core.settings import load_settings
    from ccops.runbook import runner

    result = runner.run_runbook(load_settings(), "daily", [["as_of", DEMO_AS_OF], ["part", "evening"]], timeout=300)
    assert result.record["mode"] != "interactive"
    records = list((demo_env / "outputs" / "daily").rglob("*.json"))
    assert len(records) == 1, records


def test_under_ccops_run_the_last_cell_does_not_import_the_archive(ccops_env):
    """Every kernel `ccops run` starts ends with ctx.finish(); the runner archives, so the kernel needs none of it."""
    probe = ("import json, sys\n"
             "from ccops.runbook.session import start\n"
             "ctx = start('health_check', as_of='2026-11-20T18:00:00Z')\n"
             "summary = ctx.finish()\n"
             "print(json.dumps({'archived': summary.archived, 'loaded': sorted(m for m in sys.modules if m in "
             "('ccops.runbook.runner', 'ccops.archive', 'nbconvert', 'nbformat'))}))\n")
    env = {**os.environ, "CCOPS_RUN_ID": "20261120T180000Z-0123abcd"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"archived": "", "loaded": []}
    assert not list((ccops_env / "outputs").rglob("*.json"))


def test_checklist_summary_says_who_ticked_how_many_and_when(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_OPERATOR", "bob")
    ctx = session.start("monthly", as_of=DEMO_AS_OF, checked="content_strategy.2,monthly.content_strategy.5")
    found = ctx.checklist("monthly.content_strategy", ["a", "b", "c", "d", "e"])[0]
    assert found.summary.startswith("2 of 5 items ticked by bob at ")
    assert found.summary.endswith("pending: a; c; d")
    assert list(found.data["ticked by"]) == ["", "bob", "", "", "bob"]
    untouched = session.start("monthly", as_of=DEMO_AS_OF).checklist("monthly.x", ["a", "b"])[0]
    assert untouched.summary == "2 of 2 items pending an operator: a; b"


def test_saving_an_executed_runbook_leaves_git_clean(tmp_path):
    """The filter `make install` sets up strips what JupyterLab saves (outputs, counts, language_info)."""
    repo = tmp_path / "checkout"
    # the one runbook saved below: `git add` runs the filter (a Python start) once per notebook
    (repo / "runbooks").mkdir(parents=True)
    shutil.copy(REPO / "runbooks" / "health_check.ipynb", repo / "runbooks" / "health_check.ipynb")
    shutil.copy(REPO / ".gitattributes", repo / ".gitattributes")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.invalid")
    git("config", "user.name", "t")
    subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "git-filter", f"BIN={Path(sys.executable).parent}"],
                   cwd=repo, check=True, capture_output=True)
    git("add", ".")
    git("commit", "-q", "-m", "runbooks")
    stored = repo / "runbooks" / "health_check.ipynb"
    nb = nbformat.read(stored, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                            resources={"metadata": {"path": str(stored.parent)}})
    client.execute()
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    nbformat.write(nb, stored)
    assert git("diff", "--stat", "runbooks/") == "", "the filter leaves nothing to show"
    # git flags a file whose size changed as modified before it runs the filter; `git add` finds no change
    git("add", "runbooks/")
    assert git("status", "--porcelain", "runbooks/") == "", "nothing to commit"
