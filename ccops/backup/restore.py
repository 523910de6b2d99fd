"""Restoring a backup: the guide's recovery procedure and its monthly restore test.

The top of the backup engine: it takes a safety dump (ccops.backup.take), reads
the dump (sqlscan, verify) and proves the result with foundation functions only
(ccops.core.health, ccops.core.amcheck), so nothing here reaches up into the
checks. Its public names are also importable from ccops.backup.

A restore never drops the target first: the dump goes into
<target>_ccops_restore, its row counts are checked there, and only then is it
renamed to the target (the old target renamed aside and dropped after the
swap). Custom dumps keep their owners when the roles exist on the target;
plain SQL is streamed into psql line by line, without the settings and roles
the target does not have.

Every step either succeeds or stops the procedure with one line naming it and
why (a password is never in it), and a restore is reported as done only after
its last step read the target back and found the backup's rows there.
Identifiers (databases, owners) are composed with psycopg.sql, never spliced.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import text

from ccops.backup.errors import STEP_ERRORS, BackupError, last_line, reason, stage
from ccops.backup.files import read_manifest, utc_now
from ccops.backup.naming import parse_name
from ccops.backup.sqlscan import scan_sql_file, scan_sql_lines
from ccops.backup.store import latest_verified, safety_dir
from ccops.backup.take import create_backup, exact_row_counts
from ccops.backup.toc import fill_data_offsets
from ccops.backup.verify import (
    ArchiveStream,
    is_restorable_archive,
    is_zstd,
    run_pg_restore,
    verify_backup,
    zstd_tool,
)
from ccops.core import selfstats
from ccops.core.amcheck import check_integrity
from ccops.core.db import application_name, client_tool, connect, get_engine, libpq_env, libpq_url, normalize_url
from ccops.core.errors import NotConfirmed, UsageError
from ccops.core.health import run_health as guide_health
from ccops.core.settings import Settings, mask_url

# ---- restore ------------------------------------------------------------------------------

@dataclass
class RestoreStep:
    name: str
    detail: str
    duration_s: float
    ok: bool


FINAL_STEP = "verify target"


@dataclass
class RestoreResult:
    """The steps a restore took. It succeeded only if none failed and the last proof (verify target) passed.

    An empty or cut-short list is no success: a restore that stopped before it
    could show the target holds the backup's data must never read "restored".
    """

    target: str
    steps: list[RestoreStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        proved = any(s.name == FINAL_STEP and s.ok for s in self.steps)
        return proved and all(s.ok for s in self.steps)

    def summary(self) -> str:
        failed = [s for s in self.steps if not s.ok]
        if failed:
            return f"restore into {self.target} failed at {failed[0].name}: {failed[0].detail}"
        if not self.ok:
            done = self.steps[-1].name if self.steps else "no step"
            return f"restore into {self.target} did not finish (last step: {done}): nothing proves the data was restored"
        return f"restored into {self.target} in {sum(s.duration_s for s in self.steps):.1f} s"


class StepFailed(BackupError):
    """A restore step failed; it is recorded in the result and the procedure stops."""


def _step(result: RestoreResult, name: str, action: Callable[[], Any], url: str = "") -> Any:
    """Run one step; an expected failure is recorded (one masked line) and stops the procedure as StepFailed."""
    started = time.monotonic()
    try:
        detail = action()
    except STEP_ERRORS as exc:
        line = reason(exc, url)
        result.steps.append(RestoreStep(name, line, time.monotonic() - started, False))
        raise StepFailed(f"{name}: {line}") from None
    result.steps.append(RestoreStep(name, str(detail), time.monotonic() - started, True))
    return detail


def target_url(settings: Settings, target: str) -> str:
    """A database name becomes a database on the configured server; a URL stays a URL.

    A libpq keyword string (`host=... dbname=... password=...`) is what many operators paste from
    a `.pgpass`-era runbook: it is read as libpq reads it, never taken for a database's name
    (which once restored into a database literally named after the whole string).
    """
    if "://" in target:
        return target
    if "=" in target:
        return keyword_dsn_url(target)
    parts = urlsplit(normalize_url(settings.resolved_database_url()))
    return urlunsplit((parts.scheme, parts.netloc, f"/{quote(target, safe='')}", parts.query, parts.fragment))


def keyword_dsn_url(dsn: str) -> str:
    """`host=h port=p dbname=d user=u password=x sslmode=...` as a postgresql:// URL, each part quoted."""
    try:
        fields = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"target: not a database name, URL or libpq keyword string: {str(exc).splitlines()[0]}") from None
    if not fields.get("dbname"):
        raise UsageError("target: the keyword string names no dbname")
    user = quote(str(fields.pop("user", "")), safe="")
    password = fields.pop("password", None)
    auth = f"{user}:{quote(str(password), safe='')}@" if password is not None else (f"{user}@" if user else "")
    host = "" if str(fields.get("host", "")).startswith("/") else str(fields.pop("host", ""))  # a socket dir: query
    port = fields.pop("port", None)
    netloc = auth + (f"[{host}]" if ":" in host else quote(host, safe="")) + (f":{port}" if port else "")
    name = quote(str(fields.pop("dbname")), safe="")
    query = "&".join(f"{quote(str(k))}={quote(str(v), safe='')}" for k, v in fields.items())
    return urlunsplit(("postgresql", netloc, f"/{name}", query, ""))


