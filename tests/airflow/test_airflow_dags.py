"""The exported DAGs in a real Apache Airflow, against the demo (`make test-airflow`).

Airflow lives in its own virtualenv (CCOPS_AIRFLOW_BIN, installed by the
Makefile) with its home and sqlite metadata database in a temporary folder;
ccops is this checkout's `.venv`, which Airflow's tasks run by absolute path.
The deployment is the demo as target `demo` of a ccops.toml of the test's own
(home, archive and cron times in the temporary folder, never the checkout's
`.ccops/`), with one job of the operator's own: the `health_check` runbook,
hourly at :30 (the default `health` entry runs `ccops health`, which archives
no report).

Every run is `airflow dags test`: Airflow's own DAG run and task instance in
its database, with the task's state read back through Airflow's CLI and
compared with the run record ccops archived.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccops.core import localpg

REPO = Path(__file__).resolve().parents[2]
CCOPS = Path(sys.executable).parent / "ccops"  # this checkout's venv: the path the DAG file names
AIRFLOW = Path(os.environ.get("CCOPS_AIRFLOW_BIN", REPO / ".venv-airflow" / "bin" / "airflow"))
TARGET = "demo"
PREFIX = f"ccops_{TARGET}"
ZONE = "Europe/Amsterdam"
SETTINGS = """\
[paths]
home = "{root}/home"
archive_dir = "{root}/outputs"
runbooks_dir = "{repo}/runbooks"

[schedule]
timezone = "{zone}"

[schedule.jobs.health_check]
cron = "30 * * * *"
args = ["run", "health_check"]
description = "the guide's health check as its runbook, archived"

