"""`ccops reports list | index | prune | recheck | ack | sync`: the run archive on the command line."""

from __future__ import annotations

import argparse
from typing import Any

from ccops.cli.common import Parser, print_json, require_yes, settings_for
from ccops.core.errors import EXIT_WARNING, UsageError

RUN_HELP = "the run's record (or any of its files), or runbook/STAMP as `reports list` shows"


def register(sub: Any) -> None:
    p = sub.add_parser("reports", help="the run archive")
    reports_sub = p.add_subparsers(dest="reports_verb", required=True, parser_class=Parser)
    q = reports_sub.add_parser("list", help="the latest run of each runbook, then every run, newest first")
    q.add_argument("--runbook", default=None, help="only this runbook's runs")
    q.add_argument("--outcome", default=None, help="only runs with this outcome (ok, warning, critical, failed, timed-out)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_list)
    q = reports_sub.add_parser("index", help="rebuild outputs/index.html and index.json from the run records")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_index)
    q = reports_sub.add_parser("prune", help="retention by age, keeping each runbook's latest completed and failed run")
    q.add_argument("--dry-run", action="store_true", help="list what would go and the bytes freed")
    q.add_argument("--yes", action="store_true", help="delete without asking")
    q.add_argument("--keep-days", type=int, default=None, help="keep runs newer than this (default: archive.keep_days, 90)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_prune)
    q = reports_sub.add_parser("recheck", help="re-execute an archived run for its as_of and compare: 0 reproduces, 1 differs")
    q.add_argument("run", help=RUN_HELP)
    q.add_argument("--timeout", type=int, default=None, help="wall-clock limit in seconds")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_recheck)
    q = reports_sub.add_parser("sync", help="copy to the bucket (paths.archive_dir = s3://...) every run and index "
                               "file it lacks: what a run could not upload, acks and rechecks added since")
    q.add_argument("--dry-run", action="store_true", help="list what would be uploaded and deleted, change nothing")
    q.add_argument("--yes", action="store_true", help="upload without asking")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_sync)
    q = reports_sub.add_parser("ack", help="record that you reviewed a run (shown in the index)")
    q.add_argument("run", help=RUN_HELP)
    q.add_argument("--note", default="", help="what the reviewer concluded")
    q.add_argument("--yes", action="store_true", help="record without asking")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_ack)


def cmd_reports_list(args: argparse.Namespace) -> int:
    from ccops import archive

    settings = settings_for(args)
    records = archive.list_records(settings.archive_dir, runbook=args.runbook, outcome=args.outcome)
    if args.json:
        print_json(records)
    else:
        print(archive.format_records(records, settings.archive_dir))
    return 0


def cmd_reports_index(args: argparse.Namespace) -> int:
    from ccops import archive
    from ccops.runbook.indexes import refresh_indexes

    settings = settings_for(args)
    records = refresh_indexes(settings)
    where = settings.archive_dir / archive.INDEX_HTML
    if args.json:
        print_json({"runs": len(records), "index_html": str(where), "index_json": str(settings.archive_dir / archive.INDEX_JSON)})
    else:
        print(f"index of {len(records)} runs: {where}")
    return 0


def cmd_reports_ack(args: argparse.Namespace) -> int:
    """A reviewer's acknowledgement, kept beside the run record (never in it); the index shows it."""
    from ccops import archive
    from ccops.runbook.indexes import refresh_indexes
    from ccops.runbook.runner import user_at_host

    settings = settings_for(args)
    record_path = archive.resolve_record(settings.archive_dir, args.run)
    require_yes(args, f"record that {user_at_host()} reviewed {record_path.name}")
    entry = archive.acknowledge(record_path, user_at_host(), args.note or "")
    refresh_indexes(settings)
    if args.json:
        print_json({"run": str(record_path), **entry})
    else:
        print(f"{record_path.name}: reviewed by {entry['by']} at {entry['at']}")
    return 0


def cmd_reports_recheck(args: argparse.Namespace) -> int:
    """Re-execute an archived run for its own as_of and compare (ccops.runbook.recheck): exit 0 reproduces, 1 differs."""
    from ccops.runbook import recheck

    result = recheck.recheck(settings_for(args), args.run, timeout=args.timeout)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.text())
    return result.exit_code


