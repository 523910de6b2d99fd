"""`ccops health` imports only what the check needs: cron starts it every hour.

The command's speed is measured by `make bench` (benchmarks/bench_health.py);
what is pinned here is the cause of most of its cost, the modules a fresh
interpreter loads to answer. pandas, numpy and SQLAlchemy take longer to
import than the whole check takes to run, and matplotlib, nbformat and
papermill belong to the runbooks, not to the hourly line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import backup_source

HEAVY = ("pandas", "numpy", "sqlalchemy", "matplotlib", "nbformat", "papermill")

# A fresh interpreter runs the verb as the console script does, then reports what it imported.
# PROBE_PRELOAD names a module to import first (the control below).
PROBE = """
import contextlib, importlib, io, json, os, sys
if os.environ.get("PROBE_PRELOAD"):
    importlib.import_module(os.environ["PROBE_PRELOAD"])
from ccops.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def probe(*argv: str, preload: str = "") -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env={**os.environ, "PROBE_PRELOAD": preload}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def heavy(modules: list[str]) -> list[str]:
    return sorted({name.split(".")[0] for name in modules if name.split(".")[0] in HEAVY})


@pytest.mark.parametrize("json_output", [False, True])
def test_health_against_a_database_imports_none_of_the_heavy_libraries(make_database, ccops_env, monkeypatch,
                                                                      json_output):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("ccops"))
    result = probe("health", "--as-of", "2026-11-20T12:00:00Z", *(["--json"] if json_output else []))
    # the queries ran (an empty database: the guide's two reasons, CRITICAL), so the import set is the real path's
    expected = "UNHEALTHY: No agent activity in last 24 hours; No content published in last 24 hours"
    line = json.loads(result["out"])["line"] if json_output else result["out"].strip()
    assert (line, result["code"]) == (expected, 2)
    assert "psycopg" in result["modules"]
    assert heavy(result["modules"]) == []


def test_health_of_an_unreachable_database_stays_light_too(ccops_env, monkeypatch):
    """The outage the hourly check exists to catch is answered on the same light path."""
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://app:secret@127.0.0.1:1/content_creator")
    result = probe("health")
    assert result["code"] == 2
    assert result["out"].startswith("UNHEALTHY: database unreachable: ")
    assert "secret" not in result["out"]
    assert heavy(result["modules"]) == []


def test_the_probe_sees_what_the_notebook_steps_import(make_database, ccops_env, monkeypatch):
    """Control: with the runbook's health steps (ccops.checks.health, what the verb used to import) loaded
    first, the same probe reports pandas, so an empty list above is a finding, not a blind probe."""
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("ccops"))
    result = probe("health", "--as-of", "2026-11-20T12:00:00Z", preload="ccops.checks.health")
    assert result["code"] == 2
    assert "pandas" in heavy(result["modules"])


def test_backup_and_a_parallel_restore_never_import_pandas(make_demo_database, make_database, ccops_env, monkeypatch):
    """`ccops backup` and `ccops restore --jobs 2`, end to end on a real database: no pandas or numpy.

    Both verbs reach the amcheck module (the restore test proves a scratch database with it), which
    builds its report with pandas; importing it there cost every restore 0.3-0.4 s before any work.
    """
    backup_source(make_demo_database, ccops_env, monkeypatch, seed=3, days=6)
    made = probe("backup", "--json")
    assert made["code"] == 0, made["out"]
    path = json.loads(made["out"])["file"]
    target = make_database("ccops", name="restored_without_pandas")
    restored = probe("restore", path, "--target", target, "--jobs", "2", "--yes", "--app-stopped", "--json")
    assert restored["code"] == 0, restored["out"]
    steps = {step["name"]: step["detail"] for step in json.loads(restored["out"])["steps"]}
    assert "with 2 parallel jobs" in steps["restore"] and "data offsets of" in steps["restore"], steps
    for result in (made, restored):
        assert "psycopg" in result["modules"]
        assert {"pandas", "numpy"}.isdisjoint(heavy(result["modules"])), heavy(result["modules"])
