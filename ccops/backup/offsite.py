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
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ccops.backup.errors import BackupError
from ccops.backup.files import backup_lock, fsync_dir, private_dir, private_file, read_manifest, sha256_of, utc_now
from ccops.backup.naming import MANIFEST_SUFFIX, manifest_path, parse_name
from ccops.backup.prune import apply_retention, plan_retention, retention_floor
from ccops.backup.store import VerifyCache
from ccops.backup.take import BACKUP_LOCK_WAIT_S
from ccops.backup.verify import VerifyResult
from ccops.core import fs as core_fs
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
    """An object store (s3://...), not a directory; file:// names a directory."""
    from ccops.core.objectstore import is_url as _is_url

    return _is_url(destination)


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


def _store(destination: str) -> tuple[Any, str]:
    """The object store behind a URL (ccops.core.objectstore: AWS credentials from the environment only)."""
    from ccops.core.objectstore import RemoteError, open_store

    try:
        return open_store(destination)
    except RemoteError as exc:
        raise BackupError(f"backup.offsite {exc}") from None


def _copy_fsspec(destination: str, sources: list[Path], expected: str, now: datetime, retention_days: int,
                 keep_verified: int) -> OffsiteResult:
    """Upload under temporary keys, read the backup back and hash it, only then give both their real names.

    A copy cut short (the store unreachable mid-upload, a refused write) leaves
    at most a hidden `.<name>.partial` object, which no listing, retention or
    restore counts as a backup; this function removes it when it can and the
    next copy's retention removes any left over from an earlier day.
    """
    from ccops.core.objectstore import describe

    fs, root = _store(destination)
    partials: list[str] = []
    try:
        for source in sources:
            partial = f"{root}/.{source.name}{PARTIAL_SUFFIX}"
            partials.append(partial)
            fs.put_file(str(source), partial)
        digest = hashlib.sha256()
        with fs.open(partials[0], "rb") as handle:  # read back: what the store holds, not what we sent
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != expected:
            raise BackupError(f"off-site copy of {sources[0].name} in {destination} does not match the manifest's "
                              "sha256: not kept")
        # the backup first, the manifest last: a manifest never describes an object that is not there
        for source, partial in zip(sources, partials, strict=True):
            final = f"{root}/{source.name}"
            fs.copy(partial, final)
            if fs.size(final) != source.stat().st_size:
                raise BackupError(f"off-site copy {final} has {fs.size(final)} bytes, not {source.stat().st_size}")
    except BackupError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's connection errors are not OSErrors: any failure of the store
        raise BackupError(f"off-site copy to {destination} failed: {describe(exc)}; "
                          "no new backup counts there (only a hidden .partial object may be left)") from None
    finally:
        for partial in partials:
            try:
                fs.rm_file(partial)
            except Exception:  # noqa: BLE001 - unreachable or already gone: a hidden leftover counts as nothing
                pass
    try:
        deleted, notes = _prune_fsspec(fs, root, now, retention_days, keep_verified)
    except Exception as exc:  # noqa: BLE001 - the copy is made and verified; retention there waits for next time
        deleted, notes = [], [f"retention there not applied: {describe(exc)}"]
    return OffsiteResult(destination, [s.name for s in sources], expected, deleted, notes=notes)


PARTIAL_SUFFIX = ".partial"
STALE_PARTIAL = timedelta(days=1)  # a .partial this old belongs to no copy still running


def _prune_fsspec(fs: Any, root: str, now: datetime, retention_days: int,
                  keep_verified: int) -> tuple[list[str], list[str]]:
    """Retention in an object store: by age, never below the newest N copies whose size matches their manifest.

    Re-hashing every object on every run would download the whole store, so a
    remote copy counts as verified when its manifest is there and its size
    matches; the sha256 was checked when it was written. The newest verified
    copy is never deleted, whatever keep_verified says (see retention_floor).
    Hidden `.partial` objects older than a day (copies cut short) are removed.
    Returns (deleted names, notes).
    """
    keep_verified, floor_note = retention_floor(retention_days, keep_verified)
    names = {Path(str(o["name"])).name: str(o["name"]) for o in fs.ls(root, detail=True) if o.get("type") != "directory"}
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
            # the manifest first: a backup without its manifest no longer counts, so a prune cut short
            # never leaves a manifest describing a deleted object
            for victim in ([manifest_name] if manifest_name in names else []) + [name]:
                fs.rm_file(names[victim])
                deleted.append(victim)
    for name in names:
        if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
            # dated by the backup it was a copy of: a store's modification times cannot be trusted to be ours
            parsed = parse_name(name[1:-len(PARTIAL_SUFFIX)].removesuffix(MANIFEST_SUFFIX))
            if parsed is not None and parsed.created < now - STALE_PARTIAL:
                fs.rm_file(names[name])
                deleted.append(name)
    return deleted, [floor_note] if floor_note else []


