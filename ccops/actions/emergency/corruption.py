"""Database corruption: stop the app, save what can be saved, find the damage, repair, verify, resume.

The guide's procedure is `pg_dump > file` (which aborts at the first
unreadable table and leaves nothing), then `REINDEX DATABASE` (which cannot
repair a table and blocks writers). ccops saves first and saves per table when
a whole dump fails, so one damaged table does not cost the rest; finds the
damage with amcheck (checks/integrity.py) and names it; rebuilds only the
damaged indexes; falls back to the latest verified backup only when heap
damage remains or the rebuild failed; and verifies again before resuming.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from ccops import actions
from ccops.checks import integrity
from ccops.core import fs
from ccops.core.context import RunContext, check, describe
from ccops.core.db import client_tool, libpq_env
from ccops.core.findings import Finding, Findings, Status, recovered
from ccops.core.sqlsafe import ident, render


@dataclass
class EmergencyDump:
    directory: Path
    full: bool
    saved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0


FILE_MODE = 0o600  # an emergency dump holds the whole database: readable by its owner only
DIR_MODE = 0o700


def table_pattern(name: str, schema: str = "public") -> str:
    """A pg_dump -t pattern matching exactly schema.name: both double-quoted (quotes doubled), so
    no character of a catalog name acts as a pattern (`*`, `?`, `.`) or changes case."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def table_file(position: int, name: str) -> str:
    """A file name for one table's dump that no table name can steer (`/`, `..`, NUL, length)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:60].strip("_") or "table"
    return f"table_{position:03d}_{slug}.dump"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)


def _pg_dump(url: str, target: Path, extra: list[str], timeout: float) -> str:
    """Run pg_dump into target (mode 0600 from its creation) via a temporary name; '' on success,
    else its last error line."""
    env = {**os.environ, **libpq_env(url)}
    try:
        with fs.atomic_writer(target, FILE_MODE, suffix=".partial") as out:
            try:
                proc = subprocess.run([client_tool("pg_dump"), "-Fc", *extra], stdout=out,
                                      stderr=subprocess.PIPE, text=True, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise _DumpFailed(f"timed out after {timeout:.0f} s") from None
            if proc.returncode != 0:
                raise _DumpFailed((proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1])
    except _DumpFailed as failed:
        return str(failed)
    return ""


class _DumpFailed(Exception):
    """pg_dump's own failure: atomic_writer removes the partial dump, _pg_dump returns the reason."""


def emergency_dump(url: str, dest_dir: Path, tables: list[str], now: datetime | None = None,
                   timeout: float = 3600) -> EmergencyDump:
    """A full custom-format dump; if that fails, schema plus one dump per table, failures listed."""
    started = time.monotonic()
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d_%H%M%S")
    directory = Path(dest_dir) / f"emergency_{stamp}"
    _private_dir(Path(dest_dir))
    _private_dir(directory)
    result = EmergencyDump(directory, full=False)
    error = _pg_dump(url, directory / "full.dump", [], timeout)
    if not error:
        result.full = True
        result.saved = list(tables)
    else:
        result.failed["(full dump)"] = error
        schema_error = _pg_dump(url, directory / "schema.dump", ["--schema-only"], timeout)
        if schema_error:
            result.failed["(schema)"] = schema_error
        files = {}
        for position, table in enumerate(tables, 1):
            name = table_file(position, table)
            table_error = _pg_dump(url, directory / name,
                                   ["--data-only", "--strict-names", "-t", table_pattern(table)], timeout)
            if table_error:
                result.failed[table] = table_error
            else:
                result.saved.append(table)
                files[name] = table
        _write_private(directory / "tables.json", json.dumps(files, indent=1, ensure_ascii=False) + "\n")
    result.bytes = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    result.seconds = time.monotonic() - started
    return result


def _write_private(path: Path, text: str) -> None:
    """Which file holds which table (names as the catalog spells them), mode 0600."""
    fs.write_atomic(path, text, FILE_MODE)


