"""Settings: the file, the environment winning, one-line errors with exit 64, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccops import cli
from ccops.core.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parent.parent


def test_example_file_loads_with_the_guides_thresholds(ccops_env):
    settings = load_settings(REPO / "ccops.toml.example")
    t = settings.thresholds
    assert (t.disk_free_warning_pct, t.disk_free_critical_pct) == (20, 10)
    assert (t.memory_used_warning_pct, t.memory_used_critical_pct) == (80, 90)
    assert (t.errors_per_hour_warning, t.errors_per_hour_critical, t.no_content_warning_hours) == (5, 10, 6)


def test_environment_wins_over_file(ccops_env, monkeypatch):
    (ccops_env / "ccops.toml").write_text('[paths]\nlog_dir = "from-file"\n[service]\nbackend = "systemd"\n')
    assert load_settings().effective_log_dir == ccops_env / "from-file"
    monkeypatch.setenv("CCOPS_LOG_DIR", "/srv/logs")
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    settings = load_settings()
    assert settings.effective_log_dir == Path("/srv/logs")
    assert settings.effective_backend == "compose"


def test_database_url_falls_back_to_the_apps(ccops_env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw1234@db/content_creator")
    assert load_settings().resolved_database_url() == "postgresql://app:pw1234@db/content_creator"
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://ops:pw5678@db/content_creator")
    assert load_settings().resolved_database_url().startswith("postgresql://ops:")


def test_database_url_from_the_apps_env_file(ccops_env, monkeypatch):
    env_file = ccops_env / "app.env"
    env_file.write_text("# app settings\nDATABASE_URL='postgresql://app:fromfile99@db/cc'\nENABLE_MARKET_SCANNER=true\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    settings = load_settings()
    assert settings.resolved_database_url() == "postgresql://app:fromfile99@db/cc"
    assert "fromfile99" in settings.secret_values()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[thresholds]\ndisk_free_warning_pct = "lots"\n', "thresholds.disk_free_warning_pct: expected a number, got 'lots'"),
        ("[thresholds\n", "not valid TOML"),
        ('[service]\nbackend = "kubernetes"\n', "service.backend: expected one of compose, systemd, process, local, none"),
        ("[thresholds]\nmemroy_used_warning_pct = 70\n", "thresholds.memroy_used_warning_pct: unknown setting"),
        ("[thresholds]\ndisk_free_critical_pct = 30\n", "thresholds.disk_free_critical_pct: must not exceed"),
    ],
)
def test_bad_file_is_one_line_naming_key_and_file_exit_64(ccops_env, capsys, content, message):
    path = ccops_env / "bad.toml"
    path.write_text(content)
    code = cli.main(["--config", str(path), "config", "show"])
    err = capsys.readouterr().err.strip()
    assert code == 64
    assert len(err.splitlines()) == 1
    assert str(path) in err and message in err


def test_bad_environment_value_names_the_variable(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_THRESHOLDS_ERRORS_PER_HOUR_WARNING", "many")
    with pytest.raises(ConfigError, match="CCOPS_THRESHOLDS_ERRORS_PER_HOUR_WARNING"):
        load_settings()


def test_config_show_masks_secrets(ccops_env, monkeypatch, capsys):
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://app:Sup3rSecret@db:5432/content_creator")
    assert cli.main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    assert "Sup3rSecret" not in out
    assert json.loads(out)["database_url"] == "postgresql://app:***@db:5432/content_creator"
