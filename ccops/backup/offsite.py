"""The guide's optional S3 upload, made checkable: an off-site copy that is verified and pruned.

Destination `backup.offsite` is either a directory (a mounted remote disk) or
an fsspec URL (s3://bucket/prefix with s3fs). Both get the same treatment: the
backup and its manifest are written under a temporary name, the copy is read
back and its sha256 compared with the manifest before it is renamed into
place, and the same retention as the local backup dir applies there (so a
month of failed backups cannot empty the off-site copy either).

The destination directory must already exist: an unmounted remote disk leaves
an empty mount point, and writing into it would fill the local disk instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccops.backup.errors import BackupError
from ccops.backup.files import backup_lock, fsync_dir, read_manifest, sha256_of, utc_now
from ccops.backup.naming import MANIFEST_SUFFIX, manifest_path, parse_name
from ccops.backup.prune import apply_retention, plan_retention, retention_floor
from ccops.backup.store import VerifyCache
from ccops.backup.take import BACKUP_LOCK_WAIT_S
from ccops.backup.verify import VerifyResult
from ccops.core.settings import Settings


@dataclass
class OffsiteResult:
    destination: str
    files: list[str]
    sha256: str
    deleted: list[str] = field(default_factory=list)
    freed: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        pruned = f"; retention there deleted {len(self.deleted)} files ({self.freed:,} bytes)" if self.deleted else ""
        notes = "; " + "; ".join(self.notes) if self.notes else ""
        return f"copied {self.files[0]} to {self.destination}, sha256 verified{pruned}{notes}"


def is_url(destination: str) -> bool:
    scheme = urlsplit(destination).scheme
    return "://" in destination and scheme not in ("", "file")


def offsite_copy(settings: Settings, path: Path, *, now: datetime | None = None) -> OffsiteResult:
    """Copy a verified backup and its manifest to backup.offsite, verify the copy, apply retention there."""
    destination = (settings.backup.offsite or "").strip()
    if not destination:
        raise BackupError("backup.offsite is not set: no off-site destination configured")
    path = Path(path)
    check = VerifyCache(path.parent).verify(path)  # just verified by create_backup: cached, not hashed again
    if not check.ok:
        raise BackupError(f"not copying {path.name} off-site: it failed verification ({check.reason})")
    expected = read_manifest(path).get("sha256") or sha256_of(path)
    sources = [path] + ([manifest_path(path)] if manifest_path(path).exists() else [])
    b = settings.backup
    if is_url(destination):
        try:
            return _copy_fsspec(destination, sources, expected, now or utc_now(), b.retention_days, b.keep_verified)
        except OSError as exc:  # what fsspec stores raise for a refused, missing or full destination
            raise BackupError(f"off-site copy to {destination} failed: {exc.strerror or exc}") from None
    directory = Path(destination[len("file://"):] if destination.startswith("file://") else destination).expanduser()
    if not directory.is_dir():
        raise BackupError(f"off-site directory {directory} does not exist (is the remote disk mounted?)")
    with backup_lock(directory, BACKUP_LOCK_WAIT_S):
        partials = []
        try:
            for source in sources:
                partial = directory / f".{source.name}.partial"
                partials.append(partial)
                with open(source, "rb") as src, open(partial, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
            copied = sha256_of(partials[0])
            if copied != expected:
                raise BackupError(f"off-site copy of {path.name} has sha256 {copied[:12]}..., not the manifest's "
                                  f"{expected[:12]}...: not kept")
            # the backup first, the manifest last: a manifest never describes a file that is not there
            for source, partial in zip(sources, partials, strict=True):
                os.replace(partial, directory / source.name)
            fsync_dir(directory)
        except OSError as exc:
            raise BackupError(f"off-site copy to {directory} failed: {exc.strerror or exc}") from None
        finally:
            for partial in partials:
                partial.unlink(missing_ok=True)
    final = directory / path.name
    cache = VerifyCache(directory)  # the bytes are the source's, verified above: no second hash this run
    cache.remember(final, VerifyResult(final, True, "verified: sha256 of the off-site copy matches the manifest",
                                      ["sha256"]))
    cache.save()
    plan = plan_retention(directory, now or utc_now(), b.retention_days, b.keep_verified)
    freed = apply_retention(plan)
    return OffsiteResult(str(directory), [s.name for s in sources], expected,
                         [p.name for p in plan.delete_paths()], freed, plan.notes)


def _fsspec(destination: str) -> Any:
    try:
        import fsspec  # imported lazily: only those who copy to an object store install it
    except ImportError:
        raise BackupError(f"backup.offsite {destination} is a URL and needs fsspec: pip install fsspec s3fs") from None
    try:
        return fsspec.core.url_to_fs(destination)
    except (ImportError, ValueError) as exc:
        raise BackupError(f"backup.offsite {destination}: {exc} (for s3:// URLs: pip install fsspec s3fs)") from None


def _copy_fsspec(destination: str, sources: list[Path], expected: str, now: datetime, retention_days: int,
                 keep_verified: int) -> OffsiteResult:
    fs, root = _fsspec(destination)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    partials = []
    try:
        for source in sources:
            partial = f"{root}/.{source.name}.partial"
            partials.append(partial)
            fs.put_file(str(source), partial)
        digest = hashlib.sha256()
        with fs.open(partials[0], "rb") as handle:  # read back: what the store holds, not what we sent
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise BackupError(f"off-site copy of {sources[0].name} in {destination} does not match the manifest's "
                              "sha256: not kept")
        for source, partial in zip(sources, partials, strict=True):
            fs.mv(partial, f"{root}/{source.name}")
        partials.clear()
    finally:
        for partial in partials:
            if fs.exists(partial):
                fs.rm(partial)
    deleted = _prune_fsspec(fs, root, now, retention_days, keep_verified)
    return OffsiteResult(destination, [s.name for s in sources], expected, deleted)


def _prune_fsspec(fs: Any, root: str, now: datetime, retention_days: int, keep_verified: int) -> list[str]:
    """Retention in an object store: by age, never below the newest N copies whose size matches their manifest.

    Re-hashing every object on every run would download the whole store, so a
    remote copy counts as verified when its manifest is there and its size
    matches; the sha256 was checked when it was written. The newest verified
    copy is never deleted, whatever keep_verified says (see retention_floor).
    """
    keep_verified, _ = retention_floor(retention_days, keep_verified)
    names = {Path(p).name: p for p in fs.ls(root, detail=False)}
    backups = []
    for name in names:
        parsed = parse_name(name)
        if parsed is not None and parsed.kind == "db":
            backups.append((parsed.created, name))
    backups.sort(reverse=True)
    cutoff = now - timedelta(days=retention_days)
    kept_verified = 0
    deleted = []
    for created, name in backups:
        manifest_name = name + MANIFEST_SUFFIX
        verified = manifest_name in names and _remote_size_matches(fs, names[name], names[manifest_name])
        if verified and kept_verified < keep_verified:
            kept_verified += 1
        elif created < cutoff:
            for victim in [name] + ([manifest_name] if manifest_name in names else []):
                fs.rm(names[victim])
                deleted.append(victim)
    return deleted


def _remote_size_matches(fs: Any, path: str, manifest: str) -> bool:
    """True when the object's size is the one its manifest records (an unreadable manifest: not verified)."""
    import json

    try:
        with fs.open(manifest, "rb") as handle:
            return bool(json.loads(handle.read()).get("size") == fs.size(path))
    except (OSError, ValueError, AttributeError):
        return False
