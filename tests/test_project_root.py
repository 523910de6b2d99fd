"""ccops finds its deployment from anywhere: a kernel in runbooks/, cron, any working directory (issue 15.1).

The layout is a real checkout-like project in tmp: the runbooks copied, the session demo's home as
its `.ccops`, and a ccops.toml pointing at the demo's database with paths relative to the file.
The CLI runs in subprocesses from different working directories and environments.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccops.core import localpg
from ccops.core import settings as config
from tests.helpers import clean_env

REPO = Path(__file__).resolve().parent.parent
CCOPS = Path(sys.executable).parent / "ccops"
CRON_PATH = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # Debian cron's PATH, no sbin


@pytest.fixture
def project(tmp_path: Path, demo_home) -> Path:
    """A project folder: runbooks/, .ccops (the session demo's home) and a ccops.toml naming the demo database."""
    home, _ = demo_home
    root = tmp_path / "proj"
    shutil.copytree(REPO / "runbooks", root / "runbooks")
    (root / ".ccops").symlink_to(home, target_is_directory=True)
    url = localpg.demo_database_url(home)
    (root / "ccops.toml").write_text(
        f'[database]\nurl = "{url}"\n\n[service]\nbackend = "local"\n\n'
        '[paths]\nlog_dir = ".ccops/demo/app/logs"\nbackup_dir = ".ccops/backups"\n'
        'app_env_file = ".ccops/demo/app/.env"\n', encoding="utf-8")
    return root


def cron_env() -> dict[str, str]:
    """What cron gives a job: PATH and nothing else (env -i PATH=...)."""
    return {"PATH": CRON_PATH}


def ccops_json(cwd: Path, env: dict[str, str], *args: str) -> dict:
    proc = subprocess.run([str(CCOPS), *args, "--json"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def findings(report: dict) -> dict[str, tuple[str, str]]:
    return {f["check"]: (f["status"], f["summary"]) for f in report["findings"]}


def test_same_health_finding_from_runbooks_tmp_and_cron(project: Path):
    from_runbooks = findings(ccops_json(project / "runbooks", clean_env(), "health"))
    from_tmp = findings(ccops_json(Path("/tmp"), clean_env(CCOPS_HOME=str(project / ".ccops")), "health"))
    from_cron = findings(ccops_json(project / "runbooks", cron_env(), "health"))
    assert from_runbooks["health.database"][0] == "OK", from_runbooks
    assert from_runbooks == from_tmp == from_cron


def test_same_services_and_backup_check_from_runbooks_tmp_and_cron(project: Path):
    runs = [
        ccops_json(project / "runbooks", clean_env(), "config", "check"),
        ccops_json(Path("/tmp"), clean_env(CCOPS_HOME=str(project / ".ccops")), "config", "check"),
        ccops_json(project, cron_env(), "config", "check"),
    ]
    text = json.dumps(runs[0])
    assert "no database configured" not in text and ".ccops/backups does not exist" not in text, text
    assert str(project / "ccops.toml") in text, "the project's settings file was used"
    assert runs[0] == runs[1] == runs[2]


def test_the_project_folders_come_from_the_root_not_the_working_directory(project: Path):
    shown = ccops_json(project / "runbooks", clean_env(), "config", "show")
    assert Path(shown["home"]) == project / ".ccops"
    assert Path(shown["archive_dir"]) == project / "outputs"
    assert Path(shown["runbooks_dir"]) == project / "runbooks"
    assert Path(shown["config_file"]) == (project / "ccops.toml").resolve()


def test_from_anywhere_else_the_installed_checkout_is_the_project(tmp_path: Path):
    shown = ccops_json(tmp_path, cron_env(), "config", "show")
    assert Path(shown["home"]) == REPO / ".ccops"
    assert Path(shown["archive_dir"]) == REPO / "outputs"


def test_a_folder_named_runbooks_without_ccops_runbooks_is_not_a_project(tmp_path: Path):
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "notes.ipynb").write_text('{"cells": []}')
    assert config.project_root(cwd=tmp_path / "runbooks", env={}) == REPO
    (tmp_path / "ccops.toml").write_text("")
    assert config.project_root(cwd=tmp_path / "runbooks", env={}) == tmp_path
