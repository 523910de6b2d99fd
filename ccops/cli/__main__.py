"""`python -m ccops.cli`: the same entry point as the `ccops` command (tests and cron use it without PATH)."""

from ccops.cli import entry

entry()
