"""Several deployments from one ccops: [targets.<name>] tables, --target on every verb.

The settings rules are checked on files alone; the side-by-side behaviour on
two real demo deployments, each with its own private PostgreSQL cluster,
app process, logs and status server, brought up by `ccops demo up --target`
the way an operator would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ccops.core import fs
from ccops.core.errors import EXIT_TEMPFAIL, EXIT_USAGE
from ccops.core.settings import ConfigError, Settings, load_settings
from ccops.runbook.runner import lock_path
from tests.helpers import clean_env

TWO_TARGETS = """\
[paths]
disk_paths = ["/"]

[backup]
retention_days = 10

[targets.production.database]
url = "postgresql://app:prod-secret@127.0.0.1:5999/cc"

[targets.production.paths]
log_dir = "/srv/prod/logs"

[targets.staging.database]
url = "postgresql://app:stage-secret@127.0.0.1:5998/cc"

[targets.staging.backup]
retention_days = 3
"""


def _project(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ccops.toml").write_text(text)
    return tmp_path


def _load(root: Path, target: str | None = None, **env: str) -> Settings:
    with contextlib.chdir(root):  # the project is the folder the operator works in
        return load_settings(root / "ccops.toml", env=clean_env(**env), target=target)


def test_each_target_gets_its_own_home_archive_and_table_over_the_shared_ones(tmp_path):
    root = _project(tmp_path, TWO_TARGETS)
    prod = _load(root, "production")
    stage = _load(root, "staging")
    assert (prod.target, prod.targets) == ("production", ["production", "staging"])
    assert prod.home == root / ".ccops" / "targets" / "production"
    assert stage.home == root / ".ccops" / "targets" / "staging"
    assert prod.archive_dir == root / "outputs" / "targets" / "production"
    assert prod.fleet_archive_dir == stage.fleet_archive_dir == root / "outputs"
    assert prod.database_url.endswith("@127.0.0.1:5999/cc") and stage.database_url.endswith("@127.0.0.1:5998/cc")
    assert str(prod.log_dir) == "/srv/prod/logs" and stage.log_dir is None, "a target never inherits another's places"
    assert (prod.backup.retention_days, stage.backup.retention_days) == (10, 3), "shared value, then the target's own"
    assert prod.disk_paths == stage.disk_paths == ["/"]
    assert _load(root, CCOPS_TARGET="staging").target == "staging", "the environment names the target too"


def test_a_target_is_required_when_there_are_several_and_must_exist(tmp_path):
    root = _project(tmp_path, TWO_TARGETS)
    with pytest.raises(ConfigError, match=r"2 targets \(production, staging\): pass --target NAME"):
        _load(root)
    with pytest.raises(ConfigError, match=r"no target 'prod' \(the file has production, staging\)"):
        _load(root, "prod")
    (tmp_path / "one").mkdir()
    only = _project(tmp_path / "one", "[targets.solo.database]\nurl = \"postgresql://a@h/d\"\n")
    assert _load(only).target == "solo", "the only target needs no --target"


@pytest.mark.parametrize("text, message", [
    ('[paths]\nlog_dir = "/x"\n[targets.a.database]\nurl = "postgresql://a@h/d"\n',
     r"paths\.log_dir: with \[targets\.<name>\] tables, a deployment's own places go in each target's table"),
    ('[database]\nurl = "postgresql://a@h/d"\n[targets.a]\n', r"database\.url: with \[targets"),
    ('[targets."a b"]\n', r"targets\.a b: a target's name must be letters, digits, - and _"),
    ('targets = 3\n', r"targets: expected one table per target"),
    ('[targets.a.paths]\nretention = 3\n', r"targets\.a\.paths\.retention: unknown setting"),
    ('[targets.a.backup]\nretention_days = "soon"\n', r"targets\.a\.backup\.retention_days"),
])
def test_bad_target_tables_are_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        _load(_project(tmp_path, text), "a")


def test_target_without_target_tables_is_a_usage_error(tmp_path):
    root = _project(tmp_path, "[paths]\ndisk_paths = [\"/\"]\n")
    with pytest.raises(ConfigError, match=r"no target 'x': the file has no \[targets\.<name>\] tables"):
        _load(root, "x")


def test_target_is_an_option_of_every_verb_before_or_after_it(tmp_path):
    root = _project(tmp_path, TWO_TARGETS)
    env = clean_env()
    for argv in (["--target", "staging", "config", "show", "--json"], ["config", "show", "--json", "--target", "staging"],
                 ["config", "show", "--json", "--target=staging"]):
        proc = subprocess.run([sys.executable, "-m", "ccops.cli", *argv], cwd=root, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["target"] == "staging"
    proc = subprocess.run([sys.executable, "-m", "ccops.cli", "config", "show"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_USAGE and proc.stderr.count("\n") == 1, proc.stderr
    assert "pass --target NAME or set CCOPS_TARGET" in proc.stderr


def test_crontab_blocks_are_per_target(tmp_path, monkeypatch):
    from ccops import schedule

    root = _project(tmp_path, TWO_TARGETS)
    store = tmp_path / "crontab.txt"
    store.write_text("MAILTO=ops@example.org\n15 3 * * * /usr/local/bin/rotate\n")
    script = tmp_path / "fake-crontab"
    script.write_text(f"""#!/bin/sh
