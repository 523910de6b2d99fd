"""The alert state file: what is open, what was announced, what waits to be delivered.

Alerting has memory or it is noise: an alert must be sent once when it opens,
again only at its repeat interval, and closed once. That memory must survive a
reboot and the overlap of two `ccops alerts check` runs (cron does not wait for
the previous one) with a runbook run calling `raise_from_run` at the same
moment. So every change happens under an exclusive `flock` on a lock file
beside the state, and the new state is written to a temporary file, fsynced
and renamed over the old one: a reader (or a crash) sees the old state or the
whole new one. A state file that is torn anyway (a disk that lied about
fsync) is moved aside and alerting starts afresh rather than stopping.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ccops.core import fs

VERSION = 1
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def empty() -> dict[str, Any]:
    return {
        "version": VERSION,
        "alerts": {},  # key -> open alert
        "announced": {},  # info event key -> when announced
        "pending": {},  # channel -> notifications not yet delivered (failed or rate-limited)
        "digest": {},  # channel -> info notifications waiting for `ccops alerts digest`
        "sent": {},  # channel -> send times in the last hour (rate limit)
        "runs": {},  # job -> last completed run (from raise_from_run)
        "watch_since": {},  # job -> when the dead man's switch first watched it
        "verified_backups": {},  # backup file name -> cached verification
        "probes": {},  # throttled rule -> when it last probed (API rate limits)
        "resolved": [],  # the most recent resolved alerts, newest last
        "last_digest": None,
    }


def _private_dirs(directory: Path) -> None:
    """directory and its missing parents (ccops' home among them), created 0700: alert texts name hosts and paths."""
    missing = []
    current = Path(directory)
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass


class StateStore:
    """Load and save the state of one ccops home under its lock."""

    def __init__(self, directory: Path, lock_timeout: float = 300.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self.lock_path = self.directory / LOCK_FILE
        self.lock_timeout = lock_timeout

    def read(self) -> dict[str, Any]:
        """A snapshot without the lock (consistent, since writes are atomic); for reading only."""
        return self._load(quarantine=False)

    @contextmanager
    def locked(self, save: bool = True) -> Iterator[dict[str, Any]]:
        """The state for changing: saved when the block ends without an exception (and save is true)."""
        _private_dirs(self.directory)
        busy = (f"alert state {self.path} is locked by another ccops process "
                f"for more than {self.lock_timeout:.0f} s")
        # the lock file stays empty, so taking it needs no free block
        with fs.exclusive_lock(self.lock_path, blocking=True, timeout=self.lock_timeout, busy=busy):
            state = self._load(quarantine=True)
            yield state
            if save:
                self._save(state)

    def _load(self, quarantine: bool) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            if quarantine:
                aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
                os.replace(self.path, aside)
                print(f"ccops: alert state {self.path} was unreadable; moved to {aside.name}, starting afresh",
                      file=sys.stderr)
            return empty()
        state = empty()
        state.update({k: v for k, v in data.items() if k in state})
        return state

    def _save(self, state: dict[str, Any]) -> None:
        state["version"] = VERSION
        text = json.dumps(state, indent=1, sort_keys=True, default=str) + "\n"
        try:
            fs.write_atomic(self.path, text)
        except OSError as exc:
            if not exc.filename:  # a full disk: name the file, not the temp
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
            raise
