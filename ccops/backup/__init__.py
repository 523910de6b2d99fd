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
import tarfile
import time
import zlib
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

from ccops.core import selfstats
from ccops.core.db import client_tool, connect, describe_error, get_engine, libpq_env
from ccops.core.errors import EXIT_TEMPFAIL, CcopsError
from ccops.core.settings import Settings, mask_url

PREFIX = "contentcreator_"
ORIGIN_CCOPS = "ccops"
ORIGIN_APP = "app backup.sh"
KINDS = ("db", "env", "logs")


@dataclass(frozen=True)
class NameForm:
    """One way a backup file is named: its prefix, what it holds, who writes it, its endings."""

    prefix: str
    kind: str  # db: a database dump; env: a copy of the app's .env; logs: a tarball of the app's logs
    origin: str
    suffixes: tuple[str, ...]
    sequence: bool  # ccops adds _2, _3 when two backups fall in the same second


# THE backup-file naming rule (FACTS.md "Backups already on disk"): ccops' own names, and those
# of the app's scripts/backup.sh (`date +%Y%m%d_%H%M%S`). ccops' env and logs copies carry the
# contentcreator_ prefix, so the app's own names stay distinct from them.
NAME_FORMS = (
    NameForm("contentcreator_", "db", ORIGIN_CCOPS, (".dump", ".sql", ".sql.gz"), True),
    NameForm("contentcreator_env_", "env", ORIGIN_CCOPS, ("",), True),
    NameForm("contentcreator_logs_", "logs", ORIGIN_CCOPS, (".tar.gz",), True),
    NameForm("db_", "db", ORIGIN_APP, (".sql", ".sql.gz"), False),
    NameForm("env_", "env", ORIGIN_APP, ("",), False),
    NameForm("logs_", "logs", ORIGIN_APP, (".tar.gz",), False),
)


def _form_pattern(form: NameForm) -> str:
    endings = "|".join(re.escape(s) for s in form.suffixes)
    sequence = r"(?:_\d+)?" if form.sequence else ""
    return rf"{re.escape(form.prefix)}(\d{{8}})_(\d{{6}}){sequence}(?:{endings})"


_FORM_RES = tuple((form, re.compile(f"^{_form_pattern(form)}$")) for form in NAME_FORMS)
# any backup name of any kind and origin (for "is this file a backup?"); parse_name says which
NAME_RE = re.compile("^(?:" + "|".join(_form_pattern(f) for f in NAME_FORMS) + ")$")


@dataclass(frozen=True)
class BackupName:
    kind: str
    origin: str
    created: datetime  # naive UTC


def _stamp_utc(stamp: str, origin: str, zone: str | None) -> datetime:
    """The name's time as naive UTC: ccops writes UTC; backup.sh's `date` writes the app host's local time.

    `zone`: that host's IANA zone (the app's logs.timezone: the same clock writes both);
    None: this machine's local zone.
    """
    moment = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    if origin == ORIGIN_CCOPS:
        return moment
    if zone:
        from zoneinfo import ZoneInfo

        return moment.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc).replace(tzinfo=None)
    return moment.astimezone(timezone.utc).replace(tzinfo=None)  # a naive time is read as local


def parse_name(name: str, zone: str | None = None) -> BackupName | None:
    """What a file name says (kind, origin, time in UTC), or None when it is not a backup's name."""
    for form, pattern in _FORM_RES:
        match = pattern.match(name)
        if match:
            try:
                return BackupName(form.kind, form.origin,
                                  _stamp_utc(match.group(1) + match.group(2), form.origin, zone))
            except ValueError:  # 20261399: digits, but no date
                return None
    return None
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
    # rows per table counted in a plain dump's COPY blocks while verifying it (None: not a plain dump)
    row_counts: dict[str, int] | None = None