case "$1" in
  -l) cat "{store}" ;;
  -) cat > "{store}.tmp" && mv "{store}.tmp" "{store}" ;;
esac
""")
    script.chmod(0o755)
    monkeypatch.setenv(schedule.CRONTAB_ENV, str(script))
    prod, stage = _load(root, "production"), _load(root, "staging")
    assert schedule.install(prod).action == "installed"
    assert schedule.install(stage).action == "installed"
    text = store.read_text()
    assert text.startswith("MAILTO=ops@example.org\n15 3 * * * /usr/local/bin/rotate\n")
    for name in ("production", "staging"):
        begin, end = schedule.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1
        block = schedule.installed_block(text, name)
        entries = [line for line in block.splitlines() if line and not line.startswith("#")]
        assert entries and all(f"--target {name} " in line for line in entries), block
    assert schedule.install(prod).action == "unchanged", "reinstalling one target leaves the other's block alone"
    assert schedule.remove(prod).action == "removed"
    text = store.read_text()
    assert schedule.installed_block(text, "production") is None
    assert schedule.installed_block(text, "staging") is not None and "/usr/local/bin/rotate" in text


# ---- two real deployments side by side --------------------------------------------------------

def _ccops(root: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccops.cli", *argv], cwd=root, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Two demo deployments (production, staging) on two private clusters, served by one ccops.toml."""
    root = tmp_path_factory.mktemp("fleet")
    (root / "ccops.toml").write_text("[targets.production]\n[targets.staging]\n")
    up = {}
    for name in ("production", "staging"):
        proc = _ccops(root, "demo", "up", "--yes", "--json", "--seed", "7", "--days", "10", "--target", name)
        assert proc.returncode == 0, proc.stderr
        up[name] = json.loads(proc.stdout)
    yield root, up
    for name in ("production", "staging"):
        _ccops(root, "demo", "down", "--yes", "--target", name)


@dataclass
class FleetRuns:
    """What the runs on the fleet left: their processes, the records found right after them, each target's settings."""

    health: dict[str, subprocess.CompletedProcess[str]]
    daily: subprocess.CompletedProcess[str]
    health_records: dict[str, list[Path]]
    outside: list[Path]
    settings: dict[str, dict]


@pytest.fixture(scope="module")
def fleet_runs(fleet) -> FleetRuns:
    """The runs the side-by-side tests read, each made once: `ccops run health_check` on both targets, then staging's daily.

    Each test asserts on what they left (exit codes, archived records, alert state, the fleet page); the
    records are listed right after the runs, before any test runs anything else on the fleet.
    """
    root, _ = fleet
    health = {name: _ccops(root, "run", "health_check", "--target", name) for name in ("production", "staging")}
    health_records = {name: sorted((root / "outputs" / "targets" / name / "health_check").rglob("*-health_check.json"))
                      for name in ("production", "staging")}
    outside = list((root / "outputs").glob("health_check"))
    daily = _ccops(root, "run", "daily", "--target", "staging")
    settings = {name: _settings(root, name) for name in ("production", "staging")}
    return FleetRuns(health, daily, health_records, outside, settings)


def test_two_demo_deployments_run_side_by_side_with_their_own_archives(fleet, fleet_runs):
    root, up = fleet
    ports = {name: info["database_url"].rsplit(":", 1)[1].split("/")[0] for name, info in up.items()}
    assert ports["production"] != ports["staging"], "two private clusters"
    for name in ("production", "staging"):
        proc = fleet_runs.health[name]
        assert proc.returncode in (0, 1, 2), proc.stderr
    for name in ("production", "staging"):
        records = fleet_runs.health_records[name]
        assert len(records) == 1, records
        record = json.loads(records[0].read_text())
        assert record["target"] == name
        settings_port = fleet_runs.settings[name]["database_url"].rsplit(":", 1)[1].split("/")[0]
        assert settings_port == ports[name]
    assert not fleet_runs.outside, "nothing archived outside the targets' subtrees"
    assert not list((root / "outputs").glob("health_check")), "nothing archived outside the targets' subtrees"