[targets.{target}]
"""
RECORD = re.compile(r"\d{8}T\d{6}Z-(?P<runbook>.+)\.json")
EXITED = re.compile(r"^ccops exited (-?\d+) \(", re.M)


class World:
    """The test's Airflow home and ccops project, and how to drive each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = root / "project"
        self.config = self.project / "ccops.toml"
        self.airflow_home = root / "airflow"
        self.dags = self.airflow_home / "dags"
        self.archive = root / "outputs" / "targets" / TARGET
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("CCOPS_", "AIRFLOW_", "AIRFLOW__")) and k != "DATABASE_URL"}
        self.ccops_env = clean
        self.airflow_env = {**clean, "AIRFLOW_HOME": str(self.airflow_home),
                            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}

    def ccops(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CCOPS), "--config", str(self.config), "--target", TARGET, *args],
                              cwd=self.project, env=self.ccops_env, capture_output=True, text=True, timeout=timeout)

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AIRFLOW), *args], cwd=self.root, env=self.airflow_env, capture_output=True,
                              text=True, timeout=timeout)

    def airflow_json(self, *args: str, returncode: int = 0) -> Any:
        """A CLI listing with `-o json`: the JSON line of stdout (Airflow prints warnings around it)."""
        proc = self.airflow(*args, "-o", "json")
        assert proc.returncode == returncode, (args, proc.stdout[-2000:], proc.stderr[-2000:])
        lines = [line for line in proc.stdout.splitlines() if line.startswith(("[", "{"))]
        assert lines, (args, proc.stdout[-2000:])
        return json.loads(lines[-1])

    def records(self, runbook: str) -> set[Path]:
        return {p for p in (self.archive / runbook).rglob("*.json")
                if (m := RECORD.fullmatch(p.name)) and m["runbook"] == runbook.split("/")[-1]}

    def dag_test(self, dag_id: str, *logical_date: str) -> tuple[subprocess.CompletedProcess[str], str]:
        """`airflow dags test DAG_ID [DATE]`: the process and the state Airflow recorded for the DAG's one task."""
        proc = self.airflow("dags", "test", dag_id, *logical_date, timeout=1200)
        runs = self.airflow_json("dags", "list-runs", dag_id)
        assert len(runs) == 1, runs
        tasks = self.airflow_json("tasks", "states-for-dag-run", dag_id, runs[0]["run_id"])
        assert [t["task_id"] for t in tasks] == [dag_id.split(".", 1)[1]], tasks
        assert runs[0]["state"] == ("success" if tasks[0]["state"] in ("success", "skipped") else "failed"), runs
        return proc, tasks[0]["state"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Airflow's metadata database migrated while the demo comes up (two cores), then the DAG file and its pool."""
    assert AIRFLOW.is_file(), f"{AIRFLOW}: run `make test-airflow`, which installs Apache Airflow first"
    assert CCOPS.is_file(), f"{CCOPS}: run the tests with the checkout's .venv"
    w = World(tmp_path_factory.mktemp("airflow-world"))
    w.project.mkdir()
    w.dags.mkdir(parents=True)
    w.config.write_text(SETTINGS.format(root=w.root, repo=REPO, zone=ZONE, target=TARGET))
    migrate = subprocess.Popen([str(AIRFLOW), "db", "migrate"], cwd=w.root, env=w.airflow_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        up = w.ccops("demo", "up", "--yes")
        assert up.returncode == 0, up.stderr
        out, _ = migrate.communicate(timeout=600)
        assert migrate.returncode == 0, out[-3000:]
        yield w
    finally:
        if migrate.poll() is None:
            migrate.kill()
            migrate.wait()
        down = w.ccops("demo", "down", "--yes")
        print(down.stdout, down.stderr, file=sys.stderr)
        # as root the cluster's data lives under /var/tmp, outside the temporary folder: delete it too
        localpg.demo_cluster(w.root / "home" / "targets" / TARGET).destroy()


@pytest.fixture(scope="module")
def exported(world: World) -> dict[str, Any]:
    """`ccops schedule export airflow --target demo` into Airflow's dags folder, and the pool its doc names."""
    proc = world.ccops("schedule", "export", "airflow", "--output", str(world.dags / f"{PREFIX}.py"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["pool"] == PREFIX and data["timezone"] == ZONE
    pool = world.airflow("pools", "set", PREFIX, "1", f"ccops: one run at a time on {TARGET}")
    assert pool.returncode == 0, pool.stderr[-2000:]
    serialize = world.airflow("dags", "reserialize")
    assert serialize.returncode == 0, serialize.stderr[-3000:]
    return data


def test_the_dag_file_loads_without_import_errors(world: World, exported: dict[str, Any]):
    # the check can fail: a broken file beside ours is reported, by file
    broken = world.dags / "broken_dag.py"
    broken.write_text("import no_such_module_anywhere  # an airflow DAG that cannot load\n")
    try:
        errors = world.airflow_json("dags", "list-import-errors", "--local", returncode=1)
        assert [Path(e["filepath"]).name for e in errors] == ["broken_dag.py"]
    finally:
        broken.unlink()
    assert world.airflow_json("dags", "list-import-errors", "--local") == []
    assert world.airflow_json("dags", "list-import-errors") == [], "none recorded by the DAG processor either"


def test_airflow_has_every_entry_at_its_crontab_time_one_run_at_a_time(world: World, exported: dict[str, Any]):
    listed = world.airflow_json("dags", "list", "--columns", "dag_id,timetable_summary,max_active_runs,tags")
    ours = {d["dag_id"]: d for d in listed if d["dag_id"].startswith(f"{PREFIX}.")}
    assert sorted(ours) == sorted(exported["dags"])
    show = world.ccops("schedule", "show", "--json")
    assert show.returncode == 0, show.stderr
    entries = json.loads(show.stdout)["entries"]
    assert {f"{PREFIX}.{e['name']}": e["cron"] for e in entries} == {k: d["timetable_summary"] for k, d in ours.items()}
    assert "health_check" in {e["name"] for e in entries}
    for dag in ours.values():
        assert str(dag["max_active_runs"]) == "1", dag
        assert {t["name"] for t in dag["tags"]} == {"ccops", f"target:{TARGET}"}, dag


def test_the_pool_has_one_slot(world: World, exported: dict[str, Any]):
    pools = world.airflow_json("pools", "get", PREFIX)
    assert [(p["pool"], int(p["slots"])) for p in pools] == [(PREFIX, 1)]
    assert f"airflow pools set {PREFIX} 1 " in exported["pool_command"]


def run_and_read(world: World, dag: str, runbook: str) -> tuple[dict[str, Any], str, int]:
    """One `dags test` of a runbook entry: its one new run record, the task's state, the exit code it logged."""
    before = world.records(runbook)
    proc, state = world.dag_test(f"{PREFIX}.{dag}")
    new = world.records(runbook) - before
    assert len(new) == 1, (sorted(new), proc.stdout[-3000:])
    record = json.loads(new.pop().read_text())
    exited = [int(c) for c in EXITED.findall(proc.stdout + proc.stderr)]
    assert len(exited) == 1, (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == (0 if state == "success" else 1), (state, proc.returncode)
    return record, state, exited[0]


def test_health_check_task_state_follows_its_archived_exit_code(world: World, exported: dict[str, Any]):
    record, state, exited = run_and_read(world, "health_check", "health_check")
    assert record["runbook"] == "health_check" and record["target"] == TARGET
    assert record["mode"] == "scheduled", "CCOPS_RUN_MODE as cron sets it"
    assert record["exit_code"] == exited, "the task saw the exit code the record holds"
    assert {"ok": 0, "warning": 1, "critical": 2}.get(record["outcome"], 3) == record["exit_code"]
    # 0 OK and 1 WARNING succeed, 2 CRITICAL and anything worse fail
    assert state == ("success" if record["exit_code"] in (0, 1) else "failed"), (state, record["outcome"])


def test_daily_is_critical_on_the_demo_and_its_task_fails(world: World, exported: dict[str, Any]):
    record, state, exited = run_and_read(world, "daily-morning", "daily")
    assert record["runbook"] == "daily" and record["target"] == TARGET and record["mode"] == "scheduled"
    assert record["parameters"].get("part") == "morning"
    assert (record["outcome"], record["exit_code"], exited) == ("critical", 2, 2), "the demo's incidents, on purpose"
    assert state == "failed"


def test_ccops_health_task_state_follows_its_exit_code(world: World, exported: dict[str, Any]):
    """The default `health` entry runs `ccops health` (no report): the state still follows the code it logged."""
    proc, state = world.dag_test(f"{PREFIX}.health")
    exited = [int(c) for c in EXITED.findall(proc.stdout + proc.stderr)]
    assert len(exited) == 1, (proc.stdout + proc.stderr)[-3000:]
    assert state == ("success" if exited[0] in (0, 1) else "failed"), (state, exited)


def test_monthly_skips_a_day_that_is_not_sunday_in_the_schedule_zone(world: World, exported: dict[str, Any]):
    """23:30 UTC on Sunday 6 December 2026 is Monday 00:30 in Amsterdam: the first-Sunday guard skips the run."""
    before = world.records("monthly")
    proc, state = world.dag_test(f"{PREFIX}.monthly", "2026-12-06T23:30:00+00:00")
    assert state == "skipped", (proc.stdout + proc.stderr)[-3000:]
    assert "runs on Sundays only; Monday 2026-12-07 in Europe/Amsterdam" in proc.stdout + proc.stderr
    assert world.records("monthly") == before, "ccops never ran"
