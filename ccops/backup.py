"""Backups that can be trusted: dump, verify, keep, restore, and prove it restores.

The guide's script calls a backup good when the file exists and deletes
everything older than 30 days, so a month of failed backups deletes the last
good one. Here (after Barman and pgBackRest):
- pg_dump writes custom format under a temporary name; the file is fsynced and
  renamed only after pg_dump exits 0, so a killed dump never looks finished;
  a lock file in the backup dir is held for the whole dump, so a prune running
  at the same time cannot take the growing partial file for a leftover;
- a manifest beside it holds versions, times, size, sha256 and the exact row
  count of every table, counted in the same snapshot pg_dump used
  (pg_export_snapshot + --snapshot), so a restore can be checked row for row;
- a backup is "verified" only when its checksum matches and pg_restore can read
  it; retention counts verified backups and never keeps fewer than N of them;
- a restore refuses without confirmation, takes a safety dump of what it
  replaces (kept apart, in safety/, so it never counts as a backup), restores
  into a scratch database and only swaps it in once its row counts match, so a
  failed restore leaves the target as it was.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ccops import selfstats
from ccops.config import Settings, mask_url
from ccops.db import client_tool, connect, describe_error, get_engine, libpq_env
from ccops.errors import EXIT_TEMPFAIL, CcopsError

PREFIX = "contentcreator_"
NAME_RE = re.compile(r"^contentcreator_(\d{8})_(\d{6})(?:_\d+)?\.(dump|sql|sql\.gz)$")
MANIFEST_SUFFIX = ".manifest.json"
LOCK_NAME = ".ccops-backup.lock"
CACHE_NAME = ".ccops-verified.json"
SAFETY_DIR = "safety"
# a partial file untouched this long belongs to no running pg_dump (which writes continuously)
PARTIAL_MAX_AGE_S = 6 * 3600
BACKUP_LOCK_WAIT_S = 10.0
PRUNE_LOCK_WAIT_S = 5.0
# with a manifest the sha256 already proves the bytes pg_dump wrote; the full read is extra, so only when cheap
FULL_READ_MAX_BYTES = 64 << 20
MAX_IDENTIFIER = 63


class BackupError(CcopsError):
    """A backup, verification or restore failed; nothing was half-written."""

    exit_code = 2


class BackupBusy(BackupError):
    """Another ccops process holds the backup dir's lock; cron should try again later."""

    exit_code = EXIT_TEMPFAIL


# What a step of backup, verify, restore or restore test can meet in normal operation: the database
# (refused, gone, denied), the disk, a client tool (missing, killed, timed out), or ccops' own refusals.
# Anything else is a bug and keeps its traceback.
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, psycopg.Error)
STEP_ERRORS: tuple[type[BaseException], ...] = DB_ERRORS + (CcopsError, OSError, subprocess.SubprocessError)


def reason(exc: BaseException, url: str = "") -> str:
    """One line for an operator: the driver's or tool's first line, any URL's password masked."""
    if isinstance(exc, DB_ERRORS):
        return describe_error(exc, mask_url(url) if url else "")
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class StageFailed(BackupError):
    """A step of backup or restore test failed; its message already names the procedure and the step."""


@contextmanager
def stage(procedure: str, step: str, url: str = "") -> Iterator[None]:
    """Turn an expected failure inside one step into a BackupError naming the procedure, the step and why.

    The command line prints a CcopsError as one line and exits 2; a bare traceback
    would say neither which step stopped nor that nothing was written. A busy lock
    keeps its own exit code (75), an inner stage its own wording.
    """
    try:
        yield
    except (StageFailed, BackupBusy):
        raise
    except STEP_ERRORS as exc:
        raise StageFailed(f"{procedure} failed at {step}: {reason(exc, url)}") from None


