"""Leaving a ccops process without the interpreter's teardown.

Why: a process that rendered a runbook holds about a million objects (nbconvert,
jinja, pygments, pandas), and CPython's finalization frees them one by one: 0.15-0.25 s
after the work is done, on every `ccops run` and in papermill's child, which cron and
the operator wait for. Everything that teardown would still do for us is done here
first: the atexit functions run (logging's flush, weakref finalizers such as
temporary directories' removal, concurrent.futures' joins) and the standard streams
are flushed. Where a thread that is not a daemon still runs, the process leaves the
ordinary way, which waits for it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def _threads_still_running() -> bool:
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def exit_at_once(code: int) -> NoReturn:
    """sys.exit(code), minus the teardown of every object: atexit functions run, streams are flushed."""
    if _threads_still_running():
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more can reach it
            pass
    os._exit(code)
