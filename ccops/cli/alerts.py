"""`ccops alerts check | list | digest | test`: the alert engine on the command line.

`check` is what cron runs every five minutes. Its exit code follows the
monitoring-plugin convention over the alerts left open (0 none, 1 warning,
2 critical) and is 3 when nothing worse is open but a channel could not
deliver, so a broken webhook is not silent. It changes only ccops' own
alert state and sends messages (its purpose), so it needs no --yes.
"""

from __future__ import annotations

import argparse
from typing import Any

from ccops.cli.common import Parser, print_json, settings_for


def register(sub: Any) -> None:
    p = sub.add_parser("alerts", help="evaluate the guide's alert rules and deliver alerts")
    verbs = p.add_subparsers(dest="alerts_verb", required=True, parser_class=Parser)
    q = verbs.add_parser("check", help="evaluate every rule; open, repeat and resolve alerts (cron: every 5 min)")
    q.add_argument("--as-of", default=None, help="ISO timestamp to evaluate at (default now)")
    q.add_argument("--dry-run", action="store_true", help="show what would be sent; send and save nothing")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_check)
    q = verbs.add_parser("list", help="the open alerts, most severe first")
    q.add_argument("--all", action="store_true", help="also the recently resolved ones")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_list)
    q = verbs.add_parser("digest", help="send the collected info alerts to the digest channels (cron: daily)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_digest)
    q = verbs.add_parser("test", help="send a test message to every channel (or one)")
    q.add_argument("--channel", default=None, help="channel name (see `ccops config show`)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_test)


def _print_outcome(args: argparse.Namespace, outcome: Any) -> None:
    from ccops.alerts.channels import describe

    if args.json:
        print_json(outcome.to_dict())
        return
    for item in outcome.notifications:
        print(describe(item))
    for note in getattr(outcome, "notes", []):
        print(f"note: {note}")
    print(outcome.line())


def cmd_check(args: argparse.Namespace) -> int:
    from ccops import alerts
    from ccops.core.context import parse_as_of

    settings = settings_for(args)
    outcome = alerts.check(settings, now=parse_as_of(args.as_of), send=not args.dry_run)
    _print_outcome(args, outcome)
    return outcome.exit_code


def cmd_list(args: argparse.Namespace) -> int:
    from ccops import alerts

    data = alerts.list_open(settings_for(args), include_resolved=args.all)
    if args.json:
        print_json(data)
        return 0
    if not data["open"]:
        print("no open alerts")
    for alert in data["open"]:
        print(f"{alert['severity'].upper():8}  since {alert['opened_at']}  {alert['title']}: {alert['message']}  "
              f"[{alert['key']}]")
    for alert in data.get("resolved", []):
        print(f"{'resolved':8}  {alert['opened_at']} .. {alert.get('resolved_at')}  {alert['title']}: "
              f"{alert['message']}  [{alert['key']}]")
    for name, count in data["pending"].items():
        print(f"{count} notification(s) waiting for channel {name} (rate limit or delivery failure)")
    for name, count in data["digest"].items():
        print(f"{count} info alert(s) waiting for the digest on channel {name}")
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    from ccops import alerts

    outcome = alerts.send_digest(settings_for(args))
    _print_outcome(args, outcome)
    return 3 if outcome.delivery_failed else 0


def cmd_test(args: argparse.Namespace) -> int:
    from ccops import alerts

    settings = settings_for(args)
    outcome = alerts.send_test(settings, args.channel)
    if args.json:
        print_json(outcome.to_dict())
    else:
        for report in outcome.channels:
            print(f"{report.channel}: " + (f"FAILED: {report.error}" if report.error else "sent"))
    return 3 if outcome.delivery_failed else 0
