"""A real deployment gets no demo default: a check missing its setting says "not configured: set <key>".

Issue 13 (4): with only CCOPS_DATABASE_URL set, `logs summary` counted the demo's records and
weekly reported the demo's /health as the app's health. Here the demo's places (under
CCOPS_HOME) hold files written the way the real app writes them (FACTS.md: loguru lines,
`.env` keys, backup.sh names), and the home's deployment file names them as `ccops demo up`
writes it; a deployment must not read any of them.

Issue 16: the settings know no demo at all. The demo is the deployment in the home's
deployment file; with nothing there, nothing falls back to any default place.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from ccops import cli, demo
from ccops.checks import audit, host, services
from ccops.checks import backup as backup_checks
from ccops.checks import logs as log_checks
from ccops.core.context import RunContext
from ccops.core.errors import NotConfigured
from ccops.core.findings import Status
from ccops.core.scrub import known_secrets
from ccops.core.settings import Settings, load_settings
from ccops.demo.places import remove_deployment

AS_OF = datetime(2025, 11, 23, 16, 0, 0)
# FACTS.md "Logs": the app's line format, with its real ERROR example and a real 429 line.
APP_LOG = """\
2025-11-23 15:20:01 | INFO     | __main__:main - Starting Content Creator in scheduled mode
2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy
2025-11-23 15:40:12 | ERROR    | src.api_integrations.twitter_api:post_tweet - Failed to post tweet: 429 Too Many Requests
2025-11-23 15:48:04 | INFO     | src.orchestrator:run_cycle - cycle done
"""
APP_ENV = "DATABASE_URL=postgresql://content_creator_user:demopw1234@localhost/content_creator\n" \
          "TWITTER_BEARER_TOKEN=AAAAdemoBearerToken\nHUMAN_IN_THE_LOOP=false\nLOG_LEVEL=INFO\n"


DEMO_URL = "postgresql+psycopg://ccops:demo-cluster-pw@127.0.0.1:1/content_creator"


@pytest.fixture
def demo_places(ccops_env: Path) -> dict[str, Path]:
    """The demo's places under CCOPS_HOME, named by its deployment file, filled with files in the real app's formats."""
    assert load_settings().not_configured()[0] == "database.url", "nothing configured yet, and no default applies"
    demo.write_deployment(load_settings(), DEMO_URL, "http://127.0.0.1:1/api/status")
    settings = load_settings()
    assert settings.deployment_file == settings.default_deployment_file, "the demo's deployment file applies"
    log_dir = Path(settings.optional("log_dir"))
    log_dir.mkdir(parents=True)
    (log_dir / "content_creator_2025-11-23.log").write_text(APP_LOG)
    env_file = Path(settings.optional("app_env_file"))
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text(APP_ENV)
    backups = Path(settings.optional("backup_dir"))
    backups.mkdir(parents=True)
    (backups / "db_20251123_020000.sql").write_text("-- PostgreSQL database dump\n")  # backup.sh's name
    return {"log_dir": log_dir, "app_env_file": env_file, "backup_dir": backups}


@pytest.fixture
def deployment(demo_places, make_database, monkeypatch) -> str:
    """Only a database URL: a database of the real production schema, not the demo's."""
    url = make_database("production")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return url


def ctx_now() -> RunContext:
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


def test_a_database_url_that_is_not_the_demos_makes_a_deployment(deployment):
    settings = load_settings()
    assert settings.deployment_file is None, "the environment names another database: the home's file does not apply"
    assert settings.optional("log_dir") is None and settings.optional("health_url") is None
    with pytest.raises(NotConfigured) as err:
        settings.require("log_dir")
    assert err.value.setting == "paths.log_dir" and "CCOPS_LOG_DIR" in str(err.value)
    assert settings.not_configured() == ["paths.log_dir", "paths.backup_dir", "paths.app_env_file",
                                         "service.backend", "http.status_url", "http.health_url"]


def test_a_settings_file_makes_a_deployment_and_the_demo_database_no_longer_applies(ccops_env):
    (ccops_env / "ccops.toml").write_text('[paths]\nlog_dir = "/srv/content-creator/logs"\n')
    demo.write_deployment(load_settings(), DEMO_URL)
    settings = load_settings()
    assert settings.config_file is not None and settings.deployment_file is None
    with pytest.raises(NotConfigured) as err:
        settings.resolved_database_url()
    assert err.value.setting == "database.url"


