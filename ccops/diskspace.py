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
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

PROTECTED = [Path("/var/lib/docker/volumes"), Path("/var/lib/postgresql")]
DATED_LOG = re.compile(r"content_creator_(\d{4}-\d{2}-\d{2})")


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

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.actions)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([a.row() for a in self.actions],
                            columns=["action", "path", "size", "bytes", "reason", "done", "freed", "error"])

    def add(self, action: CleanupAction) -> None:
        if is_protected(action.path, self.protected):
            return
        try:
            action.mtime = action.path.stat().st_mtime
        except OSError:
            return
        if all(a.path != action.path for a in self.actions):
            self.actions.append(action)


def log_date(path: Path) -> datetime | None:
    match = DATED_LOG.search(path.name)
    if not match:
        return None
    try:
        return datetime.strptime(match.group(1), "%Y-%m-%d")
    except ValueError:
        return None


def plan_log_cleanup(log_dir: Path, now: datetime, keep_days: int = 90, compress_rotated: bool = True,
                     protected: list[Path] | None = None) -> CleanupPlan:
    """Old logs to delete (older than keep_days by the date in their name), rotated plain logs to gzip."""
    plan = CleanupPlan(protected=list(protected or []))
    if not Path(log_dir).is_dir():
        return plan
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for path in sorted(Path(log_dir).iterdir()):
        if not path.is_file():
            continue
        day = log_date(path)
        if day is None:
            continue
        size = path.stat().st_size
        if day < today - timedelta(days=keep_days):
            plan.add(CleanupAction("delete", path, size, f"log of {day:%Y-%m-%d}, older than {keep_days} days"))
        elif compress_rotated and path.suffix == ".log" and day < today:
            plan.add(CleanupAction("compress", path, size, f"rotated log of {day:%Y-%m-%d} not compressed"))
    return plan


def plan_live_log_truncation(log_dir: Path, now: datetime, protected: list[Path] | None = None) -> CleanupPlan:
    """Today's live log: archive (gzip) then truncate, only ever with explicit confirmation."""
    plan = CleanupPlan(protected=list(protected or []))
    live = Path(log_dir) / f"content_creator_{now:%Y-%m-%d}.log"
    if live.is_file() and live.stat().st_size > 0:
        plan.add(CleanupAction("archive_truncate", live, live.stat().st_size,
                               "live log: archived to .gz, then truncated in place"))
    return plan


def apply_plan(plan: CleanupPlan, now: datetime | None = None) -> CleanupPlan:
    """Carry out exactly the planned actions; a file changed since planning is skipped."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    for action in plan.actions:
        try:
            if is_protected(action.path, plan.protected):
                action.error = "protected path: refused"
                continue
            stat = action.path.stat()
            if action.kind != "archive_truncate" and stat.st_mtime != action.mtime:
                action.error = "changed since the plan was made: skipped"
                continue
            if action.kind == "delete":
                action.path.unlink()
                action.freed = stat.st_size
            elif action.kind == "compress":
                target = action.path.with_name(action.path.name + ".gz")
                _gzip_verified(action.path, target)
                action.path.unlink()
                action.freed = stat.st_size - target.stat().st_size
            elif action.kind == "archive_truncate":
                target = action.path.with_name(f"{action.path.name}.{stamp}.gz")
                size = _gzip_verified(action.path, target)
                with open(action.path, "r+b") as handle:
                    handle.truncate(0)
                action.freed = size - target.stat().st_size
            action.done = True
        except OSError as exc:
            action.error = f"{exc.strerror or exc}"
    return plan


def _gzip_verified(source: Path, target: Path) -> int:
    """gzip source to target (tmp + fsync + rename), read it back, return the bytes archived."""
    tmp = target.with_name(f".{target.name}.partial")
    copied = 0
    try:
        with open(source, "rb") as reader, open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as writer:
                while chunk := reader.read(1 << 20):
                    writer.write(chunk)
                    copied += len(chunk)
            raw.flush()
            os.fsync(raw.fileno())
        with gzip.open(tmp, "rb") as check:
            read_back = sum(len(chunk) for chunk in iter(lambda: check.read(1 << 20), b""))
        if read_back != copied:
            raise OSError(f"archive of {source.name} reads back {read_back} of {copied} bytes")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return copied


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

