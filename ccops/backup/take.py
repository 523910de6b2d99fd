"""Taking a backup: pg_dump into a temporary name, manifest with exact row counts, verified before it counts.

pg_dump writes custom format, uncompressed, and zstd compresses it on every
core into <name>.dump.zst (issue 18: pg_dump's own gzip runs on one core and
was the whole backup's floor; zstd -1 -T0 wrote a smaller file than the
guide's `pg_dump | gzip` in a fraction of its time: ZSTD_PARAMETERS). Without
the zstd CLI, or with compression 0, pg_dump compresses (or not) as before into
<name>.dump, at backup.compression's gzip level.
The file is fsynced and renamed only after pg_dump and zstd exit 0, so a killed
dump never looks finished; the backup dir's lock is held for the whole dump, so
a prune running at the same time cannot take the growing partial file for a
leftover. The manifest holds versions, times, size, sha256, how it was
compressed and the exact row count of every table, counted in the same
snapshot pg_dump used (pg_export_snapshot + --snapshot), so a restore can be
checked row for row. A backup counts once its verification read it back to
the end. The app's .env and logs can be saved beside the dump, as its
backup.sh does.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from psycopg import sql
from sqlalchemy import text

from ccops.backup.errors import DB_ERRORS, BackupError, last_line, reason, stage
from ccops.backup.files import backup_lock, fsync_dir, private_dir, private_file, sha256_of, utc_now
from ccops.backup.naming import (
    DUMP_SUFFIX,
    MANIFEST_SUFFIX,
    ZSTD_DUMP_SUFFIX,
    app_copy_name,
    backup_name,
    manifest_path,
)
from ccops.backup.store import VerifyCache
from ccops.backup.toc import StreamScanner
from ccops.backup.verify import VerifyResult, archive_header, verify_backup, zstd_tool
from ccops.core import selfstats
from ccops.core.db import client_tool, connect, get_engine, libpq_env
from ccops.core.settings import Settings, mask_url

BACKUP_LOCK_WAIT_S = 10.0
DUMP_TIMEOUT_S = 6 * 3600

# zstd's parameters for a backup (zstd --zstd=..., on all cores with -T0): a quick lazy2 search (strategy 5)
# over a 512 KiB window, matches of 7+ bytes. On the bench database (3.3 GiB, 21M rows; python -m
# benchmarks --only backup) it wrote 399 MB against the guide's gzip -6 at 434 MB, where zstd -1 wrote 443 MB
# (pg_dump -Fc -Z0 frames every row with a 5-byte length, which costs a fast level its lead) and -3 482 MB;
# it costs ~100 MB/s of input per core, ~5x zstd -1, well within the dump's own pace on two cores.
ZSTD_PARAMETERS = "strategy=5,windowLog=19,hashLog=15,chainLog=15,searchLog=1,minMatch=7"


def compressor_for(level: int, via: str) -> str:
    """"zstd" when this backup is compressed by zstd on all cores, else "pg_dump" (its own gzip, or none).

    The compose route keeps pg_dump's own compression: its pg_dump runs inside the
    container, whose output is streamed as it is.
    """
    if via != "local" or int(level) <= 0 or shutil.which("zstd") is None:
        return "pg_dump"
    return "zstd"


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


def compose_base(settings: Settings) -> list[str]:
    """`docker compose` for the configured project, the same form ccops.deploy.services and ccops.logs use."""
    compose = settings.compose
    command = ["docker", "compose"]
    if compose.file:
        command += ["-f", compose.file]
    return command + ["--project-directory", compose.project_dir or "."]


def _dump_local(url: str, partial: Path, level: int, compressor: str) -> dict[str, Any]:
    """pg_dump against the URL inside an exported snapshot, whose exact row counts go into the manifest.

    Each step names itself when it fails (a wrong password is "backup failed at
    connect to the database: ... password authentication failed", URL masked).
    """
    try:
        return _dump_in_snapshot(url, partial, level, compressor)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _widen_pipe(fd: int) -> None:
    """1 MiB pipe buffers (Linux F_SETPIPE_SZ): fewer wake-ups between pg_dump, the relay and zstd."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass  # a smaller buffer only costs wake-ups


RELAY_CHUNK = 1 << 20


def _relay(source: int, sink: int, scanner: StreamScanner) -> int:
    """Move pg_dump's output into zstd's input; the archive's size (for restore's temporary file).

    On the way the scanner notes where each table's data starts, for the manifest:
    a parallel restore then needs no pass over the archive to find them (ccops.backup.toc).
    The bytes pass through Python for that (about 1 s of one core for 2.5 GB, beside
    pg_dump and zstd); before, os.splice moved them inside the kernel.
    """
    total = 0
    buffer = bytearray(RELAY_CHUNK)
    view = memoryview(buffer)
    while True:
        got = os.readv(source, [buffer])
        if got == 0:
            return total
        chunk = view[:got]
        scanner.feed(chunk)
        while chunk:
            chunk = chunk[os.write(sink, chunk):]
        total += got


def _pg_dump_zstd(command: list[str], env: dict[str, str], partial: Path) -> tuple[int, dict[int, int] | str]:
    """`pg_dump -Fc -Z0 ... | zstd -T0 --zstd=ZSTD_PARAMETERS > partial`; (the archive's uncompressed size,
    its data offsets by dump id or why they are not proven).

    zstd writes to a descriptor opened 0600 here (never a file it creates itself).
    Both must exit 0; either failing (a killed pg_dump, a full disk) is a BackupError.
    """
    private_file(partial)
    with tempfile.TemporaryFile() as dump_errors, tempfile.TemporaryFile() as zstd_errors, \
            open(partial, "wb") as out:
        dump = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=dump_errors, env=env)
        assert dump.stdout is not None
        try:
            zstd = subprocess.Popen([zstd_tool(), "-q", "-T0", f"--zstd={ZSTD_PARAMETERS}", "-c"], stdin=subprocess.PIPE,
                                    stdout=out, stderr=zstd_errors)
        except BaseException:
            dump.kill()
            dump.wait()
            raise
        assert zstd.stdin is not None
        def overdue() -> None:  # subprocess.run's timeout for a pipeline: both stopped, the dump failed
            dump.kill()
            zstd.kill()

        deadline = threading.Timer(DUMP_TIMEOUT_S, overdue)
        deadline.start()
        total = 0
        scanner = StreamScanner()
        try:
            _widen_pipe(dump.stdout.fileno())
            _widen_pipe(zstd.stdin.fileno())
            total = _relay(dump.stdout.fileno(), zstd.stdin.fileno(), scanner)
        except BrokenPipeError:
            pass  # zstd stopped (a full disk): its exit code and stderr say why
        except BaseException:
            dump.kill()
            zstd.kill()
            raise
        finally:
            dump.stdout.close()
            try:
                zstd.stdin.close()
            except BrokenPipeError:
                pass
            dump_code, zstd_code = dump.wait(), zstd.wait()
            deadline.cancel()
        if dump_code != 0:
            raise BackupError(f"pg_dump failed ({last_line(_text(dump_errors), f'exit {dump_code}')}); "
                              "no backup was written, earlier backups are untouched")
        if zstd_code != 0:
            raise BackupError(f"zstd failed ({last_line(_text(zstd_errors), f'exit {zstd_code}')}); "
                              "no backup was written, earlier backups are untouched")
    return total, scanner.offsets()


