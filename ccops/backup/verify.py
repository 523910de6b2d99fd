"""Is a backup good? Checksum against its manifest, then read back by what can read it.

A custom dump through pg_restore (its table of contents, and its data when cheap
or unproven), a zstd-compressed custom dump through `zstd -dc` into pg_restore
(every frame's checksum and every data block when asked for the full read), a
plain dump parsed to its end, an .env copy line by line, a logs tarball member
by member. An unreadable file or a missing tool is a failed verification, never
a traceback.

ArchiveStream is how every reader of a custom dump (verify, restore's roles, row
counts and load) hands it to pg_restore: the file itself, or zstd's output.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from ccops.backup.errors import last_line, reason
from ccops.backup.files import sha256_of
from ccops.backup.naming import manifest_path, parse_name
from ccops.backup.sqlscan import scan_sql_file
from ccops.core.db import client_tool

# with a manifest the sha256 already proves the bytes pg_dump wrote; the full read is extra, so only when cheap
FULL_READ_MAX_BYTES = 64 << 20


@dataclass
class VerifyResult:
    path: Path
    ok: bool
    reason: str
    checks: list[str] = field(default_factory=list)
    # rows per table counted in a plain dump's COPY blocks while verifying it (None: not a plain dump)
    row_counts: dict[str, int] | None = None



def verify_backup(path: Path, full_read: bool = False) -> VerifyResult:
    """Checksum against the manifest (when there is one), pg_restore --list, and a full read of the data.

    `pg_restore --list` reads only the table of contents at the start of the
    file, so a dump cut off in its data passes it; `pg_restore -f /dev/null`
    reads and decompresses every data block and catches that. It runs when the
    dump is small or has no manifest, or when `full_read` asks for it (a backup
    just taken: its only full read before it counts). An unreadable file or a
    missing pg_restore is a failed verification, never a traceback.
    """
    path = Path(path)
    try:
        return _verify(path, full_read)
    except (OSError, subprocess.SubprocessError) as exc:
        return VerifyResult(path, False, f"cannot be verified: {reason(exc)}")


def _verify(path: Path, full_read: bool = False) -> VerifyResult:
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
    if is_custom_dump(path) or is_zstd(path):
        return _verify_custom(path, checks, full_read or not has_manifest or path.stat().st_size <= FULL_READ_MAX_BYTES)
    return _verify_plain(path, checks)


CUSTOM_MAGIC = b"PGDMP"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # a zstd frame (RFC 8878), whatever the file is called


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def is_custom_dump(path: Path) -> bool:
    """pg_dump -Fc writes PGDMP first, whatever the file is called (the guide restores a `.sql` with pg_restore)."""
    return _starts_with(path, CUSTOM_MAGIC)


def is_zstd(path: Path) -> bool:
    """A zstd stream: what ccops writes for a custom dump compressed on all cores (`.dump.zst`)."""
    return _starts_with(path, ZSTD_MAGIC)


def is_restorable_archive(path: Path) -> bool:
    """A custom dump pg_restore reads, as it is or through zstd (a plain SQL dump goes to psql instead)."""
    return is_custom_dump(path) or is_zstd(path)


def zstd_tool() -> str:
    """The zstd CLI (Debian's zstd package), or a FileNotFoundError that says how to get it."""
    found = shutil.which("zstd")
    if not found:
        raise FileNotFoundError("zstd not found on PATH: a .dump.zst backup is read through it "
                                "(apt-get install zstd)")
    return found


class ArchiveStream:
    """A custom dump handed to pg_restore: the file's path, or `zstd -dc FILE` on its standard input.

    pg_restore 15 reads no zstd, so a .dump.zst is decompressed on the fly into
    its stdin (one pass, nothing written to disk). `args` go on pg_restore's
    command line and `stdin` to its Popen; call started() once pg_restore is
    running (so only it holds the pipe), then zstd_failure() after it exits.
    zstd checks every frame's checksum as it goes: a damaged byte fails it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.zstd: subprocess.Popen[bytes] | None = None
        self._errors: IO[bytes] | None = None
        self.args: list[str] = [str(self.path)]
        self.stdin: IO[bytes] | None = None

    def __enter__(self) -> ArchiveStream:
        if is_zstd(self.path):
            self._errors = tempfile.TemporaryFile()
            self.zstd = subprocess.Popen([zstd_tool(), "-dc", "-q", "--", str(self.path)], stdout=subprocess.PIPE,
                                         stderr=self._errors)
            self.args, self.stdin = [], self.zstd.stdout
        return self

    def started(self) -> None:
        """pg_restore holds the pipe now: ours is closed, so zstd stops (SIGPIPE) when pg_restore stops reading."""
        if self.zstd is not None and self.zstd.stdout is not None:
            self.zstd.stdout.close()

    def zstd_failure(self, read_all: bool) -> str | None:
        """Why zstd failed (None: it did not). When pg_restore read only the start, a broken pipe is no failure."""
        if self.zstd is None:
            return None
        code = self.zstd.wait()
        if code == 0 or (not read_all and code == -signal.SIGPIPE):
            return None
        assert self._errors is not None
        self._errors.seek(0)
        text = self._errors.read().decode("utf-8", "replace")
        return f"zstd cannot decompress {self.path.name}: {last_line(text, f'exit {code}')}"

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.zstd is not None:
            if self.zstd.poll() is None:
                self.zstd.kill()
            self.zstd.wait()
            if self.zstd.stdout is not None:
                self.zstd.stdout.close()
        if self._errors is not None:
            self._errors.close()


def run_pg_restore(options: list[str], path: Path, *, read_all: bool, timeout: float,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """pg_restore OPTIONS on the dump (a .dump.zst through zstd), its output captured as text.

    `read_all`: pg_restore reads the whole archive (a full read, a load), so zstd
    must reach the end too; a zstd failure is then the result (exit 1, its line).
    """
    with ArchiveStream(path) as archive:
        proc = subprocess.Popen([client_tool("pg_restore"), *options, *archive.args], stdin=archive.stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        archive.started()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        # pg_restore stopping (done with the TOC, or failed) breaks zstd's pipe: that is no zstd failure, and
        # pg_restore's own error stays the reason; a damaged frame is zstd's to name
        failure = archive.zstd_failure(read_all and proc.returncode == 0)
    if failure:
        return subprocess.CompletedProcess(proc.args, proc.returncode or 1, out, f"{err}\n{failure}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _verify_custom(path: Path, checks: list[str], full_read: bool) -> VerifyResult:
    """pg_restore --list (the table of contents), then a full read of the data when asked (cheap, unproven, new).

    For a .dump.zst the full read is zstd (every frame's checksum) into pg_restore
    (every data block), both to the end.
    """
    try:
        proc = run_pg_restore(["--list"], path, read_all=False, timeout=900)
    except subprocess.TimeoutExpired:
        return VerifyResult(path, False, "pg_restore --list timed out", checks)
    if proc.returncode != 0:
        return VerifyResult(path, False, "pg_restore --list failed: " + last_line(proc.stderr, "?"), checks)
    checks.append("pg_restore --list")
    if full_read:
        try:
            proc = run_pg_restore(["-f", os.devnull], path, read_all=True, timeout=6 * 3600)
        except subprocess.TimeoutExpired:
            return VerifyResult(path, False, "pg_restore full read timed out", checks)
        if proc.returncode != 0:
            return VerifyResult(path, False, "pg_restore full read failed (truncated or damaged data): "
                                + last_line(proc.stderr, "?"), checks)
        checks.append("zstd checksums, pg_restore full read" if is_zstd(path) else "pg_restore full read")
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
    proc = run_pg_restore(["--list"], path, read_all=False, timeout=900)
    header = {}
    for key, label in (("server_version", "Dumped from database version:"), ("pg_dump_version", "Dumped by pg_dump version:"),
                       ("database", "dbname:")):
        for line in proc.stdout.splitlines():
            if label in line:
                header[key] = line.split(label, 1)[1].strip()
                break
    return header
