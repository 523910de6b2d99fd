"""Weekly security checks: suspicious log events, TLS certificate expiry, outdated packages.

The guide greps `failed|unauthorized` over the whole log, runs `openssl s_client`
by hand against one domain, and `pip list --outdated` in whatever environment
the operator happens to be in. ccops counts log records (not lines) over the
week before as_of, verifies each configured endpoint's certificate the way a
client would (so an untrusted chain is reported as such, not just its date),
and compares the app's own packages with the package index's JSON API, whose
base URL is configurable so a mirror (or a test server) can stand in.

Settings live in the module-owned `[security]` table:
  tls_targets = ["example.com:443"], tls_ca_file = "", tls_warning_days = 30,
  tls_critical_days = 7, requirements_file = "", app_python = "",
  package_index_url = "https://pypi.org/pypi", postgres_log = "", api_key_unused_days = 90

The quarterly "review access logs" reads what exists: PostgreSQL's own
connection log (`log_connections = on`; the file or folder in
security.postgres_log, else the server's pg_current_logfile()), and the app's
`api_keys` table when the database has one (keys never used, unused for
api_key_unused_days, older than key_max_age_days). Neither is invented: a
server that does not log connections, or a database without the table, is
said to be so, with what to change.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Status, not_configured, optional_not_configured
from ccops.core.reader import SectionReader
from ccops.core.settings import Settings

if TYPE_CHECKING:  # pandas is imported by the checks that build a table: `config check` reads security_settings only
    import pandas as pd

SECURITY_WORDS = re.compile(r"\b(failed|failure|unauthori[sz]ed|forbidden|denied)\b", re.IGNORECASE)
STATUS_CODES = re.compile(r"\b(401|403)\b")
# what every match of the two patterns contains, lower-cased: the log reader's prefilter (ccops.logs.Selector)
SECURITY_NEEDLES = (b"failed", b"failure", b"unauthori", b"forbidden", b"denied", b"401", b"403")
DEFAULTS: dict[str, Any] = {
    "tls_targets": [],
    "tls_ca_file": "",
    "tls_warning_days": 30,
    "tls_critical_days": 7,
    "requirements_file": "",
    "app_python": "",
    "package_index_url": "https://pypi.org/pypi",
    "timeout_seconds": 10,
    # used by the quarterly audit (checks/audit.py)
    "app_source_dir": "",
    "bandit_command": "bandit",
    "pip_audit_command": "pip-audit",
    "key_rotation": {},
    "key_max_age_days": 90,
    # the quarterly access review
    "postgres_log": "",
    "api_key_unused_days": 90,
}


def security_settings(settings: Settings) -> dict[str, Any]:
    """The [security] table with defaults, each key read as the kind its default is (ccops.core.reader)."""
    section = SectionReader.of(settings, "security")
    section.unknown(DEFAULTS)
    merged = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        if key not in section:
            continue
        if isinstance(default, int):
            merged[key] = section.integer(key, default)
        elif isinstance(default, list):
            merged[key] = section.strings(key)
        elif isinstance(default, dict):
            merged[key] = dict(section.section(key).table)
        else:
            merged[key] = section.string(key)
    return merged


# ---- log events -------------------------------------------------------------------

@check("security.log_events")
def log_security_events(ctx: RunContext, days: int = 7) -> Finding:
    """Failed, unauthorized and forbidden events in the app log over the last `days` days."""
    from ccops import logs

    since, until = ctx.as_of - timedelta(days=days), ctx.as_of
    rows = []
    wanted = logs.select_matching(re.compile(f"{SECURITY_WORDS.pattern}|{STATUS_CODES.pattern}", re.IGNORECASE),
                                  SECURITY_NEEDLES)
    for record in logs.read_records(ctx.settings.effective_log_dir, since, until, select=wanted):
        first_line = record.message.split("\n", 1)[0]
        match = SECURITY_WORDS.search(first_line) or STATUS_CODES.search(first_line)
        if match:
            rows.append({"time": record.time, "level": record.level, "word": match.group(1).lower(),
                         "where": f"{record.name}:{record.function}", "message": ctx.excerpt(first_line, 160)})
    if not rows:
        return Finding("security.log_events", Status.OK,
                       f"no failed, unauthorized or forbidden events in the last {days} days", 0)
    import pandas as pd

    table = pd.DataFrame(rows)
    by_word = table.groupby("word").size().sort_values(ascending=False)
    words = ", ".join(f"{n} {w}" for w, n in by_word.items())
    auth = int(table["word"].isin(["unauthorized", "unauthorised", "forbidden", "denied", "401", "403"]).sum())
    status = Status.WARNING if auth else Status.INFO
    return Finding("security.log_events", status,
                   f"{len(table)} security-relevant records in the last {days} days ({words})",
                   len(table), data=table.sort_values("time", ascending=False).reset_index(drop=True))


# ---- TLS certificates ----------------------------------------------------------------

def parse_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host:
        return target, 443
    return host.strip("[]"), int(port)


def certificate_expiry(host: str, port: int, ca_file: str = "", timeout: float = 10) -> dict[str, Any]:
    """Connect as a verifying client; return notAfter and whether the chain verified."""
    context = ssl.create_default_context(cafile=ca_file or None)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                cert = tls.getpeercert() or {}
        not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(cert["notAfter"])), timezone.utc)
        return {"not_after": not_after.replace(tzinfo=None), "verified": True, "error": ""}
    except ssl.SSLCertVerificationError as exc:
        return {"not_after": _unverified_expiry(host, port, timeout), "verified": False,
                "error": exc.verify_message or str(exc)}


def _unverified_expiry(host: str, port: int, timeout: float) -> datetime | None:
    """Read the expiry of a certificate we do not trust (the guide's openssl x509 -enddate)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if der is None:  # the server sent no certificate: nothing to read an expiry from
        return None
    pem = ssl.DER_cert_to_PEM_cert(der)
    try:
        out = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pem, capture_output=True,
                             text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    stamp = out.strip().removeprefix("notAfter=")
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(stamp), timezone.utc).replace(tzinfo=None)


