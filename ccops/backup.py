"""Backups that can be trusted: dump, verify, keep, restore, and prove it restores.

The guide's script calls a backup good when the file exists and deletes
everything older than 30 days, so a month of failed backups deletes the last
good one. Here (after Barman and pgBackRest):
- pg_dump writes custom format under a temporary name; the file is fsynced and
  renamed only after pg_dump exits 0, so a killed dump never looks finished;
- a manifest beside it holds versions, times, size, sha256 and the exact row
  count of every table, counted in the same snapshot pg_dump used
  (pg_export_snapshot + --snapshot), so a restore can be checked row for row;
- a backup is "verified" only when its checksum matches and pg_restore can list
  it; retention counts verified backups and never keeps fewer than N of them;
- a restore refuses without confirmation, takes a safety dump of what it
  replaces, copes with dumps from newer servers (SET transaction_timeout), and
  checks the restored row counts against the manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text

from ccops.config import Settings, mask_url
from ccops.db import client_tool, connect, get_engine, libpq_env, normalize_url
from ccops.errors import CcopsError, NotConfirmed

PREFIX = "contentcreator_"
NAME_RE = re.compile(r"^contentcreator_(\d{8})_(\d{6})(?:_\d+)?\.(dump|sql|sql\.gz)$")
MANIFEST_SUFFIX = ".manifest.json"
UNKNOWN_TO_OLDER_SERVERS = re.compile(r"^SET (transaction_timeout)\s*=.*;$", re.MULTILINE)


class BackupError(CcopsError):
    """A backup, verification or restore failed; nothing was half-written."""

    exit_code = 2


# ---- names and listing ---------------------------------------------------------------

def backup_name(moment: datetime) -> str:
    return f"{PREFIX}{moment:%Y%m%d_%H%M%S}.dump"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class VerifyResult:
    path: Path
    ok: bool
    reason: str
    checks: list[str] = field(default_factory=list)


@dataclass
class BackupInfo:
    path: Path
    created: datetime
    size: int
    verified: bool
    reason: str

    def row(self) -> dict[str, Any]:
        return {"file": self.path.name, "created": self.created, "bytes": self.size, "verified": self.verified,
                "reason": self.reason}


def list_backups(backup_dir: Path, verify: bool = True) -> list[BackupInfo]:
    """Every finished backup in the dir, newest first, with its verification result."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = NAME_RE.match(path.name)
        if not match or not path.is_file():
            continue
        created = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
        result = verify_backup(path) if verify else VerifyResult(path, False, "not verified")
        found.append(BackupInfo(path, created, path.stat().st_size, result.ok, result.reason))
    return sorted(found, key=lambda b: b.created, reverse=True)


def latest_verified(backup_dir: Path) -> BackupInfo | None:
    return next((b for b in list_backups(backup_dir) if b.verified), None)


# ---- verification ---------------------------------------------------------------------

