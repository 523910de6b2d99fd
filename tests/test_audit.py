"""Quarterly security audit: file modes, database roles, API key age, bandit, pip-audit's report format."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import create_engine, text

from ccops.checks import audit
from ccops.core.context import RunContext
from ccops.core.db import normalize_url
from ccops.core.settings import load_settings

AS_OF = datetime(2026, 11, 28, 9, 0)


def make_ctx(ccops_env, toml: str = "") -> RunContext:
    (ccops_env / "ccops.toml").write_text(toml)
    return RunContext(runbook="quarterly", settings=load_settings(), as_of=AS_OF)


@pytest.fixture
def app_env(ccops_env, monkeypatch):
    env_file = ccops_env / "app.env"
    env_file.write_text(
        "DATABASE_URL=postgresql://app_user:pw@127.0.0.1/content_creator\n"
        "ANTHROPIC_API_KEY=sk-ant-1  # rotated 2026-10-01\n"
        "X_BEARER_TOKEN=AAAA  # rotated 2026-05-01\n"
        "STRIPE_SECRET_KEY=sk_live_2\n"
        "ENABLE_PUBLISHING=true\n"
    )
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(ccops_env / "backups"))
    return env_file


def test_env_readable_by_others_is_critical(app_env, ccops_env):
    app_env.chmod(0o644)
    backups = ccops_env / "backups"
    backups.mkdir(mode=0o700)
    (backups / "contentcreator_20261127_020000.dump").write_bytes(b"x")
    (backups / "contentcreator_20261127_020000.dump").chmod(0o600)
    found = {f.check: f for f in audit.file_permissions(make_ctx(ccops_env))}
    assert found["audit.permissions:env"].status.value == "CRITICAL"
    assert "readable by every user (mode 644)" in found["audit.permissions:env"].summary
    assert found["audit.permissions:backups"].status.value == "OK"
    app_env.chmod(0o600)
    (backups / "contentcreator_20261127_020000.dump").chmod(0o644)
    found = {f.check: f for f in audit.file_permissions(make_ctx(ccops_env))}
    assert found["audit.permissions:env"].status.value == "OK"
    assert found["audit.permissions:backups"].status.value == "CRITICAL"


def test_api_key_age_from_rotation_comments_and_settings(app_env, ccops_env):
    (finding,) = audit.api_key_age(make_ctx(ccops_env))
    table = finding.data.set_index("key")
    assert table.loc["X_BEARER_TOKEN", "age_days"] == 211 and table.loc["X_BEARER_TOKEN", "overdue"]
    assert table.loc["ANTHROPIC_API_KEY", "age_days"] == 58
    assert finding.status.value == "WARNING"
    assert "no recorded rotation: STRIPE_SECRET_KEY" in finding.summary
    (finding,) = audit.api_key_age(make_ctx(ccops_env, '[security]\nkey_rotation = {STRIPE_SECRET_KEY = "2026-11-01", X_BEARER_TOKEN = "2026-11-20"}\n'))
    assert finding.status.value == "OK" and finding.value == 0


def test_roles_lists_a_superuser_and_warns_when_the_app_is_one(make_database, app_env, ccops_env, monkeypatch):
    url = make_database("ccops")
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP ROLE IF EXISTS audit_super; CREATE ROLE audit_super LOGIN SUPERUSER PASSWORD 'x'"))
        conn.execute(text("DROP ROLE IF EXISTS app_user; CREATE ROLE app_user LOGIN PASSWORD 'y' VALID UNTIL '2027-01-01'"))
    engine.dispose()
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    found = {f.check: f for f in audit.database_roles(make_ctx(ccops_env))}
    roles = found["audit.roles"].data.set_index("role")
    assert bool(roles.loc["audit_super", "superuser"]) and bool(roles.loc["audit_super", "can_login"])
    assert roles.loc["postgres", "owns_tables"] == 16
    assert "audit_super" in found["audit.roles"].summary
    assert found["audit.app_role"].status.value == "OK"
    app_env.write_text(app_env.read_text().replace("app_user", "audit_super"))
    found = {f.check: f for f in audit.database_roles(make_ctx(ccops_env))}
    assert found["audit.app_role"].status.value == "WARNING"


@pytest.mark.skipif(audit._command("bandit") is None, reason="bandit is not installed (a test extra)")
def test_bandit_finds_a_planted_issue(ccops_env):
    src = ccops_env / "src"
    src.mkdir()
    (src / "agent.py").write_text("import subprocess\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    (finding,) = audit.bandit_scan(make_ctx(ccops_env, f'[security]\napp_source_dir = "{src}"\n'))
    assert finding.value >= 1 and "B602" in set(finding.data["test"])
    assert finding.status.value == "WARNING"


def test_missing_scanner_is_unknown_with_install_hint(ccops_env):
    (ccops_env / "src").mkdir()
    ctx = make_ctx(ccops_env, f'[security]\napp_source_dir = "{ccops_env / "src"}"\nbandit_command = "no-such-bandit"\n'
                              'pip_audit_command = "no-such-pip-audit"\nrequirements_file = "r.txt"\n')
    assert "pip install bandit" in audit.bandit_scan(ctx)[0].summary
    assert "pip install pip-audit" in audit.known_vulnerabilities(ctx)[0].summary


def test_pip_audit_report_format_is_parsed():
    sample = {"dependencies": [
        {"name": "flask", "version": "2.2.0", "vulns": [{"id": "PYSEC-2023-62", "fix_versions": ["2.2.5", "2.3.2"],
                                                         "aliases": ["CVE-2023-30861"], "description": "cookie"}]},
        {"name": "requests", "version": "2.31.0", "vulns": []},
    ], "fixes": []}
    table = audit.parse_pip_audit(json.dumps(sample))
    assert table.to_dict("records") == [{"package": "flask", "version": "2.2.0", "id": "PYSEC-2023-62",
                                         "fix_versions": "2.2.5, 2.3.2", "aliases": "CVE-2023-30861"}]


DATA = __import__("pathlib").Path(__file__).parent / "data"


def test_pip_audit_that_could_check_nothing_says_the_advisory_database_was_unreachable():
    """Real pip-audit 2.10.1 output on this offline machine: every dependency skipped, exit 0 and
    "No known vulnerabilities found" on stderr. It must not read as a clean audit."""
    stdout = (DATA / "pip_audit_pypi_unreachable.json").read_text()
    finding = audit.pip_audit_finding(stdout, "No known vulnerabilities found\n", "requirements.txt")
    assert finding.status.value == "UNKNOWN"
    assert finding.summary.startswith("advisory database unreachable: none of the 11 dependencies of requirements.txt")
    assert "Dependency not found on PyPI and could not be audited: requests (2.19.0)" in finding.summary


def test_pip_audit_osv_connection_error_says_the_advisory_database_was_unreachable():
    """Real pip-audit 2.10.1 `-s osv` output without DNS: a traceback ending in requests' ConnectionError."""
    stderr = (DATA / "pip_audit_osv_unreachable.stderr").read_text()
    finding = audit.pip_audit_finding("", stderr, "requirements.txt")
    assert finding.status.value == "UNKNOWN"
    assert finding.summary.startswith("advisory database unreachable: requests.exceptions.ConnectionError: "
                                      "HTTPSConnectionPool(host='api.osv.dev'")