@dataclass
class BackupInfo:
    path: Path
    created: datetime
    size: int
    verified: bool
    reason: str
    kind: str = "db"
    origin: str = ORIGIN_CCOPS

    def row(self) -> dict[str, Any]:
        return {"file": self.path.name, "kind": self.kind, "origin": self.origin, "created": self.created,
                "bytes": self.size, "verified": self.verified, "reason": self.reason}


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


DB_KINDS = ("db",)


def list_backups(backup_dir: Path, verify: bool = True, kinds: tuple[str, ...] = DB_KINDS,
                 app_zone: str | None = None) -> list[BackupInfo]:
    """Finished backups of these kinds in the dir (not in safety/), newest first, with their verification.

    The default is database dumps only (ccops' and the app's backup.sh's alike), which is
    what "the latest backup" means to restore, the daily check and the dead man's switch;
    a listing or retention passes KINDS to see the .env copies and log tarballs too.
    `app_zone`: the zone backup.sh's names are written in (settings.logs_timezone).
    """
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    cache = _VerifyCache(directory) if verify else None
    found, names = [], set()
    for path in directory.iterdir():
        parsed = parse_name(path.name, app_zone)
        if parsed is None or not path.is_file():
            continue
        names.add(path.name)
        if parsed.kind not in kinds:
            continue
        result = cache.verify(path) if cache else VerifyResult(path, False, "not verified")
        found.append(BackupInfo(path, parsed.created, path.stat().st_size, result.ok, result.reason,
                                parsed.kind, parsed.origin))
    if cache:
        cache.forget_missing(names)
        cache.save()
    return sorted(found, key=lambda b: (b.created, b.path.name), reverse=True)


def latest_verified(backup_dir: Path, kind: str = "db", app_zone: str | None = None) -> BackupInfo | None:
    """The newest backup of this kind that verifies, whoever wrote it (ccops or the app's backup.sh)."""
    return next((b for b in list_backups(backup_dir, kinds=(kind,), app_zone=app_zone) if b.verified), None)


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
    """Dispatch on what the file is: its name says the kind, its first bytes the dump format."""
    if not path.exists():
        return VerifyResult(path, False, "file does not exist")
    parsed = parse_name(path.name)
    kind = parsed.kind if parsed else "db"
    if kind == "env":
        return _verify_env(path)
    if kind == "logs":
        return _verify_tarball(path)
    checks: list[str] = []
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
    if is_custom_dump(path):
        return _verify_custom(path, checks, has_manifest)
    return _verify_plain(path, checks)


CUSTOM_MAGIC = b"PGDMP"


def is_custom_dump(path: Path) -> bool:
    """pg_dump -Fc writes PGDMP first, whatever the file is called (the guide restores a `.sql` with pg_restore)."""
    with open(path, "rb") as handle:
        return handle.read(len(CUSTOM_MAGIC)) == CUSTOM_MAGIC


def _verify_custom(path: Path, checks: list[str], has_manifest: bool) -> VerifyResult:
    """pg_restore --list (the table of contents), then a full read of the data when it is cheap or unproven."""
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
    return VerifyResult(path, True, "verified: " + ", ".join(checks), checks)


def _verify_plain(path: Path, checks: list[str]) -> VerifyResult:
    """A plain-SQL dump (`pg_dump > db_*.sql`, maybe gzipped): read to the end and parse it statement by statement."""
    try:
        scan = scan_sql_file(path)
    except (OSError, EOFError, zlib.error) as exc:
        return VerifyResult(path, False, f"cannot be read to the end ({reason(exc)}): truncated or damaged", checks)
    if path.name.endswith(".gz"):
        checks.append("gzip CRC")
    if not scan.trailer:
        return VerifyResult(path, False, "plain dump lacks pg_dump's completion line (truncated)", checks)
    checks.append("dump trailer")
    if scan.problems:
        return VerifyResult(path, False, "plain dump does not parse: " + "; ".join(scan.problems[:3]), checks)
    checks.append(f"parsed {scan.statements:,} statements, {len(scan.tables) + scan.other_copies} COPY blocks, "
                  f"{sum(scan.tables.values()):,} rows")
    return VerifyResult(path, True, "verified: " + ", ".join(checks), checks, dict(scan.tables))