def verify_backup(path: Path) -> VerifyResult:
    """Checksum against the manifest (when there is one) and a full read by pg_restore / gzip."""
    path = Path(path)
    checks: list[str] = []
    if not path.exists():
        return VerifyResult(path, False, "file does not exist")
    manifest_file = manifest_path(path)
    if manifest_file.exists():
        try:
            manifest = json.loads(manifest_file.read_text())
        except ValueError:
            return VerifyResult(path, False, "manifest is not valid JSON")
        if path.stat().st_size != manifest.get("size"):
            return VerifyResult(path, False, f"size {path.stat().st_size} differs from the manifest's {manifest.get('size')}")
        if sha256_of(path) != manifest.get("sha256"):
            return VerifyResult(path, False, "sha256 differs from the manifest (corrupted)")
        checks.append("sha256")
    if path.name.endswith(".dump"):
        proc = subprocess.run([client_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return VerifyResult(path, False, "pg_restore --list failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1], checks)
        checks.append("pg_restore --list")
    else:
        try:
            tail = _sql_tail(path)
        except (OSError, EOFError) as exc:
            return VerifyResult(path, False, f"cannot be read: {exc}", checks)
        if b"PostgreSQL database dump complete" not in tail:
            return VerifyResult(path, False, "plain dump lacks pg_dump's completion line (truncated)", checks)
        checks.append("gzip -t and dump trailer" if path.name.endswith(".gz") else "dump trailer")
    return VerifyResult(path, True, "verified: " + ", ".join(checks), checks)


def _sql_tail(path: Path) -> bytes:
    opener = gzip.open if path.name.endswith(".gz") else open
    tail = b""
    with opener(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            tail = (tail + chunk)[-4096:]
    return tail


# ---- taking a backup -----------------------------------------------------------------

@dataclass
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    duration_s: float
    verified: bool
    reason: str


def _versions(conn: Any) -> tuple[str, str]:
    server = conn.execute(text("SHOW server_version")).scalar()
    proc = subprocess.run([client_tool("pg_dump"), "--version"], capture_output=True, text=True, timeout=30)
    return str(server), proc.stdout.strip()


def exact_row_counts(conn: Any) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"))]
    return {t: int(conn.execute(text(f'SELECT count(*) FROM public."{t}"')).scalar()) for t in tables}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_backup(settings: Settings, *, compression: int | None = None, now: datetime | None = None,
                  database_url: str | None = None) -> BackupResult:
    """pg_dump -Fc in the snapshot whose exact row counts go into the manifest; verified before it counts."""
    url = database_url or settings.resolved_database_url()
    directory = Path(settings.effective_backup_dir)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    started = now or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    final = directory / backup_name(started)
    counter = 1
    while final.exists():
        counter += 1
        final = directory / backup_name(started).replace(".dump", f"_{counter}.dump")
    partial = directory / f".{final.name}.partial"
    level = settings.backup.compression if compression is None else compression
    t0 = time.monotonic()
    engine = get_engine(url)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        conn.execute(text("SET TRANSACTION READ ONLY"))
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
        counts = exact_row_counts(conn)  # same snapshot as the dump: the manifest's counts are exact
        server, client = _versions(conn)
        database = conn.execute(text("SELECT current_database()")).scalar()
        env = {**os.environ, **libpq_env(url)}
        command = [client_tool("pg_dump"), "-Fc", f"-Z{int(level)}", f"--snapshot={snapshot}", "-f", str(partial)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=6 * 3600)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise BackupError(f"pg_dump failed ({reason}); no backup was written, earlier backups are untouched")
    try:
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(partial, 0o600)
        manifest = {
            "file": final.name, "database": database, "server_version": server, "pg_dump_version": client,
            "format": "custom", "compression": int(level), "start": started.isoformat() + "Z",
            "end": datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat() + "Z",
            "size": partial.stat().st_size, "sha256": sha256_of(partial), "row_counts": counts,
            "host": socket.gethostname(), "source": mask_url(url),
        }
        manifest_tmp = directory / f".{final.name}{MANIFEST_SUFFIX}.partial"
        manifest_tmp.write_text(json.dumps(manifest, indent=2))
        os.chmod(manifest_tmp, 0o600)
        os.replace(partial, final)
        os.replace(manifest_tmp, manifest_path(final))
        _fsync_dir(directory)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        (directory / f".{final.name}{MANIFEST_SUFFIX}.partial").unlink(missing_ok=True)
        raise BackupError(f"could not finish the backup in {directory}: {exc.strerror or exc}; "
                          "no backup was written, earlier backups are untouched") from None
    result = verify_backup(final)
    return BackupResult(final, manifest, time.monotonic() - t0, result.ok, result.reason)


# ---- retention --------------------------------------------------------------------------

@dataclass
class RetentionPlan:
    keep: list[tuple[Path, str]] = field(default_factory=list)
    delete: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(p.stat().st_size for p, _ in self.delete if p.exists())

    def delete_paths(self) -> list[Path]:
        return [p for p, _ in self.delete]

    def rows(self) -> list[dict[str, Any]]:
        return ([{"file": p.name, "action": "keep", "reason": r} for p, r in self.keep]
                + [{"file": p.name, "action": "delete", "reason": r} for p, r in self.delete])


def plan_retention(backup_dir: Path, now: datetime, retention_days: int, keep_verified: int) -> RetentionPlan:
    """Delete by age, but never below the newest `keep_verified` verified backups; failed leftovers go."""
    plan = RetentionPlan()
    directory = Path(backup_dir)
    if not directory.is_dir():
        return plan
    for leftover in directory.glob(".*.partial"):
        plan.delete.append((leftover, "partial file of an interrupted backup"))
    cutoff = now - timedelta(days=retention_days)
    verified_kept = 0
    for info in list_backups(directory):
        companions = [manifest_path(info.path)] if manifest_path(info.path).exists() else []
        if info.verified and verified_kept < keep_verified:
            verified_kept += 1
            plan.keep.append((info.path, f"one of the newest {keep_verified} verified backups"))
        elif info.created >= cutoff:
            plan.keep.append((info.path, f"younger than {retention_days} days"))
        else:
            why = f"older than {retention_days} days" + ("" if info.verified else f" and failed verification ({info.reason})")
            plan.delete += [(info.path, why)] + [(c, "manifest of a deleted backup") for c in companions]
    return plan


def apply_retention(plan: RetentionPlan) -> int:
    freed = 0
    for path, _ in plan.delete:
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except FileNotFoundError:
            continue
    return freed


# ---- restore ------------------------------------------------------------------------------

@dataclass
class RestoreStep:
    name: str
    detail: str
    duration_s: float
    ok: bool


@dataclass
class RestoreResult:
    target: str
    steps: list[RestoreStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)

    def summary(self) -> str:
        failed = [s for s in self.steps if not s.ok]
        if failed:
            return f"restore into {self.target} failed at {failed[0].name}: {failed[0].detail}"
        return f"restored into {self.target} in {sum(s.duration_s for s in self.steps):.1f} s"


def _step(result: RestoreResult, name: str, action: Any) -> Any:
    started = time.monotonic()
    try:
        detail = action()
        result.steps.append(RestoreStep(name, str(detail), time.monotonic() - started, True))
        return detail
    except Exception as exc:  # noqa: BLE001 - recorded, and the restore stops
        result.steps.append(RestoreStep(name, str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                                        time.monotonic() - started, False))
        raise


def target_url(settings: Settings, target: str) -> str:
    """A database name becomes a database on the configured server; a URL stays a URL."""
    if "://" in target:
        return target
    parts = urlsplit(normalize_url(settings.resolved_database_url()))
    return urlunsplit((parts.scheme, parts.netloc, f"/{target}", parts.query, parts.fragment))


def _recreate(url: str) -> None:
    parts = urlsplit(normalize_url(url))
    name = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    with get_engine(admin).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))


def _database_exists(url: str) -> bool:
    parts = urlsplit(normalize_url(url))
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    with get_engine(admin).connect() as conn:
        return bool(conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parts.path.lstrip("/")}).scalar())