def _text(handle: Any) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")


def _dump_in_snapshot(url: str, partial: Path, level: int, compressor: str) -> dict[str, Any]:
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
        extra: dict[str, Any] = {}
        with stage("backup", "pg_dump", url):
            if compressor == "zstd":
                command = [client_tool("pg_dump"), "-Fc", "-Z0", f"--snapshot={snapshot}"]
                extra["archive_size"], offsets = _pg_dump_zstd(command, env, partial)
                extra["compressor"] = f"zstd -T0 --zstd={ZSTD_PARAMETERS}"
                # written into a pipe, pg_dump cannot go back to note where each table's data starts; the relay
                # found them on the way (by dump id), and a parallel restore writes them into its decompressed
                # copy (ccops.backup.toc). False: not proven, that restore finds them itself.
                extra["data_offsets"] = {str(k): v for k, v in offsets.items()} if isinstance(offsets, dict) else False
            else:
                private_file(partial)
                command = [client_tool("pg_dump"), "-Fc", f"-Z{int(level)}", f"--snapshot={snapshot}",
                           "-f", str(partial)]
                proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=DUMP_TIMEOUT_S)
                if proc.returncode != 0:
                    raise BackupError(f"pg_dump failed ({last_line(proc.stderr, f'exit {proc.returncode}')}); "
                                      "no backup was written, earlier backups are untouched")
                extra["compressor"] = f"pg_dump -Z{int(level)}"
    return {"database": database, "server_version": server, "pg_dump_version": client, "via": "local",
            "row_counts": counts, "row_counts_exact": True, "source": mask_url(url), **extra}


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
        private_file(partial)
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
                          f"({last_line(stderr, f'exit {proc.returncode}')}); no backup was written, "
                          "earlier backups are untouched")
    try:
        header = archive_header(partial)
    except (OSError, subprocess.SubprocessError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"backup failed at reading the dump's header: {reason(exc)}; no backup was written") from None
    return {"database": header.get("database", compose.db_name), "server_version": header.get("server_version", ""),
            "pg_dump_version": header.get("pg_dump_version", ""), "via": "compose", "row_counts": counts,
            "compressor": f"pg_dump -Z{int(level)}",
            "row_counts_exact": False, "row_counts_note": note,
            "source": f"docker compose exec {compose.db_service} pg_dump -U {compose.db_user} {compose.db_name}"}


