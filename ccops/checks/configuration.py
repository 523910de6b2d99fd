"""`ccops config check`: prove a configuration against the real thing, one line per piece.

A settings file that parses is not a working configuration: the operator needs to
know, before cron runs anything, that the database answers with the configured
role and holds the app's schema, that the log dir holds the app's files (and in
which zone their times are read), that the app's .env holds only keys the app
accepts (one unknown key and the real app does not start), that the service
backend sees the app, and whether a health probe exists at all (the real app has
none). Each piece is one line, OK / WARNING / FAIL; a piece that is not set on a
deployment is a FAIL naming the key, since no demo default stands in for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ccops.core.errors import NotConfigured
from ccops.core.findings import Status, worst
from ccops.core.settings import REQUIRED_SETTINGS, Settings, mask_url

OK, WARNING, FAIL = "OK", "WARNING", "FAIL"
STATUS_OF = {OK: Status.OK, WARNING: Status.WARNING, FAIL: Status.CRITICAL}  # a line's word on the one severity order

# FACTS.md: the 16 tables of the production database (production-schema.sql).
PRODUCTION_TABLES = (
    "market_data", "news_articles", "sentiment_data", "insights", "content_plans", "published_content",
    "agent_logs", "community_users", "subscriptions", "user_interactions", "conversion_attempts",
    "exclusive_content", "moderation_actions", "ab_tests", "ab_test_variants", "performance_snapshots",
)
# What the log reader takes (ccops.logs.LOG_NAME_RE), said the way an operator looks for it.
LOG_PATTERNS = ("content_creator_YYYY-MM-DD.log", "content_creator_YYYY-MM-DD.<rotation time>.log.zip",
                "*.log.N", "*.log.gz")


@dataclass
class Line:
    """One piece of the configuration and what was found when it was tried."""

    status: str
    piece: str
    text: str

    def __str__(self) -> str:
        return f"{self.status:<8} {self.piece}: {self.text}"

    def to_dict(self) -> dict[str, str]:
        return {"status": self.status, "piece": self.piece, "text": self.text}


def not_configured_line(piece: str, exc: NotConfigured) -> Line:
    """A missing setting: FAIL for what checks need, OK for an optional probe (saying it is optional)."""
    return Line(OK if exc.optional else FAIL, piece, str(exc))


def check_database(settings: Settings) -> Line:
    """Reachable with the configured role, and the production schema recognised (missing/extra tables named)."""
    from sqlalchemy import text

    from ccops.core.db import connect, describe_error

    try:
        url = settings.require("database_url")
    except NotConfigured as exc:
        return not_configured_line("database", exc)
    except Exception as exc:  # noqa: BLE001 - e.g. the demo's cluster not started: its one-line reason
        return Line(FAIL, "database", str(exc).splitlines()[0])
    try:
        with connect(url, statement_timeout_ms=5000, lock_timeout_ms=1000) as conn:
            who = conn.execute(text("SELECT current_user, current_database(), "
                                    "current_setting('server_version')")).one()
            rows = conn.execute(text(
                "SELECT c.relname, has_table_privilege(c.oid, 'SELECT') FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')")).all()
    except Exception as exc:  # noqa: BLE001 - the reason is the line
        return Line(FAIL, "database", f"{mask_url(url)}: cannot connect: {describe_error(exc)}")
    return schema_line(who[0], who[1], who[2], {str(r[0]): bool(r[1]) for r in rows})


def schema_line(role: str, database: str, version: str, tables: dict[str, bool]) -> Line:
    """The verdict on the tables found (name -> readable by the role)."""
    where = f"{database} as {role} (PostgreSQL {version})"
    missing = [t for t in PRODUCTION_TABLES if t not in tables]
    extra = sorted(t for t in tables if t not in PRODUCTION_TABLES)
    unreadable = [t for t in PRODUCTION_TABLES if t in tables and not tables[t]]
    also = f"; {len(extra)} more: {', '.join(extra)}" if extra else ""
    if missing:
        return Line(FAIL, "database", f"{where}: not the app's schema: {len(missing)} of the "
                    f"{len(PRODUCTION_TABLES)} production tables missing: {', '.join(missing)}{also}")
    if unreadable:
        return Line(FAIL, "database", f"{where}: role {role} may not read {', '.join(unreadable)}")
    return Line(OK, "database", f"{where}: all {len(PRODUCTION_TABLES)} production tables{also}")


def check_logs(settings: Settings) -> Line:
    """The log dir holds the app's files: how many, the newest, and the zone their times are read in."""
    from ccops import logs

    try:
        log_dir = settings.app_log_dir()
    except NotConfigured as exc:
        return not_configured_line("logs", exc)
    zone = getattr(settings, "logs_timezone", "") or "the local zone of this machine"
    if log_dir is None:
        return Line(WARNING, "logs", f"paths.log_dir not set: read through `docker compose logs "
                    f"{settings.compose.app_service}` (only what docker keeps); set paths.log_dir to the "
                    "./logs beside the compose file for the loguru files")
    if not log_dir.is_dir():
        return Line(FAIL, "logs", f"{log_dir}: no such directory")
    files = logs.app_log_files(log_dir)
    if not files:
        patterns = getattr(logs, "LOG_PATTERNS", LOG_PATTERNS)  # the log reader's own list, once it has one
        return Line(WARNING, "logs", f"{log_dir}: no app log file matching {', '.join(patterns)} "
                    "(output.log and error.log are not read as records)")
    newest = newest_log(files)
    written = datetime.fromtimestamp(newest.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return Line(OK, "logs", f"{log_dir}: {len(files)} app log files, newest {newest.name} "
                f"(written {written} UTC); times read as {zone} (logs.timezone)")


def newest_log(files: list[tuple[Path, Any]]) -> Path:
    """The file of the latest day its name says (loguru names files by the local day), then the latest written."""
    return max(files, key=lambda item: (item[1].day or date.min, item[0].stat().st_mtime))[0]


def check_app_env(settings: Settings) -> Line:
    """The app's .env readable, and every key one the app defines (an unknown key stops the app)."""
    from ccops.deploy import appenv

    try:
        path = Path(settings.require("app_env_file"))
    except NotConfigured as exc:
        return not_configured_line("app .env", exc)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return Line(FAIL, "app .env", f"{path}: cannot read: {exc.strerror}")
    unknown = appenv.unknown_keys(settings, path)
    _, source = appenv.known_keys(settings)
    count = len(appenv.keys_in(path))
    if unknown:
        return Line(FAIL, "app .env", f"{path}: {len(unknown)} keys the app does not define: {', '.join(unknown)} "
                    "- the app refuses to start with them (Extra inputs are not permitted); "
                    f"keys known from {source}")
    return Line(OK, "app .env", f"{path}: readable, {count} keys, all known to the app (from {source})")


def check_backend(settings: Settings) -> Line:
    """The service backend sees the app (and says in which state)."""
    from ccops.deploy import services

    try:
        name = settings.require("backend")
    except NotConfigured as exc:
        return not_configured_line("backend", exc)
    if name == "none":
        return Line(WARNING, "backend", "none: ccops can neither see nor restart the app "
                    "(set service.backend to process, compose or systemd)")
    try:
        states = services.get_backend(settings).status()
    except Exception as exc:  # noqa: BLE001 - BackendError or a missing tool: the reason is the line
        first = str(exc).strip().splitlines()
        return Line(FAIL, "backend", f"{name}: cannot see the services: {first[0] if first else type(exc).__name__}")
    seen = ", ".join(f"{s.service} {s.state}" for s in states) or "nothing"
    app = next((s for s in states if s.service == "app"), None)
    if app is None:
        return Line(FAIL, "backend", f"{name}: does not see the app (sees {seen})")
    if not app.running:
        return Line(WARNING, "backend", f"{name}: sees the app, but it is {app.state} (sees {seen})")
    return Line(OK, "backend", f"{name}: sees {seen}")


def check_backups(settings: Settings) -> Line:
    """The backup dir named, and what it holds."""
    try:
        directory = Path(settings.require("backup_dir"))
    except NotConfigured as exc:
        return not_configured_line("backups", exc)
    if not directory.exists():
        return Line(WARNING, "backups", f"{directory}: does not exist yet (the first backup creates it)")
    if not directory.is_dir():
        return Line(FAIL, "backups", f"{directory}: not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        return Line(FAIL, "backups", f"{directory}: not readable by this user")
    count = sum(1 for p in directory.iterdir() if p.is_file())
    return Line(OK, "backups", f"{directory}: {count} files")


def check_health_probe(settings: Settings) -> Line:
    """The health probe answering, or "not configured" (optional: the real app has no /health)."""
    from ccops.checks.services import probe

    url = settings.health_url
    if not url:
        key, env, what, _ = REQUIRED_SETTINGS["health_url"]
        return Line(OK, "health probe", f"not configured: set {key} (or {env}) - {what}")
    code, body = probe(url, settings.apis.timeout_seconds)
    if code is None:
        return Line(FAIL, "health probe", f"{mask_url(url)} not answering: {body}")
    if code != 200:
        return Line(FAIL, "health probe", f"{mask_url(url)} answered HTTP {code}")
    return Line(OK, "health probe", f"{mask_url(url)} answered HTTP 200")


CHECKS: tuple[Callable[[Settings], Line], ...] = (
    check_database, check_logs, check_app_env, check_backend, check_backups, check_health_probe,
)


def run(settings: Settings) -> list[Line]:
    """Every piece tried, in order; a piece that breaks unexpectedly is its own FAIL line, never a traceback."""
    lines = []
    for probe_piece in CHECKS:
        try:
            lines.append(probe_piece(settings))
        except Exception as exc:  # noqa: BLE001 - one broken piece must not hide the others
            name = probe_piece.__name__.removeprefix("check_").replace("_", " ")
            first = str(exc).strip().splitlines()
            lines.append(Line(FAIL, name, f"could not check: {type(exc).__name__}" + (f": {first[0]}" if first else "")))
    return lines


def exit_code(lines: list[Line]) -> int:
    """0 all OK, 1 warnings, 2 failures (64, a settings file that does not load, is the CLI's)."""
    return worst(STATUS_OF[line.status] for line in lines).exit_code


def to_json(settings: Settings, lines: list[Line]) -> dict[str, Any]:
    """The lines and the verdict, as `--json` prints them."""
    return {"config_file": str(settings.config_file) if settings.config_file else None,
            "deployment_file": str(settings.deployment_file) if settings.deployment_file else None, "lines": [line.to_dict() for line in lines],
            "exit_code": exit_code(lines)}
