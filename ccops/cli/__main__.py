"""`python -m ccops.cli`: the same entry point as the `ccops` command (tests and cron use it without PATH)."""

import sys

from ccops.cli import main

sys.exit(main())
