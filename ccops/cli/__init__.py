"""`ccops ...`: one entry point for operators and cron.

Every failure ccops anticipates becomes one line on stderr and a documented
exit code (errors.py); a traceback means a bug in ccops. Handlers stay thin and
import their module lazily so `ccops health` from cron does not pay for
papermill or matplotlib.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from ccops import __version__
from ccops.core.errors import EXIT_UNKNOWN, EXIT_USAGE, CcopsError, NotConfirmed, UsageError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that exits 64 (EX_USAGE) on bad usage instead of 2, which means CRITICAL here.

    The error is one line, like every other failure (a cron mail's first line
    says it all); `--help` has the usage.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {' '.join(message.split())} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _settings(args: argparse.Namespace):
    """The invocation's settings, loaded once (main loads them before any verb imports its modules)."""
    from ccops.core.settings import load_settings

    cached = getattr(args, "_settings", None)
    if cached is None:
        cached = load_settings(getattr(args, "config", None))
        args._settings = cached
    return cached


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def require_yes(args: argparse.Namespace, what: str) -> None:
    """A changing verb needs --yes without a terminal; with one, it asks."""
    if getattr(args, "yes", False):
        return
    if sys.stdin.isatty():
        answer = input(f"{what}? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return
    raise NotConfirmed(f"{what}: not confirmed (pass --yes); nothing was changed")


# ---- handlers ---------------------------------------------------------------

def cmd_config_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    shown = settings.to_display()
    if args.json:
        print_json(shown)
    else:
        for key, value in shown.items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    print(f"{key}.{sub} = {readable(sub_value)}")
            else:
                print(f"{key} = {readable(value)}")
    return 0


def readable(value: Any) -> str:
    """A setting or status value as an operator reads it, never a Python repr.

    Lists become comma-separated (`/, /var`), nothing becomes `(none)` or
    `(not set)`, booleans `yes`/`no`; `--json` keeps the exact values.
    """
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(readable(item) for item in value) if value else "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{key}={readable(item)}" for key, item in value.items()) if value else "(none)"
    text = str(value)
    return text if text else "(not set)"


def cmd_config_check(args: argparse.Namespace) -> int:
    """Every section checked now, as cron would meet it later (a bad key: one line naming it, exit 64), then
    each piece of the configuration tried for real: database and schema, log files, the app's .env, the
    backend, backups, the health probe (ccops.checks.configuration); exit 0 all OK, 1 warnings, 2 failures."""
    from ccops import archive, schedule
    from ccops.alerts import config as alerts_config
    from ccops.analytics.abtests import confidence_setting
    from ccops.analytics.costs import cost_settings
    from ccops.checks import configuration as config_check
    from ccops.checks.security import security_settings

    settings = _settings(args)
    for check in (alerts_config.load, schedule.load, security_settings, cost_settings, archive.keep_days_setting,
                  confidence_setting):
        check(settings)
    where = settings.config_file or "no settings file (defaults and CCOPS_* environment)"
    lines = config_check.run(settings)  # then the configuration proved against the real thing
    code = config_check.exit_code(lines)
    if args.json:
        print_json({"ok": code == 0, **config_check.to_json(settings, lines)})
        return code
    kind = f"a deployment ({settings.source})" if settings.source != "settings" else "a deployment"
    print(f"settings OK: {where}")
    print(f"checking {kind} (exit 0 all OK, 1 warnings, 2 failures):")
    for line in lines:
        print(f"  {line}")
    return code


def cmd_health(args: argparse.Namespace) -> int:
    from ccops.checks import health

    settings = _settings(args)
    report = health.run_health(settings, as_of=args.as_of)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.line())
    return report.exit_code


def cmd_run(args: argparse.Namespace) -> int:
    from ccops.runbook import runner

    settings = _settings(args)
    if args.help:
        print(run_help(args, settings))
        return 0
    if not args.runbook:
        args.run_parser.error("the following arguments are required: runbook")
    result = runner.run_runbook(settings, args.runbook, args.param or [], timeout=args.timeout)
    if args.json:
        print_json(result.record)
    else:
        print(result.line())
    return result.exit_code


