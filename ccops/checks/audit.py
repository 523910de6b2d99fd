"""The quarterly security audit (and the monthly dependency check).

The guide lists commands and reminders: `bandit -r src/ -ll`, `pip-audit`,
"check API key rotation schedule", "review user permissions". ccops turns each
into a finding an auditor can read: the scanners' results counted by severity
(a scanner that is not installed is UNKNOWN with the install command, never a
silent pass), file modes of the app's secrets and backups (readable by others:
CRITICAL), the age of each API key where its rotation is recorded, and the
database's roles: who can log in, who is superuser, who owns the app's tables,
whose password never expires. The app connecting as a superuser is a WARNING:
one SQL injection away from the whole cluster.

Settings, module-owned `[security]` keys used here (see checks/security.py):
app_source_dir, bandit_command, pip_audit_command, key_rotation (table of
VARIABLE = "YYYY-MM-DD"), key_max_age_days.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status, not_configured
from ccops.core.settings import Settings, is_secret_name, read_env_file

ROTATED_COMMENT = re.compile(r"#.*rotated\s+(\d{4}-\d{2}-\d{2})", re.IGNORECASE)


def audit_settings(settings: Settings) -> dict[str, Any]:
    """The [security] table (one validator for the weekly checks and this audit)."""
    from ccops.checks.security import security_settings

    return security_settings(settings)


# ---- scanners ------------------------------------------------------------------------

def _command(spec: str) -> list[str] | None:
    """The scanner's command line, found on PATH or beside ccops' own interpreter (its venv)."""
    parts = shlex.split(spec)
    if not parts:
        return None
    found = shutil.which(parts[0]) or shutil.which(parts[0], path=str(Path(sys.executable).parent))
    return [found, *parts[1:]] if found else None


def parse_bandit(output: str) -> pd.DataFrame:
    """bandit's JSON report as one row per issue."""
    data = json.loads(output or "{}")
    rows = [{
        "severity": r.get("issue_severity"), "confidence": r.get("issue_confidence"), "test": r.get("test_id"),
        "file": r.get("filename"), "line": r.get("line_number"), "issue": r.get("issue_text"),
    } for r in data.get("results", [])]
    return pd.DataFrame(rows, columns=["severity", "confidence", "test", "file", "line", "issue"])


@check("audit.bandit")
def bandit_scan(ctx: RunContext) -> Finding:
    """`bandit -r <app source> -ll`: medium and high severity issues in the app's code."""
    conf = audit_settings(ctx.settings)
    source = conf["app_source_dir"]
    if not source:
        return not_configured("audit.bandit", "security.app_source_dir", "the app's src/ folder, for bandit")
    if not Path(source).is_dir():
        return Finding("audit.bandit", Status.UNKNOWN, f"app source dir {source} does not exist")
    command = _command(conf["bandit_command"])
    if command is None:
        return Finding("audit.bandit", Status.UNKNOWN, f"{conf['bandit_command']} not found: pip install bandit")
    proc = subprocess.run([*command, "-r", source, "-ll", "-f", "json", "-q"], capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 1):  # 1 means issues were found
        return Finding("audit.bandit", Status.UNKNOWN, f"bandit failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    table = parse_bandit(proc.stdout)
    if table.empty:
        return Finding("audit.bandit", Status.OK, f"bandit: no medium or high severity issues in {source}", 0)
    high = int((table["severity"] == "HIGH").sum())
    status = Status.WARNING if high else Status.INFO
    return Finding("audit.bandit", status, f"bandit: {len(table)} issues in {source} ({high} high severity)",
                   len(table), data=table)


UNREACHABLE = re.compile(r"ConnectionError|NameResolutionError|Max retries exceeded|Failed to resolve|"
                         r"ProxyError|timed out|Network is unreachable|Connection refused|SSLError", re.IGNORECASE)


def _dependencies(output: str) -> list[dict[str, Any]]:
    data = json.loads(output or "{}")
    return data.get("dependencies", []) if isinstance(data, dict) else data if isinstance(data, list) else []


def pip_audit_skipped(output: str) -> list[tuple[str, str]]:
    """(package, reason) for each dependency pip-audit could not audit (`skip_reason` in its JSON).

    pip-audit prints "No known vulnerabilities found" and exits 0 when its
    advisory source answered for no package at all: skipped packages must be
    counted, or an audit that checked nothing reads as clean.
    """
    return [(str(d.get("name")), str(d["skip_reason"])) for d in _dependencies(output) if d.get("skip_reason")]


def parse_pip_audit(output: str) -> pd.DataFrame:
    """pip-audit's JSON (`--format json`) as one row per known vulnerability."""
    dependencies = _dependencies(output)
    rows = []
    for dep in dependencies:
        for vuln in dep.get("vulns", []):
            rows.append({"package": dep.get("name"), "version": dep.get("version"), "id": vuln.get("id"),
                         "fix_versions": ", ".join(vuln.get("fix_versions", [])),
                         "aliases": ", ".join(vuln.get("aliases", []))})
    return pd.DataFrame(rows, columns=["package", "version", "id", "fix_versions", "aliases"])


@check("audit.pip_audit")
def known_vulnerabilities(ctx: RunContext) -> Finding:
    """`pip-audit`: known vulnerabilities in the app's requirements (or the app's environment)."""
    from ccops.checks.security import security_settings

    conf = audit_settings(ctx.settings)
    sec = security_settings(ctx.settings)
    command = _command(conf["pip_audit_command"])
    if command is None:
        return Finding("audit.pip_audit", Status.UNKNOWN, f"{conf['pip_audit_command']} not found: pip install pip-audit")
    if sec["requirements_file"]:
        args = [*command, "-r", sec["requirements_file"], "--format", "json", "--progress-spinner", "off"]
        source = sec["requirements_file"]
    elif sec["app_python"]:
        args = [sec["app_python"], "-m", "pip_audit", "--format", "json", "--progress-spinner", "off"]
        source = sec["app_python"]
    else:
        return not_configured("audit.pip_audit", "security.requirements_file",
                              "the app's requirements.txt; or security.app_python, its interpreter")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900)
    return pip_audit_finding(proc.stdout, proc.stderr, source)


