"""Retention: by age, never below the newest verified backups.

The guide's script deletes everything older than 30 days, so a month of failed
backups deletes the last good one. Here a backup counts towards the floor only
when it verifies, the floor is never below one whatever a caller asks, and the
newest verified copy is checked again at deletion time against the files as
they are then. Partial files of interrupted dumps go only while holding the
backup dir's lock (no dump running).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ccops.backup.errors import BackupError, reason
from ccops.backup.files import backup_lock
from ccops.backup.naming import KINDS, NAME_RE, manifest_path
from ccops.backup.store import SAFETY_DIR, latest_verified, list_backups

# a partial file untouched this long belongs to no running pg_dump (which writes continuously)
PARTIAL_MAX_AGE_S = 6 * 3600
PRUNE_LOCK_WAIT_S = 5.0


@dataclass
class RetentionPlan:
    keep: list[tuple[Path, str]] = field(default_factory=list)
    delete: list[tuple[Path, str]] = field(default_factory=list)
    directory: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(p.stat().st_size for p, _ in self.delete if p.exists())

    def delete_paths(self) -> list[Path]:
        return [p for p, _ in self.delete]

    def rows(self) -> list[dict[str, Any]]:
        return ([{"file": p.name, "action": "keep", "reason": r} for p, r in self.keep]
                + [{"file": p.name, "action": "delete", "reason": r} for p, r in self.delete])


def retention_floor(retention_days: int, keep_verified: int) -> tuple[int, str]:
    """The number of verified backups retention keeps: never fewer than one, whatever it was called with.

    Settings validation refuses keep_verified < 1 and negative day counts; this
    holds also for code that calls retention with a value of its own. A negative
    age has no meaning (it would put the cutoff in the future): refused outright.
    """
    if retention_days < 0:
        raise BackupError(f"retention_days {retention_days} is negative: refusing to delete any backup "
                          "(give 0 or more days)")
    if keep_verified < 1:
        return 1, (f"keep_verified {keep_verified} asked for: the newest verified backup is kept regardless "
                   "(retention never deletes it)")
    return keep_verified, ""


def plan_retention(backup_dir: Path, now: datetime, retention_days: int, keep_verified: int,
                   app_zone: str | None = None) -> RetentionPlan:
    """Delete by age, but never below the newest `keep_verified` verified backups (at least one); old leftovers go.

    The app's backup.sh dumps count towards that floor like ccops' own; its newest good
    .env copy and log tarball stay too. `app_zone`: the zone of backup.sh's names.

    A partial file counts as a leftover only when nothing has written to it for
    6 hours, measured on the real clock (a file's mtime is real time, whatever
    `now` a report is written for).
    """
    keep_verified, note = retention_floor(retention_days, keep_verified)
    directory = Path(backup_dir)
    plan = RetentionPlan(directory=directory if directory.is_dir() else None)
    if note:
        plan.notes.append(note)
    if not directory.is_dir():
        return plan
    for leftover in sorted(directory.glob(".*.partial")):
        try:
            idle = time.time() - leftover.stat().st_mtime
        except FileNotFoundError:
            continue  # a backup finished (renamed it) while we looked
        if idle >= PARTIAL_MAX_AGE_S:
            plan.delete.append((leftover, f"partial file of an interrupted backup (untouched for {idle / 3600:.0f} h)"))
        else:
            plan.keep.append((leftover, "partial file written in the last 6 h: a backup may be running"))
    cutoff = now - timedelta(days=retention_days)
    verified_kept = 0
    newest_copy: dict[str, Path] = {}
    for info in list_backups(directory, kinds=KINDS, app_zone=app_zone):
        companions = [manifest_path(info.path)] if manifest_path(info.path).exists() else []
        if info.kind == "db" and info.verified and verified_kept < keep_verified:
            verified_kept += 1
            plan.keep.append((info.path, f"one of the newest {keep_verified} verified database backups "
                                         f"(ccops' and the app's backup.sh's count alike; this one: {info.origin})"))
        elif info.kind != "db" and info.verified and info.kind not in newest_copy:
            newest_copy[info.kind] = info.path
            plan.keep.append((info.path, f"the newest verified {info.kind} copy"))
        elif info.created >= cutoff:
            plan.keep.append((info.path, f"younger than {retention_days} days"))
        else:
            why = f"older than {retention_days} days" + ("" if info.verified else f" and failed verification ({info.reason})")
            plan.delete += [(info.path, why)] + [(c, "manifest of a deleted backup") for c in companions]
    _plan_safety_dumps(plan, directory / SAFETY_DIR, cutoff, retention_days)
    return plan


def _plan_safety_dumps(plan: RetentionPlan, safety: Path, cutoff: datetime, retention_days: int) -> None:
    """Safety dumps (what a restore replaced) age out like backups, but the newest, and the newest verified, stay.

    They never count as backups of the platform; without this, every restore
    would leave a full dump behind for good. When the newest is damaged, the
    newest one that verifies is the only copy of what a restore replaced.
    """
    dumps = list_backups(safety)
    newest_verified = next((info.path for info in dumps if info.verified), None)
    for index, info in enumerate(dumps):
        label = f"{SAFETY_DIR}/{info.path.name}"
        if index == 0:
            plan.keep.append((info.path, f"{label}: the newest safety dump (what the last restore replaced)"))
        elif info.path == newest_verified:
            plan.keep.append((info.path, f"{label}: the newest verified safety dump"))
        elif info.created >= cutoff:
            plan.keep.append((info.path, f"{label}: safety dump younger than {retention_days} days"))
        else:
            companion = manifest_path(info.path)
            plan.delete.append((info.path, f"{label}: safety dump older than {retention_days} days"))
            if companion.exists():
                plan.delete.append((companion, "manifest of a deleted safety dump"))


def _unlink_all(paths: list[Path]) -> int:
    """Delete the files, counting the bytes; one that cannot be deleted stops the prune with its reason."""
    freed = 0
    for path in paths:
        try:
            size = path.stat().st_size
            path.unlink()
            freed += size
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BackupError(f"prune stopped at {path}: {reason(exc)}; {freed:,} bytes were freed before it") from None
    return freed


def refuse_newest_verified(paths: list[Path]) -> None:
    """Raise when the paths hold the newest verified backup of their directory (backups or safety dumps).

    Checked again at deletion time, against the files as they are now, so no plan
    (built by hand, by another module, or with keep_verified 0) can take the last
    good copy.
    """
    doomed = {Path(p).resolve() for p in paths}
    for directory in sorted({Path(p).parent for p in paths}):
        for kind in KINDS:  # the newest good database dump, .env copy and log tarball, whoever wrote them
            newest = latest_verified(directory, kind)
            if newest is not None and newest.path.resolve() in doomed:
                what = "backup" if kind == "db" else f"{kind} copy"
                raise BackupError(f"refusing to delete {newest.path.name}: it is the newest verified {what} in "
                                  f"{directory}; nothing was deleted")


def apply_retention(plan: RetentionPlan) -> int:
    """Delete the plan's files; partial files only while holding the backup lock (no backup running).

    Never the newest verified backup of any directory involved: a plan that holds
    it is refused as a whole.
    """
    refuse_newest_verified([p for p in plan.delete_paths() if NAME_RE.match(p.name)])
    partials = [p for p in plan.delete_paths() if p.name.endswith(".partial")]
    others = [p for p in plan.delete_paths() if not p.name.endswith(".partial")]
    freed = _unlink_all(others)
    if not partials:
        return freed
    if plan.directory is None:
        plan.notes.append(f"{len(partials)} partial files left alone: no backup dir to lock")
        return freed
    try:
        with backup_lock(plan.directory, PRUNE_LOCK_WAIT_S):
            freed += _unlink_all(partials)
    except BackupError:
        plan.notes.append(f"a backup is running in {plan.directory}: its {len(partials)} partial files were left alone")
    return freed
