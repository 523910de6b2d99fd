"""Writing the archive: private modes (or a reviewers' group), folders made as needed, all-or-nothing writes.

Split from ccops.archive so the index state (ccops.archive.indexstate) can write its
files the same way without importing the package that imports it.
"""

from __future__ import annotations

import errno
import grp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccops.core import fs
from ccops.core.errors import CcopsError


class ArchiveError(CcopsError):
    """A file of the archive could not be written; nothing partial was left. Exit 3 (run failed)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = Path(path)
        self.errno = exc.errno
        super().__init__(f"cannot write {self.path}: {describe_os_error(exc)}")


def describe_os_error(exc: OSError) -> str:
    """`No space left on device (ENOSPC)`: the text and the symbolic errno an operator can search for."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


@dataclass(frozen=True)
class Permissions:
    """Modes (and group) of the archive's files and folders."""

    file_mode: int = 0o600
    dir_mode: int = 0o700
    gid: int | None = None

    @classmethod
    def for_settings(cls, settings: Any) -> Permissions:
        """Private by default; with `archive.group` (Settings.archive_group) 0640/0750 owned by that group."""
        group = getattr(settings, "archive_group", None)
        if group in (None, ""):
            return cls()
        return cls(0o640, 0o750, group_id(str(group)))

    @classmethod
    def of_archive(cls, archive_dir: Path) -> Permissions:
        """For writers without settings (`reports index`, retention): keep what the archive folder says.

        A folder readable by its group is a reviewers' archive (0640/0750 for
        that group); anything else, or a new archive, is private.
        """
        try:
            st = Path(archive_dir).stat()
        except OSError:
            return cls()
        if st.st_mode & 0o050 == 0o050 and not st.st_mode & 0o007:
            return cls(0o640, 0o750, st.st_gid)
        return cls()


def group_id(group: str) -> int:
    """The gid of a group name (or number) this process may give files to; ConfigError otherwise."""
    from ccops.core.settings import ConfigError

    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"archive.group: no group named {group!r} on this host") from None
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise ConfigError(f"archive.group: {group!r}: this user is not a member, so cannot give the archive to it")
    return gid


def make_dirs(path: Path, perms: Permissions | None = None, top: Path | None = None) -> list[Path]:
    """Create path and its missing parents with perms' folder mode; the folders created, outermost first.

    Folders between `top` (the archive root, included) and path that exist
    already get the mode and group too, so an archive made by an older
    version (0755) turns private as it is written to.
    """
    perms = perms or Permissions()
    path = Path(path)
    created: list[Path] = []
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=perms.dir_mode)
        except FileExistsError:
            continue
        created.append(folder)
    chain = [path]
    if top is not None:
        top = Path(top)
        chain = [p for p in [path, *path.parents] if p == top or top in p.parents]
    for folder in set(chain) | set(created):
        _set_mode(folder, perms.dir_mode, perms.gid)
    return created


def _set_mode(path: Path, mode: int, gid: int | None) -> None:
    try:
        st = path.stat()
        if st.st_uid != os.geteuid() and os.geteuid() != 0:
            return  # not ours to change
        if gid is not None and st.st_gid != gid:
            os.chown(path, -1, gid)
        if st.st_mode & 0o7777 != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def write_files(items: list[tuple[Path, str]], perms: Permissions | None = None, top: Path | None = None) -> None:
    """Write every (path, text) or none: each to a temporary name beside it, all fsynced (fsync_all), then
    all renamed, in order, then their folders fsynced: a rename is durable only with its data on disk first.

    Any failure (ENOSPC above all) removes every temporary file, every file
    already renamed into place and every folder this call created, then
    raises ArchiveError naming the path. Put the file that marks the set as
    complete (a run record) last.
    """
    perms = perms or Permissions()
    created: list[Path] = []
    temps: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    current = items[0][0] if items else Path(".")
    try:
        folders: set[Path] = set()
        for path, _ in items:
            current = Path(path)
            if current.parent not in folders:  # made (and its mode set) once: 56 shards share one folder
                folders.add(current.parent)
                created += make_dirs(current.parent, perms, top)
        for path, text in items:
            current = Path(path)
            temps.append((_write_temp(current, text, perms), current))
        current = temps[0][1] if temps else current
        fsync_all([tmp for tmp, _ in temps])  # every file's data on disk before any rename makes it current
        for tmp, path in temps:
            current = path
            os.replace(tmp, path)
            placed.append(path)
        _in_parallel(fs.fsync_dir, list(dict.fromkeys(path.parent for _, path in temps)))
    except BaseException as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise ArchiveError(current, exc) from None
        raise


def _write_temp(path: Path, text: str, perms: Permissions) -> Path:
    """The file written but not yet fsynced: write_files fsyncs all of a set's files together."""
    return fs.write_temp(path, text, perms.file_mode, gid=perms.gid, durable=False)


FSYNC_THREADS = 16


def fsync_all(paths: list[Path]) -> None:
    """fsync every file, several at once: the filesystem commits concurrent fsyncs together.

    Why: a full index rebuild writes a shard per folder and a page per month, 70
    files at 10,000 runs; fsynced one after the other, each waits for its own
    journal commit (0.2-0.6 s in all), fsynced from threads they share a few.
    OSError (EIO, ENOSPC on write-back) is raised as from os.fsync.
    """
    _in_parallel(_fsync_file, paths)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _in_parallel(fn: Any, paths: list[Path]) -> None:
    """fn(path) for each path, from threads when there are several (fsync releases the GIL); the first error raised."""
    if len(paths) <= 1:
        for path in paths:
            fn(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(FSYNC_THREADS, len(paths)), thread_name_prefix="ccops-fsync") as pool:
        for _ in pool.map(fn, paths):
            pass


def write_atomic(path: Path, text: str, perms: Permissions | None = None) -> None:
    """Write text so readers see the old file or the whole new one, never a part (0600 unless perms say)."""
    write_files([(Path(path), text)], perms)