def run_help(args: argparse.Namespace, settings: Any) -> str:
    """`ccops run [RUNBOOK] --help`: the verb's usage, then the runbook's purpose and parameters.

    The parameters (type, default, the comment of the parameters cell) are read
    from the notebook itself, so the help is always the runbook's own.
    """
    from ccops.core import runbooks
    from ccops.runbook.parameters import describe_parameters, runbook_purpose

    text = args.run_parser.format_help()
    root = settings.effective_runbooks_dir
    if not args.runbook:
        return text + "\nrunbooks: " + ", ".join(runbooks.available(root)) + "\n(`ccops run RUNBOOK --help` lists its parameters)"
    name, path = runbooks.locate(root, args.runbook)
    lines = describe_parameters(path)
    table = "\n".join(f"  {line}" for line in lines) if lines else "  (none)"
    return (f"{text}\nrunbook {name}: {runbook_purpose(path)}\n\n"
            f"parameters (set with -p NAME VALUE; name, type, default, meaning):\n{table}")


def cmd_runbooks(args: argparse.Namespace) -> int:
    """The runbooks `ccops run` knows: each one's purpose (its first heading and sentence) and parameters."""
    from ccops.core import runbooks
    from ccops.runbook.parameters import declared_parameters, parameter_type, runbook_purpose

    settings = _settings(args)
    root = settings.effective_runbooks_dir
    names = runbooks.available(root)
    if not names:
        raise UsageError(f"{root}: no runbooks there (set paths.runbooks_dir or CCOPS_RUNBOOKS_DIR)")
    rows = []
    for name in names:
        path = root / f"{name}.ipynb"
        params = declared_parameters(path)
        rows.append({"runbook": name, "purpose": runbook_purpose(path),
                     "parameters": {k: {"type": getattr(parameter_type(v), "__name__", "str"),
                                        "default": v["default"], "help": v["help"]} for k, v in params.items()}})
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['runbook']}\n  {row['purpose']}")
            shown = " ".join(f"{k}={v['default']}" for k, v in row["parameters"].items() if k != "config")
            if shown:
                print(f"  parameters: {shown}")
        print("\n`ccops run RUNBOOK --help` explains each parameter.")
    return 0


def cmd_reports_list(args: argparse.Namespace) -> int:
    from ccops import archive

    settings = _settings(args)
    records = archive.list_records(settings.archive_dir, runbook=args.runbook, outcome=args.outcome)
    if args.json:
        print_json(records)
    else:
        print(archive.format_records(records, settings.archive_dir))
    return 0


def cmd_reports_index(args: argparse.Namespace) -> int:
    from ccops import archive

    settings = _settings(args)
    records = archive.rebuild_index(settings.archive_dir)
    where = settings.archive_dir / archive.INDEX_HTML
    if args.json:
        print_json({"runs": len(records), "index_html": str(where), "index_json": str(settings.archive_dir / archive.INDEX_JSON)})
    else:
        print(f"index of {len(records)} runs: {where}")
    return 0


def cmd_reports_ack(args: argparse.Namespace) -> int:
    """A reviewer's acknowledgement, kept beside the run record (never in it); the index shows it."""
    from ccops import archive
    from ccops.runbook.runner import user_at_host

    settings = _settings(args)
    record_path = archive.resolve_record(settings.archive_dir, args.run)
    require_yes(args, f"record that {user_at_host()} reviewed {record_path.name}")
    entry = archive.acknowledge(record_path, user_at_host(), args.note or "")
    archive.rebuild_index(settings.archive_dir)
    print_json({"run": str(record_path), **entry}) if args.json else print(
        f"{record_path.name}: reviewed by {entry['by']} at {entry['at']}")
    return 0


def cmd_reports_recheck(args: argparse.Namespace) -> int:
    """Re-execute an archived run for its own as_of and compare (ccops.runbook.recheck): exit 0 reproduces, 1 differs."""
    from ccops.runbook import recheck

    result = recheck.recheck(_settings(args), args.run, timeout=args.timeout)
    print_json(result.to_dict()) if args.json else print(result.text())
    return result.exit_code


