"""Settings and runbook parameters that would destroy what they protect are refused before anything runs.

Issue 12: `keep_verified = 0` or `retention_days = -1` let retention delete every verified backup,
`monthly -p log_keep_days -1` deleted every app log including the live one. One rule, read from the
names (config.least_value), covers every setting and every runbook parameter; a refusal is one line
naming the file (or variable, or runbook) and the key, exit 64. Bad bytes: a non-UTF-8 ccops.toml is
one line; a non-UTF-8 byte in the app's .env never stops a run, and the secret around it stays masked.
"""

from __future__ import annotations

import grp
import json
import os
from dataclasses import fields
from pathlib import Path

import nbformat
import pytest

from ccops import archive, cli
from ccops.alerts import config as alerts_config
from ccops.checks import security
from ccops.core import settings as config
from ccops.core.errors import UsageError
from ccops.core.settings import ConfigError, least_value, load_settings
from ccops.runbook import runner
from ccops.runbook.parameters import convert, declared_parameters, parameter_type
from tests.conftest import stored_runbooks

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = stored_runbooks()


def _config_show(path: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli.main(["--config", str(path), "config", "show"])
    return code, capsys.readouterr().err


# ---- settings: retention floors, one line naming file and key ------------------------------

@pytest.mark.parametrize(("content", "key", "problem"), [
    ("[backup]\nkeep_verified = 0\n", "backup.keep_verified", "expected at least 1"),
    ("[backup]\nkeep_verified = -3\n", "backup.keep_verified", "expected at least 1"),
    ("[backup]\nretention_days = -1\n", "backup.retention_days", "expected 0 or more, got -1"),
    ("[backup]\nretention_days = 2.5\n", "backup.retention_days", "expected a whole number"),
    ("[backup]\nrestore_jobs = -2\n", "backup.restore_jobs", "expected 0 or more"),
    ("[archive]\nkeep_days = -1\n", "archive.keep_days", "expected 1 or more, got -1"),
    ("[archive]\nkeep_days = 0\n", "archive.keep_days", "expected 1 or more, got 0"),
    ("[security]\nkey_max_age_days = -30\n", "security.key_max_age_days", "expected 0 or more"),
    ("[security]\ntls_warning_days = -1\n", "security.tls_warning_days", "expected 0 or more"),
    ("[alerts]\ndeadman_grace_minutes = -5\n", "alerts.deadman_grace_minutes", "expected 0 or more"),
    ("[alerts.engagement]\nbaseline_days = -1\n", "alerts.engagement.baseline_days", "expected 0 or more"),
    ("[database]\nlock_timeout_ms = -1\n", "database.lock_timeout_ms", "expected 0 or more"),
    ("[run]\ntimeout_seconds = 0\n", "run.timeout_seconds", "expected 1 or more"),
    ("[thresholds]\nerrors_per_hour_warning = nan\n", "thresholds.errors_per_hour_warning", "finite"),
])
def test_a_setting_below_its_floor_is_one_line_naming_file_and_key(ccops_env, capsys, content, key, problem):
    path = ccops_env / "ccops.toml"
    path.write_text(content)
    code, err = _config_show(path, capsys)
    assert code == 64
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"ccops: {path}: {key}: ") and problem in err


