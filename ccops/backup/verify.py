"""Is a backup good? Checksum against its manifest, then read back by what can read it.

A custom dump through pg_restore (its table of contents, and its data when cheap
or unproven), a plain dump parsed to its end, an .env copy line by line, a logs
tarball member by member. An unreadable file or a missing tool is a failed
verification, never a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

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
        return VerifyResult(path, False, "pg_restore --list failed: " + last_line(proc.stderr, "?"), checks)
    checks.append("pg_restore --list")
    if not has_manifest or path.stat().st_size <= FULL_READ_MAX_BYTES:
        try:
            proc = subprocess.run([tool, "-f", os.devnull, str(path)], capture_output=True, text=True, timeout=6 * 3600)
        except subprocess.TimeoutExpired:
            return VerifyResult(path, False, "pg_restore full read timed out", checks)
        if proc.returncode != 0:
            return VerifyResult(path, False, "pg_restore full read failed (truncated or damaged data): "
                                + last_line(proc.stderr, "?"), checks)
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