def private_dir(directory: Path) -> Path:
    """Create the directory (and any missing parent) 0700 and tighten the leaf: dumps hold every row.

    mkdir(parents=True) would create the parents with the umask's 0755, so a
    restore's first safety dump made backups/ world-listable.
    """
    directory = Path(directory)
    missing = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    try:
        for path in reversed(missing):
            path.mkdir(mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise BackupError(f"cannot prepare the backup dir {directory}: {reason(exc)}") from None
    return directory


def _private_file(path: Path) -> None:
    """Create the (empty) file 0600 before a tool writes into it, so it is never readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


# ---- names, locking and listing ----------------------------------------------------------

def backup_name(moment: datetime) -> str:
    return f"{PREFIX}{moment:%Y%m%d_%H%M%S}.dump"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def safety_dir(settings: Settings) -> Path:
    """Where restore puts its safety dumps: beside the backups, but never counted among them."""
    return Path(settings.effective_backup_dir) / SAFETY_DIR


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(manifest_path(Path(path)).read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def backup_lock(directory: Path, wait_s: float) -> Iterator[None]:
    """flock on <dir>/.ccops-backup.lock; the kernel releases it when the process dies, so it never goes stale."""
    directory = Path(directory)
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot open the lock {directory / LOCK_NAME}: {exc.strerror or exc}") from None
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackupBusy(f"a backup is running in {directory} (it holds {LOCK_NAME})") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


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


class _VerifyCache:
    """Verified results keyed by (name, size, mtime_ns): an unchanged file need not be hashed again each run.

    Only successes are kept: a failure is re-checked every time, so a transient
    error (a missing pg_restore, a timeout) never sticks to a good backup.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CACHE_NAME
        try:
            data = json.loads(self.path.read_text())
            self.entries: dict[str, Any] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    @staticmethod
    def _identity(path: Path) -> dict[str, Any]:
        stat = path.stat()
        manifest = manifest_path(path)
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "manifest_mtime_ns": manifest.stat().st_mtime_ns if manifest.exists() else None}

    def verify(self, path: Path) -> VerifyResult:
        identity = self._identity(path)
        entry = self.entries.get(path.name)
        if entry and all(entry.get(k) == v for k, v in identity.items()):
            return VerifyResult(path, True, str(entry.get("reason", "verified")), list(entry.get("checks", [])))
        result = verify_backup(path)
        self.remember(path, result, identity)
        return result

    def remember(self, path: Path, result: VerifyResult, identity: dict[str, Any] | None = None) -> None:
        if result.ok:
            self.entries[path.name] = {**(identity or self._identity(path)), "reason": result.reason,
                                       "checks": result.checks}
            self.dirty = True
        elif self.entries.pop(path.name, None) is not None:
            self.dirty = True

    def forget_missing(self, names: set[str]) -> None:
        for name in [n for n in self.entries if n not in names]:
            del self.entries[name]
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = self.path.with_name(f"{CACHE_NAME}.{os.getpid()}.partial")
        try:
            tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError:  # a cache only saves time: a full or read-only disk must not fail a listing
            tmp.unlink(missing_ok=True)