def test_backup_prune_with_keep_verified_zero_deletes_nothing(ccops_env, capsys):
    """The issue's reproduction: with keep_verified = 0, `backup prune --yes` deleted every verified backup."""
    backups = ccops_env / "backups"
    backups.mkdir()
    planted = backups / "content_creator_20200101T000000Z.dump"
    planted.write_bytes(b"PGDMP old backup")
    path = ccops_env / "ccops.toml"
    path.write_text(f'[paths]\nbackup_dir = "{backups}"\n[backup]\nkeep_verified = 0\nretention_days = -1\n')
    code = cli.main(["--config", str(path), "backup", "prune", "--yes"])
    err = capsys.readouterr().err
    assert code == 64 and ("backup.keep_verified" in err or "backup.retention_days" in err)
    assert planted.exists()


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("CCOPS_BACKUP_KEEP_VERIFIED", "0", "expected at least 1"),
    ("CCOPS_BACKUP_RETENTION_DAYS", "-1", "expected 0 or more, got -1"),
    ("CCOPS_RUN_TIMEOUT_SECONDS", "-3", "expected 1 or more"),
    ("CCOPS_APIS_TIMEOUT_SECONDS", "inf", "finite"),
])
def test_environment_overrides_are_held_to_the_same_floor_and_named(ccops_env, monkeypatch, capsys, name, value,
                                                                      problem):
    (ccops_env / "ccops.toml").write_text("[backup]\nkeep_verified = 7\nretention_days = 30\n")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(f"environment {name}: ") and problem in str(caught.value)
    assert cli.main(["config", "show"]) == 64
    assert capsys.readouterr().err.count("\n") == 1


def test_a_good_environment_value_wins_over_a_bad_file_value(ccops_env, monkeypatch):
    (ccops_env / "ccops.toml").write_text("[backup]\nkeep_verified = 0\n")
    monkeypatch.setenv("CCOPS_BACKUP_KEEP_VERIFIED", "3")
    assert load_settings().backup.keep_verified == 3


def test_a_bad_file_value_is_named_by_the_file_even_when_another_key_comes_from_the_environment(ccops_env,
                                                                                               monkeypatch):
    path = ccops_env / "ccops.toml"
    path.write_text("[backup]\nretention_days = -1\n")
    monkeypatch.setenv("CCOPS_BACKUP_KEEP_VERIFIED", "3")
    with pytest.raises(ConfigError, match=f"^{path}: backup.retention_days: "):
        load_settings()


def test_zero_days_is_allowed_where_it_means_today(ccops_env):
    (ccops_env / "ccops.toml").write_text("[backup]\nretention_days = 0\nkeep_verified = 1\n")
    settings = load_settings()
    assert (settings.backup.retention_days, settings.backup.keep_verified) == (0, 1)


def _numbers_of(obj) -> list[str]:
    return [f.name for f in fields(obj) if f.type in ("int", "float", int, float)]


def test_every_day_count_retention_and_keep_setting_has_a_floor():
    """A guard: a new `*_days` / `retention_*` / `keep_*` setting is covered by the rule the day it is added."""
    names = [f"{section}.{name}" for section, cls in config.SECTIONS.items() for name in _numbers_of(cls())]
    names += [f"security.{key}" for key, value in security.DEFAULTS.items() if isinstance(value, int)]
    names += [f"alerts.{key}" for key in alerts_config.TOP_KEYS]
    names += ["archive.keep_days", "backup.keep_verified"]
    risky = [n for n in names if any(w in n.rsplit(".", 1)[-1] for w in ("days", "keep", "retention", "hours",
                                                                          "minutes", "seconds", "limit"))]
    assert "backup.retention_days" in risky and "security.key_max_age_days" in risky
    assert [n for n in risky if least_value(n) is None] == []
    assert least_value("backup.keep_verified") == 1 and least_value("keep_last") == 1
    assert least_value("log_keep_days") == 0 and least_value("archive.keep_days") == 1
    assert least_value("disk_free_warning_pct") is None  # bounded elsewhere (0-100)


# ---- runbook parameters ----------------------------------------------------------------------

def _nothing_started(root: Path) -> None:
    assert not (root / "outputs").exists()
    assert not (root / "home" / "locks").exists()
    assert not (root / "home" / "runs").exists()