def cmd_reports_prune(args: argparse.Namespace) -> int:
    """Archive retention: a dry run unless confirmed (--yes, or yes at the terminal's prompt)."""
    from datetime import UTC, datetime

    from ccops import archive

    settings = settings_for(args)
    if args.keep_days is not None and args.keep_days < 1:
        raise UsageError(f"--keep-days: expected a whole number of days, at least 1, got {args.keep_days}")
    keep_days = args.keep_days if args.keep_days is not None else archive.keep_days_setting(settings)
    plan = archive.plan_retention(settings.archive_dir, datetime.now(UTC).replace(tzinfo=None), keep_days)
    protected = [r for r in plan.keep if not r.reason.startswith("newer")]
    listing = "\n".join(
        f"{action:6}  {run.stem.relative_to(plan.archive_dir).as_posix()}  {run.outcome or '-'}  "
        f"({len(run.files)} files, {run.bytes:,} bytes; {run.reason})"
        for action, runs in (("delete", plan.delete), ("keep", protected)) for run in runs
    )
    head = (f"{len(plan.delete)} runs to delete, {len(plan.keep)} kept "
            f"({len(plan.keep) - len(protected)} newer than {keep_days} days, {len(protected)} the latest of their kind)")
    text = "\n".join(x for x in (listing, head) if x)

    def report(freed: int, dry_run: bool) -> None:
        if args.json:
            print_json({"keep_days": keep_days, "dry_run": dry_run, "bytes_freed": freed, "plan": plan.rows()})
        else:
            print(f"{text}\n{'would free' if dry_run else 'freed'} {freed:,} bytes" + (" (dry run)" if dry_run else ""))

    if args.dry_run or not plan.delete:
        report(plan.bytes_freed, True)
        return 0
    if not args.yes and not args.json:
        print(text)
    require_yes(args, f"delete {len(plan.delete)} archived runs ({plan.bytes_freed:,} bytes)")
    report(archive.apply_retention(plan), False)
    if settings.archive_remote:  # the same runs go from the bucket (what cannot go now stays pending)
        from ccops.archive import remote

        mirrored = remote.prune(settings, plan)
        if not args.json:
            print(mirrored.line())
        return 0 if mirrored.ok else EXIT_WARNING
    return 0


def cmd_reports_sync(args: argparse.Namespace) -> int:
    """Compare the local archive with its bucket and upload what the bucket lacks, runs record last, then the
    index; retention's deletions still pending are made. Exit 0 in sync, 1 (WARNING) the bucket failed
    (the rest stays pending), 64 the archive names no bucket."""
    from ccops.archive import remote

    settings = settings_for(args)
    if not settings.archive_remote:
        raise UsageError("reports sync: paths.archive_dir (CCOPS_ARCHIVE_DIR) is not an s3://bucket/prefix URL: "
                         "there is no bucket to sync")
    plan = remote.sync(settings, full=True, dry_run=True)  # in a dry run, `uploaded` is the index files to upload
    todo = len(plan.pending_runs) + len(plan.pending_deletes) + len(plan.uploaded)
    if not plan.ok:
        summary = plan.line()
    elif todo:
        summary = (f"{settings.archive_remote}: {len(plan.pending_runs)} runs and {len(plan.uploaded)} index files "
                   f"to upload, {len(plan.pending_deletes)} pruned runs to delete")
    else:
        summary = f"{settings.archive_remote}: in sync"
    if args.dry_run or not todo or not plan.ok:
        listing = [*(f"upload  {r}" for r in [*plan.pending_runs, *plan.uploaded]),
                   *(f"delete  {r}" for r in plan.pending_deletes)]
        if args.json:
            print_json({**plan.to_dict(), "dry_run": True})
        else:
            print("\n".join([*listing, summary + (" (dry run)" if todo and plan.ok else "")]))
        return 0 if plan.ok else EXIT_WARNING
    require_yes(args, summary.split(": ", 1)[1])
    result = remote.sync(settings, full=True)
    if args.json:
        print_json({**result.to_dict(), "dry_run": False})
    else:
        print(result.line())
    return 0 if result.ok else EXIT_WARNING
