"""The evening backup check: today's backup exists, is big enough, and can be read.

The guide lists `contentcreator_$(date +%Y%m%d)*.sql` and eyeballs the size. A
file that exists can still be a truncated dump, so ccops also reads it: a
manifest written beside it (sha256) when there is one, else `pg_restore
--list` for custom-format dumps, `gzip -t` plus the dump trailer for `.sql.gz`,
and the trailer for plain `.sql` ("PostgreSQL database dump complete").
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from ccops.context import RunContext, check
from ccops.findings import Finding, Findings, Status

NAME = re.compile(r"contentcreator_(\d{8})_?(\d{6})?")
SUFFIXES = (".dump", ".sql", ".sql.gz", ".backup")


def backup_files(backup_dir: Path) -> list[Path]:
    """Finished backups (no temp or partial names), newest name first."""
    directory = Path(backup_dir)
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.name.endswith(SUFFIXES) and NAME.search(p.name)]
    return sorted(files, key=lambda p: p.name, reverse=True)


def backup_time(path: Path) -> datetime | None:
    match = NAME.search(path.name)
    if not match:
        return None
    return datetime.strptime(match.group(1) + (match.group(2) or "000000"), "%Y%m%d%H%M%S")


def readable(path: Path) -> tuple[bool, str]:
    """Can this backup be read back? (ok, how it was checked or why not)."""
    from ccops.backup import verify_backup

    result = verify_backup(path)
    return result.ok, (", ".join(result.checks) if result.ok else result.reason)


@check("backup.daily")
def daily_backup(ctx: RunContext) -> Finding:
    """Today's backup (the day of as_of) exists, is above the minimum size, and reads back."""
    directory = ctx.settings.effective_backup_dir
    minimum = ctx.settings.backup.min_size_bytes
    if not Path(directory).is_dir():
        return Finding("backup.daily", Status.CRITICAL, f"backup dir {directory} does not exist: no backups at all")
    day = ctx.as_of.strftime("%Y%m%d")
    today = [p for p in backup_files(directory) if NAME.search(p.name).group(1) == day
             and (backup_time(p) or ctx.as_of) <= ctx.as_of]
    rows = [{"file": p.name, "bytes": p.stat().st_size} for p in today]
    if not today:
        latest = backup_files(directory)
        last = f"; the latest is {latest[0].name}" if latest else "; there are none"
        return Finding("backup.daily", Status.CRITICAL, f"no backup from {ctx.as_of:%Y-%m-%d} in {directory}{last}", 0)
    newest = today[0]
    ok, how = readable(newest)
    size = newest.stat().st_size
    table = pd.DataFrame(rows)
    if not ok:
        return Finding("backup.daily", Status.CRITICAL, f"{newest.name} cannot be read back: {how}", size, minimum, data=table)
    if size < minimum:
        return Finding("backup.daily", Status.WARNING, f"{newest.name} is only {size:,} bytes (minimum {minimum:,})",
                       size, minimum, data=table)
    return Finding("backup.daily", Status.OK, f"{newest.name}: {size / 2**20:,.1f} MiB, verified with {how}", size, minimum,
                   data=table)


@check("backup.latest_verified")
def backup_status(ctx: RunContext, max_age_hours: float = 26) -> Finding:
    """The latest verified backup, its age and size; older than 26 h (or none) is CRITICAL."""
    from ccops import backup

    latest = backup.latest_verified(ctx.settings.effective_backup_dir)
    if latest is None:
        return Finding("backup.latest_verified", Status.CRITICAL,
                       f"no verified backup in {ctx.settings.effective_backup_dir}", None, max_age_hours)
    age = (ctx.as_of - latest.created).total_seconds() / 3600
    status = Status.CRITICAL if age > max_age_hours else Status.OK
    return Finding("backup.latest_verified", status,
                   f"latest verified backup {latest.path.name}: {latest.size / 2**20:,.1f} MiB, {age:.1f} h old",
                   round(age, 2), max_age_hours)


