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
  package_index_url = "https://pypi.org/pypi"
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
from typing import Any

import pandas as pd

from ccops.config import ConfigError, Settings
from ccops.context import RunContext, check
from ccops.findings import Finding, Status

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
}


def security_settings(settings: Settings) -> dict[str, Any]:
    """The [security] table with defaults, type-checked with one-line errors."""
    raw = settings.section("security")
    merged = dict(DEFAULTS)
    where = settings.config_file or "settings"
    for key, value in raw.items():
        if key not in DEFAULTS:
            raise ConfigError(f"{where}: security.{key}: unknown setting")
        expected = type(DEFAULTS[key])
        if expected is int and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = int(value)
        if not isinstance(value, expected):
            raise ConfigError(f"{where}: security.{key}: expected {expected.__name__}, got {value!r}")
        merged[key] = value
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
                cert = tls.getpeercert()
        not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), timezone.utc)
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
        return [Finding("security.tls", Status.INFO,
                        "no TLS endpoints configured: set security.tls_targets = [\"host:443\"]")]
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
        return Finding("security.outdated_packages", Status.INFO,
                       "not configured: set security.requirements_file or security.app_python to the app's")
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