def test_logs_summary_does_not_count_the_demos_records(deployment, capsys):
    """The bug: 2,044 demo records counted as the deployment's. Now: exit 3, naming the key."""
    assert cli.main(["logs", "summary", "--since", "2025-11-23T00:00:00Z", "--until", "2025-11-24T00:00:00Z",
                     "--json"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == ("ccops: not configured: set paths.log_dir (or CCOPS_LOG_DIR: the app's logs/, "
                           "where content_creator_YYYY-MM-DD.log are)")


def test_log_checks_say_not_configured_and_the_summary_lists_them(deployment):
    ctx = ctx_now()
    (finding,) = log_checks.recent_errors(ctx)
    assert finding.status == Status.UNKNOWN and finding.not_configured
    assert finding.setting == "paths.log_dir"
    assert finding.summary.startswith("not configured: set paths.log_dir")
    services.service_status(ctx)
    notes = "\n".join(ctx.summary().notes())
    assert "not configured (2): logs.recent_errors, services.status - set paths.log_dir, service.backend" in notes


def test_health_probe_not_configured_says_it_is_optional_and_probes_nothing(deployment):
    """The weekly step that quoted the demo's /health as the app's: the real app has none."""
    (finding,) = services.health_endpoint(ctx_now())
    assert finding.not_configured and finding.status == Status.INFO
    assert finding.summary == ("not configured: set http.health_url (or CCOPS_HEALTH_URL: optional: the app has "
                               "no /health; set it only if your deployment serves a health probe)")


def test_backend_backups_and_env_checks_say_which_key_to_set(deployment):
    ctx = ctx_now()
    (status,) = services.service_status(ctx)
    assert status.status == Status.UNKNOWN and status.setting == "service.backend"
    daily = backup_checks.daily_backup(ctx)
    assert [f.setting for f in daily] == ["paths.backup_dir"], "the demo's backup.sh file is not this deployment's"
    keys = audit.api_key_age(ctx)
    assert [f.setting for f in keys] == ["paths.app_env_file"]


def test_steps_that_can_go_on_without_a_path_do_not_use_the_demos(deployment, demo_places):
    ctx = ctx_now()
    watched = [label for label, _ in host.watched_paths(ctx)]
    assert not any(str(demo_places["log_dir"]) in w or str(demo_places["backup_dir"]) in w for w in watched)
    secrets = known_secrets(ctx.settings)
    assert "AAAAdemoBearerToken" not in secrets, "the demo's .env is not this deployment's"
    shown = ctx.settings.to_display()
    assert shown["log_dir"] == "(not configured)" and "paths.log_dir" in shown["not_configured"]


def test_config_show_says_what_is_not_configured(deployment, capsys):
    assert cli.main(["config", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["deployment_file"] is None
    assert shown["health_url"] == "(not configured)"
    assert "service.backend" in shown["not_configured"]


def test_what_is_set_is_used(deployment, demo_places, tmp_path, monkeypatch):
    """Setting the key is the cure: the same check reads the deployment's own log dir."""
    logs = tmp_path / "app" / "logs"
    logs.mkdir(parents=True)
    (logs / "content_creator_2025-11-23.log").write_text(APP_LOG)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    (finding,) = log_checks.recent_errors(ctx_now())
    assert not finding.not_configured and finding.value == 2


def test_the_demo_keeps_its_defaults(demo_places):
    settings = load_settings()
    assert settings.deployment_file and settings.not_configured() == ["http.health_url"], \
        "the demo, like the app, has no /health"
    assert settings.effective_log_dir == demo_places["log_dir"]
    assert settings.logs_timezone == "Europe/Amsterdam" and settings.effective_backend == "local"


def test_nothing_configured_means_nothing_falls_back(ccops_env):
    """No ccops.toml, no environment, no deployment file: every deployment setting says which key to set."""
    settings = load_settings()
    assert settings.deployment_file is None
    assert settings.not_configured() == ["database.url", "paths.log_dir", "paths.backup_dir", "paths.app_env_file",
                                         "service.backend", "http.status_url", "http.health_url"]
    with pytest.raises(NotConfigured):
        settings.resolved_database_url()


def test_the_deployment_file_is_private_written_whole_and_removed_with_the_demo(demo_places):
    settings = load_settings()
    path = settings.default_deployment_file
    assert path.stat().st_mode & 0o777 == 0o600, "it holds the database password"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".deployment")] == []
    assert remove_deployment(settings) and not path.exists()
    assert load_settings().deployment_file is None


def test_the_environment_wins_over_the_deployment_file(demo_places, monkeypatch, tmp_path):
    monkeypatch.setenv("CCOPS_LOG_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("CCOPS_DATABASE_URL", DEMO_URL.replace("demo-cluster-pw", "other"))  # the same server
    settings = load_settings()
    assert settings.deployment_file is not None and settings.effective_log_dir == tmp_path / "elsewhere"
    assert "other" in settings.resolved_database_url()


def test_a_deployment_file_that_does_not_load_is_one_line_naming_it(ccops_env, capsys):
    path = Settings(home=ccops_env / "home").default_deployment_file
    path.parent.mkdir(parents=True)
    path.write_text('[paths]\nhome = "/elsewhere"\n')
    assert cli.main(["config", "show"]) == 64
    assert capsys.readouterr().err == f"ccops: {path}: paths.home: cannot be set in the home's own deployment file\n"
    path.write_text('[service]\nbackend = 3\n')
    assert cli.main(["config", "show"]) == 64
    assert capsys.readouterr().err == f"ccops: {path}: service.backend: expected a string, got 3\n"


def test_clean_up_steps_on_a_deployment_without_their_dirs_say_not_configured(deployment):
    """Clean-up steps record their own findings (they are not @check): a missing dir is their
    "not configured" finding, never a failed monthly run, and never the demo's dir."""
    from ccops.actions import cleanup
    from ccops.actions.emergency import disk

    ctx = RunContext(runbook="monthly", settings=load_settings(), as_of=AS_OF)
    for step, key in ((cleanup.old_backups, "paths.backup_dir"), (cleanup.old_logs, "paths.log_dir"),
                      (disk.free_old_backups, "paths.backup_dir"), (disk.compress_rotated_logs, "paths.log_dir")):
        [finding] = step(ctx)
        assert finding.not_configured and finding.setting == key, finding