def list_backups(backup_dir: Path, verify: bool = True) -> list[BackupInfo]:
    """Every finished backup in the dir (not in safety/), newest first, with its verification result."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    cache = _VerifyCache(directory) if verify else None
    found = []
    for path in directory.iterdir():
        match = NAME_RE.match(path.name)
        if not match or not path.is_file():
            continue
        created = datetime.strptime(match.group(1) + match.group(2), "%Y%m%d%H%M%S")
        result = cache.verify(path) if cache else VerifyResult(path, False, "not verified")
        found.append(BackupInfo(path, created, path.stat().st_size, result.ok, result.reason))
    if cache:
        cache.forget_missing({b.path.name for b in found})
        cache.save()
    return sorted(found, key=lambda b: b.created, reverse=True)


def latest_verified(backup_dir: Path) -> BackupInfo | None:
    return next((b for b in list_backups(backup_dir) if b.verified), None)


# ---- verification ---------------------------------------------------------------------

def _last_line(stderr: str, fallback: str) -> str:
    return (stderr.strip().splitlines() or [fallback])[-1]


def verify_backup(path: Path) -> VerifyResult:
    """Checksum against the manifest (when there is one), pg_restore --list, and a full read of the data.

    `pg_restore --list` reads only the table of contents at the start of the
    file, so a dump cut off in its data passes it; `pg_restore -f /dev/null`
    reads and decompresses every data block and catches that. An unreadable
    file or a missing pg_restore is a failed verification, never a traceback.
    """
    path = Path(path)
    try:
        return _verify(path)
    except (OSError, subprocess.SubprocessError) as exc:
        return VerifyResult(path, False, f"cannot be verified: {reason(exc)}")


def _verify(path: Path) -> VerifyResult:
    checks: list[str] = []
    if not path.exists():
        return VerifyResult(path, False, "file does not exist")
    manifest_file = manifest_path(path)
    has_manifest = manifest_file.exists()
    if has_manifest:
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
        tool = client_tool("pg_restore")
        try:
            proc = subprocess.run([tool, "--list", str(path)], capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return VerifyResult(path, False, "pg_restore --list timed out", checks)
        if proc.returncode != 0:
            return VerifyResult(path, False, "pg_restore --list failed: " + _last_line(proc.stderr, "?"), checks)
        checks.append("pg_restore --list")
        if not has_manifest or path.stat().st_size <= FULL_READ_MAX_BYTES:
            try:
                proc = subprocess.run([tool, "-f", os.devnull, str(path)], capture_output=True, text=True, timeout=6 * 3600)
            except subprocess.TimeoutExpired:
                return VerifyResult(path, False, "pg_restore full read timed out", checks)
            if proc.returncode != 0:
                return VerifyResult(path, False, "pg_restore full read failed (truncated or damaged data): "
                                    + _last_line(proc.stderr, "?"), checks)
            checks.append("pg_restore full read")
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


def archive_header(path: Path) -> dict[str, str]:
    """The versions pg_dump wrote into a custom archive's header (for dumps taken where we cannot ask)."""
    proc = subprocess.run([client_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True, timeout=900)
    header = {}
    for key, label in (("server_version", "Dumped from database version:"), ("pg_dump_version", "Dumped by pg_dump version:"),
                       ("database", "dbname:")):
        for line in proc.stdout.splitlines():
            if label in line:
                header[key] = line.split(label, 1)[1].strip()
                break
    return header


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
    """count(*) of every table in public, in the connection's own transaction (so in its snapshot).

    The names come from the catalog, which any role with CREATE can fill: each is
    composed with sql.Identifier, never spliced, so `a",public.pwn()"b` is a name
    and not a call. psycopg's own cursor runs it, as SQLAlchemy's text() would
    read a `:x` inside a name as a bind parameter.
    """
    tables = [r[0] for r in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"))]
    raw = conn.connection.driver_connection
    counts = {}
    with raw.cursor() as cursor:
        for table in tables:
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table)))
            counts[table] = int(cursor.fetchone()[0])
    return counts


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def compose_base(settings: Settings) -> list[str]:
    """`docker compose` for the configured project, the same form ccops.services and ccops.logs use."""
    compose = settings.compose
    command = ["docker", "compose"]
    if compose.file:
        command += ["-f", compose.file]
    return command + ["--project-directory", compose.project_dir or "."]


def _dump_local(url: str, partial: Path, level: int) -> dict[str, Any]:
    """pg_dump against the URL inside an exported snapshot, whose exact row counts go into the manifest.

    Each step names itself when it fails (a wrong password is "backup failed at
    connect to the database: ... password authentication failed", URL masked).
    """
    try:
        return _dump_in_snapshot(url, partial, level)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _dump_in_snapshot(url: str, partial: Path, level: int) -> dict[str, Any]:
    with stage("backup", "connect to the database", url):
        conn = get_engine(url).connect().execution_options(isolation_level="REPEATABLE READ")
    with stage("backup", "end the snapshot's transaction", url), conn, conn.begin():
        with stage("backup", "export a snapshot", url):
            conn.execute(text("SET TRANSACTION READ ONLY"))
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar()
        with stage("backup", "count rows", url):
            counts = exact_row_counts(conn)  # same snapshot as the dump: the manifest's counts are exact
        with stage("backup", "read versions", url):
            server, client = _versions(conn)
            database = conn.execute(text("SELECT current_database()")).scalar()
        env = {**os.environ, **libpq_env(url)}
        with stage("backup", "pg_dump", url):
            _private_file(partial)
            command = [client_tool("pg_dump"), "-Fc", f"-Z{int(level)}", f"--snapshot={snapshot}", "-f", str(partial)]
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=6 * 3600)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed ({_last_line(proc.stderr, f'exit {proc.returncode}')}); "
                          "no backup was written, earlier backups are untouched")
    return {"database": database, "server_version": server, "pg_dump_version": client, "via": "local",
            "row_counts": counts, "row_counts_exact": True, "source": mask_url(url)}


