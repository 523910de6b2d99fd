"""The backups in a directory: which are there, newest first, and which of them verify.

Listing asks the naming rule which files are backups and the verifier which are
good; results are cached by (size, mtime) beside them, so an unchanged backup is
not hashed again on every hourly check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ccops.backup.naming import DB_KINDS, ORIGIN_CCOPS, manifest_path, parse_name
from ccops.backup.verify import VerifyResult, verify_backup
from ccops.core.settings import Settings

CACHE_NAME = ".ccops-verified.json"
SAFETY_DIR = "safety"


def safety_dir(settings: Settings) -> Path:
    """Where restore puts its safety dumps: beside the backups, but never counted among them."""
    return Path(settings.effective_backup_dir) / SAFETY_DIR


@dataclass
class BackupInfo:
    path: Path
    created: datetime
    size: int
    verified: bool
    reason: str
    kind: str = "db"
    origin: str = ORIGIN_CCOPS

    def row(self) -> dict[str, Any]:
        return {"file": self.path.name, "kind": self.kind, "origin": self.origin, "created": self.created,
                "bytes": self.size, "verified": self.verified, "reason": self.reason}


class VerifyCache:
    """Verified results keyed by (name, size, mtime_ns): an unchanged file need not be hashed again each run.

    Only successes are kept: a failure is re-checked every time, so a transient
    error (a missing pg_restore, a timeout) never sticks to a good backup.
    """

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CACHE_NAME
        try:
            data = json.loads(self.path.read_text())
            self.entries: dict[str, Any] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    @staticmethod
    def _identity(path: Path) -> dict[str, Any]:
        stat = path.stat()
        manifest = manifest_path(path)
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "manifest_mtime_ns": manifest.stat().st_mtime_ns if manifest.exists() else None}

    def verify(self, path: Path) -> VerifyResult:
        identity = self._identity(path)
        entry = self.entries.get(path.name)
        if entry and all(entry.get(k) == v for k, v in identity.items()):
            return VerifyResult(path, True, str(entry.get("reason", "verified")), list(entry.get("checks", [])))
        result = verify_backup(path)
        self.remember(path, result, identity)
        return result

    def remember(self, path: Path, result: VerifyResult, identity: dict[str, Any] | None = None) -> None:
        if result.ok:
            self.entries[path.name] = {**(identity or self._identity(path)), "reason": result.reason,
                                       "checks": result.checks}
            self.dirty = True
        elif self.entries.pop(path.name, None) is not None:
            self.dirty = True

    def forget_missing(self, names: set[str]) -> None:
        for name in [n for n in self.entries if n not in names]:
            del self.entries[name]
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = self.path.with_name(f"{CACHE_NAME}.{os.getpid()}.partial")
        try:
            tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError:  # a cache only saves time: a full or read-only disk must not fail a listing
            tmp.unlink(missing_ok=True)



def list_backups(backup_dir: Path, verify: bool = True, kinds: tuple[str, ...] = DB_KINDS,
                 app_zone: str | None = None) -> list[BackupInfo]:
    """Finished backups of these kinds in the dir (not in safety/), newest first, with their verification.

    The default is database dumps only (ccops' and the app's backup.sh's alike), which is
    what "the latest backup" means to restore, the daily check and the dead man's switch;
    a listing or retention passes KINDS to see the .env copies and log tarballs too.
    `app_zone`: the zone backup.sh's names are written in (settings.logs_timezone).
    """
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    cache = VerifyCache(directory) if verify else None
    found, names = [], set()
    for path in directory.iterdir():
        parsed = parse_name(path.name, app_zone)
        if parsed is None or not path.is_file():
            continue
        names.add(path.name)
        if parsed.kind not in kinds:
            continue
        result = cache.verify(path) if cache else VerifyResult(path, False, "not verified")
        found.append(BackupInfo(path, parsed.created, path.stat().st_size, result.ok, result.reason,
                                parsed.kind, parsed.origin))
    if cache:
        cache.forget_missing(names)
        cache.save()
    return sorted(found, key=lambda b: (b.created, b.path.name), reverse=True)


def latest_verified(backup_dir: Path, kind: str = "db", app_zone: str | None = None) -> BackupInfo | None:
    """The newest backup of this kind that verifies, whoever wrote it (ccops or the app's backup.sh)."""
    return next((b for b in list_backups(backup_dir, kinds=(kind,), app_zone=app_zone) if b.verified), None)