def classify_expiry(days_left: float, warning_days: int, critical_days: int) -> Status:
    if days_left < critical_days:
        return Status.CRITICAL
    if days_left < warning_days:
        return Status.WARNING
    return Status.OK


@check("security.tls")
def tls_expiry(ctx: RunContext, targets: list[str] | None = None) -> list[Finding]:
    """Days until each configured host:port's certificate expires (< 30 WARNING, < 7 CRITICAL)."""
    conf = security_settings(ctx.settings)
    targets = targets if targets is not None else conf["tls_targets"]
    if not targets:
        return [optional_not_configured("security.tls", "security.tls_targets",
                                        'the HTTPS endpoints to watch, e.g. ["host:443"]')]
    found = []
    for target in targets:
        check_id = f"security.tls:{target}"
        try:
            host, port = parse_target(target)
            info = certificate_expiry(host, port, conf["tls_ca_file"], conf["timeout_seconds"])
        except (OSError, ValueError) as exc:
            found.append(Finding(check_id, Status.UNKNOWN, f"{target}: could not connect: {exc}"))
            continue
        if info["not_after"] is None:
            found.append(Finding(check_id, Status.CRITICAL, f"{target}: certificate does not verify ({info['error']})"))
            continue
        days_left = (info["not_after"] - ctx.as_of).total_seconds() / 86400
        status = classify_expiry(days_left, conf["tls_warning_days"], conf["tls_critical_days"])
        summary = f"{target}: certificate expires {info['not_after']:%Y-%m-%d %H:%M} UTC, in {days_left:.1f} days"
        if not info["verified"]:
            status = Status.CRITICAL
            summary += f"; it does not verify ({info['error']})"
        threshold = conf["tls_critical_days"] if status == Status.CRITICAL else conf["tls_warning_days"]
        found.append(Finding(check_id, status, summary, round(days_left, 1), threshold))
    return found


