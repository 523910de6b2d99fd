"""Out of disk space: what uses it, then free it safely, then make sure it is noticed earlier.

Replaces the guide's `docker system prune -a --volumes`, `find -mtime +30
-delete` and `truncate -s 0`, each of which can destroy the one thing needed
to recover (the database volume, the last good backup, the incident's log).
The evidence steps only read; each freeing step is planned in the dry run
(files, reasons, bytes) and carried out only with dry_run False and confirm
True, touching exactly what the plan listed.

The runbook must work on a disk that is 100 % full, with ccops' home, its
archive and the app's logs on it: no step writes there before space is freed.
The dry run's list goes to the temp dir when home has no room
(ccops.actions.cleanup), compressed copies are made in the temp dir or memory and moved
back once the original is gone (ccops.deploy.diskspace), the freeing steps run in the
order the runbook lists them (backups, rotated logs oldest first, the live log),
and the runner keeps the run's own files off the full disk until it archives.
The log the app is writing is never deleted or compressed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from ccops import actions
from ccops.core.context import RunContext, check, not_configured_guard
from ccops.core.db import query_df
from ccops.core.findings import Finding, Findings, Status
from ccops.core.results import not_run_yet
from ccops.deploy import diskspace


def watched_paths(ctx: RunContext) -> list[Path]:
    s = ctx.settings
    paths = [Path(p) for p in s.disk_paths] + [p for p in (s.optional("log_dir"), s.optional("backup_dir")) if p] + [s.archive_dir, s.home]
    seen, unique = set(), []
    for path in paths:
        if path.exists() and path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def protected_paths(ctx: RunContext) -> list[Path]:
    """The database's files: the data dir the settings name (paths.data_dir), and the server's when it will say.

    Both, because either may be missing: a deployment need not name its data dir, and
    SHOW data_directory needs a superuser and a running server.
    """
    found = [Path(ctx.settings.data_dir)] if ctx.settings.data_dir else []
    try:
        with ctx.db() as conn:
            found.append(Path(conn.exec_driver_sql("SHOW data_directory").scalar()))
    except Exception:  # noqa: BLE001 - not superuser, or the database is down: the defaults stand
        pass
    return found


@check("disk.filesystems")
def filesystems(ctx: RunContext) -> Finding:
    """Free space of every filesystem holding a watched path (the guide's `df -h`)."""
    rows, seen = [], set()
    for path in watched_paths(ctx):
        usage = diskspace.filesystem_usage(path)
        key = (usage["total"], usage["free"])
        if key in seen:
            continue
        seen.add(key)
        rows.append({**usage, "total_h": diskspace.human(usage["total"]), "free_h": diskspace.human(usage["free"])})
    table = pd.DataFrame(rows)
    worst = table["free_pct"].min()
    t = ctx.settings.thresholds
    status = t.disk.free_pct.grade(worst)
    tightest = table.loc[table["free_pct"].idxmin()]
    return Finding("disk.filesystems", status, f"least free: {tightest['path']} with {worst:.1f}% "
                   f"({tightest['free_h']}) free", float(worst), t.disk.free_pct.first, data=table)


@check("disk.largest")
def largest_directories(ctx: RunContext, depth: int = 1, top: int = 15) -> Finding:
    """The biggest directories under the watched paths (`du -x`), biggest first."""
    paths = [p for p in watched_paths(ctx) if p not in (Path("/"), Path("/var"))] or watched_paths(ctx)
    table = diskspace.largest_dirs(paths, depth=depth, top=top)
    if table.empty:
        return Finding("disk.largest", Status.INFO, "no data: no watched directory exists")
    head = table.iloc[0]
    return Finding("disk.largest", Status.INFO, f"largest: {head['path']} ({head['size']})", int(head["bytes"]), data=table)


DATABASE_SPACE_SQL = """
SELECT datname AS database, pg_database_size(datname) AS bytes FROM pg_database
WHERE datallowconn ORDER BY 2 DESC
"""


@check("disk.database")
def database_space(ctx: RunContext) -> Finding:
    """Database and WAL sizes: space only the database itself may free (never by deleting its files)."""
    with ctx.db() as conn:
        table = query_df(conn, DATABASE_SPACE_SQL)
        try:
            wal = int(conn.exec_driver_sql("SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()").scalar())
        except Exception:  # noqa: BLE001 - needs superuser or pg_monitor
            wal = None
    table["size"] = table["bytes"].map(diskspace.human)
    wal_text = "WAL size unknown (needs pg_monitor)" if wal is None else f"WAL {diskspace.human(wal)}"
    return Finding("disk.database", Status.INFO,
                   f"databases {diskspace.human(int(table['bytes'].sum()))}, {wal_text}; "
                   "never delete files under the data directory: VACUUM FULL or drop data instead",
                   int(table["bytes"].sum()), data=table)


@check("disk.logs_backups")
def logs_and_backups(ctx: RunContext) -> Finding:
    """How much the app's logs and the backups take."""
    rows = []
    for label, path in (("logs", ctx.settings.effective_log_dir), ("backups", ctx.settings.effective_backup_dir),
                        ("reports", ctx.settings.archive_dir)):
        files = [p for p in Path(path).rglob("*") if p.is_file()] if Path(path).is_dir() else []
        size = sum(p.stat().st_size for p in files)
        rows.append({"what": label, "path": str(path), "files": len(files), "bytes": size, "size": diskspace.human(size)})
    table = pd.DataFrame(rows)
    return Finding("disk.logs_backups", Status.INFO,
                   ", ".join(f"{r['what']} {r['size']} in {r['files']} files" for r in rows), int(table["bytes"].sum()), data=table)


@check("disk.docker")
def docker_usage(ctx: RunContext) -> Finding:
    """`docker system df` when the service backend is docker compose."""
    if ctx.settings.effective_backend != "compose":
        return Finding("disk.docker", Status.INFO, f"not a compose deployment (backend {ctx.settings.effective_backend})")
    output = diskspace.docker_system_df()
    return Finding("disk.docker", Status.INFO, output.strip().splitlines()[0] if output.strip() else "no output",
                   data=pd.DataFrame({"docker system df": output.splitlines()}))


def _freeing(ctx: RunContext) -> None:
    """A disk.plan step has run: disk.freed then adds up its plan, or none when it was not configured."""
    if ctx.results.cleanup_plans is None:
        ctx.results.cleanup_plans = []


def _apply(ctx: RunContext, step: str, plan: diskspace.CleanupPlan, what: str, dry_run: bool, confirm: bool) -> Findings:
    from ccops.actions.cleanup import apply_reviewed

    return apply_reviewed(ctx, step, what, plan, dry_run, confirm, prefix="disk.plan")


@not_configured_guard("disk.plan.free_backups")
def free_old_backups(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Backups beyond retention, never below the newest verified minimum (ccops.backup's plan)."""
    _freeing(ctx)
    from ccops import backup

    b = ctx.settings.backup
    retention = backup.plan_retention(ctx.settings.effective_backup_dir, ctx.as_of, b.retention_days, b.keep_verified)
    plan = diskspace.CleanupPlan(protected=protected_paths(ctx))
    for path in retention.delete_paths():
        plan.add(diskspace.CleanupAction("delete", Path(path), Path(path).stat().st_size, "beyond backup retention"))
    return _apply(ctx, "free_backups", plan,
                  f"delete backups beyond {b.retention_days} days, keeping the newest {b.keep_verified} verified", dry_run, confirm)


@not_configured_guard("disk.plan.compress_logs")
def compress_rotated_logs(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """gzip rotated logs that were left uncompressed (verified before the original goes)."""
    _freeing(ctx)
    plan = diskspace.plan_log_cleanup(ctx.settings.effective_log_dir, ctx.as_of, keep_days=10**5,
                                      protected=protected_paths(ctx))
    return _apply(ctx, "compress_logs", plan, "compress rotated logs", dry_run, confirm)


@not_configured_guard("disk.plan.truncate_live_log")
def truncate_live_log(ctx: RunContext, dry_run: bool = True, confirm: bool = False, requested: bool = False) -> Findings:
    """Archive the live log to .gz, then truncate it (the guide's truncate, without losing it).

    The live log is the one the app writes: the newest plain log, today's, or one a
    process holds open for writing (ccops.deploy.diskspace.live_logs), whatever zone its name is in.
    """
    _freeing(ctx)
    if not requested:
        confirm = False  # planned and shown, but never run unless asked for by name
    plan = diskspace.plan_live_log_truncation(ctx.settings.effective_log_dir, ctx.as_of, protected=protected_paths(ctx))
    return _apply(ctx, "truncate_live_log", plan, "archive then truncate the live log", dry_run, confirm)


def docker_prune(ctx: RunContext, dry_run: bool = True, confirm: bool = False, requested: bool = False) -> Findings:
    """`docker system prune` without --volumes, compose deployments only, only when requested."""
    if not requested:
        confirm = False
    if ctx.settings.effective_backend != "compose":
        return ctx.record([Finding("action.docker_prune", Status.INFO, "not a compose deployment: no docker prune")])
    command = diskspace.prune_command()

    def run() -> str:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["docker failed"])[-1])
        return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "done"

    return actions.guarded(ctx, "docker_prune", " ".join(command) + " (never --volumes)", run, dry_run, confirm)


@check("disk.freed")
def bytes_freed(ctx: RunContext) -> Finding:
    """What the freeing steps of this run achieved (or would, in a dry run)."""
    plans = ctx.results.cleanup_plans
    if plans is None:
        return not_run_yet("disk.freed", "a disk.plan step (free_old_backups, compress_rotated_logs, truncate_live_log)",
                           "add up what was freed")
    planned = sum(p.bytes for p in plans)
    freed = sum(a.freed for p in plans for a in p.actions if a.done)
    if freed:
        return Finding("disk.freed", Status.OK, f"{diskspace.human(freed)} freed", freed)
    return Finding("disk.freed", Status.INFO, f"nothing freed; the plans would free about {diskspace.human(planned)}", 0, planned)


@check("disk.alert")
def alert_to_add(ctx: RunContext) -> Finding:
    """The guide's last step: make sure low disk alerts before it is full."""
    t = ctx.settings.thresholds
    return Finding("disk.alert", Status.INFO,
                   f"alerting: `ccops alerts check` every 5 minutes raises WARNING below {t.disk.free_pct.warning:g}% "
                   f"free and CRITICAL below {t.disk.free_pct.critical:g}% on {', '.join(str(p) for p in watched_paths(ctx))}; "
                   "install it with `ccops schedule install`")
