"""The evening backup check: today's backup exists, is big enough, and can be read.

The guide lists `contentcreator_$(date +%Y%m%d)*.sql` and eyeballs the size. A
file that exists can still be a truncated dump, so ccops also reads it (see
ccops.backup.verify_backup): a manifest's sha256 when there is one, `pg_restore`
for custom-format dumps, and for plain SQL (`.sql`, `.sql.gz`) gzip's CRC, the
trailer ("PostgreSQL database dump complete") and a statement-level parse.
The app's own scripts/backup.sh backups (`db_*.sql`, `env_*`, `logs_*.tar.gz`)
count like ccops' own: one naming rule, ccops.backup.parse_name, says which
files are backups.

Read-only, like every check: the steps that take, prune or restore backups are
ccops.actions.backup. The restore test here does write, but only into a scratch
database it creates and drops; the platform's data is never touched.
"""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Findings, Status


def backup_files(backup_dir: Path) -> list[Path]:
    """Finished database backups (ccops' and backup.sh's; no temp or partial names), newest first."""
    from ccops import backup

    return [info.path for info in backup.list_backups(backup_dir, verify=False)]


def backup_time(path: Path) -> datetime | None:
    """The backup's time (naive UTC) from its name, by the one naming rule."""
    from ccops import backup

    parsed = backup.parse_name(Path(path).name)
    return parsed.created if parsed else None


def readable(path: Path) -> tuple[bool, str]:
    """Can this backup be read back? (ok, how it was checked or why not)."""
    from ccops.backup import verify_backup

    result = verify_backup(path)
    return result.ok, (", ".join(result.checks) if result.ok else result.reason)


def _daily_table(infos: list) -> pd.DataFrame:
    return pd.DataFrame([{"file": i.path.name, "origin": i.origin, "created": i.created, "bytes": i.size,
                          "verified": i.verified, "reason": i.reason} for i in infos])


@check("backup.daily")
def daily_backup(ctx: RunContext) -> Findings:
    """Today's database backup (the day of as_of) exists, is above the minimum size, and reads back.

    Either origin counts: ccops' own dumps and the app's backup.sh `db_*.sql`. The
    newest one that verifies is the day's backup; newer ones that fail are named.
    Also reports the .env copies beside them (see env_copies).
    """
    return Findings([_daily(ctx), env_copies_finding(ctx)])


def _daily(ctx: RunContext) -> Finding:
    from ccops import backup

    directory = ctx.settings.effective_backup_dir
    minimum = ctx.settings.backup.min_size_bytes
    if not Path(directory).is_dir():
        return Finding("backup.daily", Status.CRITICAL, f"backup dir {directory} does not exist: no backups at all")
    infos = [i for i in backup.list_backups(directory, app_zone=ctx.settings.logs_timezone) if i.created <= ctx.as_of]
    today = [i for i in infos if i.created.date() == ctx.as_of.date()]
    if not today:
        last = f"; the latest is {infos[0].path.name} ({infos[0].origin})" if infos else "; there are none"
        return Finding("backup.daily", Status.CRITICAL, f"no backup from {ctx.as_of:%Y-%m-%d} in {directory}{last}", 0)
    table = _daily_table(today)
    good = next((i for i in today if i.verified), None)
    if good is None:
        newest = today[0]
        return Finding("backup.daily", Status.CRITICAL, f"{newest.path.name} cannot be read back: {newest.reason}",
                       newest.size, minimum, data=table)
    failed = [i for i in today if not i.verified and i.created > good.created]
    size = good.size
    said = f"{good.path.name} ({good.origin}): {size / 2**20:,.1f} MiB, {good.reason}"
    if failed:
        return Finding("backup.daily", Status.WARNING, f"{said}; but the newer {failed[0].path.name} fails "
                       f"verification: {failed[0].reason}", size, minimum, data=table)
    if size < minimum:
        return Finding("backup.daily", Status.WARNING, f"{good.path.name} is only {size:,} bytes (minimum {minimum:,})",
                       size, minimum, data=table)
    return Finding("backup.daily", Status.OK, said, size, minimum, data=table)