# ---- outdated packages -----------------------------------------------------------------

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def parse_requirements(text: str) -> dict[str, str]:
    """Pinned `name==version` lines of a requirements file (unpinned lines cannot be outdated)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = REQUIREMENT.match(line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def installed_packages(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return {item["name"]: item["version"] for item in json.loads(out)}


def latest_version(index_url: str, name: str, timeout: float) -> str:
    with urllib.request.urlopen(f"{index_url.rstrip('/')}/{name}/json", timeout=timeout) as response:
        return json.load(response)["info"]["version"]


def compare_versions(current: dict[str, str], latest: dict[str, str]) -> pd.DataFrame:
    import pandas as pd
    from packaging.version import InvalidVersion, Version

    rows = []
    for name, version in sorted(current.items()):
        newest = latest.get(name)
        if not newest:
            continue
        try:
            behind = Version(newest) > Version(version)
            major = Version(newest).major > Version(version).major
        except InvalidVersion:
            behind, major = newest != version, False
        if behind:
            rows.append({"package": name, "installed": version, "latest": newest, "major_update": major})
    return pd.DataFrame(rows, columns=["package", "installed", "latest", "major_update"])


@check("security.outdated_packages")
def outdated_packages(ctx: RunContext) -> Finding:
    """The app's packages behind the index (the guide's `pip list --outdated`, for the app's env)."""
    conf = security_settings(ctx.settings)
    if conf["requirements_file"]:
        source = conf["requirements_file"]
        current = parse_requirements(Path(source).read_text(encoding="utf-8"))
    elif conf["app_python"]:
        source = conf["app_python"]
        current = installed_packages(source)
    else:
        return optional_not_configured("security.outdated_packages", "security.requirements_file",
                              "the app's requirements file; or security.app_python, the app's interpreter")
    if not current:
        return Finding("security.outdated_packages", Status.INFO, f"no pinned packages found in {source}", 0)
    latest: dict[str, str] = {}
    failures: list[str] = []

    def lookup(name: str) -> None:
        try:
            latest[name] = latest_version(conf["package_index_url"], name, conf["timeout_seconds"])
        except (OSError, ValueError, KeyError) as exc:
            failures.append(f"{name} ({exc.__class__.__name__})")

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lookup, current))
    if failures and not latest:
        return Finding("security.outdated_packages", Status.UNKNOWN,
                       f"package index {conf['package_index_url']} did not answer for any of {len(current)} packages")
    table = compare_versions(current, latest)
    unknown = f"; {len(failures)} not found on the index" if failures else ""
    if table.empty:
        return Finding("security.outdated_packages", Status.OK,
                       f"all {len(latest)} packages of {source} are current{unknown}", 0)
    majors = int(table["major_update"].sum())
    return Finding("security.outdated_packages", Status.INFO if not majors else Status.WARNING,
                   f"{len(table)} of {len(current)} packages have newer releases ({majors} major){unknown}",
                   len(table), data=table)


# ---- access review (quarterly) ---------------------------------------------------------------

# PostgreSQL's log lines with the default prefix '%m [%p] ' (and any prefix that starts with %m or %t):
#   2026-11-20 10:00:01.123 UTC [4242] LOG:  connection authorized: user=app database=cc application_name=psql
#   2026-11-20 10:00:02.456 UTC [4243] FATAL:  password authentication failed for user "app"
LOG_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)?(?: (?P<zone>[A-Za-z]{2,5}|[+-]\d\d(?::?\d\d)?))?\b"
    r".*?\b(?P<level>LOG|FATAL):\s+(?P<message>.*)$")
AUTHORIZED = re.compile(r"^connection authorized: user=(?P<user>\S+)(?: database=(?P<database>\S+))?"
                        r"(?: application_name=(?P<app>.*?))?(?: SSL enabled.*)?$")
RECEIVED = re.compile(r"^connection received: host=(?P<host>\S+)")
FAILED = re.compile(r"^(?:password authentication failed for user \"(?P<user1>[^\"]*)\""
                    r"|no pg_hba\.conf entry for (?:replication connection from )?host \"(?P<host>[^\"]*)\", "
                    r"user \"(?P<user2>[^\"]*)\""
                    r"|role \"(?P<user3>[^\"]*)\" does not exist"
                    r"|database \"(?P<database>[^\"]*)\" does not exist)")
UTC_NAMES = ("UTC", "GMT", "Z")


def _log_time(match: re.Match[str]) -> datetime | None:
    """A log line's time as naive UTC; None when its zone is an abbreviation other than UTC (unknowable offset)."""
    stamp = datetime.strptime(match.group("time"), "%Y-%m-%d %H:%M:%S")
    zone = match.group("zone")
    if zone is None or zone.upper() in UTC_NAMES:
        return stamp
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        return stamp - offset if zone[0] == "+" else stamp + offset
    return None


