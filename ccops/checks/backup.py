"""The evening backup check: today's backup exists, is big enough, and can be read.

The guide lists `contentcreator_$(date +%Y%m%d)*.sql` and eyeballs the size. A
file that exists can still be a truncated dump, so ccops also reads it: a
manifest written beside it (sha256) when there is one, else `pg_restore
--list` for custom-format dumps, `gzip -t` plus the dump trailer for `.sql.gz`,
and the trailer for plain `.sql` ("PostgreSQL database dump complete").
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pandas as pd

from ccops.context import RunContext, check
from ccops.findings import Finding, Status

NAME = re.compile(r"contentcreator_(\d{8})_?(\d{6})?")
SUFFIXES = (".dump", ".sql", ".sql.gz", ".backup")
TRAILER = b"PostgreSQL database dump complete"


def backup_files(backup_dir: Path) -> list[Path]:
    """Finished backups (no temp or partial names), newest name first."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name.endswith(SUFFIXES) and NAME.search(p.name)]
    return sorted(files, key=lambda p: p.name, reverse=True)


def backup_time(path: Path) -> datetime | None:
    match = NAME.search(path.name)
    if not match:
        return None
    return datetime.strptime(match.group(1) + (match.group(2) or "000000"), "%Y%m%d%H%M%S")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def readable(path: Path) -> tuple[bool, str]:
    """Can this backup be read back? (ok, how it was checked or why not)."""
    manifest = path.with_name(path.name + ".manifest.json")
    if manifest.exists():
        try:
            expected = json.loads(manifest.read_text())["sha256"]
        except (OSError, ValueError, KeyError):
            return False, f"manifest {manifest.name} unreadable"
        if _sha256(path) != expected:
            return False, "checksum does not match its manifest"
    if path.name.endswith((".dump", ".backup")):
        from ccops.db import client_tool

        proc = subprocess.run([client_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return False, "pg_restore --list failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
        return True, ("sha256 and " if manifest.exists() else "") + "pg_restore --list"
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                tail = b""
                while chunk := handle.read(1 << 20):
                    tail = (tail + chunk)[-4096:]
        else:
            with open(path, "rb") as handle:
                handle.seek(max(0, path.stat().st_size - 4096))
                tail = handle.read()
    except (OSError, EOFError) as exc:
        return False, f"cannot read: {exc}"
    if TRAILER not in tail:
        return False, "the dump does not end with pg_dump's completion line (truncated?)"
    return True, "gzip -t and dump trailer" if path.name.endswith(".gz") else "dump trailer"


@check("backup.daily")
def daily_backup(ctx: RunContext) -> Finding:
    """Today's backup (the day of as_of) exists, is above the minimum size, and reads back."""
    directory = ctx.settings.effective_backup_dir
    minimum = ctx.settings.backup.min_size_bytes
    if not Path(directory).is_dir():
        return Finding("backup.daily", Status.CRITICAL, f"backup dir {directory} does not exist: no backups at all")
    day = ctx.as_of.strftime("%Y%m%d")
    today = [p for p in backup_files(directory) if NAME.search(p.name).group(1) == day
             and (backup_time(p) or ctx.as_of) <= ctx.as_of]
    rows = [{"file": p.name, "bytes": p.stat().st_size} for p in today]
    if not today:
        latest = backup_files(directory)
        last = f"; the latest is {latest[0].name}" if latest else "; there are none"
        return Finding("backup.daily", Status.CRITICAL, f"no backup from {ctx.as_of:%Y-%m-%d} in {directory}{last}", 0)
    newest = today[0]
    ok, how = readable(newest)
    size = newest.stat().st_size
    table = pd.DataFrame(rows)
    if not ok:
        return Finding("backup.daily", Status.CRITICAL, f"{newest.name} cannot be read back: {how}", size, minimum, data=table)
    if size < minimum:
        return Finding("backup.daily", Status.WARNING, f"{newest.name} is only {size:,} bytes (minimum {minimum:,})",
                       size, minimum, data=table)
    return Finding("backup.daily", Status.OK, f"{newest.name}: {size / 2**20:,.1f} MiB, verified with {how}", size, minimum,
                   data=table)
