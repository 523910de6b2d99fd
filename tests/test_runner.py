"""The supervised runner, end to end: real papermill, real kernels, real files, real processes.

Each kernel start costs 2-3 s, so every notebook runs once and several tests
read the result: the WARNING run (typed parameters, findings, secrets), the
failing run and the hung run.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ccops import archive
from ccops.cli import main
from ccops.core.errors import UsageError
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import stored_runbooks

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
REPO = NOTEBOOKS.parent.parent
PASSWORD = "S3cretPassw0rd"
TOKEN = "whk-tok-7f3a9c1e55d2"
APP_KEY = "sk-ant-api03-abcdef0123456789"
DATABASE_URL = f"postgresql://app:{PASSWORD}@127.0.0.1:1/x"


def _env(patch: pytest.MonkeyPatch, root: Path) -> None:
    for name in list(os.environ):
        if name.startswith("CCOPS_") or name == "DATABASE_URL":
            patch.delenv(name, raising=False)
    patch.chdir(root)
    patch.setenv("CCOPS_HOME", str(root / "home"))
    patch.setenv("CCOPS_ARCHIVE_DIR", str(root / "outputs"))
    patch.setenv("CCOPS_RUNBOOKS_DIR", str(NOTEBOOKS))
    patch.setenv("CCOPS_DATABASE_URL", DATABASE_URL)
    patch.setenv("TEST_WEBHOOK_TOKEN", TOKEN)
    patch.setenv("CCOPS_SECRET_ENVS", "TEST_WEBHOOK_TOKEN")
    env_file = root / "app.env"
    env_file.write_text(f"ANTHROPIC_API_KEY={APP_KEY}\nLOG_LEVEL=INFO\n")
    patch.setenv("CCOPS_APP_ENV_FILE", str(env_file))


@pytest.fixture
def env(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _env(monkeypatch, ccops_env)
    return ccops_env


def _cli_run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, dict | None, str]:
    code = main(["run", *argv, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def live_processes_of_run(run_id: str) -> list[str]:
    """Non-zombie processes whose environment carries the run id (written independently of the runner)."""
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2]
        if f"CCOPS_RUN_ID={run_id}".encode() in environ.split(b"\0") and state != "Z":
            alive.append(f"{pid} {state} {cmdline}")
    return alive


def all_archived_text(archive_dir: Path) -> dict[Path, str]:
    return {p: p.read_bytes().decode("utf-8", "replace") for p in archive_dir.rglob("*") if p.is_file()}


# ---- refused before any kernel starts ---------------------------------------------------

def assert_nothing_started(root: Path) -> None:
    # the lock and the work dir come before papermill: their absence proves no kernel started
    assert not (root / "outputs").exists()
    assert not (root / "home" / "locks").exists()
    assert not (root / "home" / "runs").exists()


def test_unknown_parameter_exits_64_naming_the_known_ones(env, capsys):
    started = time.monotonic()
    code, record, err = _cli_run(capsys, "ok", "-p", "cuont", "3")
    assert code == 64 and record is None
    assert "unknown parameter 'cuont' for runbook ok; known: as_of, count, ratio, flag, name" in err
    assert time.monotonic() - started < 10
    assert_nothing_started(env)


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("count", "abc", "int"), ("count", "1.5", "int"), ("ratio", "half", "float"), ("flag", "maybe", "bool"),
])
def test_wrong_type_exits_64_before_any_kernel(env, capsys, name, value, expected):
    code, _, err = _cli_run(capsys, "ok", "-p", name, value)
    assert code == 64
    assert f"parameter '{name}': expected {expected}, got '{value}'" in err
    assert_nothing_started(env)


def test_bad_as_of_is_a_usage_error_not_a_failed_run(env, capsys):
    code, _, err = _cli_run(capsys, "ok", "-p", "as_of", "yesterday-ish")
    assert code == 64 and "as_of" in err
    assert_nothing_started(env)


def test_unknown_or_escaping_runbook_names_are_refused(env, capsys):
    code, _, err = _cli_run(capsys, "daily")
    assert code == 64 and "unknown runbook 'daily'; available: hang, ok, raise" in err
    for bad in ("../runbooks/daily", "/etc/passwd", "a/../ok"):
        code, _, err = _cli_run(capsys, bad)
        assert code == 64, bad
    assert_nothing_started(env)


def test_declared_parameters_read_the_cell_as_papermill_does(tmp_path):
    """Our parser (no papermill import on the CLI path) agrees with papermill.inspect_notebook on every runbook."""
    import papermill

    notebooks = stored_runbooks() + sorted(NOTEBOOKS.glob("*.ipynb"))
    assert len(notebooks) >= 11
    for path in notebooks:
        assert runner.declared_parameters(path) == papermill.inspect_notebook(str(path)), path
    odd = tmp_path / "odd.ipynb"
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None,
            "source": 'days: int = 7  # window\nnames = [\n  "a",\n  "b",\n]  # who\nplain = "x#y"\n'
                      'café = "crème brûlée"  # dessert\n'}
    odd.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    declared = runner.declared_parameters(odd)
    assert declared["days"] == {"name": "days", "inferred_type_name": "int", "default": "7", "help": "window"}
    assert declared["names"]["help"] == "who" and runner.parameter_type(declared["names"]) is list
    assert declared["plain"] == {"name": "plain", "inferred_type_name": "None", "default": '"x#y"', "help": ""}
    assert declared["café"]["help"] == "dessert", "ast columns are UTF-8 bytes, not characters"
    cell["source"] = "days = (\n"
    odd.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(UsageError, match="parameters cell is not valid Python"):
        runner.declared_parameters(odd)


def test_part_must_name_a_section_of_the_runbook():
    """A `part` that matches no ctx.section(...) would run nothing and report OK: refused before any kernel."""
    daily = REPO / "runbooks" / "daily.ipynb"
    assert runner.runbook_sections(daily) == ["morning", "evening"]
    values, _ = runner.check_parameters("daily", daily, [["part", "evening"]])
    assert values == {"part": "evening"}
    assert runner.check_parameters("daily", daily, [["part", "all"]])[0] == {"part": "all"}
    with pytest.raises(UsageError, match="parameter 'part': expected one of all, morning, evening; got 'noon'"):
        runner.check_parameters("daily", daily, [["part", "noon"]])


def test_parameter_types_come_from_the_defaults_when_unannotated():
    declared = runner.declared_parameters(NOTEBOOKS / "ok.ipynb")
    types = {name: runner.parameter_type(spec) for name, spec in declared.items()}
    assert types == {"as_of": str, "count": int, "ratio": float, "flag": bool, "name": str}
    assert runner.parameter_type({"inferred_type_name": "int", "default": "None"}) is int
    assert runner.parameter_type({"inferred_type_name": "None", "default": "None"}) is None
    assert runner.convert("ok", "flag", "No", bool) is False
    assert runner.convert("ok", "ratio", "3", float) == 3.0
    assert runner.convert("ok", "anything", "abc", None) == "abc"
    assert runner.convert("ok", "names", '["a", "b"]', list) == ["a", "b"]


def test_second_concurrent_run_exits_75_and_names_the_holder(env, capsys):
    path = runner.lock_path(env / "home", "ok")
    path.parent.mkdir(parents=True)
    with open(path, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        code, record, err = _cli_run(capsys, "ok")
    assert code == 75 and record is None
    assert "ok is already running (pid 4242)" in err
    assert not (env / "outputs").exists() and not (env / "home" / "runs").exists()


def test_lock_names_nested_runbooks_flat(tmp_path):
    assert runner.lock_path(tmp_path, "emergency/system_down") == tmp_path / "locks" / "emergency__system_down.lock"
    with runner.runbook_lock(tmp_path, "emergency/system_down") as path:
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(Exception, match="already running"):
            with runner.runbook_lock(tmp_path, "emergency/system_down"):
                pass
    with runner.runbook_lock(tmp_path, "emergency/system_down"):  # released on exit
        pass


# ---- a WARNING run: typed parameters, findings, archive, secrets ---------------------------

@pytest.fixture(scope="module")
def ok_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("okrun")
    with pytest.MonkeyPatch.context() as patch:
        _env(patch, root)
        started = time.time()
        result = runner.run_runbook(
            load_settings(), "ok",
            [["count", "3"], ["ratio", "2"], ["flag", "yes"], ["name", "y"]], timeout=120, runbooks_dir=NOTEBOOKS,
        )
        elapsed = time.time() - started
    return root, result, elapsed


def test_ok_run_is_a_warning_with_typed_parameters_and_its_finding(ok_run):
    root, result, _ = ok_run
    record = result.record
    assert result.exit_code == 1 and record["outcome"] == "warning" and record["error"] is None
    assert record["parameters"] == {"count": 3, "ratio": 2.0, "flag": True, "name": "y", "as_of": record["start"]}
    assert record["as_of"] == record["start"] and record["start"].endswith("Z")
    assert record["findings"] == [
        {"check": "t.ok", "status": "WARNING", "summary": "a warning", "value": 3, "threshold": 2.0}
    ]
    assert record["counts"]["WARNING"] == 1 and sum(record["counts"].values()) == 1
    assert record["ccops_version"] and record["host"] and record["run_id"]
    assert set(record["git"] or {}) <= {"commit", "dirty"}
    # the kernel received real Python types, not strings
    notebook = (root / "outputs" / record["paths"]["ipynb"]).read_text()
    assert "int float bool str" in notebook
    assert result.line().startswith("ok: warning in ") and result.line().endswith(".html")


def test_ok_run_is_archived_in_the_documented_layout(ok_run):
    root, result, _ = ok_run
    record = result.record
    start = record["start"]
    stem = f"ok/{start[:4]}/{start[5:7]}/{start[:19].replace('-', '').replace(':', '')}Z-ok"
    assert record["paths"] == {
        "ipynb": stem + ".ipynb", "html": stem + ".html", "report_html": stem + ".report.html", "json": stem + ".json",
    }
    outputs = root / "outputs"
    saved = json.loads((outputs / record["paths"]["json"]).read_text())
    assert saved == record
    html = (outputs / record["paths"]["html"]).read_text()
    report = (outputs / record["paths"]["report_html"]).read_text()
    code = '<span class="n">record</span>'  # the highlighted call in the code cell
    assert code in html and code not in report, "the reviewer copy has no code"
    assert "Runner test: ok" in report  # but keeps the markdown
    assert "int float bool str" in report
    index = json.loads((outputs / "index.json").read_text())
    assert [r["run_id"] for r in index] == [record["run_id"]]
    assert not list((root / "home" / "runs").iterdir()), "the work dir is removed after the run"
    assert (root / "home" / "locks" / "ok.lock").read_text() == "", "the lock is released and cleared"


def test_no_secret_reaches_any_archived_file(ok_run):
    root, result, _ = ok_run
    files = all_archived_text(root / "outputs")
    assert len(files) >= 6  # .ipynb .html .report.html .json index.json index.html
    for path, text in files.items():
        for secret in (PASSWORD, TOKEN, APP_KEY):
            assert secret not in text, f"{secret} leaked into {path}"
    notebook = files[root / "outputs" / result.record["paths"]["ipynb"]]
    # the cell did print them: they were masked, not lost
    assert "postgresql://app:***@127.0.0.1:1/x" in notebook
    assert "token: ***" in notebook and "ANTHROPIC_API_KEY=***" in notebook


# ---- failed and timed-out runs -----------------------------------------------------------------

def test_a_raising_cell_is_archived_as_failed_with_the_error(env, capsys):
    code, record, _ = _cli_run(capsys, "raise")
    assert code == 3 and record["outcome"] == "failed" and record["exit_code"] == 3
    assert "ValueError: boom" in record["error"]
    outputs = env / "outputs"
    notebook = json.loads((outputs / record["paths"]["ipynb"]).read_text())
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "ccops-run-status" in first["metadata"]["tags"]
    assert "boom" in "".join(first["source"])
    assert "never reached" not in json.dumps([c.get("outputs") for c in notebook["cells"]])
    assert (outputs / record["paths"]["html"]).is_file()
    assert archive.list_records(outputs, outcome="failed")[0]["error"] == record["error"]


def test_a_hung_cell_is_killed_at_the_timeout_with_its_kernel(env, capsys):
    started = time.monotonic()
    code, record, _ = _cli_run(capsys, "hang", "--timeout", "5")
    elapsed = time.monotonic() - started
    assert code == 3 and record["outcome"] == "timed-out"
    assert elapsed < 5 + runner.KILL_GRACE_SECONDS + 8
    assert "timed out after 5 s" in record["error"] and "import time" in record["error"]
    # a finding recorded before the hang survives the kill
    assert [f["check"] for f in record["findings"]] == ["t.before_hang"]
    assert live_processes_of_run(record["run_id"]) == []
    notebook = (env / "outputs" / record["paths"]["ipynb"]).read_text()
    assert "stopped at its time limit" in notebook and "never reached" not in notebook.split("print('never")[0]
    # the lock went with the run: the next run can take it
    with runner.runbook_lock(env / "home", "hang"):
        pass


def test_the_index_lists_runs_from_records_alone(ok_run, tmp_path):
    root, result, _ = ok_run
    copy = tmp_path / "outputs"
    shutil.copytree(root / "outputs", copy)
    for path in list(copy.rglob("*.ipynb")) + list(copy.rglob("*.html")):
        path.unlink()
    (copy / "index.json").unlink()
    records = archive.rebuild_index(copy)
    assert [r["run_id"] for r in records] == [result.record["run_id"]]
    assert result.record["paths"]["html"] in (copy / "index.html").read_text()


def test_git_info_reports_code_changes_and_never_runs_the_notebook_filter(tmp_path):
    """A notebook touched after checkout made git run the nbstripout filter on every status call;
    on a busy fresh clone that took longer than the timeout and "dirty" came back unknown."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    # a clean filter that would fail the status call if git ran it
    git("config", "filter.strip.clean", "false")
    git("config", "filter.strip.required", "true")
    (tmp_path / ".gitattributes").write_text("*.ipynb filter=strip\n")
    (tmp_path / "mod.py").write_text("x = 1\n")
    git("add", ".gitattributes", "mod.py")
    git("commit", "-qm", "c")
    (tmp_path / "book.ipynb").write_text("{}")
    git("-c", "filter.strip.clean=cat", "add", "book.ipynb")
    git("-c", "filter.strip.clean=cat", "commit", "-qm", "nb")
    (tmp_path / "book.ipynb").write_text('{"outputs": 1}')
    info = runner.git_info(tmp_path)
    assert info is not None and info["dirty"] is False and len(info["commit"]) == 40
    (tmp_path / "mod.py").write_text("x = 2\n")
    assert runner.git_info(tmp_path)["dirty"] is True