def parse_connection_log(lines, since: datetime, until: datetime) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(connections by user, database and application; failed logins; lines of unknown zone) in [since, until).

    A failure's client host comes from the `connection received` line of the same process id.
    """
    import pandas as pd

    hosts: dict[str, str] = {}
    ok: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    unknown_zone = 0
    for line in lines:
        match = LOG_LINE.match(line.rstrip("\n"))
        if not match:
            continue
        message = match.group("message")
        pid = re.search(r"\[(\d+)\]", line)
        pid_key = pid.group(1) if pid else ""
        received = RECEIVED.match(message)
        if received:
            hosts[pid_key] = received.group("host")
            continue
        authorized, failure = AUTHORIZED.match(message), FAILED.match(message)
        if not (authorized or (failure and match.group("level") == "FATAL")):
            continue
        when = _log_time(match)
        if when is None:
            unknown_zone += 1
            continue
        if not since <= when < until:
            continue
        if authorized:
            ok.append({"user": authorized.group("user"), "database": authorized.group("database") or "",
                       "application": (authorized.group("app") or "").strip(), "time": when})
        elif failure:
            user = failure.group("user1") or failure.group("user2") or failure.group("user3") or ""
            failed.append({"time": when, "user": user, "host": failure.group("host") or hosts.get(pid_key, ""),
                           "reason": message.split(" for ")[0].split(" entry")[0][:80]})
    connections = pd.DataFrame(ok, columns=["user", "database", "application", "time"])
    table = (connections.groupby(["user", "database", "application"], dropna=False)["time"]
             .agg(connections="count", first="min", last="max").reset_index()
             .sort_values("connections", ascending=False).reset_index(drop=True))
    return table, pd.DataFrame(failed, columns=["time", "user", "host", "reason"]), unknown_zone


def _log_files(path: Path) -> list[Path]:
    """The log file itself, or every file of a log folder (postgresql-*.log, *.csv left out)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.endswith((".csv", ".json")))
    return [path]


def _server_log(ctx: RunContext, conf: dict[str, Any]) -> tuple[Path | None, bool | None, str]:
    """(the server log to read, whether log_connections is on, where the path came from)."""
    from ccops.core.db import scalar

    with ctx.db() as conn:
        on = str(scalar(conn, "SELECT current_setting('log_connections')")).lower() in ("on", "true")
        if conf["postgres_log"]:
            return Path(conf["postgres_log"]), on, "security.postgres_log"
        try:
            with conn.begin_nested():
                current = scalar(conn, "SELECT pg_current_logfile()")
                data_dir = scalar(conn, "SELECT current_setting('data_directory')")
        except Exception:  # noqa: BLE001 - the role may not see these; then the setting is needed
            current = None
    if current:
        return Path(data_dir) / current if not Path(current).is_absolute() else Path(current), on, "pg_current_logfile()"
    return None, on, ""


@check("security.access_log")
def postgres_access_log(ctx: RunContext, days: int = 91) -> Finding:
    """Who connected to the database over the quarter, and which logins failed (the server's connection log)."""
    conf = security_settings(ctx.settings)
    check_id = "security.access_log"
    path, on, origin = _server_log(ctx, conf)
    if not on:  # the server's setting, not ccops': listed with the steps that did nothing for want of one
        return not_configured(check_id, "log_connections = on in postgresql.conf",
                              "PostgreSQL does not log connections now: ALTER SYSTEM SET log_connections = on; "
                              "SELECT pg_reload_conf()")
    if path is None:
        return not_configured(check_id, "security.postgres_log",
                              "the server's log file or folder; PostgreSQL writes it to stderr here, "
                              "not through logging_collector")
    if not path.exists():
        return Finding(check_id, Status.UNKNOWN, f"{path} (from {origin}) does not exist")
    since, until = ctx.as_of - timedelta(days=days), ctx.as_of
    lines: list[str] = []
    for file in _log_files(path):
        try:
            lines += file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            return Finding(check_id, Status.UNKNOWN, f"cannot read {file}: {exc.strerror or exc}")
    table, failed, unknown_zone = parse_connection_log(lines, since, until)
    zone_note = (f"; {unknown_zone} lines left out: their time zone is a name other than UTC "
                 "(set log_timezone = 'UTC')") if unknown_zone else ""
    covered = f" in {path}"
    if failed.empty:
        status = Status.OK if not table.empty else Status.INFO
        summary = (f"{int(table['connections'].sum()) if not table.empty else 0} connections by "
                   f"{table['user'].nunique() if not table.empty else 0} roles in the last {days} days, "
                   f"no failed login{covered}{zone_note}")
        return Finding(check_id, status, summary, 0, data=table)
    by_user = failed.groupby("user").size().sort_values(ascending=False)
    who = ", ".join(f"{user or '?'} {n}" for user, n in by_user.items())
    summary = (f"{len(failed)} failed logins in the last {days} days ({who}); "
               f"{int(table['connections'].sum()) if not table.empty else 0} successful connections{covered}{zone_note}")
    return Finding(check_id, Status.WARNING, summary, len(failed), 0,
                   data=failed.sort_values("time", ascending=False).reset_index(drop=True))