def _remote_size_matches(fs: Any, path: str, manifest: str) -> bool:
    """True when the object's size is the one its manifest records (an unreadable manifest: not verified)."""
    import json

    try:
        with fs.open(manifest, "rb") as handle:
            return bool(json.loads(handle.read()).get("size") == fs.size(path))
    except (OSError, ValueError, AttributeError):
        return False


# ---- restore from the off-site copy ------------------------------------------------------------------

def fetch_offsite(settings: Settings, name: str, directory: Path | None = None) -> Path:
    """Bring backup `name` and its manifest back from backup.offsite into the backup dir, sha256 checked.

    For a restore after the host lost its backups: the normal restore path
    (restore_backup) then reads the fetched file like any local backup. The
    copy is downloaded under a hidden temporary name and hashed on the way;
    only when it matches its manifest's sha256 are the backup, then its
    manifest, renamed into place. A copy that does not match is refused
    (BackupError, exit 2) and nothing is left behind; a local file of that
    name is used only when it is the same backup (same sha256), never replaced.
    """
    destination = (settings.backup.offsite or "").strip()
    if not destination:
        raise BackupError("backup.offsite is not set: no off-site copy to restore from")
    parsed = parse_name(name)
    if "/" in name or parsed is None or parsed.kind != "db":
        raise BackupError(f"{name!r} is not a backup's file name (as `ccops backup list` and the off-site copy "
                          "name them, e.g. contentcreator_20261120_020000.dump)")
    directory = private_dir(Path(directory or settings.effective_backup_dir))
    source = _Source(destination)
    manifest_bytes = source.read(name + MANIFEST_SUFFIX, missing=f"no backup {name} in {destination} (none, or a "
                                 "copy without its manifest, which never counts; `ccops backup list` names the local ones)")
    try:
        expected = str(json.loads(manifest_bytes)["sha256"])
    except (ValueError, KeyError, TypeError):
        raise BackupError(f"{name}{MANIFEST_SUFFIX} in {destination} is not a readable manifest: "
                          "the off-site copy cannot be checked, so it is not restored") from None
    local = directory / name
    with backup_lock(directory, BACKUP_LOCK_WAIT_S):
        if local.exists():
            if sha256_of(local) != expected:
                raise BackupError(f"{local} exists and differs from the off-site copy's manifest: not replaced "
                                  "(restore the local file, or move it aside to fetch the off-site copy)")
            return local
        partial = directory / f".{name}{PARTIAL_SUFFIX}"
        try:
            digest = hashlib.sha256()
            private_file(partial)
            with source.open(name) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if digest.hexdigest() != expected:
                raise BackupError(f"the off-site copy of {name} in {destination} has sha256 "
                                  f"{digest.hexdigest()[:12]}..., not its manifest's {expected[:12]}...: "
                                  "refusing to restore it; nothing was changed")
            os.replace(partial, local)
            core_fs.write_atomic(manifest_path(local), manifest_bytes, 0o600)
            fsync_dir(directory)
        except BackupError:
            raise
        except OSError as exc:
            raise BackupError(f"fetching {name} from {destination} failed: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001 - botocore's connection errors are not OSErrors
            from ccops.core.objectstore import describe

            raise BackupError(f"fetching {name} from {destination} failed: {describe(exc)}") from None
        finally:
            partial.unlink(missing_ok=True)
    return local


class _Source:
    """Read-only access to the off-site copy, a directory or an object store, with one wording of its errors."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.store: Any = None
        if is_url(destination):
            self.store, self.root = _store(destination)
        else:
            self.root = destination[len("file://"):] if destination.startswith("file://") else destination
            if not Path(self.root).expanduser().is_dir():
                raise BackupError(f"off-site directory {self.root} does not exist (is the remote disk mounted?)")

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.store is not None else str(Path(self.root).expanduser() / name)

    def read(self, name: str, missing: str = "") -> bytes:
        with self.open(name, missing) as handle:
            data: bytes = handle.read()
            return data

    def open(self, name: str, missing: str = "") -> Any:
        from ccops.core.objectstore import describe

        try:
            return self.store.open(self._path(name), "rb") if self.store is not None else open(self._path(name), "rb")
        except FileNotFoundError:
            raise BackupError(missing or f"no {name} in {self.destination}") from None
        except Exception as exc:  # noqa: BLE001 - botocore's errors are not OSErrors
            raise BackupError(f"cannot read {name} from {self.destination}: {describe(exc)}") from None