def env_copies_finding(ctx: RunContext) -> Finding:
    """.env copies (backup.sh's env_*, ccops' contentcreator_env_*) hold every secret: owner-only, or a WARNING.

    Only names and modes are shown, never a byte of their contents.
    """
    from ccops import backup

    copies = backup.list_backups(ctx.settings.effective_backup_dir, verify=False, kinds=("env",))
    rows = []
    for info in copies:
        mode = stat.S_IMODE(info.path.stat().st_mode)
        rows.append({"file": info.path.name, "origin": info.origin, "mode": f"{mode:04o}",
                     "open_to_others": bool(mode & 0o077)})
    if not rows:
        return Finding("backup.env_copies", Status.OK, "no .env copies in the backup dir", 0)
    table = pd.DataFrame(rows)
    exposed = [r for r in rows if r["open_to_others"]]
    if exposed:
        names = ", ".join(f"{r['file']} ({r['mode']})" for r in exposed[:5])
        return Finding("backup.env_copies", Status.WARNING,
                       f"{len(exposed)} of {len(rows)} .env copies (every secret of the app) are readable by group or "
                       f"others: {names}; chmod 600 them", len(exposed), 0, data=table)
    return Finding("backup.env_copies", Status.OK, f"{len(rows)} .env copies, all readable by their owner only",
                   0, 0, data=table)


@check("backup.env_copies")
def env_copies(ctx: RunContext) -> Finding:
    """The .env copies' modes (names and modes only, never their contents)."""
    return env_copies_finding(ctx)


@check("backup.latest_verified")
def backup_status(ctx: RunContext, max_age_hours: float | None = None) -> Finding:
    """The latest verified backup, its age and size; older than thresholds.backup.max_age_hours (or none) is CRITICAL.

    `max_age_hours` overrides the setting for one run (None: the setting).
    """
    from ccops import backup

    level = ctx.settings.thresholds.backup.max_age_hours.override(critical=max_age_hours)
    max_age_hours = level.limit(Status.CRITICAL)

    latest = backup.latest_verified(ctx.settings.effective_backup_dir, app_zone=ctx.settings.logs_timezone)
    if latest is None:
        return Finding("backup.latest_verified", Status.CRITICAL,
                       f"no verified backup in {ctx.settings.effective_backup_dir}", None, max_age_hours)
    age = (ctx.as_of - latest.created).total_seconds() / 3600
    status = level.grade(age)
    return Finding("backup.latest_verified", status,
                   f"latest verified backup {latest.path.name}: {latest.size / 2**20:,.1f} MiB, {age:.1f} h old",
                   round(age, 2), max_age_hours)


@check("backup.list")
def backups_table(ctx: RunContext) -> Finding:
    """Every backup in the backup dir (dumps, .env copies, log tarballs; ccops' and backup.sh's) and its verification."""
    from ccops import backup

    rows = [b.row() for b in backup.list_backups(ctx.settings.effective_backup_dir, kinds=backup.KINDS,
                                                 app_zone=ctx.settings.logs_timezone)]
    if not rows:
        return Finding("backup.list", Status.WARNING, "no backups", 0)
    table = pd.DataFrame(rows)
    failed = int((~table["verified"]).sum())
    by = ", ".join(f"{n} {kind}" for kind, n in table["kind"].value_counts().sort_index().items())
    return Finding("backup.list", Status.WARNING if failed else Status.OK,
                   f"{len(table)} backups ({by}), {failed} fail verification", failed, data=table)


@check("backup.restore_test")
def restore_test(ctx: RunContext) -> Finding:
    """The monthly full backup verification: restore into a scratch database, compare, amcheck, drop."""
    from ccops import backup

    result = backup.restore_test(ctx.settings)
    table = pd.DataFrame(result.counts)
    bad = [r for r in result.counts if not r["ok"]]
    live = f"; {result.live_note}" if result.live_note else ""
    summary = (f"{result.restored_text}; {len(result.counts) - len(bad)} of {len(result.counts)} tables match "
               f"{result.counts_source}{live}; {result.amcheck_detail}; scratch database dropped")
    return Finding("backup.restore_test", Status.OK if result.ok else Status.CRITICAL, summary,
                   round(result.restore_s, 2), data=table)


@check("backup.restore_steps")
def restore_steps(ctx: RunContext) -> Finding:
    """What each step of the restore did and how long it took."""
    table = ctx.results.restore_steps
    if table is None:
        return Finding("backup.restore_steps", Status.INFO, "no restore was run")
    failed = table[~table["ok"]]
    return Finding("backup.restore_steps", Status.CRITICAL if len(failed) else Status.OK,
                   f"{len(table)} steps, {len(failed)} failed, {table['duration_s'].sum():.1f} s in all",
                   round(float(table["duration_s"].sum()), 2), data=table)
