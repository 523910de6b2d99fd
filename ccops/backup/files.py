"""The backup dir's files: private modes, durable renames, checksums, manifests and the dir's lock.

Dumps and .env copies hold every row and every secret of the app, so every
directory is 0700 and every file 0600 before the first byte reaches it; a
rename is made durable with an fsync of its directory; one flock per backup
dir keeps a prune from taking a growing dump for a leftover.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccops.backup.errors import BackupBusy, BackupError, reason
from ccops.backup.naming import manifest_path
from ccops.core import fs

LOCK_NAME = ".ccops-backup.lock"


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


def private_file(path: Path) -> None:
    """Create the (empty) file 0600 before a tool writes into it, so it is never readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


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
    """flock on <dir>/.ccops-backup.lock (core.fs): the kernel releases it when the process dies, so it never goes stale."""
    directory = Path(directory)
    busy = BackupBusy(f"a backup is running in {directory} (it holds {LOCK_NAME})")
    with ExitStack() as stack:
        try:  # only the lock's own failure is worded here; the backup's errors pass through the yield untouched
            stack.enter_context(fs.exclusive_lock(directory / LOCK_NAME, blocking=True, timeout=wait_s,
                                                  busy=lambda _fd: busy))
        except OSError as exc:
            raise BackupError(f"cannot open the lock {directory / LOCK_NAME}: {exc.strerror or exc}") from None
        yield


fsync_dir = fs.fsync_dir  # one fsync of a directory for the whole package (core.fs)


def utc_now() -> datetime:
    """Naive UTC to the second: the time in ccops' backup names and manifests."""
    return datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