def _tables(ctx: RunContext) -> list[str]:
    from ccops.core.db import query_df

    with ctx.db() as conn:
        frame = query_df(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    return list(frame["tablename"])


def stop_app(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Step 1: stop the app so nothing writes to a damaged database."""
    from ccops.deploy.services import get_backend

    backend = get_backend(ctx.settings)
    return actions.guarded(ctx, "stop_app", f"stop the app ({backend.describe_action('stop', 'app')})",
                           lambda: backend.stop("app") or "app stopped", dry_run, confirm)


def backup_current_state(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Step 2: an emergency dump of the current state, table by table if the whole dump fails."""
    dest = ctx.settings.effective_backup_dir / "emergency"

    def run() -> str:
        dump = emergency_dump(ctx.settings.resolved_database_url(), dest, _tables(ctx))
        ctx.results.emergency_dump = dump
        if dump.full:
            return f"full dump saved in {dump.directory} ({dump.bytes:,} bytes, {dump.seconds:.1f} s)"
        failed = ", ".join(f"{name} ({why})" for name, why in dump.failed.items() if not name.startswith("("))
        if not dump.saved:
            raise RuntimeError(f"nothing could be dumped: {dump.failed}")
        return (f"full dump failed; {len(dump.saved)} tables saved one by one in {dump.directory}; "
                f"tables that failed to dump: {failed or 'none'}")

    # Taking a dump changes nothing, so it needs only dry_run False: it must not be skipped by accident.
    return actions.guarded(ctx, "emergency_dump", f"pg_dump the current state into {dest}", run, dry_run, True)


@check("integrity.indexes")
def detect(ctx: RunContext) -> list[Finding]:
    """Step 3: amcheck on every B-tree index and every table; what is damaged, by name."""
    report = integrity.check_integrity(ctx.settings.resolved_database_url())
    ctx.results.integrity = report
    return integrity.report_findings(report)


def repair_indexes(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Step 4: REINDEX only the damaged indexes (the app is stopped, so plain REINDEX is fine)."""
    report = ctx.results.integrity
    if report is None:
        return ctx.record([_undecided("action.reindex", "which index to rebuild")])
    if not report.damaged_indexes:
        return ctx.record([Finding("action.reindex", Status.OK, "no damaged index: nothing to rebuild")])
    names = report.damaged_indexes

    def run() -> str:
        results = integrity.reindex(ctx.settings.resolved_database_url(), names)
        ctx.results.reindexed = results
        failed = [r for r in results if not r["ok"]]
        if failed:
            raise RuntimeError("; ".join(f"{r['index']}: {r['error']}" for r in failed))
        return f"rebuilt {', '.join(names)} in {sum(r['seconds'] for r in results):.1f} s"

    shown = ", ".join(render(ident("public", name)) for name in names)
    return actions.guarded(ctx, "reindex", f"REINDEX INDEX {shown}", run, dry_run, confirm)


def restore_if_needed(ctx: RunContext, dry_run: bool = True, confirm: bool = False, force: bool = False) -> Findings:
    """Step 5: restore the latest verified backup only if heap damage remains or the rebuild failed."""
    report = ctx.results.integrity
    if report is None and not force:
        return ctx.record([_undecided("action.restore", "whether a restore is needed")])
    reindex_failed = any(not r["ok"] for r in ctx.results.reindexed)
    damaged_tables = report.damaged_tables if report is not None else []
    heap_damage = bool(damaged_tables)
    if not (heap_damage or reindex_failed or force):
        return ctx.record([Finding("action.restore", Status.OK, "no restore needed: " + _index_state(ctx))])
    from ccops import backup

    latest = backup.latest_verified(ctx.settings.effective_backup_dir)
    if latest is None:
        return ctx.record([Finding("action.restore", Status.CRITICAL,
                                   "a restore is needed but there is no verified backup: escalate")])
    why = "heap damage in " + ", ".join(damaged_tables) if heap_damage else "the index rebuild failed"

    def run() -> str:
        result = backup.restore_backup(ctx.settings, latest.path, ctx.settings.resolved_database_url(),
                                       confirm=True, stop_app=False)
        if not result.ok:
            raise RuntimeError(result.summary() if hasattr(result, "summary") else "restore failed")
        return f"restored {latest.path.name}"

    return actions.guarded(ctx, "restore", f"restore {latest.path.name} ({why})", run, dry_run, confirm)


def _undecided(check_id: str, what: str) -> Finding:
    """Step 3 could not look (amcheck missing, database unreachable): never read that as "all clean"."""
    return Finding(check_id, Status.UNKNOWN, f"cannot decide {what}: the integrity check did not run "
                   "(see integrity.indexes; with amcheck missing: CREATE EXTENSION amcheck; as a superuser)")


def _index_state(ctx: RunContext) -> str:
    """What happened to the damaged indexes in this run, in words true for a dry run too."""
    report = ctx.results.integrity
    damaged = list(report.damaged_indexes) if report is not None else []
    if not damaged:
        return "no heap damage and no damaged index"
    rebuilt = [r["index"] for r in ctx.results.reindexed if r["ok"]]
    if rebuilt:
        return f"no heap damage and the damaged indexes were rebuilt ({', '.join(rebuilt)})"
    return f"no heap damage; a REINDEX would repair {', '.join(damaged)} (not rebuilt in this run)"


def _repairs(ctx: RunContext) -> list[str]:
    """The repair steps this run executed successfully (reindex, restore)."""
    return [r.step for r in actions.timeline_of(ctx) if r.executed and r.ok and r.step in ("reindex", "restore")]


RESOLVES = ("integrity", "action.reindex", "action.restore")


@check("corruption.verify")
def verify(ctx: RunContext) -> list[Finding]:
    """Step 6: amcheck again, and row counts per table, before the app comes back."""
    from ccops.core.db import query_df

    report = integrity.check_integrity(ctx.settings.resolved_database_url())
    found = [Finding(f"corruption.verify.{f.check.split('.')[-1]}", f.status, f.summary, f.value, f.threshold, f.data)
             for f in integrity.report_findings(report)]
    with ctx.db() as conn:
        counts = query_df(conn, "SELECT relname AS table, n_live_tup AS rows_estimate FROM pg_stat_user_tables ORDER BY 1")
    dump = ctx.results.emergency_dump
    note = f"; the emergency dump is in {dump.directory}" if dump else ""
    found.append(Finding("corruption.row_counts", Status.INFO, f"{len(counts)} tables, "
                         f"{int(pd.to_numeric(counts['rows_estimate']).sum()):,} rows (estimate){note}",
                         data=counts))
    repairs = _repairs(ctx)
    if report.clean and repairs:  # verified: the damage step 3 found is this run's incident, resolved
        found.append(recovered("corruption.recovered", f"recovered: {' and '.join(repairs)} done, amcheck now clean "
                               "on every index and table", RESOLVES))
    return found


def resume_app(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Step 7: start the app again, only when the verification is clean."""
    from ccops.deploy.services import get_backend

    try:
        report = integrity.check_integrity(ctx.settings.resolved_database_url())
    except (RuntimeError, SQLAlchemyError) as exc:
        return ctx.record([Finding("action.resume", Status.UNKNOWN,
                                   f"not resuming: the database could not be verified ({describe(exc)}); "
                                   "start the app by hand once it is checked")])
    if not report.clean:
        if not actions.may_act(dry_run, confirm):
            return ctx.record([Finding("action.resume", Status.CRITICAL,
                                       "would not resume: the database fails amcheck and this dry run repaired "
                                       "nothing; run with dry_run = False and confirm = True")])
        return ctx.record([Finding("action.resume", Status.CRITICAL,
                                   "not resuming: the database still fails amcheck; keep the app stopped")])
    backend = get_backend(ctx.settings)
    return actions.guarded(ctx, "resume", f"start the app ({backend.describe_action('start', 'app')})",
                           lambda: backend.start("app") or "app started", dry_run, confirm)