@pytest.mark.parametrize(("runbook", "name", "value"), [
    ("monthly", "log_keep_days", "-1"),
    ("monthly", "backup_keep_days", "-1"),
    ("monthly", "report_keep_days", "-30"),
    ("daily", "error_limit", "-5"),
    ("emergency/system_down", "log_lines", "-1"),
    ("emergency/system_down", "wait_seconds", "-60"),
    ("emergency/api_rate_limit", "hours", "-6"),
    ("recovery", "jobs", "-1"),
])
def test_a_negative_count_or_day_parameter_is_refused_before_any_kernel(ccops_env, capsys, runbook, name, value):
    code = cli.main(["run", runbook, "-p", name, value])
    err = capsys.readouterr().err
    assert code == 64
    assert err == f"ccops: runbook {runbook}: parameter {name!r}: expected 0 or more, got {int(value)}\n"
    _nothing_started(ccops_env)


def test_zero_is_a_valid_day_count_and_defaults_pass(ccops_env):
    path = REPO / "runbooks" / "monthly.ipynb"
    values, _ = runner.check_parameters("monthly", path, [["log_keep_days", "0"], ["backup_keep_days", "60"]])
    assert values == {"log_keep_days": 0, "backup_keep_days": 60}


def test_a_keep_count_parameter_below_one_is_refused():
    with pytest.raises(UsageError, match=r"runbook r: parameter 'keep_verified': expected at least 1"):
        convert("r", "keep_verified", "0", int)
    with pytest.raises(UsageError, match=r"runbook r: parameter 'ratio_days': expected a finite number"):
        convert("r", "ratio_days", "nan", float)
    assert convert("r", "keep_verified", "1", int) == 1


def test_wrong_type_names_the_runbook_too():
    with pytest.raises(UsageError, match=r"^runbook daily: parameter 'error_limit': expected int, got 'x'$"):
        convert("daily", "error_limit", "x", int)


def test_every_numeric_runbook_parameter_is_covered_by_the_rule():
    """A guard: a new numeric parameter must be a count or duration the rule knows (or be given a rule)."""
    numeric = {}
    for path in RUNBOOKS:
        for name, spec in declared_parameters(path).items():
            if parameter_type(spec) in (int, float):
                numeric[f"{path.stem}.{name}"] = name
    assert {"monthly.log_keep_days", "monthly.backup_keep_days", "daily.error_limit", "recovery.jobs"} <= set(numeric)
    assert {key: name for key, name in numeric.items() if least_value(name) is None} == {}
    for path in RUNBOOKS:  # and every default is within its bounds
        for name, spec in declared_parameters(path).items():
            if parameter_type(spec) in (int, float):
                assert convert(path.stem, name, spec["default"], parameter_type(spec)) >= 0


# ---- bad bytes -----------------------------------------------------------------------------

def test_non_utf8_settings_file_is_one_line_exit_64(ccops_env, capsys, monkeypatch):
    path = ccops_env / "ccops.toml"
    path.write_bytes(b"[backup]\n# r\xe9tention en jours\nretention_days = 30\n")
    code, err = _config_show(path, capsys)
    assert code == 64 and "Traceback" not in err
    assert err == f"ccops: {path}: not UTF-8 text (byte 0xe9 on line 2); save the file as UTF-8\n"
    monkeypatch.setenv("CCOPS_CONFIG", str(path))  # found through the environment: the same line
    assert cli.main(["health"]) == 64
    assert capsys.readouterr().err == err