def _dbname(url: str) -> str:
    return unquote(urlsplit(normalize_url(url)).path.lstrip("/"))


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(normalize_url(url))
    return urlunsplit((parts.scheme, parts.netloc, f"/{quote(name, safe='')}", parts.query, parts.fragment))


MAINTENANCE_DATABASES = ("postgres", "template1")
# PostgreSQL truncates longer identifiers silently: a derived name must fit in it
MAX_IDENTIFIER = 63


def _derived_name(name: str, suffix: str) -> str:
    """<name><suffix> within PostgreSQL's 63 bytes, which would otherwise truncate it silently."""
    room = MAX_IDENTIFIER - len(suffix.encode())
    base = name.encode()[:room].decode("utf-8", "ignore")
    return base + suffix


def _admin(url: str) -> psycopg.Connection:
    """An autocommit session on a maintenance database of the target's server: postgres, else template1.

    Hardened servers often REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; the
    restore then works through template1. Renaming or dropping a database needs
    a session in another one, so when neither is reachable the restore stops
    here, saying so, before anything was changed.
    """
    tried = []
    for name in (n for n in MAINTENANCE_DATABASES if n != _dbname(url)):
        try:
            return psycopg.connect(libpq_url(_with_db(url, name)), autocommit=True, connect_timeout=10,
                                   application_name=application_name())
        except psycopg.Error as exc:
            tried.append(f"{name}: {reason(exc)}")
    raise BackupError(f"no maintenance database reachable ({'; '.join(tried)}): renaming and dropping databases "
                      "needs a session in postgres or template1")


def _run(conn: psycopg.Connection, statement: sql.SQL | sql.Composed, params: tuple[Any, ...] | None = None) -> Any:
    """Execute one composed statement; the first row, if any."""
    with conn.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone() if cursor.description else None


def _database_exists(conn: psycopg.Connection, name: str) -> bool:
    return _run(conn, sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s"), (name,)) is not None


def _drop(url: str) -> None:
    get_engine(url).dispose()
    with _admin(url) as conn:
        _run(conn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_dbname(url))))


def _recreate(url: str) -> None:
    _drop(url)
    with _admin(url) as conn:
        _run(conn, sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(_dbname(url))))


def _dropped(url: str, detail: str) -> str:
    """Drop the database and say so: a restore step's detail is what it did."""
    _drop(url)
    return detail


def _check_target(url: str, found: list[bool]) -> str:
    """Whether the target exists (appended to found); proves on the way that a maintenance database is reachable."""
    with _admin(url) as conn:
        exists = _database_exists(conn, _dbname(url))
    found.append(exists)
    return (f"{_dbname(url)} exists: it is dumped first, then replaced" if exists
            else f"{_dbname(url)} does not exist yet: it will be created")


