"""Content Creator, the ccops demo's stand-in: `python main.py --scheduled` runs the scheduler.

Like the real main.py it imports the settings first, so a `.env` the settings
refuse stops it before anything runs; the traceback goes to stderr, which the
start script sends to logs/error.log. Then it logs the way the app's loguru
set-up does: to logs/content_creator_YYYY-MM-DD.log in the host's local time,
no zone, and the same records with ANSI colours to stdout (logs/output.log
under the start script), and runs until SIGTERM. Like the real app in
--scheduled mode it serves no HTTP. The agents' work itself is not simulated
here: the history in the database and the log files is written by
`ccops demo up`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

from src.config.settings import settings  # first: a refused .env stops the app here

LOG_DIR = Path("logs")
RESET = "\x1b[0m"
LEVEL_COLOURS = {  # loguru's defaults
    "TRACE": "\x1b[36m\x1b[1m", "DEBUG": "\x1b[34m\x1b[1m", "INFO": "\x1b[1m", "SUCCESS": "\x1b[32m\x1b[1m",
    "WARNING": "\x1b[33m\x1b[1m", "ERROR": "\x1b[31m\x1b[1m", "CRITICAL": "\x1b[41m\x1b[1m",
}
AGENTS = 16


def log(level: str, where: str, message: str) -> None:
    """One record: plain to the day's file (opened per record, so midnight starts a new file), coloured to stdout."""
    now = datetime.now()
    stamp = f"{now:%Y-%m-%d %H:%M:%S}"
    LOG_DIR.mkdir(exist_ok=True)
    with open(LOG_DIR / f"content_creator_{now:%Y-%m-%d}.log", "a", encoding="utf-8") as handle:
        handle.write(f"{stamp} | {level:<8} | {where} - {message}\n")
    name, _, function = where.partition(":")
    colour = LEVEL_COLOURS[level]
    sys.stdout.write(f"\x1b[32m{stamp}{RESET} | {colour}{level:<8}{RESET} | \x1b[36m{name}{RESET}:"
                     f"\x1b[36m{function}{RESET} - {colour}{message}{RESET}\n")
    sys.stdout.flush()


def _stop(signum: int, frame: object) -> None:
    log("INFO", "__main__:shutdown", f"Received {signal.Signals(signum).name}, shutting down scheduler")
    sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Content Creator")
    parser.add_argument("--scheduled", action="store_true", help="run the agents on their schedules until stopped")
    args = parser.parse_args(argv)
    if not args.scheduled:
        parser.error("the demo app runs in --scheduled mode only")
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log("INFO", "__main__:main", f"Starting Content Creator in scheduled mode (pid {os.getpid()}, "
                                 f"human_in_the_loop={settings.human_in_the_loop})")
    log("INFO", "src.orchestrator:start_scheduler", f"Scheduler started with {AGENTS} agents")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
