"""`make lab` (issue 15.2): it starts as root on 127.0.0.1 and prints its URL, and the runbooks open unmodified.

A notebook whose stored kernelspec differs from the installed kernel's is rewritten by JupyterLab
as soon as it opens, so it shows as modified before the operator has done anything; a stored
runbook that differs from what the git filter writes shows as modified in `git status`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import stored_runbooks

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = stored_runbooks()
BIN = Path(sys.executable).parent


def makefile_variable(name: str) -> str:
    """A `NAME := value` of the Makefile, so the test reads what `make install` uses."""
    match = re.search(rf"^{name} :?= (.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, f"{name} not in the Makefile"
    return match.group(1).strip()


def installed_kernelspec() -> dict[str, str]:
    """The kernelspec `make install` installed into the venv, as a notebook's metadata names it."""
    name = makefile_variable("KERNEL_NAME")
    path = Path(sys.prefix) / "share" / "jupyter" / "kernels" / name / "kernel.json"
    if not path.is_file():
        pytest.skip(f"{path}: kernel not installed (run make install)")
    spec = json.loads(path.read_text())
    return {"display_name": spec["display_name"], "language": spec["language"], "name": name}


@pytest.mark.parametrize("path", RUNBOOKS, ids=[str(p.relative_to(REPO / "runbooks")) for p in RUNBOOKS])
def test_runbooks_name_the_kernel_make_install_installs(path: Path):
    stored = json.loads(path.read_text())["metadata"]["kernelspec"]
    assert stored == installed_kernelspec()
    assert stored["display_name"] == makefile_variable("KERNEL_DISPLAY")


def git_filter(module: str, notebook: bytes) -> bytes:
    """The notebook as `python -m <module> --keep-id --extra-keys <the Makefile's keys> -t` writes it."""
    cleaned = subprocess.run(
        [str(BIN / "python"), "-m", module, "--keep-id", "--extra-keys",
         makefile_variable("NBSTRIPOUT_EXTRA_KEYS"), "-t"],
        input=notebook, capture_output=True, check=True, timeout=60)
    return cleaned.stdout


# every notebook in git: the runbooks and the runner tests' own (a fresh clone's `git status` is clean after make install)
STORED_NOTEBOOKS = RUNBOOKS + sorted((REPO / "tests" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", STORED_NOTEBOOKS, ids=[str(p.relative_to(REPO)) for p in STORED_NOTEBOOKS])
def test_runbooks_are_stored_as_the_git_filter_writes_them(path: Path):
    """Installing the nbstripout filter must not make a pristine notebook look modified."""
    assert git_filter("ccops.runbook.gitfilter", path.read_bytes()) == path.read_bytes()


def test_the_git_filter_writes_what_stock_nbstripout_writes():
    """ccops.runbook.gitfilter (what `make git-filter` installs) is nbstripout without its slow import, same bytes.

    Checked on a worked runbook: outputs, execution counts, papermill's metadata and the Python version
    are all there to strip, and the Makefile's git-filter target names the module for both clean and diff.
    """
    notebook = json.loads((REPO / "runbooks" / "daily.ipynb").read_text(encoding="utf-8"))
    notebook["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    notebook["metadata"]["papermill"] = {"duration": 3.2, "exception": None}
    for count, cell in enumerate((c for c in notebook["cells"] if c["cell_type"] == "code"), start=1):
        cell["execution_count"] = count
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [f"step {count}\n"]}]
        cell["metadata"]["papermill"] = {"status": "completed", "duration": 0.1}
    worked = json.dumps(notebook, indent=1).encode()

    ours = git_filter("ccops.runbook.gitfilter", worked)
    assert ours == git_filter("nbstripout", worked)
    assert ours == (REPO / "runbooks" / "daily.ipynb").read_bytes(), "stripped back to the stored runbook"
    target = (REPO / "Makefile").read_text(encoding="utf-8").split("\ngit-filter:", 1)[1].split("\n\n", 1)[0]
    assert target.count("-m ccops.runbook.gitfilter --keep-id") == 2, target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_lab_starts_on_localhost_prints_its_url_and_serves_the_runbooks(tmp_path: Path):
    port, token = free_port(), "ccops-test-token"
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "HOME": str(tmp_path)}
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        # -o: take the venv as installed (the test must not reinstall it); then exactly `make lab`
        lab = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_PORT={port}"], cwd=REPO,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status = wait_for_status(port, token, lab, log)
        assert "started" in status
        url = f"http://127.0.0.1:{port}/api/contents/daily.ipynb?content=0&token={token}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert json.loads(reply.read())["type"] == "notebook", "the server's root is runbooks/"
        text = log.read_text(errors="replace")
        assert f"http://127.0.0.1:{port}/lab" in text
        assert "Running as root is not recommended" not in text
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()


def wait_for_status(port: int, token: str, lab: subprocess.Popen, log: Path, limit: float = 90) -> dict:
    """/api/status once the server answers; skip (one line) if JupyterLab cannot start here at all."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if lab.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:]
            pytest.fail(f"make lab exited {lab.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as reply:
                return json.loads(reply.read())
        except OSError:
            time.sleep(0.5)
    pytest.skip(f"jupyter lab did not answer within {limit} s here")


def test_the_lab_keeps_the_work_in_the_home_and_saves_the_runbook_clean(tmp_path: Path):
    """Save an executed daily through `make lab`'s own server: the file in runbooks/ stays byte for
    byte the stored runbook (so `git status` has nothing to report), and the executed copy, outputs
    and all, is kept 0600 in the home, where `ctx.finish()` archives it from."""
    import nbformat

    from ccops.runbook import lab as ccops_lab

    assert makefile_variable("NBSTRIPOUT_EXTRA_KEYS").split() == list(ccops_lab.EXTRA_KEYS)
    stored_path = REPO / "runbooks" / "daily.ipynb"
    stored = stored_path.read_bytes()
    # JupyterLab keeps a checkpoint of a saved notebook beside it (gitignored); the test leaves none in the checkout
    checkpoints = REPO / "runbooks" / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    executed = nbformat.reads(stored.decode(), as_version=4)
    for cell in executed.cells:
        if cell.cell_type == "code":
            cell.execution_count = 7
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="OK planted output\n")]
    executed.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    port, token = free_port(), "ccops-test-token"
    home = tmp_path / "home"
    env = {**os.environ, "JUPYTER_TOKEN": token, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "HOME": str(tmp_path), "CCOPS_HOME": str(home)}
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        lab = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_PORT={port}"], cwd=REPO,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_status(port, token, lab, log)
        body = json.dumps({"type": "notebook", "format": "json", "content": executed}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents/daily.ipynb?token={token}",
                                         data=body, method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status in (200, 201)
        assert stored_path.read_bytes() == stored, "the runbook in git is saved exactly as stored"
        kept = home / "interactive" / "daily.ipynb"
        assert "OK planted output" in kept.read_text() and oct(kept.stat().st_mode & 0o777) == "0o600"
        # the checkpoint JupyterLab keeps beside a saved notebook is no runbook to `ccops runbooks` or the tests
        assert [p.name for p in stored_runbooks()] == [p.name for p in RUNBOOKS]
        assert not [p for p in stored_runbooks() if ".ipynb_checkpoints" in p.parts]
    finally:
        stored_path.write_bytes(stored)
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        if not had_checkpoints:
            shutil.rmtree(checkpoints, ignore_errors=True)
