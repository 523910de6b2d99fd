"""Exception types that map to the documented exit codes.

The command line turns each into one line on stderr and its exit code, so a
cron mail says what went wrong without a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_UNKNOWN = 3
EXIT_USAGE = 64
EXIT_TEMPFAIL = 75


class CcopsError(Exception):
    """Base of ccops' own errors: the message is what the operator sees."""

    exit_code = EXIT_UNKNOWN


class UsageError(CcopsError):
    """Bad input: an unknown parameter, a wrong type, a bad settings value."""

    exit_code = EXIT_USAGE


class AlreadyRunning(CcopsError):
    """Another run holds the lock; cron should just try again next time."""

    exit_code = EXIT_TEMPFAIL


class NotConfirmed(CcopsError):
    """A changing verb ran without a terminal and without --yes: nothing was done."""

    exit_code = EXIT_USAGE


class NotConfigured(CcopsError):
    """A step needs a setting this deployment has not set (no demo default applies to a real deployment).

    `setting` is the dotted key to set (e.g. `paths.log_dir`), `what` says what it is and which
    environment variable sets it. `optional` marks a probe the app may not have at all (the real
    app serves no /health): its absence is reported, but is no sign of trouble. The check decorator
    turns this error into a "not configured: set <setting>" finding; a verb exits 3 (UNKNOWN).
    """

    exit_code = EXIT_UNKNOWN

    def __init__(self, setting: str, what: str = "", optional: bool = False) -> None:
        self.setting = setting
        self.what = what
        self.optional = optional
        super().__init__(f"not configured: set {setting}" + (f" ({what})" if what else ""))
