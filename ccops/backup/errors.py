"""What can go wrong in a backup, verification or restore, and how it is said: one line, password masked.

The bottom of the backup engine: every other module of ccops.backup raises and
words its failures through these, so the command line prints one line naming
the step and exits 2 (75 for a busy lock) instead of a traceback.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from ccops.core.db import describe_error
from ccops.core.errors import EXIT_TEMPFAIL, CcopsError
from ccops.core.settings import mask_url


class BackupError(CcopsError):
    """A backup, verification or restore failed; nothing was half-written."""

    exit_code = 2


class BackupBusy(BackupError):
    """Another ccops process holds the backup dir's lock; cron should try again later."""

    exit_code = EXIT_TEMPFAIL


# What a step of backup, verify, restore or restore test can meet in normal operation: the database
# (refused, gone, denied), the disk, a client tool (missing, killed, timed out), or ccops' own refusals.
# Anything else is a bug and keeps its traceback.
DB_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, psycopg.Error)
STEP_ERRORS: tuple[type[BaseException], ...] = DB_ERRORS + (CcopsError, OSError, subprocess.SubprocessError)


def reason(exc: BaseException, url: str = "") -> str:
    """One line for an operator: the driver's or tool's first line, any URL's password masked."""
    if isinstance(exc, DB_ERRORS):
        return describe_error(exc, mask_url(url) if url else "")
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{where}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class StageFailed(BackupError):
    """A step of backup or restore test failed; its message already names the procedure and the step."""


@contextmanager
def stage(procedure: str, step: str, url: str = "") -> Iterator[None]:
    """Turn an expected failure inside one step into a BackupError naming the procedure, the step and why.

    The command line prints a CcopsError as one line and exits 2; a bare traceback
    would say neither which step stopped nor that nothing was written. A busy lock
    keeps its own exit code (75), an inner stage its own wording.
    """
    try:
        yield
    except (StageFailed, BackupBusy):
        raise
    except STEP_ERRORS as exc:
        raise StageFailed(f"{procedure} failed at {step}: {reason(exc, url)}") from None


def last_line(stderr: str, fallback: str) -> str:
    """A client tool's last stderr line: pg_dump and pg_restore put the reason there, after their context."""
    return (stderr.strip().splitlines() or [fallback])[-1]