def load_dump(path: Path, url: str, jobs: int = 1) -> str:
    """pg_restore for custom format, psql for plain SQL (filtering settings older servers lack)."""
    env = {**os.environ, **libpq_env(url)}
    if path.name.endswith(".dump"):
        command = [client_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", env["PGDATABASE"], str(path)]
        if jobs > 1:
            command[1:1] = ["-j", str(jobs)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=6 * 3600)
    else:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            sql = UNKNOWN_TO_OLDER_SERVERS.sub(r"-- ccops: skipped for older servers: SET \1", handle.read())
        proc = subprocess.run([client_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", env["PGDATABASE"]],
                              input=sql, capture_output=True, text=True, env=env, timeout=6 * 3600)
    if proc.returncode != 0:
        raise BackupError((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
    return f"{path.name} loaded"


def compare_counts(url: str, expected: dict[str, int]) -> list[dict[str, Any]]:
    with connect(url, statement_timeout_ms=3_600_000) as conn:
        actual = exact_row_counts(conn)
    return [{"table": t, "expected": expected.get(t), "restored": actual.get(t), "ok": expected.get(t) == actual.get(t)}
            for t in sorted(set(expected) | set(actual))]


def restore_backup(settings: Settings, path: Path, target: str, *, confirm: bool, force: bool = False,
                   safety_dump: bool = True, stop_app: bool = True, jobs: int = 1, run_health: bool = True) -> RestoreResult:
    """The guide's recovery procedure, guarded and checked at every step."""
    path = Path(path)
    url = target_url(settings, target)
    result = RestoreResult(mask_url(url))
    if not confirm:
        raise NotConfirmed(f"restore of {path.name} into {mask_url(url)}: not confirmed; nothing was changed")
    check = verify_backup(path)
    if not check.ok and not force:
        raise BackupError(f"{path.name} failed verification ({check.reason}); refusing to restore (use force to override)")
    manifest_file = manifest_path(path)
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    backend = None
    try:
        if stop_app:
            from ccops.services import BackendError, get_backend

            backend = get_backend(settings)

            def stop() -> str:
                try:
                    backend.stop("app")
                    return "app stopped"
                except BackendError as exc:
                    return f"not stopped by ccops ({exc}): stop the app by hand"

            _step(result, "stop app", stop)
        if safety_dump and _database_exists(url):
            _step(result, "safety dump", lambda: create_backup(settings, database_url=url).path.name)
        _step(result, "recreate database", lambda: _recreate(url) or f"{mask_url(url)} recreated empty")
        _step(result, "restore", lambda: load_dump(path, url, jobs))
        if manifest.get("row_counts"):
            def counts() -> str:
                rows = compare_counts(url, manifest["row_counts"])
                bad = [r for r in rows if not r["ok"]]
                if bad:
                    raise BackupError(f"row counts differ from the manifest: {bad[:3]}")
                return f"row counts of {len(rows)} tables match the manifest"

            _step(result, "check row counts", counts)
    except Exception:  # noqa: BLE001 - the failed step is recorded in result
        pass
    finally:
        if backend is not None:
            from ccops.services import BackendError

            def start() -> str:
                try:
                    backend.start("app")
                    return "app started"
                except BackendError as exc:
                    return f"not started by ccops ({exc}): start the app by hand"

            try:
                _step(result, "start app", start)
            except Exception:  # noqa: BLE001
                pass
    if run_health and result.ok:
        from ccops.checks.health import run_health as health

        report = health(settings, database_url=url)
        reachable = all(f.status.value == "OK" for f in report.findings if f.check == "health.database")
        # the verdict is reported, but stale data (an old backup) is not a failed restore
        result.steps.append(RestoreStep("health check", report.line(), 0.0, reachable))
    return result


# ---- restore test ---------------------------------------------------------------------------

@dataclass
class RestoreTestResult:
    backup: Path
    scratch: str
    restore_s: float
    counts: list[dict[str, Any]]
    amcheck_clean: bool
    amcheck_detail: str
    dropped: bool

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.counts) and self.amcheck_clean and self.dropped


def restore_test(settings: Settings, path: Path | None = None) -> RestoreTestResult:
    """The guide's monthly check: restore into a scratch database, compare, amcheck, drop."""
    from ccops.checks import integrity

    if path is None:
        latest = latest_verified(settings.effective_backup_dir)
        if latest is None:
            raise BackupError(f"no verified backup in {settings.effective_backup_dir} to test")
        path = latest.path
    manifest = json.loads(manifest_path(path).read_text()) if manifest_path(path).exists() else {}
    scratch = f"ccops_restore_test_{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
    url = target_url(settings, scratch)
    _recreate(url)
    try:
        started = time.monotonic()
        load_dump(Path(path), url)
        seconds = time.monotonic() - started
        counts = compare_counts(url, manifest.get("row_counts", {})) if manifest else []
        with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        report = integrity.check_integrity(url, heap=False)
        detail = (f"{len(report.indexes)} indexes pass bt_index_check" if report.clean
                  else f"damaged: {', '.join(report.damaged_indexes)}")
    finally:
        parts = urlsplit(normalize_url(url))
        admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))
        get_engine(url).dispose()
        with get_engine(admin).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
    return RestoreTestResult(Path(path), scratch, seconds, counts, report.clean, detail, True)