def _settings(root: Path, name: str) -> dict:
    proc = _ccops(root, "config", "show", "--json", "--target", name)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_one_targets_lock_does_not_hold_the_other(fleet, fleet_runs):
    root, _ = fleet
    prod_home = Path(fleet_runs.settings["production"]["home"])
    with fs.exclusive_lock(lock_path(prod_home, "health_check")):
        busy = _ccops(root, "run", "health_check", "--target", "production")
        free = _ccops(root, "run", "health_check", "--target", "staging")
    assert busy.returncode == EXIT_TEMPFAIL, busy.stderr
    assert busy.stderr.count("\n") == 1
    assert free.returncode in (0, 1, 2), free.stderr


def test_alerts_of_a_target_stay_in_its_state_and_name_it(fleet, fleet_runs):
    root, _ = fleet
    proc = fleet_runs.daily
    assert proc.returncode == 2, f"the demo's daily report is CRITICAL on purpose: {proc.stderr}"
    stage_log = Path(fleet_runs.settings["staging"]["home"]) / "alerts" / "alerts.log"
    prod_log = Path(fleet_runs.settings["production"]["home"]) / "alerts" / "alerts.log"
    text = stage_log.read_text()
    assert f"[ccops {socket.gethostname()}/staging] CRITICAL" in text, text[:500]
    assert not prod_log.exists() or "staging" not in prod_log.read_text(), "production's alert state is its own"
    listed = _ccops(root, "alerts", "list", "--json", "--target", "production")
    assert listed.returncode == 0, listed.stderr
    assert "daily" not in listed.stdout, "staging's open alerts are not production's"


def test_an_archive_in_a_bucket_gives_each_target_its_own_prefix_and_local_copy(tmp_path):
    root = _project(tmp_path, '[paths]\narchive_dir = "s3://reports/ccops/"\n'
                              '[targets.a.database]\nurl = "postgresql://x@h1/d"\n'
                              '[targets.b.database]\nurl = "postgresql://x@h2/d"\n')
    a, b = _load(root, "a"), _load(root, "b")
    assert (a.archive_remote, b.archive_remote) == ("s3://reports/ccops/targets/a", "s3://reports/ccops/targets/b")
    assert a.archive_dir == root / ".ccops" / "targets" / "a" / "archive", "runs are written locally first"
    assert a.archive_dir != b.archive_dir


def test_the_fleet_overview_lists_every_target_unreviewed_critical_first(fleet, fleet_runs):
    root, _ = fleet
    for name in ("production", "staging"):
        assert fleet_runs.health[name].returncode in (0, 1, 2), fleet_runs.health[name].stderr
    assert fleet_runs.daily.returncode == 2, fleet_runs.daily.stderr
    overview = json.loads((root / "outputs" / "fleet.json").read_text())
    assert overview["targets"] == ["production", "staging"]
    rows = overview["runs"]
    seen = {(row["target"], row["runbook"]) for row in rows}
    assert {("production", "health_check"), ("staging", "health_check"), ("staging", "daily")} <= seen
    assert (rows[0]["target"], rows[0]["runbook"], rows[0]["outcome"]) == ("staging", "daily", "critical"), rows[0]
    page = (root / "outputs" / "index.html").read_text()
    assert "production" in page and "staging" in page
    daily = next(r for r in rows if (r["target"], r["runbook"]) == ("staging", "daily"))
    assert daily["unreviewed"] and (root / "outputs" / daily["report"]).is_file(), daily


def test_a_target_naming_its_own_home_takes_the_deployment_file_there(tmp_path):
    home = tmp_path / "elsewhere"
    home.mkdir()
    (home / "deployment.toml").write_text('[database]\nurl = "postgresql://x@h9:5432/d"\n[paths]\nlog_dir = "/from/file"\n')
    root = _project(tmp_path, f'[targets.a.paths]\nhome = "{home}"\nlog_dir = "/from/target"\n')
    a = _load(root, "a")
    assert a.home == home and a.database_url == "postgresql://x@h9:5432/d"
    assert str(a.log_dir) == "/from/target", "the target's own table wins over its home's file"
