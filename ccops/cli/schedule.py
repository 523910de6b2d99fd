"""`ccops schedule show | install | remove`: the maintenance schedule in the user's crontab.

install and remove change the crontab, so without a terminal they need
--yes. The crontab program is `crontab` on PATH, or $CCOPS_CRONTAB_CMD.
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


def _warn_environment() -> None:
    """cron starts with an empty environment: CCOPS_* set in this shell will not be there."""
    names = sorted(n for n in os.environ if n.startswith("CCOPS_") and n not in ("CCOPS_CRONTAB_CMD",))
    if names:
        print(f"note: cron will not see {', '.join(names)} from this shell; put these settings in ccops.toml",
              file=sys.stderr)
