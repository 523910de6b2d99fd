"""`ccops backup ...` and `ccops restore ...`: the backup module on the command line.

Exit codes: 0 done and verified, 1 the backup is verified but its off-site
copy failed, 2 a backup, verification, restore or restore test failed (one line
naming the step and why, the URL's password masked) (CRITICAL: the platform has no
good backup from this run), 64 bad usage or a changing verb run without --yes
and without a terminal, 75 another backup holds the backup dir's lock. `restore --from-offsite NAME`
exits 2 as well when the off-site copy is missing, unreadable or does not match its manifest's sha256.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccops.core.errors import EXIT_CRITICAL, EXIT_WARNING


def register(sub: Any) -> None:
    from ccops.cli.common import Parser as _Parser

    p = sub.add_parser("backup", help="take a verified backup (pg_dump custom format + manifest)")
    p.add_argument("--compression", type=int, default=None, choices=range(10), metavar="0-9",
                   help="0: no compression; 1-9: zstd on all cores (.dump.zst), or pg_dump's own gzip at "
                        "that level where zstd is not installed or with --via compose (.dump)")
    p.add_argument("--via", choices=("local", "compose"), default="local",
                   help="local pg_dump against the URL (default), or `docker compose exec -T db pg_dump`")
    p.add_argument("--no-offsite", action="store_true", help="skip the off-site copy even if backup.offsite is set")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backup, backup_verb=None)
    verbs = p.add_subparsers(dest="backup_verb", parser_class=_Parser)
    q = verbs.add_parser("verify", help="verify a backup file (checksum, pg_restore --list, zstd or gzip read to the end)")
    q.add_argument("file")
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("list", help="backups, newest first, with their verification: dumps, .env copies and log tarballs, ccops' own and the app's backup.sh's")
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("prune", help="retention: by age, never below the newest verified minimum")
    q.add_argument("--dry-run", action="store_true", help="list what would go and the bytes freed")
    q.add_argument("--yes", action="store_true", help="delete without asking")
    q.add_argument("--json", action="store_true")
    q = verbs.add_parser("test", help="restore test: latest verified backup into a scratch database")
    q.add_argument("file", nargs="?", default=None)
    q.add_argument("--json", action="store_true")

    p = sub.add_parser("restore", help="restore a backup into a database (safety dump first)")
    p.add_argument("file", help="the backup file; with --from-offsite, its name in backup.offsite")
    p.add_argument("--from-offsite", action="store_true",
                   help="fetch FILE and its manifest from backup.offsite (a directory or s3://bucket/prefix) into "
                        "the backup dir, check its sha256 against the manifest (a mismatch is refused), then restore")
    # dest restore_target: `target` is the deployment (`ccops --target NAME restore ...`), read by settings_for
    p.add_argument("--target", dest="restore_target", required=True,
                   help="database name on the configured server, or a URL")
    p.add_argument("--force", action="store_true", help="restore even if verification fails")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel pg_restore jobs (default: backup.restore_jobs; 0 there: one per core, at most 4)")
    p.add_argument("--app-stopped", action="store_true",
                   help="the app is stopped (by hand): needed when the service backend cannot stop it (e.g. none)")
    p.add_argument("--yes", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_restore)


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    from ccops.cli.common import print_json

    if getattr(args, "json", False):
        print_json(data)
    else:
        print(text)


def cmd_backup(args: argparse.Namespace) -> int:
    from ccops import backup
    from ccops.cli.common import require_yes
    from ccops.cli.common import settings_for as _settings

    settings = _settings(args)
    verb = args.backup_verb
    if verb == "verify":
        result = backup.verify_backup(Path(args.file))
        _out(args, {"file": args.file, "ok": result.ok, "reason": result.reason}, f"{args.file}: {result.reason}")
        return 0 if result.ok else EXIT_CRITICAL
    if verb == "list":
        rows = [b.row() for b in backup.list_backups(settings.effective_backup_dir, kinds=backup.KINDS,
                                                     app_zone=settings.logs_timezone)]
        text = "\n".join(f"{r['file']}  {r['kind']:4}  {r['origin']:13}  {r['bytes']:>12,}  "
                         f"{r['reason'] if r['verified'] else 'NOT VERIFIED: ' + r['reason']}"
                         for r in rows) or f"no backups in {settings.effective_backup_dir}"
        _out(args, [{**r, "created": r["created"].isoformat()} for r in rows], text)
        return 0
    if verb == "prune":
        b = settings.backup
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        plan = backup.plan_retention(settings.effective_backup_dir, now, b.retention_days, b.keep_verified,
                                     settings.logs_timezone)
        listing = "\n".join(f"{r['action']:6}  {r['file']}  ({r['reason']})" for r in plan.rows()) or "no backups"
        if args.dry_run or not plan.delete:
            _out(args, {"plan": plan.rows(), "bytes_freed": plan.bytes_freed, "dry_run": True},
                 f"{listing}\nwould free {plan.bytes_freed:,} bytes")
            return 0
        require_yes(args, f"delete {len(plan.delete)} backup files ({plan.bytes_freed:,} bytes)")
        freed = backup.apply_retention(plan)
        notes = "".join(f"\n{note}" for note in plan.notes)
        _out(args, {"plan": plan.rows(), "bytes_freed": freed, "dry_run": False, "notes": plan.notes},
             f"{listing}\nfreed {freed:,} bytes{notes}")
        return 0
    if verb == "test":
        tested = backup.restore_test(settings, Path(args.file) if args.file else None)
        bad = [r for r in tested.counts if not r["ok"]]
        text = (f"restore test: {tested.restored_text}, {len(tested.counts) - len(bad)}/{len(tested.counts)} "
                f"tables match, {tested.amcheck_detail}, scratch database dropped")
        _out(args, {"backup": str(tested.backup), "restore_s": tested.restore_s, "jobs": tested.jobs,
                    "counts": tested.counts, "amcheck": tested.amcheck_detail, "ok": tested.ok}, text)
        return 0 if tested.ok else EXIT_CRITICAL
    made = backup.create_backup(settings, compression=args.compression, via=args.via)
    lines = [f"{made.path}: {made.manifest['size']:,} bytes in {made.duration_s:.1f} s, {made.reason}"]
    if made.manifest.get("row_counts_note"):
        lines.append(made.manifest["row_counts_note"])
    data: dict[str, Any] = {"file": str(made.path), "verified": made.verified, "reason": made.reason,
                            "duration_s": round(made.duration_s, 3), "manifest": made.manifest}
    code = 0 if made.verified else EXIT_CRITICAL
    if made.verified and (settings.backup.include_env or settings.backup.include_logs):
        # like backup.sh: the .env and the logs beside the dump; a failed copy is a warning, the dump stands
        copies = backup.save_app_copies(settings)
        data["copies"] = [{"file": str(c.path), "verified": c.ok, "reason": c.reason} for c in copies]
        lines += [f"{c.path}: {c.reason}" if c.ok else f"{c.path.name} FAILED: {c.reason}" for c in copies]
        if not all(c.ok for c in copies):
            code = EXIT_WARNING
    if made.verified and settings.backup.offsite and not args.no_offsite:
        # the local backup is good either way; a failed off-site copy is a warning, not a lost backup
        try:
            copy = backup.offsite_copy(settings, made.path)
            data["offsite"] = {"ok": True, "destination": copy.destination, "files": copy.files,
                               "deleted": copy.deleted, "notes": copy.notes}
            lines.append(f"off-site: {copy.line()}")
        except backup.BackupError as exc:
            data["offsite"] = {"ok": False, "error": str(exc)}
            lines.append(f"off-site copy FAILED: {exc}")
            code = EXIT_WARNING
    _out(args, data, "\n".join(lines))
    return code


def cmd_restore(args: argparse.Namespace) -> int:
    from ccops import backup
    from ccops.cli.common import require_yes
    from ccops.cli.common import settings_for as _settings
    from ccops.core.settings import mask_url

    settings = _settings(args)
    if args.from_offsite:  # before asking too: a copy that is missing or does not match is refused, exit 2
        from ccops.backup.offsite import fetch_offsite

        args.file = str(fetch_offsite(settings, args.file))
    if not Path(args.file).is_file():  # before asking: "not confirmed" would hide that there is nothing to restore
        raise backup.BackupError(f"restore: {args.file}: no such backup file; nothing was changed")
    backup.refuse_non_dump(Path(args.file))
    target = mask_url(backup.target_url(settings, args.restore_target))
    require_yes(args, f"replace {target} with {Path(args.file).name}")
    result = backup.restore_backup(settings, Path(args.file), args.restore_target, confirm=True, force=args.force,
                                   jobs=args.jobs, app_stopped=args.app_stopped)
    lines = [f"{s.name:18} {'ok' if s.ok else 'FAILED':6} {s.duration_s:7.1f} s  {s.detail}" for s in result.steps]
    _out(args, {"target": result.target, "ok": result.ok, "steps": [vars(s) for s in result.steps]},
         "\n".join(lines + [result.summary()]))
    return 0 if result.ok else EXIT_CRITICAL
