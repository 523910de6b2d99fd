"""One read of a run's log window, handed from a helper process to the kernel.

Why: a runbook's log steps cost the kernel a pass over the day's logs (about half a
second at production volume) on the one core the kernel has, while the machine's
other core sits idle as papermill and the kernel start. So `ccops run` reads the
window beside them (ccops.runbook.prefetch, a process of its own): it runs the
runbook's log steps with `recording()` on, which keeps every answer the readers
below give (the records a selection wants, the counts of a window), and writes
them to the file the environment variable CCOPS_LOGS_SNAPSHOT names. In the kernel,
`records_for_settings` and `summary_for_settings` ask `lookup()` first: the same
question (log dir, window, zone, format, selection) of the same files gets the
recorded answer, anything else is read as always. Without the variable (JupyterLab,
`ccops logs`, the tests' own calls) nothing changes.

The answer is the one the readers give for the files as they were when the helper
read them: a file since replaced (another inode) or shrunk (truncated), or a
different list of files (a rotation), is read again. A file that only grew (the app
appending to today's log) keeps the recorded answer: the run reads its window as it
stood at the run's start, as the two steps did not before (each read the file at
its own moment).

The helper holds an exclusive flock on `<file>.lock` from before papermill starts
until its answers are written, so a kernel that asks first waits for it instead of
reading the same bytes again; a helper that died leaves no answers, and the kernel
reads the logs itself. Answers are pickled one by one, and each lookup unpickles a
fresh copy, so a step that changes what it got cannot change another step's.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

SNAPSHOT_ENV = "CCOPS_LOGS_SNAPSHOT"
WAIT_SECONDS = 300.0  # longest a kernel waits for the helper; then it reads the logs itself
_POLL = 0.005

Key = tuple[Any, ...]
FileState = tuple[tuple[str, int, int], ...]  # (path, inode, size) of each file of the window, in order

_recorded: dict[Key, tuple[FileState, bytes]] | None = None  # set while recording()
_loaded: dict[str, dict[Key, tuple[FileState, bytes]]] = {}  # snapshot file -> its answers, read once


def key_for(kind: str, log_dir: Path, since: datetime, until: datetime, zone: tzinfo | None, fmt_name: str,
            *extra: Any) -> Key:
    """What identifies a question: its kind, the log dir, the UTC window, the zone, the format, and `extra`."""
    return (kind, str(Path(log_dir).resolve()), since.isoformat(), until.isoformat(), _zone_key(zone), fmt_name,
            *extra)


def _zone_key(zone: tzinfo | None) -> str:
    if zone is None:
        return "UTC"
    return str(getattr(zone, "key", None) or zone)


def file_state(paths: list[Path]) -> FileState | None:
    """(path, inode, size) of each file; None when one cannot be read (the reader reports it)."""
    state = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        state.append((str(path), st.st_ino, st.st_size))
    return tuple(state)


def _still_valid(recorded: FileState, now: FileState | None) -> bool:
    """The same files, none replaced or shrunk (growth is the app appending after the recorded read)."""
    if now is None or len(now) != len(recorded):
        return False
    return all(p == q and ino == jno and size >= rsize
               for (p, ino, size), (q, jno, rsize) in zip(now, recorded, strict=True))


def recording_active() -> bool:
    return _recorded is not None


@contextmanager
def recording(path: Path) -> Iterator[dict[Key, tuple[FileState, bytes]]]:
    """Keep every answer given inside the block; write them all to `path` (atomically) at its end."""
    global _recorded
    _recorded = {}
    try:
        yield _recorded
        tmp = Path(f"{path}.tmp")
        with open(tmp, "wb") as handle:
            pickle.dump(_recorded, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    finally:
        _recorded = None


def record(key: Key, files: FileState | None, value: Any) -> None:
    """Keep `value` as the answer to `key` while recording (no-op otherwise, or when the files are unreadable)."""
    if _recorded is not None and files is not None:
        _recorded[key] = (files, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def lookup(key: Key, paths: list[Path]) -> Any | None:
    """The recorded answer to `key` for these files, a fresh copy; None when there is none to use."""
    target = os.environ.get(SNAPSHOT_ENV)
    if not target or _recorded is not None:
        return None
    answers = _answers(target)
    found = answers.get(key)
    if found is None:
        return None
    files, blob = found
    if not _still_valid(files, file_state(paths)):
        return None
    return pickle.loads(blob)  # noqa: S301 - written by this run's own helper in its private work dir


def _answers(target: str) -> dict[Key, tuple[FileState, bytes]]:
    if target not in _loaded:
        _wait_for_helper(target)
        try:
            with open(target, "rb") as handle:
                _loaded[target] = pickle.load(handle)  # noqa: S301 - see lookup
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
            _loaded[target] = {}  # no helper, or it died: the kernel reads the logs itself
    return _loaded[target]


def _wait_for_helper(target: str) -> None:
    """Wait (at most WAIT_SECONDS) until the helper releases its lock on `<target>.lock`."""
    import fcntl

    try:
        fd = os.open(f"{target}.lock", os.O_RDONLY)
    except OSError:
        return  # no helper was started
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(_POLL)
    finally:
        os.close(fd)
