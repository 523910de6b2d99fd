"""The backup steps that change something: take a backup, prune old ones, restore one.

Each goes through the one guarded gate (ccops.actions.guarded): with the
defaults it only says what it would do. Taking a backup overwrites nothing, so
dry_run alone decides; deleting backups and restoring need confirm as well.
The read-only side (today's backup, the listing, the restore test, the table
of a restore's steps) is ccops.checks.backup; the work itself is the backup
engine's (ccops.backup).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ccops import actions, backup
from ccops.core.context import RunContext
from ccops.core.findings import Finding, Findings, Status
from ccops.core.settings import mask_url


def take_backup(ctx: RunContext, dry_run: bool = True, via: str = "local") -> Findings:
    """pg_dump + manifest + verification (+ the off-site copy when backup.offsite is set).

    Taking a backup changes nothing, so dry_run alone decides. A failed off-site
    copy is its own WARNING finding: the local backup is still good.
    """
    taken: list[backup.BackupResult] = []  # the backup run() took, for the off-site copy after it

    def run() -> str:
        result = backup.create_backup(ctx.settings, via=via)
        taken.append(result)
        if not result.verified:
            raise backup.BackupError(f"{result.path.name} failed verification: {result.reason}")
        counts = result.manifest["row_counts"]
        rows = (f"{sum(counts.values()):,} rows in {len(counts)} tables" if counts
                else result.manifest.get("row_counts_note", "no row counts"))
        return f"{result.path.name}: {result.manifest['size']:,} bytes, {rows}, {result.duration_s:.1f} s, {result.reason}"

    found = actions.guarded(ctx, "backup", f"pg_dump {ctx.settings.effective_backup_dir}/contentcreator_<now>.dump.zst",
                            run, dry_run, True)
    found = Findings(found + _app_copies(ctx, dry_run))
    result = taken[0] if taken else None
    if result is None or not result.verified or not ctx.settings.backup.offsite:
        return found
    return Findings(found + actions.guarded(
        ctx, "offsite", f"copy {result.path.name} to {ctx.settings.backup.offsite}",
        lambda: backup.offsite_copy(ctx.settings, result.path).line(), dry_run, True, Status.WARNING))


def _app_copies(ctx: RunContext, dry_run: bool) -> Findings:
    """backup.include_env / include_logs: the .env and a logs tarball saved beside the dump, as backup.sh does."""
    b = ctx.settings.backup
    kinds = [k for k, on in (("env", b.include_env), ("logs", b.include_logs)) if on]
    if not kinds:
        return Findings()

    def run() -> str:
        results = backup.save_app_copies(ctx.settings)
        bad = [r for r in results if not r.ok]
        if bad:
            raise backup.BackupError("; ".join(f"{r.path.name}: {r.reason}" for r in bad))
        return "; ".join(f"{r.path.name} (0600): {r.reason}" for r in results)

    return actions.guarded(ctx, "app_copies", f"save the app's {' and '.join(kinds)} beside the dump (0600)",
                           run, dry_run, True, Status.WARNING)


def retention(ctx: RunContext, dry_run: bool = True, confirm: bool = False,
              retention_days: int | None = None) -> Findings:
    """Delete backups by age, never below the newest verified minimum (deleting needs confirm)."""
    b = ctx.settings.backup
    days = b.retention_days if retention_days is None else retention_days
    plan = backup.plan_retention(ctx.settings.effective_backup_dir, ctx.as_of, days, b.keep_verified,
                                 ctx.settings.logs_timezone)
    preview = ctx.record([Finding("backup.retention", Status.INFO,
                                  f"{len(plan.delete)} files to delete ({plan.bytes_freed:,} bytes), {len(plan.keep)} kept "
                                  f"(by age: {days} days; never fewer than {b.keep_verified} verified)",
                                  len(plan.delete), data=pd.DataFrame(plan.rows()))])
    if not plan.delete:
        return preview
    return Findings(preview + actions.guarded(
        ctx, "retention", f"delete {len(plan.delete)} backup files",
        lambda: f"{backup.apply_retention(plan):,} bytes freed" + "".join(f"; {n}" for n in plan.notes),
        dry_run, confirm))


def restore(ctx: RunContext, file: str = "", target: str = "", dry_run: bool = True, confirm: bool = False,
            force: bool = False, jobs: int = 0, app_stopped: bool = False) -> Findings:
    """The guide's recovery procedure through ccops.backup.restore_backup, each step timed.

    `app_stopped`: the operator stopped the app by hand; without it a restore
    whose service backend cannot stop the app (backend none) is refused.
    """
    if file:
        path = Path(file)
    else:
        latest = backup.latest_verified(ctx.settings.effective_backup_dir)
        if latest is None:
            return ctx.record([Finding("action.restore", Status.CRITICAL, "no verified backup to restore from")])
        path = latest.path
    url = backup.target_url(ctx.settings, target) if target else ctx.settings.resolved_database_url()

    def run() -> str:
        result = backup.restore_backup(ctx.settings, path, url, confirm=True, force=force, jobs=jobs,
                                       app_stopped=app_stopped)
        ctx.results.restore_steps = pd.DataFrame([vars(s) for s in result.steps])
        if not result.ok:
            raise backup.BackupError(result.summary())
        return result.summary()

    stopped = "; the operator says the app is stopped" if app_stopped else ""
    return actions.guarded(ctx, "restore", f"replace {mask_url(url)} with {path.name} (safety dump first{stopped})",
                           run, dry_run, confirm)