def cmd_reports_prune(args: argparse.Namespace) -> int:
    """Archive retention: a dry run unless confirmed (--yes, or yes at the terminal's prompt)."""
    from datetime import UTC, datetime

    from ccops import archive
    from ccops.core.errors import UsageError

    settings = _settings(args)
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
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ccops import demo

    settings = _settings(args)
    if args.action == "up":
        if args.days < 5:  # bad usage is exit 64 before anything is asked
            raise UsageError(f"--days must be at least 5 (the demo's incidents reach 4 days back), got {args.days}")
        require_yes(args, "start the demo and regenerate its database, logs and .env")
        info = demo.up(settings, seed=args.seed, days=args.days, as_of=args.as_of)
    elif args.action == "down":
        require_yes(args, "stop the demo's app and database")
        info = demo.down(settings)
    else:
        info = demo.status(settings)
    if args.json:
        print_json(info)
    else:
        print(format_info(info))
    return 0


def format_info(info: dict[str, Any]) -> str:
    """`key: value` lines; a list of records (the demo's services) as one indented line per record."""
    lines = []
    for key, value in info.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            lines.append(f"{key}:")
            for item in value:
                head = item.get("service") or item.get("name") or ""
                rest = ", ".join(f"{k} {readable(v)}" for k, v in item.items()
                                 if k not in ("service", "name") and v not in (None, "", [], {}))
                lines.append(f"  {head}: {rest}" if head else f"  {rest}")
        else:
            lines.append(f"{key}: {readable(value)}")
    return "\n".join(lines)


def cmd_logs_summary(args: argparse.Namespace) -> int:
    from ccops import logs
    from ccops.core.context import parse_as_of

    settings = _settings(args)
    until = parse_as_of(args.until)
    since = parse_as_of(args.since) if args.since else None
    summary = logs.summary_for_settings(settings, since=since, until=until)
    if args.json:
        print_json(summary.to_dict())
    else:
        print(summary.format_text())
    if summary.warning:  # no app log file at all: 0 records would pass for a quiet day
        print(f"ccops: warning: {summary.warning}", file=sys.stderr)
        return 1
    return 0


# ---- parser -----------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ccops", description="Run the Content Creator maintenance guide as archived runbooks.")
    parser.add_argument("--version", action="version", version=f"ccops {__version__}")
    parser.add_argument("--config", help="settings file (default: $CCOPS_CONFIG, then ./ccops.toml)")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="run a runbook with papermill and archive the report", add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help and the runbook's parameters")
    p.add_argument("runbook", nargs="?", help="runbook name, e.g. daily or emergency/system_down")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set a parameter")
    p.add_argument("--timeout", type=int, default=None, help="wall-clock limit in seconds")
    p.add_argument("--json", action="store_true", help="print the run record as JSON")
    p.set_defaults(handler=cmd_run, run_parser=p)

    p = sub.add_parser("runbooks", help="the runbooks `ccops run` knows, with their purpose and parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runbooks)

    p = sub.add_parser("health", help="the guide's health check, fast, for cron")
    p.add_argument("--as-of", default=None, help="ISO timestamp to measure back from (default now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_health)

    p = sub.add_parser("demo", help="the embedded Content Creator stand-in")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    p.add_argument("--days", type=int, default=30, help="days of history to generate")
    p.add_argument("--as-of", default=None, help="generate history ending at this instant (default now)")
    p.add_argument("--yes", action="store_true", help="up/down without asking (needed without a terminal)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("logs", help="the app's logs")
    logs_sub = p.add_subparsers(dest="logs_verb", required=True, parser_class=_Parser)
    q = logs_sub.add_parser("summary", help="records by level and hour, counted by the level field")
    q.add_argument("--since", default=None, help="ISO timestamp (default: 24 h before --until)")
    q.add_argument("--until", default=None, help="ISO timestamp (default: now)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_logs_summary)

    p = sub.add_parser("reports", help="the run archive")
    reports_sub = p.add_subparsers(dest="reports_verb", required=True, parser_class=_Parser)
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
    q.add_argument("run", help="the run's record (or any of its files), or runbook/STAMP as `reports list` shows")
    q.add_argument("--timeout", type=int, default=None, help="wall-clock limit in seconds")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_recheck)
    q = reports_sub.add_parser("ack", help="record that you reviewed a run (shown in the index)")
    q.add_argument("run", help="the run's record (or any of its files), or runbook/STAMP as `reports list` shows")
    q.add_argument("--note", default="", help="what the reviewer concluded")
    q.add_argument("--yes", action="store_true", help="record without asking")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_reports_ack)

    p = sub.add_parser("config", help="settings")
    config_sub = p.add_subparsers(dest="config_verb", required=True, parser_class=_Parser)
    q = config_sub.add_parser("show", help="effective settings, secrets masked")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_config_show)
    q = config_sub.add_parser("check", help="check the settings, then prove them: database, logs, .env, backend, backups, health probe")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_config_check)

    for extend in EXTENSIONS:
        extend(sub)
    return parser