def _scratch_clauses(conn: psycopg.Connection, target: str) -> list[sql.Composable]:
    """CREATE DATABASE options to try, richest first: the target's owner, encoding and locale when it exists."""
    row = _run(conn, sql.SQL("SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
                             "FROM pg_database WHERE datname = %s"), (target,))
    attempts: list[sql.Composable] = []
    if row:
        owner, encoding, collate, ctype = row
        attempts.append(sql.SQL("OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Identifier(owner), sql.Literal(encoding), sql.Literal(collate), sql.Literal(ctype)))
        attempts.append(sql.SQL("OWNER {}").format(sql.Identifier(owner)))
    attempts.append(sql.SQL(""))
    return attempts


def _create_scratch(target: str, scratch: str) -> str:
    """An empty database for the restore, with the target's owner and encoding when it exists."""
    _drop(scratch)  # a leftover of an earlier, interrupted restore: ours by name
    with _admin(target) as conn:
        settings = _run(conn, sql.SQL(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE d.datname = %s AND s.setrole = 0"), (_dbname(target),))[0]
        attempts = _scratch_clauses(conn, _dbname(target))
        for i, clause in enumerate(attempts):
            try:
                _run(conn, sql.SQL("CREATE DATABASE {} TEMPLATE template0 {}").format(
                    sql.Identifier(_dbname(scratch)), clause))
                break
            except psycopg.Error:  # e.g. not allowed to give it the owner: a plainer database
                if i == len(attempts) - 1:
                    raise
    note = f" (the old database's {settings} ALTER DATABASE ... SET settings are not carried over)" if settings else ""
    return f"{_dbname(scratch)} created{note}"


def _terminate(conn: psycopg.Connection, *names: str) -> None:
    _run(conn, sql.SQL("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()"), (list(names),))


def _rename(conn: psycopg.Connection, old: str, new: str, attempts: int = 10) -> None:
    """ALTER DATABASE RENAME needs no other sessions; one can slip in between terminate and rename, so retry."""
    statement = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
    for attempt in range(attempts):
        _terminate(conn, old)
        try:
            _run(conn, statement)
            return
        except psycopg.errors.ObjectInUse:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def _allow_connections(conn: psycopg.Connection, name: str, allow: bool) -> None:
    _run(conn, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
        sql.Identifier(name), sql.SQL("true" if allow else "false")))


class SwapStuck(BackupError):
    """The swap failed half-way and could not be undone: both databases must be left for the operator."""


def _swap(target: str, scratch: str, old_name: str) -> tuple[str, bool]:
    """Scratch becomes the target; the old target is renamed aside, not dropped (that comes after)."""
    name, scratch_name = _dbname(target), _dbname(scratch)
    get_engine(target).dispose()
    get_engine(scratch).dispose()
    with _admin(target) as conn:
        exists = _database_exists(conn, name)
        if exists:
            _allow_connections(conn, name, False)
            try:
                _rename(conn, name, old_name)
            except psycopg.Error:
                _allow_connections(conn, name, True)
                raise
        try:
            _rename(conn, scratch_name, name)
        except psycopg.Error as exc:
            if exists:  # put the old target back as it was
                _put_back(conn, old_name, name, scratch_name, exc)
            raise
    return (f"{scratch_name} renamed to {name}" + (f"; the old {name} renamed to {old_name}" if exists else "")
            ), bool(exists)


def _put_back(conn: psycopg.Connection, old_name: str, name: str, scratch_name: str, cause: BaseException) -> None:
    """Undo the first half of a swap; if that fails too, say exactly where the data is."""
    try:
        _rename(conn, old_name, name)
        _allow_connections(conn, name, True)
    except psycopg.Error:
        raise SwapStuck(f"swap failed ({reason(cause)}) and the old database could not be renamed back: "
                        f"it is {old_name} (connections disallowed); the restored copy is {scratch_name}") from None


# ---- loading a dump -------------------------------------------------------------------------

SET_LINE = re.compile(rb"^SET\s+([A-Za-z_][A-Za-z0-9_.]*)\s*(?:=|\s+TO\s)\s*.*;\s*$")
COPY_START = re.compile(rb"^COPY\s.+\sFROM stdin;\s*$")
OWNER_LINE = re.compile(r"^ALTER\s.+\sOWNER TO\s+(.+?);\s*$")
ACL_LINE = re.compile(r"^(?:GRANT\s.+\sTO|REVOKE\s.+\sFROM)\s+(.+?)(?:\s+WITH GRANT OPTION)?;\s*$")
DEFAULT_ACL_LINE = re.compile(r"^ALTER DEFAULT PRIVILEGES FOR ROLE\s+(\S+)\s")


def _role_names(fragment: str) -> list[str]:
    """Role names from `a, "B c"` (pg_dump quotes those that need it); PUBLIC is no role."""
    names = []
    for part in re.findall(r'"(?:[^"]|"")*"|[^,\s]+', fragment):
        name = part[1:-1].replace('""', '"') if part.startswith('"') else part
        if name.upper() != "PUBLIC" and not (part[0] != '"' and name.upper() in ("CURRENT_USER", "SESSION_USER")):
            names.append(name)
    return names


def _line_roles(line: str) -> tuple[str, list[str]]:
    """('owner' | 'acl' | '', role names) for one line of SQL written by pg_dump."""
    for kind, pattern in (("owner", OWNER_LINE), ("acl", ACL_LINE), ("acl", DEFAULT_ACL_LINE)):
        match = pattern.match(line)
        if match:
            return kind, _role_names(match.group(1))
    return "", []


def dump_roles(path: Path) -> dict[str, set[str]]:
    """Roles a custom dump names as owners and in privileges (its schema script, which lives in the TOC)."""
    proc = run_pg_restore(["--schema-only", "-f", "-"], path, read_all=False, timeout=3600)
    if proc.returncode != 0:
        raise BackupError("pg_restore cannot read the dump's schema: " + last_line(proc.stderr, "?"))
    roles: dict[str, set[str]] = {"owner": set(), "acl": set()}
    for line in proc.stdout.splitlines():
        kind, names = _line_roles(line)
        if kind:
            roles[kind].update(names)
    return roles


def _target_facts(url: str) -> tuple[set[str], set[str]]:
    """(roles the restoring user can give objects to, settings the target server knows)."""
    with get_engine(url).connect() as conn:
        usable = {r[0] for r in conn.execute(text(
            "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER')"))}
        known = {r[0].lower() for r in conn.execute(text("SELECT name FROM pg_settings"))}
    return usable, known


def _restore_custom(path: Path, env: dict[str, str], jobs: int, usable: set[str], remove_later: bool
                    ) -> tuple[list[str], int]:
    """pg_restore into env's database; (what it had to leave out or change, the jobs it ran)."""
    roles = dump_roles(path)
    notes = []
    command = [client_tool("pg_restore"), "--exit-on-error", "-d", env["PGDATABASE"]]
    missing_owners = sorted(roles["owner"] - usable)
    if missing_owners:
        command.append("--no-owner")
        notes.append(f"ownership not kept (--no-owner): role(s) {', '.join(missing_owners)} missing on the target "
                     "or not grantable by this user; objects belong to the restoring user")
    elif roles["owner"]:
        notes.append(f"owners kept ({', '.join(sorted(roles['owner']))})")
    missing_acl = sorted(roles["acl"] - usable)
    if missing_acl:
        command.append("--no-privileges")
        notes.append(f"privileges not restored (--no-privileges): role(s) {', '.join(missing_acl)} missing on the target")
    if jobs > 1 and is_zstd(path):
        done = _restore_parallel_zstd(path, command, env, jobs, remove_later)
        return notes + [done], (1 if done.startswith("one job") else jobs)
    if jobs > 1:
        command[1:1] = ["-j", str(jobs)]
    proc = run_pg_restore(command[1:], path, read_all=True, timeout=6 * 3600, env=env)
    if proc.returncode != 0:
        raise BackupError(last_line(proc.stderr, f"pg_restore exit {proc.returncode}"))
    return notes, jobs


SPOOL_MARGIN_BYTES = 1 << 30


def _available_memory() -> int:
    """MemAvailable (Linux), 0 where it cannot be read: then memory is not used for the spool."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def spool_dir(path: Path, needed: int) -> Path | None:
    """Where a .dump.zst is decompressed for a parallel restore (pg_restore -j reads a seekable file only).

    Memory (/dev/shm) when the archive takes at most a quarter of the available
    memory, else beside the backup, else the temp dir, each only with room to
    spare (1 GiB beyond the archive); None when none has room: one job, streamed.
    """
    candidates = []
    if needed <= _available_memory() // 4:
        candidates.append(Path("/dev/shm"))
    candidates += [Path(path).parent, Path(tempfile.gettempdir())]
    for candidate in candidates:
        try:
            if candidate.is_dir() and os.access(candidate, os.W_OK) and \
                    shutil.disk_usage(candidate).free >= needed + SPOOL_MARGIN_BYTES:
                return candidate
        except OSError:
            continue
    return None


def _archive_size(path: Path, manifest: dict[str, Any]) -> int:
    """The uncompressed archive's size: the manifest's (counted as it was written), else a generous guess."""
    size = manifest.get("archive_size")
    return int(size) if isinstance(size, int) and size > 0 else 10 * Path(path).stat().st_size


def _manifest_offsets(manifest: dict[str, Any]) -> dict[int, int] | None:
    """The data offsets `ccops backup` found while it wrote the dump (None for older or unproven ones)."""
    found = manifest.get("data_offsets")
    if not isinstance(found, dict):
        return None
    try:
        return {int(k): int(v) for k, v in found.items()}
    except (TypeError, ValueError):
        return None


def unpack_archive(path: Path, archive: Path, manifest: dict[str, Any], where: Path) -> str:
    """The .dump.zst at `path` decompressed into `archive` (a new file, 0600), its data offsets filled.

    What pg_restore -j reads; the bench's bare pg_restore floor reads the same.
    `where` names the place in the error. Returns what fill_data_offsets did.
    """
    with open(os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        unpacked = subprocess.run([zstd_tool(), "-dc", "-q", "--", str(path)], stdout=out, stderr=subprocess.PIPE,
                                  timeout=6 * 3600)
    if unpacked.returncode != 0:
        error = last_line(unpacked.stderr.decode("utf-8", "replace"), f"exit {unpacked.returncode}")
        raise BackupError(f"zstd cannot decompress {path.name} into {where}: {error}")
    return fill_data_offsets(archive, _manifest_offsets(manifest))


def _restore_parallel_zstd(path: Path, command: list[str], env: dict[str, str], jobs: int, remove_later: bool) -> str:
    """zstd -d into a private temporary file (0600 in a 0700 dir, removed whatever happens), then pg_restore -j.

    The decompression is part of the restore's time (and checks every frame's
    checksum on the way). Without room for the file, the restore runs streamed,
    with one job, and says so. `remove_later`: the copy goes in the background
    (see _remove_soon) and the caller waits for removals_done().
    """
    manifest = read_manifest(path)
    where = spool_dir(path, _archive_size(path, manifest))
    if where is None:
        proc = run_pg_restore(command[1:], path, read_all=True, timeout=6 * 3600, env=env)
        if proc.returncode != 0:
            raise BackupError(last_line(proc.stderr, f"pg_restore exit {proc.returncode}"))
        return f"one job, streamed: no room to decompress {path.name} for {jobs} parallel jobs"
    spool = Path(tempfile.mkdtemp(prefix=".ccops-restore-", dir=where))  # mkdtemp: 0700
    try:
        archive = spool / path.name.removesuffix(".zst")
        offsets = unpack_archive(path, archive, manifest, where)
        done = subprocess.run([command[0], "-j", str(jobs), *command[1:], str(archive)], capture_output=True, text=True,
                              env=env, timeout=6 * 3600)
        if done.returncode != 0:
            raise BackupError(last_line(done.stderr, f"pg_restore exit {done.returncode}"))
    finally:
        if remove_later:
            _remove_soon(spool)
        else:
            shutil.rmtree(spool, ignore_errors=True)
    return f"decompressed into {where} for {jobs} jobs; {offsets}"


_removals: list[threading.Thread] = []


def _remove_soon(folder: Path) -> None:
    """Remove the decompressed copy while the next step (the row counts) runs.

    Unlinking 2.5 GB from memory takes ~0.4 s of kernel time, on the restore's
    critical path when done in line. removals_done() waits for it: a restore or
    restore test returns only once its copy is gone.
    """
    thread = threading.Thread(target=shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                              name="ccops-restore-spool")
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: remove it here
        shutil.rmtree(folder, ignore_errors=True)
        return
    _removals.append(thread)


def removals_done() -> None:
    """Wait until every copy _remove_soon is removing is gone."""
    while _removals:
        _removals.pop().join()


def _stream_sql(path: Path, env: dict[str, str], usable: set[str], known: set[str]) -> list[str]:
    """Feed a plain dump to psql line by line (never the whole file in memory), dropping what the target lacks:
    SET lines for settings it does not know (a PostgreSQL 17 dump's transaction_timeout in 15), and OWNER TO /
    GRANT lines naming roles it does not have (with ON_ERROR_STOP they would abort the restore)."""
    skipped_settings: set[str] = set()
    skipped_roles: dict[str, set[str]] = {"owner": set(), "acl": set()}
    dropped = {"owner": 0, "acl": 0}
    opener = gzip.open if path.name.endswith(".gz") else open
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([client_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", env["PGDATABASE"]],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        assert proc.stdin is not None
        buffer = bytearray()
        in_copy = False
        try:
            with opener(path, "rb") as handle:
                for line in handle:
                    if in_copy:
                        in_copy = line.rstrip(b"\r\n") != b"\\."
                    elif COPY_START.match(line):
                        in_copy = True
                    elif line.startswith((b"\\connect", b"\\c ")):
                        # pg_dump --create / pg_dumpall output: psql would leave the scratch database for another
                        raise BackupError(f"{path.name} switches databases ({line.strip().decode('utf-8', 'replace')}): "
                                          "made with pg_dump --create or pg_dumpall; ccops restores single-database "
                                          "dumps only")
                    elif line.startswith(b"SET "):
                        match = SET_LINE.match(line)
                        name = match.group(1).decode().lower() if match else ""
                        if match and "." not in name and name not in known:
                            skipped_settings.add(name)
                            line = b"-- ccops: skipped, unknown to this server: " + line
                    elif line.startswith((b"ALTER ", b"GRANT ", b"REVOKE ")):
                        kind, names = _line_roles(line.decode("utf-8", "replace"))
                        missing = {n for n in names if n not in usable}
                        if kind and missing:
                            skipped_roles[kind] |= missing
                            dropped[kind] += 1
                            line = b"-- ccops: skipped, role missing: " + line
                    buffer += line
                    if len(buffer) >= 1 << 20:
                        proc.stdin.write(buffer)
                        buffer.clear()
            proc.stdin.write(buffer)
        except BrokenPipeError:
            pass  # psql stopped at an error (ON_ERROR_STOP): its stderr says which
        except BackupError:
            proc.kill()
            proc.wait()
            raise
        except (OSError, EOFError) as exc:
            proc.kill()
            proc.wait()
            raise BackupError(f"{path.name} cannot be read to the end: {exc}") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        code = proc.wait()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    if code != 0:
        raise BackupError(last_line(stderr, f"psql exit {code}"))
    notes = []
    if skipped_settings:
        notes.append("skipped " + ", ".join(f"SET {s}" for s in sorted(skipped_settings)) + " (unknown to this server)")
    if dropped["owner"]:
        notes.append(f"ownership not kept for {dropped['owner']} objects: role(s) "
                     f"{', '.join(sorted(skipped_roles['owner']))} missing on the target")
    if dropped["acl"]:
        notes.append(f"{dropped['acl']} GRANT/REVOKE lines skipped: role(s) {', '.join(sorted(skipped_roles['acl']))} "
                     "missing on the target")
    return notes


MAX_AUTO_JOBS = 4


def effective_jobs(settings: Settings, jobs: int | None = None) -> int:
    """Parallel pg_restore jobs: the asked number, else backup.restore_jobs, else one per core (at most 4).

    On the 3.3 GiB bench database two jobs restored in 0.64-0.75 of the time of
    one (`python -m benchmarks --only backup`, whole command, medians of 3 in
    several sessions): indexes and tables load side by side.
    """
    for value in (jobs, settings.backup.restore_jobs):
        if value is not None and int(value) > 0:
            return int(value)
    return max(1, min(MAX_AUTO_JOBS, os.cpu_count() or 1))


def load_dump(path: Path, url: str, jobs: int = 1, remove_later: bool = False) -> str:
    """pg_restore for custom format (in parallel when jobs > 1), psql (streamed) for plain SQL.

    Says what it had to leave out; a plain SQL dump is always loaded by one psql.
    `remove_later`: a parallel load's decompressed copy is removed in the
    background; the caller must call removals_done() before it returns.
    """
    path = Path(path)
    env = {**os.environ, **libpq_env(url)}
    usable, known = _target_facts(url)
    if is_restorable_archive(path):
        notes, used = _restore_custom(path, env, jobs, usable, remove_later)
        how = f" with {used} parallel jobs" if used > 1 else ""
    else:
        notes = _stream_sql(path, env, usable, known)
        how = ""
    return f"{path.name} loaded{how}" + ("; " + "; ".join(notes) if notes else "")


@dataclass
class ExpectedCounts:
    """The rows a restore of one backup must hold, per table, and where that figure comes from.

    `counts` are always exact for the dump: the manifest's when they were taken in the
    dump's own snapshot, else counted from the dump's data itself (its COPY blocks).
    `live_before` are counts taken on the live database outside the snapshot (the
    compose route): they cannot prove a restore, so they are shown, never compared.
    """

    counts: dict[str, int] | None
    source: str
    live_before: dict[str, int] | None = None


def dump_row_counts(path: Path) -> dict[str, int]:
    """Rows per public table in the dump's data: plain SQL scanned, a custom dump through pg_restore -f -."""
    path = Path(path)
    if not is_restorable_archive(path):
        return dict(scan_sql_file(path).tables)
    with tempfile.TemporaryFile() as errors, ArchiveStream(path) as archive:
        # stderr into a file, not a pipe: a chatty stderr cannot stall the stream
        proc = subprocess.Popen([client_tool("pg_restore"), "--data-only", "-f", "-", *archive.args],
                                stdin=archive.stdin, stdout=subprocess.PIPE, stderr=errors)
        archive.started()
        assert proc.stdout is not None
        with proc.stdout:
            scan = scan_sql_lines(proc.stdout)
        code = proc.wait()
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
        failure = archive.zstd_failure(read_all=code == 0)
    if code != 0 or failure:
        raise BackupError("pg_restore cannot read the dump's data: " + (failure or last_line(stderr, f"exit {code}")))
    return dict(scan.tables)


def expected_counts(path: Path, manifest: dict[str, Any], scanned: dict[str, int] | None = None) -> ExpectedCounts:
    """Exact expected rows for a restore of `path`: the snapshot manifest's, else counted from the dump.

    `scanned`: counts a verification already took from a plain dump (saves a second read).
    """
    if manifest.get("row_counts") and manifest.get("row_counts_exact", True):
        return ExpectedCounts(dict(manifest["row_counts"]), "the manifest (counted in the dump's snapshot)")
    live = dict(manifest["row_counts"]) if manifest.get("row_counts") else None
    counts = scanned if scanned is not None else dump_row_counts(path)
    return ExpectedCounts(counts, "the dump's own data (its COPY rows)", live)


def compare_counts(url: str, expected: dict[str, int], live_before: dict[str, int] | None = None
                   ) -> list[dict[str, Any]]:
    """Per table: expected (exact for the dump) vs restored, each row ok only when they are equal.

    With `live_before` (counts taken on the live database outside the dump's snapshot)
    each row also shows that count and whether it differs: writes made while the dump
    ran explain such a difference, so it is said, not failed.
    """
    with connect(url, statement_timeout_ms=3_600_000) as conn:
        actual = exact_row_counts(conn)
    rows = []
    for t in sorted(set(expected) | set(actual)):
        row = {"table": t, "expected": expected.get(t), "restored": actual.get(t), "ok": expected.get(t) == actual.get(t)}
        if live_before is not None:
            row["live_before_dump"] = live_before.get(t)
            row["live_differs"] = live_before.get(t) != expected.get(t)
        rows.append(row)
    return rows


def _check_counts(url: str, expected: ExpectedCounts) -> str:
    """Every table's restored rows equal the expected ones; else the restore stops here, naming the tables."""
    rows = compare_counts(url, expected.counts or {}, expected.live_before)
    bad = [r for r in rows if not r["ok"]]
    if bad:
        shown = ", ".join(f"{r['table']} {r['restored']} restored, {r['expected']} expected" for r in bad[:3])
        raise BackupError(f"row counts differ from {expected.source}: {shown}")
    return f"row counts of {len(rows)} tables match {expected.source}" + _live_note(rows)


def _live_note(rows: list[dict[str, Any]]) -> str:
    """What could not be compared: counts of the live database taken outside the dump's snapshot."""
    if not rows or "live_before_dump" not in rows[0]:
        return ""
    differ = [r["table"] for r in rows if r["live_differs"]]
    return ("; not provable: whether the dump matched the live database (its counts were taken outside the "
            f"dump's snapshot): {len(differ)} of {len(rows)} tables differ from them"
            + (f" ({', '.join(differ[:5])})" if differ else ""))


def _verify_target(url: str, expected: ExpectedCounts, path: Path) -> str:
    """The last proof: the target, reached by its own name, holds the backup's rows (or say what was not compared)."""
    if expected.counts is not None:
        return _check_counts(url, expected).replace("row counts", f"{_dbname(url)}'s row counts", 1)
    with connect(url) as conn:
        counts = exact_row_counts(conn)
    return (f"{path.name}: row counts could not be compared ({expected.source}); {_dbname(url)} now holds "
            f"{len(counts)} tables, {sum(counts.values()):,} rows")


def _stop_app(settings: Settings, stop_app: bool, app_stopped: bool) -> tuple[Any, str]:
    """(the backend that stopped the app, or None; what was done). Refuses when nothing stops the app.

    A restore while the app writes loses every write made between the safety dump
    and the swap. With backend `none` (what CCOPS_DATABASE_URL alone gives) ccops
    cannot stop it, so the operator must, and say so with --app-stopped.
    """
    if app_stopped:
        return None, "the operator stopped the app (--app-stopped / app_stopped=True): ccops did not stop it"
    if not stop_app:
        return None, "the caller stops and starts the app (stop_app=False): ccops did not stop it"
    from ccops.deploy.services import BackendError, get_backend

    backend = get_backend(settings)
    try:
        backend.stop("app")
    except BackendError as exc:
        raise BackupError(f"the app could not be stopped ({exc}); it would keep writing during the restore: "
                          "stop it by hand, then pass --app-stopped (app_stopped=True); nothing was changed") from None
    return backend, "app stopped"


def _start_app(result: RestoreResult, backend: Any) -> None:
    """Start the app ccops stopped, also after a failed step; a failed start fails the restore (the app is down)."""
    from ccops.deploy.services import BackendError

    def start() -> str:
        try:
            backend.start("app")
        except BackendError as exc:
            raise BackupError(f"the app was not started again ({exc}): start it by hand") from None
        return "app started"

    try:
        _step(result, "start app", start)
    except StepFailed:
        pass  # recorded in result: the restore reads as failed


def _restore_steps(result: RestoreResult, settings: Settings, path: Path, url: str, expected: ExpectedCounts,
                   jobs: int, safety_dump: bool) -> None:
    """Check target, safety dump, scratch, load, counts, swap, drop old, verify target: any failure stops here."""
    name = _dbname(url)
    scratch = _with_db(url, _derived_name(name, "_ccops_restore"))
    old_name = _derived_name(name, f"_ccops_old_{utc_now():%Y%m%d%H%M%S}")
    found: list[bool] = []
    _step(result, "check target", lambda: _check_target(url, found), url)
    if safety_dump and found[0]:
        _step(result, "safety dump", lambda: str(create_backup(settings, database_url=url,
                                                                directory=safety_dir(settings)).path), url)
    _step(result, "create scratch database", lambda: _create_scratch(url, scratch), url)
    swapped: list[bool] = []
    stuck: list[bool] = []
    try:
        _step(result, "restore", lambda: load_dump(path, scratch, jobs, remove_later=True) + f" into {_dbname(scratch)}",
              url)
        if expected.counts is not None:
            _step(result, "check row counts", lambda: _check_counts(scratch, expected), url)

        def swap() -> str:
            try:
                detail, had_old = _swap(url, scratch, old_name)
            except SwapStuck:
                stuck.append(True)
                raise
            swapped.append(had_old)
            return detail

        _step(result, "swap databases", swap, url)
    finally:
        if not swapped and not stuck:
            _step(result, "drop scratch database",
                  lambda: _dropped(scratch, f"{_dbname(scratch)} dropped; {name} was not touched"), url)
    if swapped[0]:
        _step(result, "drop old database", lambda: _dropped(_with_db(url, old_name), f"{old_name} dropped"), url)
    _step(result, FINAL_STEP, lambda: _verify_target(url, expected, path), url)
    selfstats.adopt_all(url, "restore", settings.home)  # the new database's scans so far were all the restore's


def restore_backup(settings: Settings, path: Path, target: str, *, confirm: bool, force: bool = False,
                   safety_dump: bool = True, stop_app: bool = True, app_stopped: bool = False,
                   jobs: int | None = None, run_health: bool = True) -> RestoreResult:
    """The guide's recovery procedure, guarded and checked at every step.

    The dump goes into <target>_ccops_restore first; only when it loaded and
    its row counts match is it renamed to the target (the old one renamed to
    <target>_ccops_old_<stamp> and dropped after). Anything failing before the
    swap leaves the target untouched and the scratch database dropped. The last
    step reads the target itself and compares it with the manifest: without it
    the result is not ok.
    `app_stopped`: the operator has stopped the app (needed when the service
    backend cannot stop it, e.g. `none`). `stop_app=False`: the caller (another
    runbook) stops and starts the app itself.
    `jobs`: parallel pg_restore jobs (None or 0: effective_jobs).
    """
    path = Path(path)
    jobs = effective_jobs(settings, jobs)
    url = target_url(settings, target)
    result = RestoreResult(mask_url(url))
    if not confirm:
        raise NotConfirmed(f"restore of {path.name} into {mask_url(url)}: not confirmed; nothing was changed")
    refuse_non_dump(path)
    check = verify_backup(path)
    if not check.ok and not force:
        raise BackupError(f"{path.name} failed verification ({check.reason}); refusing to restore (use force to override)")
    expected = _expected_or_unknown(path, read_manifest(path), check.row_counts)
    backend = None
    try:
        stopped: list[Any] = []

        def stop() -> str:
            backend_used, detail = _stop_app(settings, stop_app, app_stopped)
            stopped.append(backend_used)
            return detail

        _step(result, "stop app", stop, url)
        backend = stopped[0]
        _restore_steps(result, settings, path, url, expected, jobs, safety_dump)
    except StepFailed:
        pass  # recorded in result: result.ok is False and summary() names the step
    finally:
        removals_done()
        if backend is not None:
            _start_app(result, backend)
    if run_health and result.ok:
        report = guide_health(settings, database_url=url)
        reachable = all(f.status.value == "OK" for f in report.findings if f.check == "health.database")
        # the verdict is reported, but stale data (an old backup) is not a failed restore
        result.steps.append(RestoreStep("health check", report.line(), 0.0, reachable))
    return result


def refuse_non_dump(path: Path) -> None:
    """An .env copy or a log tarball (backup.sh's env_*/logs_*) is a backup, but not of a database."""
    parsed = parse_name(Path(path).name)
    if parsed is not None and parsed.kind != "db":
        what = {"env": "a copy of the app's .env", "logs": "a tarball of the app's logs"}[parsed.kind]
        raise BackupError(f"{Path(path).name} is {what} ({parsed.origin}), not a database dump: "
                          "there is nothing in it to restore into a database; nothing was changed")


def _expected_or_unknown(path: Path, manifest: dict[str, Any], scanned: dict[str, int] | None) -> ExpectedCounts:
    """Expected counts for a restore; a dump that cannot be counted (restored with force) says so instead."""
    try:
        return expected_counts(path, manifest, scanned)
    except STEP_ERRORS as exc:
        return ExpectedCounts(None, f"its rows could not be counted: {reason(exc)}")


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
    jobs: int = 1
    counts_source: str = ""  # where the expected rows come from (the snapshot manifest, or the dump's own data)
    live_note: str = ""  # what could not be compared (live counts taken outside the dump's snapshot), if anything

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.counts) and self.amcheck_clean and self.dropped

    @property
    def restored_text(self) -> str:
        """"<backup> restored into a scratch database in 12.3 s (2 pg_restore jobs)": how each report begins."""
        jobs = f"{self.jobs} pg_restore job" + ("s" if self.jobs > 1 else "")
        return f"{self.backup.name} restored into a scratch database in {self.restore_s:.1f} s ({jobs})"


def restore_test(settings: Settings, path: Path | None = None) -> RestoreTestResult:
    """The guide's monthly check: restore into a scratch database, compare, amcheck, drop.

    Each step that fails stops the test with "restore test failed at <step>: <why>"
    (a BackupError, exit 2 on the command line); the scratch database is dropped
    whatever happened, and a failed drop is said too.
    """
    if path is None:
        latest = latest_verified(settings.effective_backup_dir)
        if latest is None:
            raise BackupError(f"no verified backup in {settings.effective_backup_dir} to test")
        path = latest.path
    path = Path(path)
    refuse_non_dump(path)
    with stage("restore test", "count the dump's rows"):
        expected = expected_counts(path, read_manifest(path))
    scratch = f"ccops_restore_test_{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
    with stage("restore test", "find the server"):
        url = target_url(settings, scratch)
    jobs = effective_jobs(settings)
    with stage("restore test", "create scratch database", url):
        _recreate(url)
    try:
        seconds, counts, clean, detail = _test_scratch(path, url, expected, jobs)
    except BackupError as exc:
        raise BackupError(f"{exc}{_drop_or_say(url)}") from None
    except BaseException:
        _drop_or_say(url)
        raise
    finally:
        removals_done()
    with stage("restore test", f"drop scratch database {scratch}", url):
        _drop(url)
    return RestoreTestResult(path, scratch, seconds, counts, clean, detail, True, jobs, expected.source,
                             _live_note(counts).removeprefix("; "))


def _test_scratch(path: Path, url: str, expected: ExpectedCounts, jobs: int) -> tuple[float, list, bool, str]:
    """Load, compare and amcheck the scratch database: (seconds, counts, amcheck clean, amcheck detail)."""
    started = time.monotonic()
    with stage("restore test", "restore", url):
        load_dump(path, url, jobs, remove_later=True)
    seconds = time.monotonic() - started
    with stage("restore test", "compare row counts", url):
        counts = compare_counts(url, expected.counts or {}, expected.live_before)
    with stage("restore test", "amcheck", url):
        with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        report = check_integrity(url, heap=False)
    detail = (f"{len(report.indexes)} indexes pass bt_index_check" if report.clean
              else f"damaged: {', '.join(report.damaged_indexes)}")
    return seconds, counts, report.clean, detail


def _drop_or_say(url: str) -> str:
    """Drop the scratch database after a failed step: "" when gone, else what is left and why (for the message)."""
    try:
        _drop(url)
    except STEP_ERRORS as exc:
        return f"; the scratch database {_dbname(url)} was not dropped ({reason(exc)})"
    return ""