def test_pip_audit_partly_checked_is_not_ok():
    stdout = json.dumps({"dependencies": [
        {"name": "requests", "version": "2.31.0", "vulns": []},
        {"name": "privatepkg", "skip_reason": "Dependency not found on PyPI and could not be audited: privatepkg (1.0)"},
    ], "fixes": []})
    finding = audit.pip_audit_finding(stdout, "", "requirements.txt")
    assert finding.status.value == "UNKNOWN"
    assert finding.summary == ("pip-audit: no known vulnerabilities in the 1 dependencies checked of requirements.txt; "
                               "1 dependencies could not be checked")


def test_pip_audit_is_installed_with_ccops():
    assert audit._command("pip-audit") is not None, "pip-audit is a dependency of ccops (pyproject.toml)"


def test_steps_without_their_setting_are_the_not_configured_kind(ccops_env, monkeypatch):
    env_file = ccops_env / "app.env"
    env_file.write_text("TWITTER_BEARER_TOKEN=AAAA\nSTRIPE_API_KEY=sk_live_x\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    ctx = make_ctx(ccops_env)
    found = [*audit.bandit_scan(ctx), *audit.known_vulnerabilities(ctx), *audit.api_key_age(ctx)]
    assert [(f.check, f.status.value, f.kind, f.setting) for f in found] == [
        ("audit.bandit", "UNKNOWN", "not_configured", "security.app_source_dir"),
        ("audit.pip_audit", "UNKNOWN", "not_configured", "security.requirements_file"),
        ("audit.api_keys", "UNKNOWN", "not_configured", "security.key_rotation"),
    ]
    assert "not configured (3): audit.bandit, audit.pip_audit, audit.api_keys - set security.app_source_dir, " \
           "security.requirements_file, security.key_rotation" in str(ctx.summary())