def take_backup(ctx: RunContext, dry_run: bool = True, via: str = "local") -> Findings:
    """pg_dump + manifest + verification (+ the off-site copy when backup.offsite is set).

    Taking a backup changes nothing, so dry_run alone decides. A failed off-site
    copy is its own WARNING finding: the local backup is still good.
    """
    from ccops import actions, backup

    ctx.state.pop("backup", None)

    def run() -> str:
        result = backup.create_backup(ctx.settings, via=via)
        ctx.state["backup"] = result
        if not result.verified:
            raise backup.BackupError(f"{result.path.name} failed verification: {result.reason}")
        counts = result.manifest["row_counts"]
        rows = (f"{sum(counts.values()):,} rows in {len(counts)} tables" if counts
                else result.manifest.get("row_counts_note", "no row counts"))
        return f"{result.path.name}: {result.manifest['size']:,} bytes, {rows}, {result.duration_s:.1f} s, {result.reason}"

    found = actions.guarded(ctx, "backup", f"pg_dump {ctx.settings.effective_backup_dir}/contentcreator_<now>.dump",
                            run, dry_run, True)
    result = ctx.state.get("backup")
    if result is None or not result.verified or not ctx.settings.backup.offsite:
        return found
    return Findings(found + actions.guarded(
        ctx, "offsite", f"copy {result.path.name} to {ctx.settings.backup.offsite}",
        lambda: backup.offsite_copy(ctx.settings, result.path).line(), dry_run, True, Status.WARNING))


@check("backup.list")
def backups_table(ctx: RunContext) -> Finding:
    """Every backup in the backup dir with its verification result."""
    from ccops import backup

    rows = [b.row() for b in backup.list_backups(ctx.settings.effective_backup_dir)]
    if not rows:
        return Finding("backup.list", Status.WARNING, "no backups", 0)
    table = pd.DataFrame(rows)
    failed = int((~table["verified"]).sum())
    return Finding("backup.list", Status.WARNING if failed else Status.OK,
                   f"{len(table)} backups, {failed} fail verification", failed, data=table)


def retention(ctx: RunContext, dry_run: bool = True, confirm: bool = False,
              retention_days: int | None = None) -> Findings:
    """Delete backups by age, never below the newest verified minimum (deleting needs confirm)."""
    from ccops import actions, backup

    b = ctx.settings.backup
    days = b.retention_days if retention_days is None else retention_days
    plan = backup.plan_retention(ctx.settings.effective_backup_dir, ctx.as_of, days, b.keep_verified)
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


@check("backup.restore_test")
def restore_test(ctx: RunContext) -> Finding:
    """The monthly full backup verification: restore into a scratch database, compare, amcheck, drop."""
    from ccops import backup

    result = backup.restore_test(ctx.settings)
    table = pd.DataFrame(result.counts)
    bad = [r for r in result.counts if not r["ok"]]
    summary = (f"{result.restored_text}; {len(result.counts) - len(bad)} of {len(result.counts)} tables match "
               f"the manifest; {result.amcheck_detail}; scratch database dropped")
    return Finding("backup.restore_test", Status.OK if result.ok else Status.CRITICAL, summary,
                   round(result.restore_s, 2), data=table)


def restore(ctx: RunContext, file: str = "", target: str = "", dry_run: bool = True, confirm: bool = False,
            force: bool = False, jobs: int = 0, app_stopped: bool = False) -> Findings:
    """The guide's recovery procedure through ccops.backup.restore_backup, each step timed.

    `app_stopped`: the operator stopped the app by hand; without it a restore
    whose service backend cannot stop the app (backend none) is refused.
    """
    from ccops import actions, backup
    from ccops.config import mask_url

    if file:
        path = Path(file)
    else:
        latest = backup.latest_verified(ctx.settings.effective_backup_dir)
        if latest is None:
            return ctx.record([Finding("action.restore", Status.CRITICAL, "no verified backup to restore from")])
        path = latest.path
    url = backup.target_url(ctx.settings, target) if target else ctx.settings.resolved_database_url()
    ctx.state["restore_target"] = url

    def run() -> str:
        result = backup.restore_backup(ctx.settings, path, url, confirm=True, force=force, jobs=jobs,
                                       app_stopped=app_stopped)
        ctx.state["restore_steps"] = pd.DataFrame([vars(s) for s in result.steps])
        if not result.ok:
            raise backup.BackupError(result.summary())
        return result.summary()

    stopped = "; the operator says the app is stopped" if app_stopped else ""
    return actions.guarded(ctx, "restore", f"replace {mask_url(url)} with {path.name} (safety dump first{stopped})",
                           run, dry_run, confirm)


@check("backup.restore_steps")
def restore_steps(ctx: RunContext) -> Finding:
    """What each step of the restore did and how long it took."""
    table = ctx.state.get("restore_steps")
    if table is None:
        return Finding("backup.restore_steps", Status.INFO, "no restore was run")
    failed = table[~table["ok"]]
    return Finding("backup.restore_steps", Status.CRITICAL if len(failed) else Status.OK,
                   f"{len(table)} steps, {len(failed)} failed, {table['duration_s'].sum():.1f} s in all",
                   round(float(table["duration_s"].sum()), 2), data=table)
