"""One settings reader, one wording (issue 16 item 4): `<file>: <key>: <problem>`, exit 64, one line.

Every place that reads settings - the loader's core sections, the environment, and the
sections a module owns (alerts, schedule, security, costs, analytics, archive, ratelimit) -
goes through ccops.core.reader, so the same mistake reads the same wherever it is made.
Each kind of problem is tried in a ccops.toml (and in the file CCOPS_CONFIG names, and in
the home's deployment file) and, where a variable can say it, in the environment, through
the real `ccops` in its own process as cron would run it. Two kinds have no environment
form: a variable is looked up by its name, so none is "unknown" (CCOPS_DEBUG, CCOPS_RUN_MODE
and the like belong to other parts), and no variable holds a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccops.core.reader import ConfigError
from ccops.core.settings import load_settings, valid_backends
from ccops.logs.ratelimit import config_of

REPO = Path(__file__).resolve().parent.parent
KEEP_NOTHING = "expected at least 1 (a count of what to keep: 0 would keep nothing), got 0"
NO_ZONE = "expected an IANA time zone name such as Europe/Amsterdam, got 'Mars/Base'"


def ccops(root: Path, *argv: str, **env: str) -> tuple[int, str, str]:
    """The real `ccops ARGV` under root, with no CCOPS_* of the test run's own, stdin not a terminal."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_") and k != "DATABASE_URL"}
    base.update({"CCOPS_HOME": str(root / "home"), "CCOPS_ARCHIVE_DIR": str(root / "outputs"),
                 "CCOPS_RUNBOOKS_DIR": str(REPO / "runbooks"), **env})
    proc = subprocess.run([sys.executable, "-m", "ccops.cli", *argv], cwd=root, env=base, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def assert_refused(result: tuple[int, str, str], line: str) -> None:
    code, out, err = result
    assert (code, err) == (64, f"ccops: {line}\n"), err
    assert "Traceback" not in out + err


# (kind, settings file content, key, problem): core sections first, then sections a module owns
FILE_CASES = [
    ("not a number", '[backup]\nretention_days = "many"\n', "backup.retention_days",
     "expected a whole number, got 'many'"),
    ("not a number", '[alerts]\nmax_messages_per_hour = "lots"\n', "alerts.max_messages_per_hour",
     "expected a whole number, got 'lots'"),
    ("not a number", '[costs]\ninfrastructure_monthly = "fifty"\n', "costs.infrastructure_monthly",
     "expected a number, got 'fifty'"),
    ("not a number", '[security]\ntls_warning_days = "soon"\n', "security.tls_warning_days",
     "expected a whole number, got 'soon'"),
    ("below the floor", "[backup]\nkeep_verified = 0\n", "backup.keep_verified", KEEP_NOTHING),
    ("below the floor", "[archive]\nkeep_days = 0\n", "archive.keep_days", "expected 1 or more, got 0"),
    ("below the floor", "[alerts.engagement]\nmin_baseline_posts = 1\n", "alerts.engagement.min_baseline_posts",
     "expected 2 or more, got 1"),
    ("below the floor", "[analytics]\nconfidence = 1.5\n", "analytics.confidence",
     "expected more than 0 and less than 1, got 1.5"),
    ("unknown key", "[backup]\nretention_dayz = 3\n", "backup.retention_dayz", "unknown setting"),
    ("unknown key", '[schedule]\ncrontab = "x"\n', "schedule.crontab", "unknown setting"),
    ("unknown key", "[archive]\nkept_days = 3\n", "archive.kept_days", "unknown setting"),
    ("bad choice", '[service]\nbackend = "kubernetes"\n', "service.backend",
     "expected one of compose, systemd, process, local, none, got 'kubernetes'"),
    ("bad choice", '[costs]\nbilled_calls = "some"\n', "costs.billed_calls",
     "expected one of all, successful, got 'some'"),
    ("bad choice", '[[alerts.channels]]\ntype = "pager"\n', "alerts.channels[1].type",
     "expected one of log, console, webhook, email, command, got 'pager'"),
    ("bad timezone", '[logs]\ntimezone = "Mars/Base"\n', "logs.timezone", NO_ZONE),
    ("bad timezone", '[schedule]\ntimezone = "Mars/Base"\n', "schedule.timezone", NO_ZONE),
    ("not a table", "backup = 3\n", "backup", "expected a table, got 3"),
    ("not a table", "[alerts]\nrules = 3\n", "alerts.rules", "expected a table, got 3"),
    ("not a table", "[schedule]\njobs = 3\n", "schedule.jobs", "expected a table, got 3"),
]

# (kind, variable, value, problem)
ENV_CASES = [
    ("not a number", "CCOPS_BACKUP_RETENTION_DAYS", "many", "expected a whole number, got 'many'"),
    ("not a number", "CCOPS_APIS_TIMEOUT_SECONDS", "soon", "expected a number, got 'soon'"),
    ("below the floor", "CCOPS_BACKUP_KEEP_VERIFIED", "0", KEEP_NOTHING),
    ("below the floor", "CCOPS_RUN_TIMEOUT_SECONDS", "0", "expected 1 or more, got 0"),
    ("bad choice", "CCOPS_BACKEND", "kubernetes", "expected one of compose, systemd, process, local, none, "
                                                  "got 'kubernetes'"),
    ("bad choice", "CCOPS_APIS_APP_ENV_CREDENTIALS", "maybe", "expected true or false, got 'maybe'"),
    ("bad timezone", "CCOPS_LOGS_TIMEZONE", "Mars/Base", NO_ZONE),
]


@pytest.mark.parametrize(("kind", "content", "key", "problem"), FILE_CASES,
                         ids=[f"{kind}:{key}" for kind, _, key, _ in FILE_CASES])
def test_a_bad_value_in_ccops_toml_is_one_line_naming_file_and_key(tmp_path, kind, content, key, problem):
    """`config check` reads every section now, the core ones and those modules own, as cron would meet them."""
    path = tmp_path / "ccops.toml"
    path.write_text(content)
    assert_refused(ccops(tmp_path, "config", "check"), f"{path}: {key}: {problem}")


@pytest.mark.parametrize(("kind", "name", "value", "problem"), ENV_CASES,
                         ids=[f"{kind}:{name}" for kind, name, _, _ in ENV_CASES])
def test_a_bad_variable_is_one_line_naming_the_variable(tmp_path, kind, name, value, problem):
    assert_refused(ccops(tmp_path, "config", "show", **{name: value}), f"environment {name}: {problem}")


def test_a_variable_is_named_even_when_a_settings_file_applies(tmp_path):
    (tmp_path / "ccops.toml").write_text("[backup]\nretention_days = 30\n")
    assert_refused(ccops(tmp_path, "health", CCOPS_BACKUP_RETENTION_DAYS="-1"),
                   "environment CCOPS_BACKUP_RETENTION_DAYS: expected 0 or more, got -1")


@pytest.mark.parametrize(("content", "key", "problem"), [
    ('[alerts]\nmax_messages_per_hour = "lots"\n', "alerts.max_messages_per_hour", "expected a whole number, got 'lots'"),
    ("[backup]\nretention_dayz = 3\n", "backup.retention_dayz", "unknown setting"),
])
def test_the_file_ccops_config_names_is_the_one_named(tmp_path, content, key, problem):
    elsewhere = tmp_path / "etc" / "ops.toml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(content)
    assert_refused(ccops(tmp_path, "config", "check", CCOPS_CONFIG=str(elsewhere)), f"{elsewhere}: {key}: {problem}")


def test_without_ccops_toml_the_homes_deployment_file_is_the_one_named(tmp_path):
    """A module section of <home>/deployment.toml: its refusal names that file, not an anonymous 'settings'."""
    deployment = tmp_path / "home" / "deployment.toml"
    deployment.parent.mkdir()
    deployment.write_text('[alerts]\nbogus = 1\n')
    assert_refused(ccops(tmp_path, "config", "check"), f"{deployment}: alerts.bogus: unknown setting")
    deployment.write_text('[schedule.jobs.weekly]\ncadence_hours = -2\n')
    assert_refused(ccops(tmp_path, "config", "check"),
                   f"{deployment}: schedule.jobs.weekly.cadence_hours: expected 0 or more, got -2")


def test_in_process_the_reader_raises_the_same_line(ccops_env):
    """The wording is the reader's, not the CLI's: load_settings and each module's reader raise it as is."""
    from ccops import archive, schedule
    from ccops.alerts import config as alerts_config

    path = ccops_env / "ccops.toml"
    path.write_text("[backup]\nretention_days = 2.5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == f"{path}: backup.retention_days: expected a whole number, got 2.5"
    for content, read, line in [
        ("[alerts.repeat_minutes]\nwarning = -1\n", alerts_config.load, "alerts.repeat_minutes.warning: "
                                                                        "expected 0 or more, got -1"),
        ("[schedule.jobs.weekly]\nenabled = \"no\"\n", schedule.load, "schedule.jobs.weekly.enabled: "
                                                                      "expected true or false, got 'no'"),
        ("[archive]\nkeep_days = 7.5\n", archive.keep_days_setting, "archive.keep_days: expected a whole number, got 7.5"),
    ]:
        path.write_text(content)
        with pytest.raises(ConfigError) as caught:
            read(load_settings())
        assert str(caught.value) == f"{path}: {line}"


def test_ratelimit_client_agents_names_the_file_or_the_variable(ccops_env, monkeypatch):
    path = ccops_env / "ccops.toml"
    path.write_text('[ratelimit]\nclient_agents = ["PublishingAgent"]\n')
    with pytest.raises(ConfigError) as caught:
        config_of(load_settings())
    assert str(caught.value) == (f"{path}: ratelimit.client_agents: expected 'client=AgentA AgentB', "
                                 "got 'PublishingAgent'")
    monkeypatch.setenv("CCOPS_RATELIMIT_CLIENT_AGENTS", "twitter_api")
    with pytest.raises(ConfigError) as caught:
        config_of(load_settings())
    assert str(caught.value) == ("environment CCOPS_RATELIMIT_CLIENT_AGENTS: expected 'client=AgentA AgentB', "
                                 "got 'twitter_api'")


# ---- service.backend: built in, or registered under the ccops.backends entry points -----------------

def test_a_backend_an_installed_package_registers_is_valid_and_listed(tmp_path):
    """A third party's backend, installed the way pip installs one (a dist-info with entry_points.txt)."""
    site = tmp_path / "site"
    dist = site / "ccops_k8s-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ccops-k8s\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ccops.backends]\nk8s = ccops_k8s:Backend\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    (tmp_path / "ccops.toml").write_text('[service]\nbackend = "k8s"\n')
    code, out, err = ccops(tmp_path, "config", "show", "--json", **env)
    assert (code, err) == (0, "") and '"backend": "k8s"' in out
    (tmp_path / "ccops.toml").write_text('[service]\nbackend = "k9s"\n')
    assert_refused(ccops(tmp_path, "config", "show", **env), f"{tmp_path / 'ccops.toml'}: service.backend: "
                   "expected one of compose, systemd, process, k8s, local, none, got 'k9s'")


def test_the_demos_backend_is_valid_and_built_in_names_never_read_the_entry_points(ccops_env):
    (ccops_env / "ccops.toml").write_text('[service]\nbackend = "local"\n')
    assert load_settings().backend == "local"
    assert valid_backends() == ["compose", "systemd", "process", "local", "none"]
    probe = ("import sys; from ccops.core.settings import load_settings; s = load_settings(); "
             "print(s.backend, 'importlib.metadata' in sys.modules)")
    (ccops_env / "ccops.toml").write_text('[service]\nbackend = "systemd"\n')
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ccops_env, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("CCOPS_")})
    assert proc.stdout.split() == ["systemd", "False"], proc.stderr
