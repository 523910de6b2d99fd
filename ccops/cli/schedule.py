"""`ccops schedule show | install | remove | export`: the maintenance schedule in the user's crontab, or elsewhere.

install and remove change the crontab, so without a terminal they need
--yes. The crontab program is `crontab` on PATH, or $CCOPS_CRONTAB_CMD.
`export airflow` writes the same entries as Apache Airflow DAGs
(ccops.schedule.airflow); it changes nothing but the file it is told to write.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ccops.cli.common import Parser, print_json, require_yes, settings_for


def register(sub: Any) -> None:
    p = sub.add_parser("schedule", help="the maintenance schedule as crontab entries")
    verbs = p.add_subparsers(dest="schedule_verb", required=True, parser_class=Parser)
    q = verbs.add_parser("show", help="the entries, their next runs, and whether the crontab has them")
    q.add_argument("--after", default=None, help="ISO timestamp to compute next runs from (default now)")
    q.add_argument("--block", action="store_true", help="print the crontab block as it would be installed")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_show)
    for verb, text in (("install", "write (or rewrite) the ccops block of the crontab"),
                       ("remove", "take the ccops block out of the crontab")):
        q = verbs.add_parser(verb, help=text)
        q.add_argument("--yes", action="store_true", help="change the crontab without asking")
        q.add_argument("--json", action="store_true")
        q.set_defaults(handler=cmd_change)
    q = verbs.add_parser("export", help="the schedule for another scheduler: an Apache Airflow DAG file")
    q.add_argument("kind", choices=["airflow"], help="airflow: one DAG per entry, run through this ccops")
    q.add_argument("--output", metavar="FILE", default=None,
                   help="write the DAG file here (e.g. into Airflow's dags folder); default: print it")
    q.add_argument("--json", action="store_true", help="with --output: what was written, as data")
    q.set_defaults(handler=cmd_export)


def cmd_show(args: argparse.Namespace) -> int:
    from ccops import schedule
    from ccops.core.context import parse_as_of

    settings = settings_for(args)
    after = parse_as_of(args.after) if args.after else None
    data = schedule.show(settings, after=after.replace(tzinfo=_utc()) if after else None)
    if args.json:
        print_json(data)
        return 0
    if args.block:
        print(data["block"], end="")
        return 0
    print(f"schedule ({data['timezone']}): {data['status']}")
    width = max(len(r["name"]) for r in data["entries"]) if data["entries"] else 0
    for row in data["entries"]:
        missing = "  (runbook not found!)" if row["runbook_missing"] else ""
        print(f"  {row['name']:<{width}}  next {row['next_run'] or '-':<25}  {row['when']:<36} "
              f"{row['description']}{missing}")
    return 0


def _utc():
    from datetime import UTC

    return UTC


def cmd_change(args: argparse.Namespace) -> int:
    from ccops import schedule

    settings = settings_for(args)
    if args.schedule_verb == "install":
        schedule.load(settings)  # a bad [schedule] fails before anyone is asked anything
        require_yes(args, "install the ccops schedule into the crontab")
        change = schedule.install(settings)
        _warn_environment()
    else:
        require_yes(args, "remove the ccops schedule from the crontab")
        change = schedule.remove(settings)
    if args.json:
        print_json({"action": change.action, "entries": change.entries, "other_lines": change.other_lines})
    else:
        print(change.line())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ccops.core.fs import write_atomic
    from ccops.schedule import airflow

    settings = settings_for(args)
    # the target is the settings' (--target NAME, CCOPS_TARGET, else the only one), as the crontab block's is
    result = airflow.export(settings, lambda name: _declared_defaults(settings, name))
    for job in result.jobs:
        if job.entry.runbook and _declared_defaults(settings, job.entry.runbook) is None:
            print(f"note: runbook {job.entry.runbook} of entry {job.entry.name} not found: its task gets no retries",
                  file=sys.stderr)
    if not args.output:
        print(result.text, end="")
        return 0
    path = Path(args.output)
    write_atomic(path, result.text, mode=0o644)  # read by Airflow's own user; it holds no secret
    if args.json:
        print_json({"file": str(path.resolve()), "dags": [j.dag_id for j in result.jobs], "pool": result.pool,
                    "timezone": result.timezone, "pool_command": result.pool_command})
    else:
        print(f"wrote {len(result.jobs)} DAGs ({airflow.dag_prefix(result.target)}.*) to {path}, in {result.timezone}")
        print(f"create their pool once: {result.pool_command}")
    _warn_environment("Airflow's tasks")
    return 0


def _declared_defaults(settings: Any, runbook: str) -> dict[str, str] | None:
    """A runbook's parameter defaults as its parameters cell writes them; None when it cannot be read."""
    from ccops.core.errors import UsageError
    from ccops.core.runbooks import locate
    from ccops.runbook.parameters import declared_parameters

    try:
        _, path = locate(settings.effective_runbooks_dir, runbook)
        return {name: str(spec["default"]) for name, spec in declared_parameters(path).items()}
    except UsageError:
        return None


def _warn_environment(who: str = "cron") -> None:
    """cron (and Airflow's workers) start with an environment of their own: CCOPS_* set in this shell will not be there."""
    names = sorted(n for n in os.environ if n.startswith("CCOPS_") and n not in ("CCOPS_CRONTAB_CMD",))
    if names:
        print(f"note: {who} will not see {', '.join(names)} from this shell; put these settings in ccops.toml",
              file=sys.stderr)