# Modules that add verbs of their own (backup, alerts, schedule) append a function here.
EXTENSIONS: list[Callable[[Any], None]] = []


def _load_extensions() -> None:
    import importlib

    if EXTENSIONS:
        return
    for name in ("ccops.cli.backup", "ccops.cli.alerts", "ccops.cli.schedule"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        EXTENSIONS.append(module.register)


def main(argv: list[str] | None = None) -> int:
    """Run one verb; every failure is one line on stderr and a documented exit code.

    ccops' own errors carry their code (64 usage, 75 already running, ...). The
    rest are nets, so cron never reads Python's exit 1 (WARNING) off a crash:
    a file or disk error names the path and the errno (exit 3), a database
    that cannot be reached or refuses the login is one line with any password
    masked (exit 3; verbs that expect it say CRITICAL themselves), and
    anything else is an internal error, one line (exit 3) unless CCOPS_DEBUG
    asks for the traceback.
    """
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("CCOPS_APPLICATION_NAME", f"ccops/{args.verb}")  # ccops.core.db names its sessions so
    try:
        _settings(args)  # a broken settings file is one line before anything else is imported or touched
        return args.handler(args)
    except CcopsError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ccops ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except OSError as exc:
        return _fail(_os_error_line(exc), EXIT_UNKNOWN)
    except Exception as exc:  # noqa: BLE001 - the last net: one line for cron, the traceback on request
        if os.environ.get("CCOPS_DEBUG"):
            raise
        if _is_database_error(exc):
            return _fail(f"database error: {_first_line(getattr(exc, 'orig', None) or exc)}", EXIT_UNKNOWN)
        return _fail(f"internal error: {type(exc).__name__}: {_first_line(exc)} "
                     "(a bug in ccops; CCOPS_DEBUG=1 shows the traceback)", EXIT_UNKNOWN)


def _fail(message: str, code: int) -> int:
    """One line on stderr, passwords masked, whatever the message held."""
    try:
        from ccops.core.scrub import mask_patterns

        message = mask_patterns(message)
    except Exception:  # noqa: BLE001 - the error path itself must not fail; the URL masks still apply
        from ccops.core.settings import mask_url

        message = " ".join(mask_url(word) for word in message.split())
    line = " ".join(message.split()) or "failed"
    print(f"ccops: {line}", file=sys.stderr)
    return code


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _os_error_line(exc: OSError) -> str:
    """`<path>: <ERRNO> (<text>)`, e.g. `outputs/index.json: ENOSPC (No space left on device)`."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or _first_line(exc)
    where = ": ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = f"{name} ({text})" if name else text
    return f"{where}: {what}" if where else what


def _is_database_error(exc: BaseException) -> bool:
    """sqlalchemy's and psycopg's errors, told by their module so neither is imported here."""
    return any(cls.__module__.split(".")[0] in ("sqlalchemy", "psycopg", "psycopg2") for cls in type(exc).__mro__)
