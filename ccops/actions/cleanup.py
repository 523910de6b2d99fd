"""The monthly log and backup clean-up, without the guide's three ways of losing data.

The guide: `find logs -mtime +90 -delete` (by modification time, which a copy
or a restore resets), `find /backups -mtime +60 -delete` (which ignores whether
any good backup is left) and `docker system prune -a --volumes` (which can take
the database's volume). ccops: logs by the date in their name, backups through
the backup retention plan (never below the newest verified minimum), archive
reports through the archive's retention (keeping the latest good and failed
run of each runbook), each a dry run by default listing files and bytes; Docker
only as a printed suggestion, never with --volumes. The log the app is writing
is never deleted, whatever keep_days says (ccops.deploy.diskspace.live_logs).

The dry run's list (what a confirmed run may touch) is kept in ccops' home, or,
when that disk is full, in the system temp dir: the out-of-disk runbook must
work on a full disk, so nothing here needs room on it before space is freed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from ccops import actions
from ccops.core import fs
from ccops.core.context import RunContext, check, not_configured_guard
from ccops.core.findings import Finding, Findings, Status
from ccops.deploy import diskspace


def _plan_finding(ctx: RunContext, check_id: str, what: str, plan: diskspace.CleanupPlan) -> Findings:
    return ctx.record([Finding(check_id, Status.INFO,
                               f"{what}: {len(plan.actions)} files, {diskspace.human(plan.bytes)}" if plan.actions
                               else f"{what}: nothing to do", plan.bytes, data=plan.table())])


REVIEW_VALID = timedelta(days=7)


def _reviewed_file(ctx: RunContext, step: str) -> Path:
    return Path(ctx.settings.home) / "cleanup" / f"{step}.json"


def _reviewed_fallback(ctx: RunContext, step: str) -> Path:
    """Where the dry run's list goes when ccops' home has no room: the temp dir, in the private
    folder of this user and home that the runner uses for its work dirs on a full disk."""
    tag = hashlib.sha256(str(Path(ctx.settings.home).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"ccops-{os.geteuid()}-{tag}" / "cleanup" / f"{step}.json"


def _private_dir(path: Path) -> bool:
    """The fallback's folders exist, are this user's and 0700 (the temp dir is shared)."""
    for folder in (path.parent.parent, path.parent):
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
            info = folder.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                return False
            if info.st_mode & 0o077:
                os.chmod(folder, 0o700)
        except OSError:
            return False
    return True


def _remember(ctx: RunContext, step: str, plan: diskspace.CleanupPlan) -> None:
    """Keep the dry run's list: a later confirmed run deletes nothing that was not on it.

    In ccops' home; when its disk is full, in the temp dir instead (never a crash).
    """
    text = json.dumps({"created": datetime.now(timezone.utc).isoformat(), "paths": [str(a.path) for a in plan.actions]})
    home, fallback = _reviewed_file(ctx, step), _reviewed_fallback(ctx, step)
    try:
        home.parent.mkdir(parents=True, exist_ok=True)
        fs.write_atomic(home, text)
    except OSError as exc:
        if not _private_dir(fallback):
            raise exc from None
        fs.write_atomic(fallback, text)
        home.unlink(missing_ok=True)
        return
    fallback.unlink(missing_ok=True)


def _load_reviewed(ctx: RunContext, step: str) -> dict | None:
    """The newest dry-run list of this step, from ccops' home or the temp-dir fallback."""
    found = []
    home, fallback = _reviewed_file(ctx, step), _reviewed_fallback(ctx, step)
    for path in (home, fallback):
        try:
            if path == fallback and path.stat().st_uid != os.geteuid():
                continue
            reviewed = json.loads(path.read_text())
            found.append((datetime.fromisoformat(reviewed["created"]), reviewed))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return max(found, key=lambda item: item[0])[1] if found else None


def _forget(ctx: RunContext, step: str) -> None:
    for path in (_reviewed_file(ctx, step), _reviewed_fallback(ctx, step)):
        path.unlink(missing_ok=True)


def _restrict_to_reviewed(ctx: RunContext, step: str, plan: diskspace.CleanupPlan) -> str:
    """Drop from the plan what the last dry run did not list; '' or the reason nothing may be deleted."""
    reviewed = _load_reviewed(ctx, step)
    try:
        if reviewed is None:
            raise ValueError("none")
        created = datetime.fromisoformat(reviewed["created"])
    except (ValueError, KeyError, TypeError):
        plan.actions.clear()
        return "no reviewed dry run: run this step with dry_run = True first, then confirm"
    if datetime.now(timezone.utc) - created > REVIEW_VALID:
        plan.actions.clear()
        return f"the last dry run is older than {REVIEW_VALID.days} days: run it again"
    allowed = set(reviewed["paths"])
    plan.actions[:] = [a for a in plan.actions if str(a.path) in allowed]
    return ""


def _refuse_newest_backup(plan: diskspace.CleanupPlan) -> None:
    """The backup floor, checked against the files as they are when the deletion runs.

    A reviewed plan may be days old: a backup that failed since, or one deleted by hand,
    can make a planned file the newest verified copy. Whatever the plan says, it stays.
    """
    from ccops import backup

    backup.refuse_newest_verified([a.path for a in plan.actions
                                   if a.kind == "delete" and backup.NAME_RE.match(a.path.name)])