API_KEY_COLUMNS = {
    "name": ("name", "key_name", "label", "description", "id"),
    "created": ("created_at", "created", "issued_at"),
    "last_used": ("last_used_at", "last_used", "last_seen_at", "used_at"),
    "active": ("is_active", "active", "enabled"),
    "revoked": ("revoked_at", "deleted_at", "expired_at"),
}


def _pick(columns: list[str], role: str) -> str | None:
    return next((c for c in API_KEY_COLUMNS[role] if c in columns), None)


@check("security.api_keys")
def api_key_review(ctx: RunContext) -> Finding:
    """The app's `api_keys` table, where it has one: keys never used, unused for N days, older than rotation."""
    from psycopg import sql

    from ccops.core import sqlsafe
    from ccops.core.db import query_df, scalar

    conf = security_settings(ctx.settings)
    check_id = "security.api_keys"
    with ctx.db() as conn:
        table = scalar(conn, "SELECT to_regclass('api_keys')::text")
        if table is None:
            return Finding(check_id, Status.INFO, "no api_keys table in this database: the app keeps no API keys "
                           "of its own there (the production schema has none); its provider keys are in .env, "
                           "whose age the key-rotation step reviews")
        columns = list(query_df(conn, "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass('api_keys') "
                                      "AND attnum > 0 AND NOT attisdropped")["attname"])
        chosen = {role: _pick(columns, role) for role in API_KEY_COLUMNS}
        if chosen["created"] is None and chosen["last_used"] is None:
            return Finding(check_id, Status.UNKNOWN, f"api_keys has neither a creation nor a last-use column "
                           f"(columns: {', '.join(columns)}): nothing to review")
        picked = [c for c in chosen.values() if c]
        frame = sqlsafe.query_df(conn, sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in dict.fromkeys(picked)), sql.Identifier("api_keys")))
    return _key_finding(check_id, frame, chosen, ctx.as_of, conf)


def _key_finding(check_id: str, frame: pd.DataFrame, chosen: dict[str, str | None], as_of: datetime,
                 conf: dict[str, Any]) -> Finding:
    """Active keys only (not revoked, not switched off); each problem counted on its own."""
    import pandas as pd

    keys = frame.copy()
    if chosen["active"]:
        keys = keys[keys[chosen["active"]].fillna(False).astype(bool)]
    if chosen["revoked"]:
        keys = keys[keys[chosen["revoked"]].isna()]
    unused_days, max_age = int(conf["api_key_unused_days"]), int(conf["key_max_age_days"])
    name = keys[chosen["name"]].astype(str) if chosen["name"] else pd.Series(range(len(keys)), index=keys.index).astype(str)
    rows = []
    for index in keys.index:
        created = keys.at[index, chosen["created"]] if chosen["created"] else None
        used = keys.at[index, chosen["last_used"]] if chosen["last_used"] else None
        problems = []
        if chosen["last_used"] and pd.isna(used):
            problems.append("never used")
        elif chosen["last_used"] and (as_of - pd.Timestamp(used).to_pydatetime()).days > unused_days:
            problems.append(f"unused for {(as_of - pd.Timestamp(used).to_pydatetime()).days} days")
        if chosen["created"] and pd.notna(created) and (as_of - pd.Timestamp(created).to_pydatetime()).days > max_age:
            problems.append(f"{(as_of - pd.Timestamp(created).to_pydatetime()).days} days old")
        if problems:
            rows.append({"key": name[index], "created": created, "last_used": used, "problem": ", ".join(problems)})
    table = pd.DataFrame(rows, columns=["key", "created", "last_used", "problem"])
    if table.empty:
        return Finding(check_id, Status.OK, f"{len(keys)} active API keys: all used within {unused_days} days "
                       f"and younger than {max_age} days", 0)
    counts = {"never used": 0, "unused": 0, "old": 0}
    for problem in table["problem"]:
        counts["never used"] += "never used" in problem
        counts["unused"] += "unused for" in problem
        counts["old"] += "days old" in problem
    summary = (f"{len(table)} of {len(keys)} active API keys need review: {counts['never used']} never used, "
               f"{counts['unused']} unused for over {unused_days} days, {counts['old']} older than the "
               f"{max_age}-day rotation period")
    return Finding(check_id, Status.WARNING, summary, len(table), 0, data=table)