def create_backup(settings: Settings, *, compression: int | None = None, now: datetime | None = None,
                  database_url: str | None = None, via: str = "local", directory: Path | None = None) -> BackupResult:
    """pg_dump -Fc (locally against the URL, or via compose), manifest, then verified before it counts.

    `directory` defaults to the backup dir; restore passes safety/ for its safety dumps.
    A .dump.zst is read to its end before it counts (zstd's checksums, every
    data block through pg_restore): its verification is its one full read.
    """
    if via not in ("local", "compose"):
        raise BackupError(f"unknown backup route {via!r}: use 'local' or 'compose'")
    directory = private_dir(Path(directory or settings.effective_backup_dir))
    level = int(settings.backup.compression if compression is None else compression)
    compressor = compressor_for(level, via)
    suffix = ZSTD_DUMP_SUFFIX if compressor == "zstd" else DUMP_SUFFIX
    t0 = time.monotonic()
    with backup_lock(directory, BACKUP_LOCK_WAIT_S):
        started = now or utc_now()
        counter = 1
        final = directory / backup_name(started, counter, suffix)
        while final.exists():
            counter += 1
            final = directory / backup_name(started, counter, suffix)
        partial = directory / f".{final.name}.partial"
        manifest_tmp = directory / f".{final.name}{MANIFEST_SUFFIX}.partial"
        source = settings.resolved_database_url_or_blank() if via == "compose" else (
            database_url or settings.resolved_database_url())
        with selfstats.measured(source, "backup", settings.home):  # its scans are ccops', not the app's
            if via == "compose":
                meta = _dump_compose(settings, partial, level)
            else:
                meta = _dump_local(source, partial, level, compressor)
        try:
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o600)
            manifest = {
                "file": final.name, "database": meta["database"], "server_version": meta["server_version"],
                "pg_dump_version": meta["pg_dump_version"], "format": "custom", "compression": level,
                "compressor": meta["compressor"],
                "start": started.isoformat() + "Z", "end": utc_now().isoformat() + "Z",
                "size": partial.stat().st_size, "sha256": sha256_of(partial), "row_counts": meta["row_counts"],
                "row_counts_exact": meta["row_counts_exact"], "via": meta["via"],
                "host": socket.gethostname(), "source": meta["source"],
            }
            for key in ("row_counts_note", "archive_size", "data_offsets"):
                if meta.get(key) is not None:
                    manifest[key] = meta[key]
            manifest_tmp.write_text(json.dumps(manifest, indent=2))
            os.chmod(manifest_tmp, 0o600)
            os.replace(partial, final)
            os.replace(manifest_tmp, manifest_path(final))
            fsync_dir(directory)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            manifest_tmp.unlink(missing_ok=True)
            raise BackupError(f"could not finish the backup in {directory}: {exc.strerror or exc}; "
                              "no backup was written, earlier backups are untouched") from None
    result = verify_backup(final, full_read=compressor == "zstd")
    cache = VerifyCache(directory)
    cache.remember(final, result)
    cache.save()
    return BackupResult(final, manifest, time.monotonic() - t0, result.ok, result.reason)


def _write_env_copy(source: Path, partial: Path) -> None:
    """Bytes of the .env as they are, into a file that is 0600 before the first secret reaches it."""
    data = Path(source).read_bytes()
    private_file(partial)
    with open(partial, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _write_logs_tarball(source: Path, partial: Path) -> None:
    """tar -czf of the log dir under `logs/` (as backup.sh archives it), 0600 from its creation."""
    if not Path(source).is_dir():
        raise FileNotFoundError(2, "log dir not found", str(source))
    private_file(partial)
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
    moment = now or utc_now()
    results = []
    for kind, source, write in wanted:
        final = target / app_copy_name(kind, moment)
        partial = target / f".{final.name}.partial"
        try:
            write(Path(source), partial)
            os.replace(partial, final)
            fsync_dir(target)
        except (OSError, tarfile.TarError) as exc:
            partial.unlink(missing_ok=True)
            results.append(VerifyResult(final, False, f"{kind} copy of {source} not saved: {reason(exc)}"))
            continue
        results.append(verify_backup(final))
    return results
