"""`ccops logs summary`: the app's log records by level and hour.

Exit 1 when there is no app log file at all: 0 records would pass for a quiet day.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ccops.cli.common import Parser, settings_for

_JSON_PIECES = 4096  # pieces of encoded JSON written at a time


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
        _write_json(summary.to_dict())
    else:
        print(summary.format_text())
    if summary.warning:  # no app log file at all: 0 records would pass for a quiet day
        print(f"ccops: warning: {summary.warning}", file=sys.stderr)
        return 1
    return 0


def _write_json(data: Any) -> None:
    """What print_json prints, written as it is encoded.

    A month's summary has hundreds of hourly rows; json.dumps would hold every piece of
    the text at once (several MB), so the command's peak memory would grow with the
    window. Pieces are written a few thousand at a time instead.
    """
    import json

    pieces: list[str] = []
    for piece in json.JSONEncoder(indent=2, default=str).iterencode(data):
        pieces.append(piece)
        if len(pieces) >= _JSON_PIECES:
            sys.stdout.write("".join(pieces))
            pieces.clear()
    pieces.append("\n")
    sys.stdout.write("".join(pieces))
