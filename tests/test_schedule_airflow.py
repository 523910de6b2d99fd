"""`ccops schedule export airflow`: the DAG file read as Python source, without Airflow.

Airflow itself loads and runs the file in `make test-airflow` (tests/airflow/);
here the generated text is compiled and walked with `ast`: one DAG per enabled
schedule entry with the crontab's cron, max_active_runs=1, catchup off, the
target's pool, no retries where the run changes things, the commands the
crontab runs, and the exit-code mapping executed as the file defines it.
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from ccops import schedule
from ccops.cli import main
from ccops.core.errors import EXIT_CRITICAL, EXIT_OK, EXIT_TEMPFAIL, EXIT_UNKNOWN, EXIT_USAGE, EXIT_WARNING
from ccops.core.settings import load_settings
from ccops.schedule import airflow

FAKE_CCOPS = "#!/bin/sh\nexit 0\n"


def write_settings(root: Path, extra: str = "") -> Path:
    fake = root / "bin" / "ccops"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text(FAKE_CCOPS)
    fake.chmod(0o755)
    (root / "ccops.toml").write_text(f'[schedule]\ntimezone = "Europe/Amsterdam"\nccops = "{fake}"\n{extra}')
    return fake


def export(root: Path, *args: str) -> str:
    out = root / "dags" / "ccops_dags.py"
    out.parent.mkdir(exist_ok=True)
    assert main(["schedule", "export", "airflow", "--output", str(out), *args]) == 0
    assert out.stat().st_mode & 0o777 == 0o644, "Airflow's own user reads the file"
    return out.read_text()


def constants(tree: ast.Module) -> dict[str, Any]:
    """The module's `NAME = <literal>` assignments."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def dags(tree: ast.Module) -> dict[str, dict[str, Any]]:
    """Every `with DAG(...): PythonOperator(...)` block: the DAG's keywords and its one task's, as literals or names."""
    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            return ("name", node.id)
        return ast.literal_eval(node)

    found = {}
    for node in tree.body:
        if not isinstance(node, ast.With):
            continue
        call = node.items[0].context_expr
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "DAG"
        assert len(node.body) == 1, "one task per DAG"
        task = node.body[0]
        assert isinstance(task, ast.Expr) and isinstance(task.value, ast.Call)
        assert isinstance(task.value.func, ast.Name) and task.value.func.id == "PythonOperator"
        dag = {k.arg: value(k.value) for k in call.keywords}
        dag["task"] = {k.arg: value(k.value) for k in task.value.keywords}
        found[dag["dag_id"]] = dag
    return found


def test_every_entry_is_a_dag_with_its_cron_one_run_at_a_time_and_the_pool(ccops_env):
    fake = write_settings(ccops_env)
    text = export(ccops_env)
    compile(text, "ccops_dags.py", "exec")
    tree = ast.parse(text)
    found = dags(tree)
    const = constants(tree)
    cfg = schedule.load(load_settings())
    entries = cfg.enabled_entries
    assert sorted(found) == sorted(f"ccops.{e.name}" for e in entries) and len(entries) == 9
    config = str((ccops_env / "ccops.toml").resolve())
    for entry in entries:
        dag = found[f"ccops.{entry.name}"]
        assert dag["schedule"] == entry.cron, entry.name
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False, entry.name
        task = dag["task"]
        assert task["task_id"] == entry.name
        assert task["pool"] == ("name", "POOL")
        assert task["python_callable"] == ("name", "run_ccops")
        # the crontab entry's command: this ccops, its settings file, the entry's arguments
        assert task["op_kwargs"] == {"argv": [str(fake), "--config", config, *entry.args], "weekday": entry.weekday}
        assert f"{schedule.RUN_MODE_ASSIGNMENT} {shlex.join(task['op_kwargs']['argv'])};" in entry.command, \
            "the command the crontab entry runs"
    assert const["POOL"] == "ccops" and const["CCOPS_TARGET"] == ""
    assert const["TIMEZONE"] == "Europe/Amsterdam"
    assert const["PROJECT_DIR"] == str(cfg.project_dir)
    assert found["ccops.monthly"]["task"]["op_kwargs"]["weekday"] == 7, "first Sunday: the guard skips other days"
    assert found["ccops.quarterly"]["task"]["op_kwargs"]["weekday"] == 1
    assert found["ccops.daily-morning"]["schedule"] == "0 7 * * *"
    assert "airflow pools set ccops 1" in const["DOC"], "the doc says how to create the pool"


def test_no_retries_for_entries_that_change_things(ccops_env):
    write_settings(ccops_env)
    retries = {dag_id.split(".", 1)[1]: dag["task"]["retries"] for dag_id, dag in dags(ast.parse(export(ccops_env))).items()}
    assert retries == {
        "backup": 0,  # dry_run defaults to False (it writes a backup), and cron passes confirm true
        "weekly": 0,  # cron passes -p dry_run false: VACUUM ANALYZE, REINDEX CONCURRENTLY
        "alerts": 0, "digest": 0,  # they send messages
        "health": 1, "daily-morning": 1, "daily-evening": 1,  # read only
        "monthly": 1,  # its clean-up is a dry run unless dry_run false and confirm true
        "quarterly": 1,
    }