def apply_reviewed(ctx: RunContext, step: str, what: str, plan: diskspace.CleanupPlan, dry_run: bool, confirm: bool,
                   prefix: str = "cleanup") -> Findings:
    """Show the plan; with dry_run False and confirm True, delete what the last dry run listed, no more."""
    if ctx.results.cleanup_plans is None:
        ctx.results.cleanup_plans = []
    ctx.results.cleanup_plans.append(plan)  # disk.freed adds them up
    acting = actions.may_act(dry_run, confirm)
    if acting:
        refused = _restrict_to_reviewed(ctx, step, plan)
        if refused:
            return ctx.record([Finding(f"{prefix}.{step}", Status.WARNING, f"{what}: nothing done: {refused}")])
    else:
        try:
            _remember(ctx, step, plan)
        except OSError as exc:
            preview = _plan_finding(ctx, f"{prefix}.{step}", what, plan)
            return Findings(preview + ctx.record([Finding(
                f"{prefix}.{step}.review", Status.WARNING,
                f"{what}: this dry run's list could not be kept ({exc.strerror or exc}), so a confirmed run "
                "will refuse: free space in ccops' home or the temp dir and run the dry run again")]))
    preview = _plan_finding(ctx, f"{prefix}.{step}", what, plan)
    if not plan.actions:
        return preview

    def run() -> str:
        _refuse_newest_backup(plan)
        diskspace.apply_plan(plan)
        done = [a for a in plan.actions if a.done]
        skipped = [a for a in plan.actions if a.error]
        if skipped and not done:
            raise RuntimeError("; ".join(f"{a.path.name}: {a.error}" for a in skipped[:3]))
        _forget(ctx, step)
        return (f"{len(done)} files, {diskspace.human(sum(a.freed for a in done))} freed"
                + (f"; {len(skipped)} skipped ({skipped[0].error})" if skipped else ""))

    return Findings(preview + actions.guarded(ctx, step, what, run, dry_run, confirm))


@not_configured_guard("cleanup.old_logs")
def old_logs(ctx: RunContext, keep_days: int = 90, dry_run: bool = True, confirm: bool = False) -> Findings:
    """App logs older than keep_days, by the date in their file name."""
    plan = diskspace.plan_log_cleanup(ctx.settings.effective_log_dir, ctx.as_of, keep_days=keep_days, compress_rotated=False)
    return apply_reviewed(ctx, "old_logs", f"delete app logs older than {keep_days} days", plan, dry_run, confirm)


@not_configured_guard("cleanup.old_backups")
def old_backups(ctx: RunContext, keep_days: int = 60, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Backups older than keep_days, never below the newest verified minimum."""
    from ccops import backup

    keep = ctx.settings.backup.keep_verified
    retention = backup.plan_retention(ctx.settings.effective_backup_dir, ctx.as_of, keep_days, keep)
    plan = diskspace.CleanupPlan()
    for path in retention.delete_paths():
        if Path(path).exists():
            plan.add(diskspace.CleanupAction("delete", Path(path), Path(path).stat().st_size,
                                             f"backup older than {keep_days} days beyond the {keep} newest verified"))
    return apply_reviewed(ctx, "old_backups", f"delete backups older than {keep_days} days (keeping the newest {keep} verified)",
                  plan, dry_run, confirm)


@not_configured_guard("cleanup.old_reports")
def old_reports(ctx: RunContext, keep_days: int = 180, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Archived run reports older than keep_days, always keeping each runbook's latest good and failed run."""
    from ccops import archive

    if not hasattr(archive, "plan_retention"):
        return ctx.record([Finding("cleanup.old_reports", Status.UNKNOWN, "archive retention is not available")])
    plan = archive.plan_retention(ctx.settings.archive_dir, ctx.as_of, keep_days)
    files = [Path(p) for p in getattr(plan, "paths", lambda: [])()] if callable(getattr(plan, "paths", None)) else []
    cleanup = diskspace.CleanupPlan()
    for path in files:
        if path.exists():
            cleanup.add(diskspace.CleanupAction("delete", path, path.stat().st_size, f"report older than {keep_days} days"))
    result = apply_reviewed(ctx, "old_reports", f"delete run reports older than {keep_days} days", cleanup, dry_run, confirm)
    if any(a.done for a in cleanup.actions):
        archive.rebuild_index(ctx.settings.archive_dir)
        if ctx.settings.archive_remote:  # the bucket keeps no more than the local copy does
            from ccops.archive import remote

            mirrored = remote.prune(ctx.settings, plan)
            if not mirrored.ok:
                result = Findings([*result, *ctx.record([Finding(
                    "cleanup.old_reports", Status.WARNING, f"deleted here, not yet in the bucket: {mirrored.line()}")])])
    return result


@check("cleanup.docker")
def docker_suggestion(ctx: RunContext) -> Finding:
    """Docker clean-up as a suggestion only: never run from here, never with --volumes."""
    command = " ".join(diskspace.prune_command())
    where = "" if ctx.settings.effective_backend == "compose" else " (this deployment does not use docker compose)"
    return Finding("cleanup.docker", Status.INFO,
                   f"to reclaim Docker space, review `docker system df`, then run by hand: {command}{where}. "
                   "Never add --volumes: it deletes the database's volume when its container is stopped.",
                   data=pd.DataFrame({"command": [command]}))