def test_non_utf8_app_env_file_is_read_tolerantly(ccops_env, monkeypatch):
    env_file = ccops_env / "app.env"
    env_file.write_bytes(b"LOG_LEVEL=INFO\nCONTENT_PERSONALITY=caf\xe9\nTWITTER_API_SECRET=tw\xffsecret-0123456789\n"
                         b"DATABASE_URL=postgresql://app:pw\xfe12345@db/cc\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    pairs = config.read_env_file(env_file)
    assert pairs["LOG_LEVEL"] == "INFO" and pairs["CONTENT_PERSONALITY"] == "caf\ufffd"
    settings = load_settings()
    values = settings.secret_values()
    assert "tw\ufffdsecret-0123456789" in values
    assert settings.resolved_database_url() == "postgresql://app:pw\ufffd12345@db/cc"


BAD_SECRET = b"sk-ant-api03-\xffbad-byte-secret-0123456789"


def test_a_run_with_a_non_utf8_app_env_is_archived_and_the_secret_stays_masked(ccops_env, monkeypatch, tmp_path):
    """Issue 12 item 6: one bad byte in the app's .env crashed the scrubber after the notebook ran; the record was lost."""
    env_file = ccops_env / "app.env"
    env_file.write_bytes(b"LOG_LEVEL=INFO\nANTHROPIC_API_KEY=" + BAD_SECRET + b"\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://app:x@127.0.0.1:1/none")
    books = tmp_path / "books"
    books.mkdir()
    notebook = nbformat.v4.new_notebook(metadata=nbformat.read(REPO / "tests" / "notebooks" / "ok.ipynb", 4).metadata)
    notebook.cells = [
        nbformat.v4.new_code_cell('as_of = ""  # when', metadata={"tags": ["parameters"]}),
        # what an app or a log prints: the .env's bytes as text, the bad byte replaced
        nbformat.v4.new_code_cell("import os\nprint(open(os.environ['CCOPS_APP_ENV_FILE'], 'rb').read()"
                                  ".decode('utf-8', 'replace'))"),
    ]
    nbformat.write(notebook, books / "leaky.ipynb")
    result = runner.run_runbook(load_settings(), "leaky", [], timeout=120, runbooks_dir=books)
    assert result.record["outcome"] in ("ok", "unknown"), result.record.get("error")
    files = [p for p in (ccops_env / "outputs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" and p.name != archive.INDEX_JSON for p in files)
    readable = BAD_SECRET.decode("utf-8", "replace")
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert readable not in text and "bad-byte-secret-0123456789" not in text, path
        assert json.dumps(readable)[1:-1] not in text, path
    executed = next(p for p in files if p.suffix == ".ipynb")
    assert "LOG_LEVEL=INFO" in executed.read_text()  # the cell did print the file


# ---- archive.group ---------------------------------------------------------------------------

def _a_group() -> grp.struct_group:
    return grp.getgrgid(os.getegid())


def test_archive_group_defaults_to_none(ccops_env):
    assert load_settings().archive_group is None


def test_archive_group_from_the_file_and_the_environment(ccops_env, monkeypatch):
    group = _a_group()
    path = ccops_env / "ccops.toml"
    path.write_text(f'[archive]\nkeep_days = 30\ngroup = "{group.gr_name}"\n')
    settings = load_settings()
    assert settings.archive_group == group.gr_name
    assert archive.keep_days_setting(settings) == 30  # the archive's own keys still check out
    path.write_text(f'[archive]\ngroup = "{group.gr_gid}"\n')
    assert load_settings().archive_group == group.gr_name  # a gid is taken and named
    path.unlink()
    monkeypatch.setenv("CCOPS_ARCHIVE_GROUP", group.gr_name)
    assert load_settings().archive_group == group.gr_name


@pytest.mark.parametrize(("value", "problem"), [
    ('"no-such-group-ccops"', "no group 'no-such-group-ccops' on this host"),
    ("42.5", "expected the name of a group, got 42.5"),
    ('""', "expected the name of a group"),
])
def test_a_bad_archive_group_is_one_line_naming_the_key(ccops_env, capsys, value, problem):
    path = ccops_env / "ccops.toml"
    path.write_text(f"[archive]\ngroup = {value}\n")
    code, err = _config_show(path, capsys)
    assert code == 64 and err.count("\n") == 1
    assert err.startswith(f"ccops: {path}: archive.group: ") and problem in err


def test_a_missing_archive_group_from_the_environment_names_the_variable(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_ARCHIVE_GROUP", "no-such-group-ccops")
    with pytest.raises(ConfigError, match="^environment CCOPS_ARCHIVE_GROUP: no group 'no-such-group-ccops'"):
        load_settings()


def test_the_example_file_documents_archive_group():
    text = (REPO / "ccops.toml.example").read_text()
    assert "[archive]" in text and "group" in text and "CCOPS_ARCHIVE_GROUP" in text
