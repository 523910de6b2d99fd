"""Where the disk went, and freeing it without losing anything that matters.

The guide's out-of-disk procedure is `docker system prune -a --volumes` (which
deletes the database's volume if the db container is down), `find -mtime +30
-delete` on backups (which deletes the last good one after a month of failed
backups) and `truncate -s 0` on live logs (which destroys the evidence of the
incident). ccops plans first and acts second: a CleanupPlan lists every file
it would touch, why, and the bytes it would free; applying it touches exactly
those files (re-checked, so nothing that changed since is deleted), never
anything under the database's data directory or docker's volumes, and a live
log is archived (gzip, verified) before it is truncated.

The log the app is writing (the newest plain log, today's, or any log a process
holds open for writing) is never deleted or compressed, whatever the retention
says: only archive-then-truncate, asked for by name, touches it.

It works on a disk that is full: a file is compressed into the system temp dir
(or memory) when its own disk has no room, verified there, and moved back only
after the original is gone; log names come from ccops.logs' one rule, so what
is compressed here is still read by every log check.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from ccops import logs
from ccops.core import fs

PROTECTED = [Path("/var/lib/docker/volumes"), Path("/var/lib/postgresql")]
MEMORY_STAGING_LIMIT = 64 << 20  # compress in memory only files up to this size
# where a compressed copy may wait when its own disk is full (None: the system temp dir)
STAGING_DIRS: tuple[Path | None, ...] = (None, Path("/dev/shm"))


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def tree_size(path: Path) -> int:
    """Bytes under path on its own filesystem, symlinks not followed (what `du -sx` counts)."""
    try:
        root_dev = path.stat().st_dev
    except OSError:
        return 0
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.is_dir(follow_symlinks=False):
                if info.st_dev == root_dev:
                    stack.append(Path(entry.path))
            else:
                total += info.st_blocks * 512 if hasattr(info, "st_blocks") else info.st_size
    return total


def largest_dirs(paths: list[Path], depth: int = 1, top: int = 15) -> pd.DataFrame:
    """The biggest directories at `depth` levels below each path, biggest first."""
    rows: list[dict[str, Any]] = []
    for base in paths:
        base = Path(base)
        if not base.is_dir():
            continue
        level = [base]
        for _ in range(depth):
            level = [Path(e.path) for d in level for e in _scandir(d) if e.is_dir(follow_symlinks=False)]
        for directory in level or [base]:
            rows.append({"path": str(directory), "bytes": tree_size(directory)})
    frame = pd.DataFrame(rows, columns=["path", "bytes"]).drop_duplicates("path")
    frame = frame.sort_values("bytes", ascending=False).head(top).reset_index(drop=True)
    frame["size"] = frame["bytes"].map(human)
    return frame


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def is_protected(path: Path, extra: list[Path] | None = None) -> bool:
    """True for anything under the database's data directory or docker's volumes."""
    resolved = Path(path).resolve()
    for root in PROTECTED + list(extra or []):
        try:
            resolved.relative_to(Path(root).resolve())
            return True
        except ValueError:
            continue
    return False


@dataclass
class CleanupAction:
    kind: str  # delete | compress | archive_truncate
    path: Path
    bytes: int
    reason: str
    mtime: float = 0.0
    done: bool = False
    freed: int = 0
    error: str = ""

    def row(self) -> dict[str, Any]:
        return {"action": self.kind, "path": str(self.path), "size": human(self.bytes), "bytes": self.bytes,
                "reason": self.reason, "done": self.done, "freed": self.freed, "error": self.error}


@dataclass
class CleanupPlan:
    actions: list[CleanupAction] = field(default_factory=list)
    protected: list[Path] = field(default_factory=list)
    # live logs: never deleted or compressed (only archive_truncate may touch them)
    live: list[Path] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([a.row() for a in self.actions],
                            columns=["action", "path", "size", "bytes", "reason", "done", "freed", "error"])

    def add(self, action: CleanupAction) -> None:
        if is_protected(action.path, self.protected):
            return
        if action.kind != "archive_truncate" and _same_file_in(action.path, self.live):
            return
        try:
            action.mtime = action.path.stat().st_mtime
        except OSError:
            return
        if all(a.path != action.path for a in self.actions):
            self.actions.append(action)


def log_date(path: Path) -> datetime | None:
    """The day in an app log file's name (ccops.logs' rule), as a datetime; None for other files."""
    day = logs.file_day(Path(path))
    return datetime.combine(day, datetime.min.time()) if day else None


def _same_file_in(path: Path, paths: list[Path]) -> bool:
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return any(resolved == Path(p).resolve() for p in paths)


def open_for_writing(directory: Path) -> set[tuple[int, int]]:
    """(device, inode) of the files in `directory` some process holds open for writing.

    Read from /proc/*/fd and fdinfo (the processes this user may see; as root, all of
    them). Files are compared by inode, so a container's writer is found through its bind
    mount, whatever path it sees.
    """
    wanted: dict[tuple[int, int], None] = {}
    try:
        for entry in os.scandir(directory):
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            wanted[(info.st_dev, info.st_ino)] = None
    except OSError:
        return set()
    found: set[tuple[int, int]] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith("/") or logs.parse_log_name(os.path.basename(target)) is None:
                    continue
                info = os.stat(f"{fd_dir}/{fd}")
                key = (info.st_dev, info.st_ino)
                if key not in wanted:
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as handle:
                    flags = next((int(line.split()[1], 8) for line in handle if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found.add(key)
    return found


def live_logs(log_dir: Path, now: datetime) -> list[Path]:
    """The app log files that may be being written, never to be deleted or compressed.

    The newest plain log, any plain log dated `now`'s day or later (today's, whatever the
    zone of the names), and any app log a process holds open for writing.
    """
    files = logs.app_log_files(Path(log_dir))
    current = [(path, name) for path, name in files if name.current]
    live: list[Path] = []
    dated = [(name.day, path) for path, name in current if name.day is not None]
    if dated:
        live.append(max(dated)[1])
    today = min(now.date(), date.today())
    live += [path for path, name in current if name.day is None or name.day >= today]
    writing = open_for_writing(Path(log_dir))
    for path, _ in files:
        try:
            info = path.stat()
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in writing:
            live.append(path)
    unique: list[Path] = []
    for path in live:
        if path not in unique:
            unique.append(path)
    return unique


def plan_log_cleanup(log_dir: Path, now: datetime, keep_days: int = 90, compress_rotated: bool = True,
                     protected: list[Path] | None = None) -> CleanupPlan:
    """Old logs to delete (older than keep_days by the date in their name), rotated plain logs to gzip.

    Oldest first, so on a full disk each step makes room for the next. The live log is
    never on the plan, whatever keep_days says (even 0 or less).
    """
    plan = CleanupPlan(protected=list(protected or []))
    if not Path(log_dir).is_dir():
        return plan
    plan.live = live_logs(Path(log_dir), now)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for path, name in logs.app_log_files(Path(log_dir)):
        if name.day is None:
            continue
        day = datetime.combine(name.day, datetime.min.time())
        size = path.stat().st_size
        if day < today - timedelta(days=keep_days):
            plan.add(CleanupAction("delete", path, size, f"log of {day:%Y-%m-%d}, older than {keep_days} days"))
        elif compress_rotated and not name.compression and day < today:
            plan.add(CleanupAction("compress", path, size, f"rotated log of {day:%Y-%m-%d} not compressed"))
    return plan


def plan_live_log_truncation(log_dir: Path, now: datetime, protected: list[Path] | None = None) -> CleanupPlan:
    """The live log(s): archive (gzip) then truncate, only ever with explicit confirmation."""
    plan = CleanupPlan(protected=list(protected or []))
    if not Path(log_dir).is_dir():
        return plan
    plan.live = live_logs(Path(log_dir), now)
    for live in plan.live:
        name = logs.parse_log_name(live.name)
        if name is not None and name.current and live.is_file() and live.stat().st_size > 0:
            plan.add(CleanupAction("archive_truncate", live, live.stat().st_size,
                                   "live log: archived to .gz, then truncated in place"))
    return plan


def apply_plan(plan: CleanupPlan, now: datetime | None = None) -> CleanupPlan:
    """Carry out exactly the planned actions, in order; a file changed since planning is skipped.

    A log some process opened for writing since the plan was made is skipped too, unless
    the action is archive_truncate (which keeps every byte).
    """
    when = now or datetime.now(timezone.utc)
    writing: dict[Path, set[tuple[int, int]]] = {}
    for action in plan.actions:
        try:
            if is_protected(action.path, plan.protected):
                action.error = "protected path: refused"
                continue
            stat = action.path.stat()
            if action.kind != "archive_truncate" and stat.st_mtime != action.mtime:
                action.error = "changed since the plan was made: skipped"
                continue
            if action.kind != "archive_truncate" and logs.parse_log_name(action.path.name) is not None:
                parent = action.path.parent
                if parent not in writing:
                    writing[parent] = open_for_writing(parent)
                if (stat.st_dev, stat.st_ino) in writing[parent] or _same_file_in(action.path, plan.live):
                    action.error = "the app is writing this log: skipped"
                    continue
            if action.kind == "delete":
                action.path.unlink()
                action.freed = stat.st_size
            elif action.kind == "compress":
                target = action.path.with_name(logs.compressed_log_name(action.path.name))
                if target.exists():  # never overwrite an earlier archive of the same day
                    target = action.path.with_name(logs.archived_log_name(action.path.name, when))
                action.freed = _compress_replacing(action.path, target, action)
            elif action.kind == "archive_truncate":
                target = action.path.with_name(logs.archived_log_name(action.path.name, when))
                action.freed = _archive_truncating(action.path, target, action)
            action.done = True
        except OSError as exc:
            action.error = f"{exc.strerror or exc}"
    return plan


# ---- compressing on a full disk ------------------------------------------------------------

def _free_bytes(path: Path) -> int:
    try:
        stat = os.statvfs(path)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def _room_needed(size: int) -> int:
    """Room a gzip of `size` bytes may take at worst (incompressible data), with margin."""
    return size + size // 100 + (1 << 16)


class _Staging:
    """Where a compressed copy is written before the original may go.

    Beside the target when its disk has room; else the system temp dir (or /dev/shm)
    when that is another filesystem with room; else memory for files up to
    MEMORY_STAGING_LIMIT. On a full disk nothing is written there until the original is gone.
    """

    def __init__(self, source: Path, target: Path, allow_memory: bool = True) -> None:
        size = source.stat().st_size
        need = _room_needed(size)
        self.local = _free_bytes(target.parent) >= need
        self.path: Path | None = None
        self.memory: io.BytesIO | None = None
        if self.local:
            self.path = target.with_name(f".{target.name}.partial")
            return
        device = target.parent.stat().st_dev
        for place in STAGING_DIRS:
            candidate = Path(tempfile.gettempdir()) if place is None else place
            try:
                if candidate.is_dir() and candidate.stat().st_dev != device and _free_bytes(candidate) >= need:
                    handle, name = tempfile.mkstemp(prefix=f"ccops-{target.name}.", suffix=".partial", dir=candidate)
                    os.close(handle)
                    self.path = Path(name)
                    return
            except OSError:
                continue
        if allow_memory and size <= MEMORY_STAGING_LIMIT:
            self.memory = io.BytesIO()
            return
        raise OSError(errno.ENOSPC, f"no room to compress {source.name} ({human(size)}): "
                                    "its disk is full and no other disk has room; free space first")

    def read(self) -> BinaryIO:
        if self.memory is not None:
            return io.BytesIO(self.memory.getbuffer())
        assert self.path is not None
        return open(self.path, "rb")

    @property
    def where(self) -> str:
        return "memory" if self.memory is not None else str(self.path)

    def size(self) -> int:
        if self.memory is not None:
            return len(self.memory.getbuffer())
        assert self.path is not None
        return self.path.stat().st_size

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        self.memory = None

    def place(self, target: Path) -> None:
        """Put the verified archive at `target` (tmp + fsync + rename on target's disk)."""
        if self.local:
            assert self.path is not None
            os.replace(self.path, target)
            fs.fsync_dir(target.parent)
            return
        with self.read() as reader, fs.atomic_writer(target, None, suffix=".partial") as writer:
            try:  # claim the room at once: the app is racing for the space just freed
                os.posix_fallocate(writer.fileno(), 0, self.size())
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            if os.fstat(writer.fileno()).st_size != self.size():
                raise OSError(errno.EIO, f"copy of {target.name} is incomplete")
        self.discard()


class _Unclosed(io.BufferedIOBase):
    """A view of a BytesIO whose close leaves the buffer alone (so it can be read back)."""

    def __init__(self, buffer: io.BytesIO) -> None:
        self.buffer = buffer

    def write(self, data: Any) -> int:
        return self.buffer.write(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise io.UnsupportedOperation("in memory")


def _gzip_into(source: Path, staging: _Staging, start: int = 0, append: bool = False) -> tuple[int, int]:
    """gzip source[start:] into staging, fsynced; return (bytes, crc32) of what was read."""
    copied, crc = 0, 0
    mode = "ab" if append else "wb"
    if staging.memory is not None:
        raw: Any = _Unclosed(staging.memory)
    else:
        assert staging.path is not None
        raw = open(staging.path, mode)  # noqa: SIM115 - closed below
    try:
        with open(source, "rb") as reader:
            reader.seek(start)
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as writer:
                while chunk := reader.read(1 << 20):
                    writer.write(chunk)
                    copied += len(chunk)
                    crc = zlib.crc32(chunk, crc)
        raw.flush()
        if staging.memory is None:
            os.fsync(raw.fileno())
    finally:
        if staging.memory is None:
            raw.close()
    return copied, crc


def _verify(staging: _Staging, copied: int, crc: int, name: str) -> None:
    """Read the archive back: every byte, and the same bytes (crc32) as the original."""
    read_back, check = 0, 0
    with staging.read() as raw, gzip.GzipFile(fileobj=raw, mode="rb") as reader:
        for chunk in iter(lambda: reader.read(1 << 20), b""):
            read_back += len(chunk)
            check = zlib.crc32(chunk, check)
    if read_back != copied or check != crc:
        raise OSError(errno.EIO, f"archive of {name} reads back {read_back} of {copied} bytes or differs")


def _compress_replacing(source: Path, target: Path, action: CleanupAction) -> int:
    """gzip source to target, verified, then remove source; return the bytes freed.

    On a full disk the archive waits in the staging area until the original is gone.
    If it cannot be moved back then, it stays where it is and the action says where.
    """
    size = source.stat().st_size
    staging = _Staging(source, target)
    try:
        copied, crc = _gzip_into(source, staging)
        _verify(staging, copied, crc, source.name)
    except BaseException:
        staging.discard()
        raise
    if staging.local:
        staging.place(target)
        source.unlink()
        return size - target.stat().st_size
    source.unlink()
    try:
        staging.place(target)
    except OSError as exc:
        if staging.memory is not None:  # no copy left anywhere else: put the original back
            _restore_from_memory(staging, source)
            raise
        action.error = f"{exc.strerror or exc}: the archive is at {staging.where}; move it to {target} when there is room"
        return size
    return size - target.stat().st_size


def _restore_from_memory(staging: _Staging, source: Path) -> None:
    with staging.read() as raw, gzip.GzipFile(fileobj=raw, mode="rb") as reader, open(source, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1 << 20)


def _archive_truncating(source: Path, target: Path, action: CleanupAction) -> int:
    """Archive the live log to target (verified), then truncate it in place; return the bytes freed.

    The app keeps writing to it (loguru appends). What it wrote while the archive was
    made is added to the archive just before the truncation, so the window in which a
    line could be lost is the time of one small read.
    """
    staging = _Staging(source, target, allow_memory=False)  # the live log is never held only in memory
    try:
        copied, crc = _gzip_into(source, staging)
        _verify(staging, copied, crc, source.name)
        tail = source.stat().st_size - copied
        if tail > 0:  # lines written meanwhile: a second gzip member
            more, _ = _gzip_into(source, staging, start=copied, append=True)
            copied += more
        with open(source, "r+b") as handle:
            handle.truncate(0)
    except BaseException:
        staging.discard()
        raise
    try:
        staging.place(target)
    except OSError as exc:
        action.error = f"{exc.strerror or exc}: the archive is at {staging.where}; move it to {target} when there is room"
        return copied
    return copied - target.stat().st_size


def filesystem_usage(path: Path) -> dict[str, Any]:
    stat = os.statvfs(path)
    total = stat.f_blocks * stat.f_frsize
    free = stat.f_bavail * stat.f_frsize
    return {"path": str(path), "total": total, "free": free,
            "free_pct": round(100 * free / total, 1) if total else 0.0}


def docker_system_df(timeout: float = 30) -> str:
    """`docker system df` output, or the reason it is not available."""
    import subprocess

    if not shutil.which("docker"):
        return "docker is not installed"
    try:
        proc = subprocess.run(["docker", "system", "df"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "docker system df timed out"
    return proc.stdout if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["docker failed"])[-1]


def prune_command() -> list[str]:
    """The only prune ccops will run: images and build cache older than 30 days, never volumes."""
    return ["docker", "system", "prune", "-a", "-f", "--filter", "until=720h"]