# ---- plain SQL, as pg_dump writes it ---------------------------------------------------------

DUMP_HEADER = b"-- PostgreSQL database dump"
DUMP_TRAILER = b"-- PostgreSQL database dump complete"
COPY_HEADER = re.compile(
    rb'^COPY\s+(?:("(?:[^"]|"")*"|[^\s."]+)\.)?("(?:[^"]|"")*"|[^\s."(]+)\s*(?:\((.*)\))?\s+FROM\s+stdin;\s*$')
SQL_TOKEN = re.compile(rb"--|/\*|\*/|'|\"|\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$|;")
IDENTIFIER = re.compile(rb'"(?:[^"]|"")*"|[^,\s]+')


def _unquote(name: bytes) -> str:
    text_ = name.decode("utf-8", "replace")
    return text_[1:-1].replace('""', '"') if text_.startswith('"') else text_


@dataclass
class SqlScan:
    """What a plain dump holds, read as psql would: statements, COPY blocks and their rows, and what is wrong."""

    statements: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # public tables: rows in their COPY block
    header: bool = False
    trailer: bool = False
    problems: list[str] = field(default_factory=list)
    mode: bytes = b""  # inside a quote, identifier, comment or $tag$ body
    open: bool = False  # a statement has begun and not yet met its ';'
    copy: tuple[str, str, int] | None = None  # (schema, table, expected fields) while in a COPY block
    other_copies: int = 0  # COPY blocks of tables outside public (checked, not counted)
    line_no: int = 0

    def problem(self, text_: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(text_)


def scan_sql_file(path: Path) -> SqlScan:
    """Scan a plain dump file (gzip by its name); gzip's CRC is checked by reading it to the end."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return scan_sql_lines(handle)


def scan_sql_lines(lines: Any) -> SqlScan:
    r"""A statement-level parse of pg_dump's plain output, streamed (never the whole file in memory).

    Checked: pg_dump's header and completion trailer; every statement ends with ';'
    outside quotes, identifiers, comments and dollar-quoted bodies; every COPY block
    ends with `\.` and each of its rows has as many fields as the COPY names columns
    (a cut or spliced line shows there). Rows are counted per public table, so a restore
    of the dump can be proved row for row without a manifest.
    """
    scan = SqlScan()
    for line in lines:
        scan.line_no += 1
        if scan.copy is not None:
            _copy_row(scan, line)
        else:
            _sql_line(scan, line)
    if scan.copy is not None:
        scan.problem(f"the COPY block of {scan.copy[0]}.{scan.copy[1]} never ends (no \\. line)")
    elif scan.mode:
        scan.problem(f"ends inside {scan.mode.decode('utf-8', 'replace')} ... (an unterminated quote or body)")
    elif scan.open:
        scan.problem("the last statement has no ';' (cut short)")
    if not scan.header:
        scan.problem("no pg_dump header ('-- PostgreSQL database dump')")
    return scan


def _copy_row(scan: SqlScan, line: bytes) -> None:
    schema, table, fields_ = scan.copy  # type: ignore[misc]
    row = line.rstrip(b"\r\n")
    if row == b"\\.":
        scan.copy = None
        return
    found = row.count(b"\t") + 1
    if fields_ and found != fields_:
        scan.problem(f"line {scan.line_no}: a row of {schema}.{table} has {found} fields, its COPY names {fields_}")
    if schema == "public":
        scan.tables[table] += 1


def _sql_line(scan: SqlScan, line: bytes) -> None:
    stripped = line.strip()
    if not scan.mode and stripped == DUMP_TRAILER:
        scan.trailer = True  # even after an open statement: then the parse says what is wrong
    if not scan.mode and not scan.open:
        if stripped.startswith(DUMP_HEADER) and not scan.header:
            scan.header = True
        if stripped.startswith(b"\\"):
            return  # a psql meta-command (\restrict / \unrestrict of current pg_dump, \connect)
        match = COPY_HEADER.match(stripped)
        if match:
            schema = _unquote(match.group(1)) if match.group(1) else "public"
            table = _unquote(match.group(2))
            columns = len(IDENTIFIER.findall(match.group(3))) if match.group(3) else 0
            if schema == "public":  # as exact_row_counts counts: the public schema's tables
                scan.tables.setdefault(table, 0)
            else:
                scan.other_copies += 1
            scan.copy = (schema, table, columns)
            scan.statements += 1
            return
    _lex(scan, line)


def _lex(scan: SqlScan, line: bytes) -> None:
    """Advance the quote/comment state over one line of SQL, counting statements at their top-level ';'."""
    pos = 0
    for token in SQL_TOKEN.finditer(line):
        if not scan.mode and line[pos:token.start()].strip():
            scan.open = True
        pos = token.end()
        value = token.group()
        if scan.mode:
            closes = {b"'": b"'", b'"': b'"', b"/*": b"*/"}.get(scan.mode, scan.mode)
            if value == closes:
                scan.mode = b""
        elif value == b"--":
            return
        elif value == b";":
            scan.statements += 1
            scan.open = False
        elif value != b"*/":
            scan.mode = value
            if value != b"/*":
                scan.open = True
    if not scan.mode and line[pos:].strip():
        scan.open = True


# ---- the app's .env copies and log tarballs -----------------------------------------------------

ENV_LINE = re.compile(rb"^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*\s*=")


def _verify_env(path: Path) -> VerifyResult:
    """An .env copy: readable and every line KEY=VALUE, blank or a comment. Nothing of it is ever shown."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return VerifyResult(path, False, f"cannot be read: {reason(exc)}")
    keys, bad = 0, []
    for number, line in enumerate(data.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        if ENV_LINE.match(line):
            keys += 1
        else:
            bad.append(number)
    if not keys:
        return VerifyResult(path, False, "an .env copy with no KEY=VALUE line (empty or not an .env)")
    if bad:
        return VerifyResult(path, False, f"lines {', '.join(map(str, bad[:5]))} are not KEY=VALUE (damaged copy)")
    return VerifyResult(path, True, f"verified: .env copy with {keys} keys", ["KEY=VALUE lines"])


def _verify_tarball(path: Path) -> VerifyResult:
    """A logs tarball: every member read to its end, then the gzip stream to its end (its CRC and length)."""
    members, size = 0, 0
    try:
        with gzip.open(path, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as archive:
                for member in archive:
                    if member.isfile():
                        handle = archive.extractfile(member)
                        while chunk := handle.read(1 << 20):  # type: ignore[union-attr]
                            size += len(chunk)
                    members += 1
            while stream.read(1 << 20):
                pass
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        return VerifyResult(path, False, f"tarball cannot be read to the end ({reason(exc)}): truncated or damaged")
    if not members:
        return VerifyResult(path, False, "tarball holds no file")
    return VerifyResult(path, True, f"verified: gzip CRC, tar read: {members} members, {size:,} bytes",
                        ["gzip CRC", "tar members read"])


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
    """`docker compose` for the configured project, the same form ccops.deploy.services and ccops.logs use."""
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
    """Copy a verified backup and its manifest to backup.offsite (see ccops.backup.offsite)."""
    from ccops.backup.offsite import offsite_copy as copy

    return copy(settings, Path(path), now=now)


# ---- the app's .env and logs, saved like its backup.sh saves them ------------------------------

def app_copy_name(kind: str, moment: datetime) -> str:
    """contentcreator_env_<stamp> / contentcreator_logs_<stamp>.tar.gz: never the app's own env_/logs_ names."""
    return f"{PREFIX}{kind}_{moment:%Y%m%d_%H%M%S}" + (".tar.gz" if kind == "logs" else "")


def _write_env_copy(source: Path, partial: Path) -> None:
    """Bytes of the .env as they are, into a file that is 0600 before the first secret reaches it."""
    data = Path(source).read_bytes()
    _private_file(partial)
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _write_logs_tarball(source: Path, partial: Path) -> None:
    """tar -czf of the log dir under `logs/` (as backup.sh archives it), 0600 from its creation."""
    if not Path(source).is_dir():
        raise FileNotFoundError(2, "log dir not found", str(source))
    _private_file(partial)
    with tarfile.open(partial, "w:gz") as archive:
        archive.add(str(source), arcname="logs")
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())


def save_app_copies(settings: Settings, *, now: datetime | None = None,
                    directory: Path | None = None) -> list[VerifyResult]:
    """The copies backup.include_env / backup.include_logs ask for, each written, renamed, then verified.

    The app's backup.sh keeps a copy of .env (its secrets included) and a tarball of
    its logs beside each dump; an operator moving to ccops keeps both. A copy that
    cannot be made is a failed VerifyResult naming why; the database backup stands.
    """
    b = settings.backup
    wanted = [("env", settings.effective_app_env_file, _write_env_copy)] if b.include_env else []
    wanted += [("logs", settings.effective_log_dir, _write_logs_tarball)] if b.include_logs else []
    if not wanted:
        return []
    target = private_dir(Path(directory or settings.effective_backup_dir))
    moment = now or _now()
    results = []
    for kind, source, write in wanted:
        final = target / app_copy_name(kind, moment)
        partial = target / f".{final.name}.partial"
        try:
            write(Path(source), partial)
            os.replace(partial, final)
            _fsync_dir(target)
        except (OSError, tarfile.TarError) as exc:
            partial.unlink(missing_ok=True)
            results.append(VerifyResult(final, False, f"{kind} copy of {source} not saved: {reason(exc)}"))
            continue
        results.append(verify_backup(final))
    return results


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


def plan_retention(backup_dir: Path, now: datetime, retention_days: int, keep_verified: int,
                   app_zone: str | None = None) -> RetentionPlan:
    """Delete by age, but never below the newest `keep_verified` verified backups (at least one); old leftovers go.

    The app's backup.sh dumps count towards that floor like ccops' own; its newest good
    .env copy and log tarball stay too. `app_zone`: the zone of backup.sh's names.

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
    newest_copy: dict[str, Path] = {}
    for info in list_backups(directory, kinds=KINDS, app_zone=app_zone):
        companions = [manifest_path(info.path)] if manifest_path(info.path).exists() else []
        if info.kind == "db" and info.verified and verified_kept < keep_verified:
            verified_kept += 1
            plan.keep.append((info.path, f"one of the newest {keep_verified} verified database backups "
                                         f"(ccops' and the app's backup.sh's count alike; this one: {info.origin})"))
        elif info.kind != "db" and info.verified and info.kind not in newest_copy:
            newest_copy[info.kind] = info.path
            plan.keep.append((info.path, f"the newest verified {info.kind} copy"))
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
        for kind in KINDS:  # the newest good database dump, .env copy and log tarball, whoever wrote them
            newest = latest_verified(directory, kind)
            if newest is not None and newest.path.resolve() in doomed:
                what = "backup" if kind == "db" else f"{kind} copy"
                raise BackupError(f"refusing to delete {newest.path.name}: it is the newest verified {what} in "
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


# ---- restore: ccops.backup.restore, reachable here too (other modules call ccops.backup.restore_backup) ----

_RESTORE_NAMES = frozenset({"ExpectedCounts", "RestoreResult", "RestoreStep", "RestoreTestResult", "compare_counts",
                            "dump_roles", "dump_row_counts", "effective_jobs", "expected_counts", "load_dump",
                            "refuse_non_dump", "restore_backup", "restore_test", "target_url"})


def __getattr__(name: str) -> Any:
    """Lazy re-export (PEP 562): backup_restore imports this module, so it cannot be imported at the top."""
    if name in _RESTORE_NAMES:
        from ccops.backup import restore as backup_restore

        return getattr(backup_restore, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