def pip_audit_finding(stdout: str, stderr: str, source: str) -> Finding:
    """One finding from pip-audit's output: vulnerabilities, or exactly why nothing could be checked."""
    try:
        if not stdout.strip():  # it crashed before writing its report: an empty output is not "no vulnerabilities"
            raise ValueError("no report")
        table = parse_pip_audit(stdout)
        skipped = pip_audit_skipped(stdout)
        audited = len(_dependencies(stdout)) - len(skipped)
    except ValueError:
        reason = (stderr.strip().splitlines() or ["no output"])[-1]
        if UNREACHABLE.search(stderr):
            return Finding("audit.pip_audit", Status.UNKNOWN, f"advisory database unreachable: {reason[:300]}")
        return Finding("audit.pip_audit", Status.UNKNOWN, f"pip-audit failed on {source}: {reason[:300]}")
    if skipped and audited == 0:
        name, why = skipped[0]
        return Finding("audit.pip_audit", Status.UNKNOWN,
                       f"advisory database unreachable: none of the {len(skipped)} dependencies of {source} could "
                       f"be checked (pip-audit: {why})", len(skipped),
                       data=pd.DataFrame(skipped, columns=["package", "skip_reason"]))
    note = f"; {len(skipped)} dependencies could not be checked" if skipped else ""
    if table.empty:
        status = Status.UNKNOWN if skipped else Status.OK
        return Finding("audit.pip_audit", status,
                       f"pip-audit: no known vulnerabilities in the {audited} dependencies checked of {source}{note}", 0)
    packages = table["package"].nunique()
    return Finding("audit.pip_audit", Status.CRITICAL if (table["fix_versions"] != "").any() else Status.WARNING,
                   f"pip-audit: {len(table)} known vulnerabilities in {packages} packages of {source}{note}",
                   len(table), data=table)


# ---- file permissions ----------------------------------------------------------------

def mode_problem(path: Path, secret: bool) -> tuple[Status, str]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & stat.S_IROTH:
        return Status.CRITICAL, f"readable by every user (mode {mode:o})"
    if mode & stat.S_IRGRP and secret:
        return Status.WARNING, f"readable by its group (mode {mode:o})"
    if mode & stat.S_IWOTH:
        return Status.CRITICAL, f"writable by every user (mode {mode:o})"
    return Status.OK, f"mode {mode:o}"


@check("audit.permissions")
def file_permissions(ctx: RunContext) -> list[Finding]:
    """The app's .env and the backups: secrets and all data, readable by others is CRITICAL."""
    found = []
    env_file = ctx.settings.effective_app_env_file
    if env_file.exists():
        status, detail = mode_problem(env_file, secret=True)
        found.append(Finding("audit.permissions:env", status, f"{env_file}: {detail}", oct(stat.S_IMODE(env_file.stat().st_mode))))
    else:
        found.append(Finding("audit.permissions:env", Status.UNKNOWN, f"{env_file} does not exist"))
    backup_dir = ctx.settings.effective_backup_dir
    if backup_dir.exists():
        rows = []
        for path in [backup_dir, *sorted(p for p in backup_dir.iterdir() if p.is_file())]:
            status, detail = mode_problem(path, secret=True)
            rows.append({"path": str(path), "status": status.value, "detail": detail})
        table = pd.DataFrame(rows)
        bad = table[table["status"] != "OK"]
        worst = Status.CRITICAL if (bad["status"] == "CRITICAL").any() else Status.WARNING if not bad.empty else Status.OK
        summary = (f"{backup_dir}: {len(bad)} of {len(table)} entries readable beyond their owner"
                   if not bad.empty else f"{backup_dir} and its {len(table) - 1} files are private")
        found.append(Finding("audit.permissions:backups", worst, summary, len(bad), data=table))
    else:
        found.append(Finding("audit.permissions:backups", Status.INFO, f"{backup_dir} does not exist (no backups yet)"))
    return found


# ---- API keys ---------------------------------------------------------------------------