def test_weekly_as_a_report_only_is_retried_and_a_missing_runbook_is_not(ccops_env, capsys):
    write_settings(ccops_env, "weekly_maintenance = false\n[schedule.jobs.mine]\ncron = \"15 3 * * *\"\n"
                              "args = [\"run\", \"nosuchbook\"]\n[schedule.jobs.tidy]\ncron = \"0 4 * * 6\"\n"
                              "args = [\"run\", \"monthly\", \"-p\", \"dry_run\", \"False\", \"-p\", \"confirm\", \"True\"]\n")
    found = dags(ast.parse(export(ccops_env)))
    assert found["ccops.weekly"]["task"]["retries"] == 1
    assert found["ccops.weekly"]["task"]["op_kwargs"]["argv"][-2:] == ["run", "weekly"]
    assert found["ccops.mine"]["task"]["retries"] == 0, "a runbook that cannot be read counts as changing"
    assert found["ccops.tidy"]["task"]["retries"] == 0
    assert found["ccops.tidy"]["schedule"] == "0 4 * * 6"
    assert "runbook nosuchbook of entry mine not found" in capsys.readouterr().err


def test_the_exit_mapping_as_the_file_defines_it(ccops_env):
    """The file's own verdict(): WARNING succeeds, CRITICAL and bad usage fail for good, failures may retry."""
    write_settings(ccops_env)
    tree = ast.parse(export(ccops_env))
    keep = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name == "verdict")
            or (isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
                and n.targets[0].id in ("SUCCEEDS", "FAILS_WITHOUT_RETRY"))]
    assert len(keep) == 3
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "verdict", "exec"), namespace)  # noqa: S102
    verdict = namespace["verdict"]
    assert verdict(EXIT_OK) == "success"
    assert verdict(EXIT_WARNING) == "success"
    assert verdict(EXIT_CRITICAL) == "fail"
    assert verdict(EXIT_USAGE) == "fail"
    assert verdict(EXIT_UNKNOWN) == "retry"
    assert verdict(EXIT_TEMPFAIL) == "retry"
    assert verdict(-15) == "retry", "a run killed by a signal"
    # run_ccops turns the verdict into the task's state: a return, AirflowFailException, another exception
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_ccops")
    raised = {n.exc.func.id for n in ast.walk(run) if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call)
              and isinstance(n.exc.func, ast.Name)}
    assert raised == {"AirflowFailException", "CcopsRunFailed", "AirflowSkipException"}


def test_the_file_imports_airflow_and_the_standard_library_only(ccops_env):
    """Airflow's virtualenv has no ccops: the file must import without it, and do nothing at import."""
    write_settings(ccops_env)
    tree = ast.parse(export(ccops_env))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules == {"__future__", "os", "shlex", "signal", "subprocess", "datetime", "zoneinfo", "pendulum",
                       "airflow"}
    top_calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert top_calls == [], "nothing runs at import but the DAG definitions"


def test_a_target_gets_its_own_dags_pool_and_target_option(ccops_env):
    write_settings(ccops_env, "[targets.production]\n[targets.staging]\n")
    text = export(ccops_env, "--target", "staging")
    tree = ast.parse(text)
    const = constants(tree)
    found = dags(tree)
    assert sorted(found)[0].startswith("ccops_staging.") and all(d.startswith("ccops_staging.") for d in found)
    assert const["POOL"] == "ccops_staging" and const["CCOPS_TARGET"] == "staging"
    assert "target:staging" in const["TAGS"]
    argv = found["ccops_staging.daily-morning"]["task"]["op_kwargs"]["argv"]
    assert argv[1:5] == ["--config", str((ccops_env / "ccops.toml").resolve()), "--target", "staging"]
    assert argv[5:] == ["run", "daily", "-p", "part", "morning"]
    crontab = next(e for e in schedule.load(load_settings(target="staging")).entries if e.name == "daily-morning")
    assert f"{schedule.RUN_MODE_ASSIGNMENT} {shlex.join(argv)};" in crontab.command
    assert "airflow pools set ccops_staging 1" in const["DOC"]


def test_json_summary_and_printing_without_output(ccops_env, capsys):
    write_settings(ccops_env)
    out = ccops_env / "dags.py"
    assert main(["schedule", "export", "airflow", "--output", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pool"] == "ccops" and len(data["dags"]) == 9 and data["timezone"] == "Europe/Amsterdam"
    assert data["pool_command"].startswith("airflow pools set ccops 1 ")
    assert main(["schedule", "export", "airflow"]) == 0
    assert capsys.readouterr().out == out.read_text(), "the same file, printed"


def test_a_path_airflow_would_render_as_jinja_is_refused(ccops_env, capsys):
    write_settings(ccops_env)
    odd = ccops_env / "{{ bad }}"
    odd.mkdir()
    (ccops_env / "ccops.toml").write_text((ccops_env / "ccops.toml").read_text() + f'project_dir = "{odd}"\n')
    assert main(["schedule", "export", "airflow"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Jinja" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "declared", "changes"), [
    (("run", "backup", "-p", "confirm", "true"), {"dry_run": "False", "confirm": "False"}, True),
    (("run", "backup", "-p", "dry_run", "true"), {"dry_run": "False", "confirm": "False"}, False),
    (("run", "weekly"), {"dry_run": "True", "confirm": "False"}, False),
    (("run", "weekly", "--param", "dry_run", "no"), {"dry_run": "True", "confirm": "False"}, True),
    (("run", "daily", "-p", "part", "morning"), {"part": '"all"'}, False),
])
def test_changes_things_reads_the_gate_as_the_run_will_see_it(args, declared, changes):
    entry = schedule.Entry("x", "0 * * * *", args, "", runbook=args[1])
    assert airflow.changes_things(entry, declared) is changes


def test_local_zone_name_follows_tz():
    assert airflow.local_zone_name({"TZ": "America/New_York"}) == "America/New_York"
    assert airflow.local_zone_name({"TZ": ":Europe/Amsterdam"}) == "Europe/Amsterdam"
