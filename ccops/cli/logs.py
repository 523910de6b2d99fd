"""`ccops logs summary`: the app's log records by level and hour.

Exit 1 when there is no app log file at all: 0 records would pass for a quiet day.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ccops.cli.common import Parser, print_json, settings_for


def register(sub: Any) -> None:
    p = sub.add_parser("logs", help="the app's logs")
    logs_sub = p.add_subparsers(dest="logs_verb", required=True, parser_class=Parser)
    q = logs_sub.add_parser("summary", help="records by level and hour, counted by the level field")
    q.add_argument("--since", default=None, help="ISO timestamp (default: 24 h before --until)")
    q.add_argument("--until", default=None, help="ISO timestamp (default: now)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_logs_summary)


def cmd_logs_summary(args: argparse.Namespace) -> int:
    from ccops import logs
    from ccops.core.context import parse_as_of

    settings = settings_for(args)
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
