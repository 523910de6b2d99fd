"""Atomic writes, directory fsync and exclusive locks: the one place ccops does them.

Why one place: every file ccops keeps (the archive, the alert state, a run's
note, a paused rate limit, an app's .env) must read as the old version or the
whole new one, never half of either, and a full disk (ENOSPC) must leave the
old file intact and no temporary file behind. That takes a temporary file in
the same directory (a rename is only atomic within one filesystem), created
with its final mode and group before any byte is in it (a secret is never
readable by others, not even for a moment), fsynced before the rename (or a
crash may leave the new name with no data) and the directory fsynced after (or
a crash may forget the rename). Eleven hand-rolled copies each missed a
different one of those steps.

Locks are flock(2): the kernel drops one when its holder dies, so a crashed
run never leaves a stale lock, and an empty lock file needs no free block, so
taking one works on a full disk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ccops.core.errors import AlreadyRunning, CcopsError

StrPath = str | os.PathLike[str]
TEMP_SUFFIX = ".tmp"
LOCK_POLL_SECONDS = 0.05


def fsync_dir(folder: StrPath) -> None:
    """Make the renames in `folder` durable; best effort, since some filesystems refuse a directory fsync."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temp(target: Path, mode: int | None, uid: int | None, gid: int | None, suffix: str) -> tuple[int, Path]:
    """A new, exclusive temp file beside target, already with its final mode and owner.

    mode None leaves the mode to the umask, as open() would (0644 under the
    usual 022); a number is applied exactly, whatever the umask.
    """
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        try:
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            if mode is not None:
                os.fchmod(fd, mode)  # after fchown, which clears setgid bits; and the umask does not apply
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target))


@contextmanager
def atomic_writer(path: StrPath, mode: int | None = 0o600, *, uid: int | None = None, gid: int | None = None,
                  text: bool = False, durable: bool = True, suffix: str = TEMP_SUFFIX) -> Iterator[IO[Any]]:
    """A file handle whose content replaces `path` when the block ends, or never appears at all.

    For content that is streamed rather than held in memory (a dump, a
    compressed log). Any exception in the block or while finishing (ENOSPC on
    the last flush) removes the temporary file and leaves the old `path` as it
    was. durable=False skips both fsyncs, for throwaway files (the demo's)
    where a crash may lose the new version but a reader still never sees half.
    """
    target = Path(path)
    fd, tmp = _open_temp(target, mode, uid, gid, suffix)
    try:
        handle: IO[Any] = os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def write_temp(path: StrPath, data: str | bytes, mode: int | None = 0o600, *, uid: int | None = None,
               gid: int | None = None, durable: bool = True, suffix: str = TEMP_SUFFIX) -> Path:
    """Write data to a new temp file beside `path` (fsynced, final mode) and return it, not yet renamed.

    For callers that place several files together (the archive's all-or-none
    write_files); they rename with os.replace and call fsync_dir. On failure
    nothing is left behind.
    """
    target = Path(path)
    fd, tmp = _open_temp(target, mode, uid, gid, suffix)
    try:
        payload = data.encode("utf-8") if isinstance(data, str) else data
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: StrPath, data: str | bytes, mode: int | None = 0o600, *, uid: int | None = None,
                 gid: int | None = None, durable: bool = True, suffix: str = TEMP_SUFFIX) -> None:
    """Replace `path` with data (str as UTF-8): readers see the old file or the whole new one, never a part.

    Private (0600) unless mode says otherwise; uid/gid give the file to an
    owner or group (the archive's reviewers' group, an .env's owner). On any
    failure, a full disk above all, the old file is untouched, no temporary
    file is left, and the OSError propagates as the system raised it.
    """
    target = Path(path)
    tmp = write_temp(target, data, mode, uid=uid, gid=gid, durable=durable, suffix=suffix)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)


def try_lock(fd: int, timeout: float | None = 0) -> bool:
    """flock(fd) exclusively: True when held; False when another holder kept it past `timeout` seconds.

    0 tries once, None waits as long as it takes, anything else polls (flock
    has no timeout of its own, and a signal would interrupt a blocking wait).
    """
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_SECONDS)


@contextmanager
def exclusive_lock(path: StrPath, blocking: bool = False, *, timeout: float | None = None, mode: int = 0o600,
                   busy: str | Callable[[int], CcopsError] | None = None) -> Iterator[int]:
    """Hold an flock on `path` (created empty, `mode`) for the block; yields the descriptor.

    Not blocking: AlreadyRunning (exit 75: cron tries again next time) at once
    when another process holds it. Blocking: waits, for at most `timeout`
    seconds when given, then AlreadyRunning. `busy` is that error's message,
    or a function of the lock's descriptor returning the error (to name the
    holder a caller wrote into the file). The descriptor is close-on-exec, so
    a child (papermill, a kernel) never inherits the lock. An OSError opening
    the file propagates for the caller to word.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        if not try_lock(fd, timeout if blocking else 0):
            if callable(busy):
                raise busy(fd)
            raise AlreadyRunning(busy or f"{path} is locked by another ccops process")
        yield fd
    finally:
        os.close(fd)
