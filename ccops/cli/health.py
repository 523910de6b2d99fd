"""`ccops health`: the guide's health check, what cron runs hourly, so it imports only the check itself."""

from __future__ import annotations

import argparse
from typing import Any

from ccops.cli.common import print_json, settings_for


def register(sub: Any) -> None:
    p = sub.add_parser("health", help="the guide's health check, fast, for cron")
    p.add_argument("--as-of", default=None, help="ISO timestamp to measure back from (default now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_health)


def cmd_health(args: argparse.Namespace) -> int:
    from ccops.core import health  # the rule alone: not the notebook steps of ccops.checks.health

    settings = settings_for(args)
    report = health.run_health(settings, as_of=args.as_of)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.line())
    return report.exit_code