def _counts_outside_snapshot(url: str) -> tuple[dict[str, int], str]:
    if not url:
        return {}, "row counts not taken: no database URL is configured to count through"
    try:
        with connect(url, statement_timeout_ms=3_600_000) as conn:
            counts = exact_row_counts(conn)
    except DB_ERRORS as exc:  # unreachable from here is normal for a compose deployment
        return {}, f"row counts not taken: {mask_url(url)} is not reachable from here ({reason(exc)})"
    return counts, (f"row counts taken through {mask_url(url)} just before the dump, not in its snapshot: "
                    "writes during the dump can make a restore differ from them")


def _dump_compose(settings: Settings, partial: Path, level: int) -> dict[str, Any]:
    """The guide's `docker compose exec -T db pg_dump`, its stdout streamed into the partial file."""
    compose = settings.compose
    command = compose_base(settings) + ["exec", "-T", compose.db_service, "pg_dump", "-U", compose.db_user,
                                        "-Fc", f"-Z{int(level)}", compose.db_name]
    counts, note = _counts_outside_snapshot(settings.resolved_database_url_or_blank())
    try:
        _private_file(partial)
        with open(partial, "wb") as out:
            proc = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, timeout=6 * 3600)
    except FileNotFoundError:
        partial.unlink(missing_ok=True)
        raise BackupError("docker not found on PATH: --via compose needs the docker CLI; no backup was written") from None
    except (OSError, subprocess.SubprocessError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup failed at docker compose exec pg_dump: {reason(exc)}; no backup was written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        stderr = proc.stderr.decode("utf-8", "replace")
        raise BackupError(f"{' '.join(command[:2])} exec {compose.db_service} pg_dump failed "
                          f"({_last_line(stderr, f'exit {proc.returncode}')}); no backup was written, "
                          "earlier backups are untouched")
    try:
        header = archive_header(partial)
    except (OSError, subprocess.SubprocessError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup failed at reading the dump's header: {reason(exc)}; no backup was written") from None
    return {"database": header.get("database", compose.db_name), "server_version": header.get("server_version", ""),
            "pg_dump_version": header.get("pg_dump_version", ""), "via": "compose", "row_counts": counts,
            "row_counts_exact": False, "row_counts_note": note,
            "source": f"docker compose exec {compose.db_service} pg_dump -U {compose.db_user} {compose.db_name}"}


def create_backup(settings: Settings, *, compression: int | None = None, now: datetime | None = None,
                  database_url: str | None = None, via: str = "local", directory: Path | None = None) -> BackupResult:
    """pg_dump -Fc (locally against the URL, or via compose), manifest, then verified before it counts.

    `directory` defaults to the backup dir; restore passes safety/ for its safety dumps.
    """
    if via not in ("local", "compose"):
        raise BackupError(f"unknown backup route {via!r}: use 'local' or 'compose'")
    directory = private_dir(Path(directory or settings.effective_backup_dir))
    level = int(settings.backup.compression if compression is None else compression)
    t0 = time.monotonic()
    with backup_lock(directory, BACKUP_LOCK_WAIT_S):
        started = now or _now()
        final = directory / backup_name(started)
        counter = 1
        while final.exists():
            counter += 1
            final = directory / backup_name(started).replace(".dump", f"_{counter}.dump")
        partial = directory / f".{final.name}.partial"
        manifest_tmp = directory / f".{final.name}{MANIFEST_SUFFIX}.partial"
        source = settings.resolved_database_url_or_blank() if via == "compose" else (
            database_url or settings.resolved_database_url())
        with selfstats.measured(source, "backup", settings.home):  # its scans are ccops', not the app's
            if via == "compose":
                meta = _dump_compose(settings, partial, level)
            else:
                meta = _dump_local(source, partial, level)
        try:
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o600)
            manifest = {
                "file": final.name, "database": meta["database"], "server_version": meta["server_version"],
                "pg_dump_version": meta["pg_dump_version"], "format": "custom", "compression": level,
                "start": started.isoformat() + "Z", "end": _now().isoformat() + "Z",
                "size": partial.stat().st_size, "sha256": sha256_of(partial), "row_counts": meta["row_counts"],
                "row_counts_exact": meta["row_counts_exact"], "via": meta["via"],
                "host": socket.gethostname(), "source": meta["source"],
            }
            if meta.get("row_counts_note"):
                manifest["row_counts_note"] = meta["row_counts_note"]
            manifest_tmp.write_text(json.dumps(manifest, indent=2))
            os.chmod(manifest_tmp, 0o600)
            os.replace(partial, final)
            os.replace(manifest_tmp, manifest_path(final))
            _fsync_dir(directory)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            manifest_tmp.unlink(missing_ok=True)
            raise BackupError(f"could not finish the backup in {directory}: {exc.strerror or exc}; "
                              "no backup was written, earlier backups are untouched") from None
    result = verify_backup(final)
    cache = _VerifyCache(directory)
    cache.remember(final, result)
    cache.save()
    return BackupResult(final, manifest, time.monotonic() - t0, result.ok, result.reason)


def offsite_copy(settings: Settings, path: Path, *, now: datetime | None = None) -> Any:
    """Copy a verified backup and its manifest to backup.offsite (see ccops.backup_offsite)."""
    from ccops.backup_offsite import offsite_copy as copy

    return copy(settings, Path(path), now=now)


# ---- retention --------------------------------------------------------------------------

@dataclass
class RetentionPlan:
    keep: list[tuple[Path, str]] = field(default_factory=list)
    delete: list[tuple[Path, str]] = field(default_factory=list)
    directory: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(p.stat().st_size for p, _ in self.delete if p.exists())

    def delete_paths(self) -> list[Path]:
        return [p for p, _ in self.delete]

    def rows(self) -> list[dict[str, Any]]:
        return ([{"file": p.name, "action": "keep", "reason": r} for p, r in self.keep]
                + [{"file": p.name, "action": "delete", "reason": r} for p, r in self.delete])


def _retention_floor(retention_days: int, keep_verified: int) -> tuple[int, str]:
    """The number of verified backups retention keeps: never fewer than one, whatever it was called with.

    Settings validation refuses keep_verified < 1 and negative day counts; this
    holds also for code that calls retention with a value of its own. A negative
    age has no meaning (it would put the cutoff in the future): refused outright.
    """
    if retention_days < 0:
        raise BackupError(f"retention_days {retention_days} is negative: refusing to delete any backup "
                          "(give 0 or more days)")
    if keep_verified < 1:
        return 1, (f"keep_verified {keep_verified} asked for: the newest verified backup is kept regardless "
                   "(retention never deletes it)")
    return keep_verified, ""


def plan_retention(backup_dir: Path, now: datetime, retention_days: int, keep_verified: int) -> RetentionPlan:
    """Delete by age, but never below the newest `keep_verified` verified backups (at least one); old leftovers go.

    A partial file counts as a leftover only when nothing has written to it for
    6 hours, measured on the real clock (a file's mtime is real time, whatever
    `now` a report is written for).
    """
    keep_verified, note = _retention_floor(retention_days, keep_verified)
    directory = Path(backup_dir)
    plan = RetentionPlan(directory=directory if directory.is_dir() else None)
    if note:
        plan.notes.append(note)
    if not directory.is_dir():
        return plan
    for leftover in sorted(directory.glob(".*.partial")):
        try:
            idle = time.time() - leftover.stat().st_mtime
        except FileNotFoundError:
            continue  # a backup finished (renamed it) while we looked
        if idle >= PARTIAL_MAX_AGE_S:
            plan.delete.append((leftover, f"partial file of an interrupted backup (untouched for {idle / 3600:.0f} h)"))
        else:
            plan.keep.append((leftover, "partial file written in the last 6 h: a backup may be running"))
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
    _plan_safety_dumps(plan, directory / SAFETY_DIR, cutoff, retention_days)
    return plan


def _plan_safety_dumps(plan: RetentionPlan, safety: Path, cutoff: datetime, retention_days: int) -> None:
    """Safety dumps (what a restore replaced) age out like backups, but the newest, and the newest verified, stay.

    They never count as backups of the platform; without this, every restore
    would leave a full dump behind for good. When the newest is damaged, the
    newest one that verifies is the only copy of what a restore replaced.
    """
    dumps = list_backups(safety)
    newest_verified = next((info.path for info in dumps if info.verified), None)
    for index, info in enumerate(dumps):
        label = f"{SAFETY_DIR}/{info.path.name}"
        if index == 0:
            plan.keep.append((info.path, f"{label}: the newest safety dump (what the last restore replaced)"))
        elif info.path == newest_verified:
            plan.keep.append((info.path, f"{label}: the newest verified safety dump"))
        elif info.created >= cutoff:
            plan.keep.append((info.path, f"{label}: safety dump younger than {retention_days} days"))
        else:
            companion = manifest_path(info.path)
            plan.delete.append((info.path, f"{label}: safety dump older than {retention_days} days"))
            if companion.exists():
                plan.delete.append((companion, "manifest of a deleted safety dump"))


def _unlink_all(paths: list[Path]) -> int:
    """Delete the files, counting the bytes; one that cannot be deleted stops the prune with its reason."""
    freed = 0
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BackupError(f"prune stopped at {path}: {reason(exc)}; {freed:,} bytes were freed before it") from None
    return freed


def refuse_newest_verified(paths: list[Path]) -> None:
    """Raise when the paths hold the newest verified backup of their directory (backups or safety dumps).

    Checked again at deletion time, against the files as they are now, so no plan
    (built by hand, by another module, or with keep_verified 0) can take the last
    good copy.
    """
    doomed = {Path(p).resolve() for p in paths}
    for directory in sorted({Path(p).parent for p in paths}):
        newest = latest_verified(directory)
        if newest is not None and newest.path.resolve() in doomed:
            raise BackupError(f"refusing to delete {newest.path.name}: it is the newest verified backup in "
                              f"{directory}; nothing was deleted")


def apply_retention(plan: RetentionPlan) -> int:
    """Delete the plan's files; partial files only while holding the backup lock (no backup running).

    Never the newest verified backup of any directory involved: a plan that holds
    it is refused as a whole.
    """
    refuse_newest_verified([p for p in plan.delete_paths() if NAME_RE.match(p.name)])
    partials = [p for p in plan.delete_paths() if p.name.endswith(".partial")]
    others = [p for p in plan.delete_paths() if not p.name.endswith(".partial")]
    freed = _unlink_all(others)
    if not partials:
        return freed
    if plan.directory is None:
        plan.notes.append(f"{len(partials)} partial files left alone: no backup dir to lock")
        return freed
    try:
        with backup_lock(plan.directory, PRUNE_LOCK_WAIT_S):
            freed += _unlink_all(partials)
    except BackupError:
        plan.notes.append(f"a backup is running in {plan.directory}: its {len(partials)} partial files were left alone")
    return freed


# ---- restore: ccops.backup_restore, reachable here too (other modules call ccops.backup.restore_backup) ----

_RESTORE_NAMES = frozenset({"RestoreResult", "RestoreStep", "RestoreTestResult", "compare_counts", "dump_roles",
                            "effective_jobs", "load_dump", "restore_backup", "restore_test", "target_url"})


def __getattr__(name: str) -> Any:
    """Lazy re-export (PEP 562): backup_restore imports this module, so it cannot be imported at the top."""
    if name in _RESTORE_NAMES:
        from ccops import backup_restore

        return getattr(backup_restore, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