def key_rotation_dates(settings: Settings) -> dict[str, str]:
    """Rotation dates from [security] key_rotation, else `# rotated YYYY-MM-DD` comments in the app's .env."""
    dates: dict[str, str] = {}
    env_file = settings.effective_app_env_file
    try:
        for line in env_file.read_text(encoding="utf-8").splitlines():
            match = ROTATED_COMMENT.search(line)
            if match and "=" in line.split("#", 1)[0]:
                dates[line.split("=", 1)[0].strip().removeprefix("export ").strip()] = match.group(1)
    except OSError:
        pass
    dates.update({str(k): str(v) for k, v in audit_settings(settings)["key_rotation"].items()})
    return dates


@check("audit.api_keys")
def api_key_age(ctx: RunContext) -> Finding:
    """Age of each API key whose rotation date is recorded; keys without a date are listed too."""
    conf = audit_settings(ctx.settings)
    secrets = [k for k in read_env_file(ctx.settings.effective_app_env_file) if is_secret_name(k) and k != "DATABASE_URL"]
    dates = key_rotation_dates(ctx.settings)
    rows = []
    for name in sorted(set(secrets) | set(dates)):
        when = dates.get(name)
        age = (ctx.as_of - datetime.strptime(when, "%Y-%m-%d")).days if when else None
        rows.append({"key": name, "rotated": when or "", "age_days": age,
                     "overdue": age is not None and age > conf["key_max_age_days"]})
    table = pd.DataFrame(rows, columns=["key", "rotated", "age_days", "overdue"])
    if table.empty:
        return Finding("audit.api_keys", Status.INFO, "no API keys found in the app's .env")
    if not dates:  # no rotation date anywhere: the step cannot tell a fresh key from a five-year-old one
        finding = not_configured("audit.api_keys", "security.key_rotation",
                                 f"no rotation date recorded for any of the {len(table)} API keys")
        finding.data = table
        return finding
    overdue = table[table["overdue"]]
    unknown = table[table["rotated"] == ""]
    parts = []
    if not overdue.empty:
        parts.append(f"{len(overdue)} older than {conf['key_max_age_days']} days: {', '.join(overdue['key'])}")
    if not unknown.empty:
        parts.append(f"{len(unknown)} with no recorded rotation: {', '.join(unknown['key'])}")
    status = Status.WARNING if not overdue.empty else Status.INFO if not unknown.empty else Status.OK
    return Finding("audit.api_keys", status, "; ".join(parts) or f"all {len(table)} keys rotated within "
                   f"{conf['key_max_age_days']} days", len(overdue), conf["key_max_age_days"], data=table)


# ---- database roles -------------------------------------------------------------------

ROLES_SQL = """
SELECT r.rolname AS role, r.rolcanlogin AS can_login, r.rolsuper AS superuser,
       r.rolcreaterole AS create_role, r.rolcreatedb AS create_db, r.rolbypassrls AS bypass_rls,
       r.rolvaliduntil AS password_valid_until,
       (SELECT count(*) FROM pg_tables t WHERE t.schemaname = 'public' AND t.tableowner = r.rolname) AS owns_tables,
       ARRAY(SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
             WHERE m.member = r.oid ORDER BY 1) AS member_of
FROM pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY r.rolsuper DESC, r.rolcanlogin DESC, r.rolname
"""


def app_role(settings: Settings) -> str:
    """The role the app connects as: the user in the app's DATABASE_URL, else in ccops' URL."""
    for url in (read_env_file(settings.optional("app_env_file")).get("DATABASE_URL", ""),
                settings.resolved_database_url_or_blank()):
        if url and urlsplit(url).username:
            return urlsplit(url).username or ""
    return ""


@check("audit.roles")
def database_roles(ctx: RunContext) -> list[Finding]:
    """The guide's "review user permissions": login roles, superusers, owners, passwords without expiry."""
    with ctx.db() as conn:
        table = query_df(conn, ROLES_SQL)
    table["member_of"] = table["member_of"].map(lambda v: ", ".join(v) if isinstance(v, list) else "")
    logins = table[table["can_login"]]
    supers = table[table["superuser"] & table["can_login"]]
    no_expiry = logins[logins["password_valid_until"].isna()]
    found = [Finding("audit.roles", Status.INFO,
                     f"{len(logins)} roles can log in ({', '.join(logins['role'])}); superusers: "
                     f"{', '.join(supers['role']) or 'none'}; owners of the app's tables: "
                     f"{', '.join(table.loc[table['owns_tables'] > 0, 'role']) or 'none'}; "
                     f"{len(no_expiry)} login roles have passwords without expiry",
                     len(logins), data=table)]
    role = app_role(ctx.settings)
    if not role:
        found.append(Finding("audit.app_role", Status.UNKNOWN, "cannot tell which role the app connects as"))
    elif role in set(supers["role"]):
        found.append(Finding("audit.app_role", Status.WARNING,
                             f"the app connects as {role}, a superuser: give it a role that owns only its tables"))
    else:
        found.append(Finding("audit.app_role", Status.OK, f"the app connects as {role}, not a superuser"))
    return found
