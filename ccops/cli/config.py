"""`ccops config show | check`: the effective settings, and the settings proved against the real deployment."""

from __future__ import annotations

import argparse
from typing import Any

from ccops.cli.common import Parser, print_json, readable, settings_for


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="settings")
    config_sub = p.add_subparsers(dest="config_verb", required=True, parser_class=Parser)
    q = config_sub.add_parser("show", help="effective settings, secrets masked")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_config_show)
    q = config_sub.add_parser("check", help="check the settings, then prove them: database, logs, .env, backend, backups, health probe")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=cmd_config_check)


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = settings_for(args)
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


def cmd_config_check(args: argparse.Namespace) -> int:
    """Every section checked now, as cron would meet it later (a bad key: one line naming it, exit 64), then
    each piece of the configuration tried for real: database and schema, log files, the app's .env, the
    backend, backups, the health probe (ccops.checks.configuration); exit 0 all OK, 1 warnings, 2 failures."""
    from ccops import archive, schedule
    from ccops.alerts import config as alerts_config
    from ccops.analytics.settings import confidence_setting, cost_settings
    from ccops.checks import configuration as config_check
    from ccops.checks.security import security_settings

    settings = settings_for(args)
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
