"""`ccops demo up | down | status`: the embedded demo's verbs, contributed through the `ccops.commands` entry point.

ccops assembles its parser from its own verb modules and then from whatever
installed packages register under `ccops.commands`; the demo is one of them,
so the command line never imports it (pyproject.toml names `register`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ccops.cli.common import format_info, print_json, require_yes, settings_for
from ccops.core.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the embedded Content Creator stand-in")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    p.add_argument("--days", type=int, default=30, help="days of history to generate")
    p.add_argument("--as-of", default=None, help="generate history ending at this instant (default now)")
    p.add_argument("--yes", action="store_true", help="up/down without asking (needed without a terminal)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ccops import demo

    settings = settings_for(args)
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
