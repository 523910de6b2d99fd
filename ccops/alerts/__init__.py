"""Alerts: the guide's "Monitoring Alerts" list, evaluated every five minutes and delivered once.

    rules.py     findings and direct queries -> alert candidates (+ what each rule covered)
    deadman.py   scheduled runbooks that stopped running; backups that stopped being verified
    engine.py    candidates + state -> open / repeat / resolve notifications -> channels
    state.py     the state file, locked and written atomically
    channels.py  log, console, webhook (JSON or Slack), e-mail (SMTP, STARTTLS), command
    config.py    the [alerts] section, validated

The runner calls `alerts_for_run(settings, record)` before it archives a run (so a
full archive disk cannot lose the alert), and stores what was delivered in the record;
cron calls `ccops alerts check` every five minutes and `ccops alerts digest`
once a day.
"""

from ccops.alerts.config import AlertConfig, ChannelConfig
from ccops.alerts.config import load as load_config
from ccops.alerts.engine import Outcome, check, list_open, raise_from_run, send_digest, send_test

__all__ = [
    "AlertConfig",
    "ChannelConfig",
    "Outcome",
    "check",
    "list_open",
    "load_config",
    "raise_from_run",
    "send_digest",
    "send_test",
]