def test_git_info_never_writes_the_index(tmp_path):
    """A `git status` killed at its timeout while holding .git/index.lock broke the operator's next commit:
    the provenance status must not take that lock at all (it would refresh a stale stat cache here)."""
    import os
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "mod.py").write_text("x = 1\n")
    git("add", "mod.py")
    git("commit", "-qm", "c")
    index = tmp_path / ".git" / "index"
    os.utime(tmp_path / "mod.py", (1, 1))  # same content, new stat: a plain status would rewrite the index
    before = index.stat().st_mtime_ns
    assert runner.git_info(tmp_path)["dirty"] is False
    assert index.stat().st_mtime_ns == before and not (tmp_path / ".git" / "index.lock").exists()


# ---- how papermill reaches the kernel ---------------------------------------------------------

@pytest.mark.parametrize("ending", ["ends", "times out"])
def test_the_kernel_listens_on_unix_sockets_in_a_private_dir_that_goes_with_the_run(env, capsys, tmp_path, monkeypatch,
                                                                                   ending):
    """No TCP ports: jupyter_client's pick-close-bind of ports lost races under load ("Kernel died before
    replying to kernel_info"); the kernel's channels are socket files in a 0700 dir the runner made, removed
    after papermill however the run ended (a timed-out papermill is killed before its exit handlers).

    The same kernel also shows how it was started: through ccops.runbook.headless_kernel, ipykernel
    without debugpy, frozen modules on (papermill_entry.headless_kernel_command)."""
    import nbformat

    books = tmp_path / "books"
    books.mkdir()
    seen = tmp_path / "seen.json"
    probe = ("import json, os, stat\n"
             "from ipykernel.connect import get_connection_info\n"
             "info = json.loads(get_connection_info())\n"
             "folder = os.path.dirname(info['ip'])\n"
             "info['runner_dir'] = os.environ.get('CCOPS_KERNEL_SOCKETS')\n"
             "info['mode'] = oct(stat.S_IMODE(os.stat(folder).st_mode))\n"
             "info['sockets'] = sorted(n for n in os.listdir(folder) if stat.S_ISSOCK(os.stat(os.path.join(folder, n)).st_mode))\n"
             "import sys\n"
             "from ipykernel.debugger import _is_debugpy_available\n"
             "command = open('/proc/self/cmdline', 'rb').read().decode().split('\\0')\n"
             "info['started'] = {'main': command[command.index('-m') + 1], 'debugger': _is_debugpy_available,\n"
             "                   'debugpy marked absent': sys.modules.get('debugpy', '') is None, 'xoptions': sys._xoptions}\n"
             f"open({str(seen)!r}, 'w').write(json.dumps(info))")
    cells = [nbformat.v4.new_markdown_cell("# Kernel transport"), nbformat.v4.new_code_cell(probe)]
    if ending == "times out":
        cells.append(nbformat.v4.new_code_cell("import time\ntime.sleep(120)"))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(books / "transport.ipynb"))
    monkeypatch.setenv("CCOPS_RUNBOOKS_DIR", str(books))
    code, record, err = _cli_run(capsys, "transport", *(["--timeout", "4"] if ending == "times out" else []))
    expected = ("timed-out",) if ending == "times out" else ("ok", "warning")
    assert record["outcome"] in expected, (code, err)
    info = json.loads(seen.read_text())
    folder = Path(info["ip"]).parent
    assert info["transport"] == "ipc" and folder.name.startswith("ccops-kernel-"), info
    assert info["runner_dir"] == str(folder), info
    assert info["mode"] == "0o700" and len(info["sockets"]) == 5, info
    assert not folder.exists(), "the socket dir outlived the run"
    assert info["started"] == {"main": "ccops.runbook.headless_kernel", "debugger": False,
                               "debugpy marked absent": True, "xoptions": {}}, info["started"]


def test_only_this_environments_ipykernel_is_started_headless():
    """The installed python3 kernelspec's command gets the headless module; any other kernel is left as its spec says."""
    import sys

    from jupyter_client.kernelspec import KernelSpecManager

    from ccops.runbook.papermill_entry import headless_kernel_command

    spec = KernelSpecManager().get_kernel_spec(runner.KERNEL).argv
    argv = [arg.replace("{connection_file}", "/run/k.json") for arg in spec] + ["--HistoryManager.hist_file=:memory:"]
    assert argv[argv.index("-m") + 1] == "ipykernel_launcher", spec
    assert headless_kernel_command(argv) == [
        *[a for a in argv[:argv.index("-m")] if a != "-Xfrozen_modules=off"],
        "-m", "ccops.runbook.headless_kernel", "-f", "/run/k.json", "--HistoryManager.hist_file=:memory:"]
    here = sys.executable
    for other in (["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "k.json"],  # another Python's ipykernel
                  [here, "-m", "some_other_kernel", "-f", "k.json"],
                  [here, "-c", "import ipykernel_launcher", "-f", "k.json"],
                  [here, "-m"]):
        assert headless_kernel_command(list(other)) == other
