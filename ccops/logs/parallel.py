"""Counting a directory's files in forked worker processes, one file per task, results in file order.

Why processes: a month of logs is some thirty files whose counts are independent (each
file is read with its own clock from its first line, and a record never spans two files),
and the work on one block (inflating, the numpy scan, the Python between them) holds the
GIL too often for threads to use a second core. Why fork: a worker inherits the job (the
window, the zone, the format with its numpy plan) instead of having it pickled or re-
importing numpy, and starts in milliseconds. A worker reads one file at a time in bounded
buffers and sends back counters of at most a day of hours, so memory does not grow with
the number of files. multiprocessing is imported on first use so `import ccops.logs` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

# below this many bytes on disk, forking costs more than a second core saves
PARALLEL_MIN_BYTES = 1 << 20

_job: Callable[[Any], Any] | None = None  # the job of this worker process, set by _start


def can_fork() -> bool:
    """Whether worker processes can be forked here safely.

    Linux only, not inside a daemonic worker (which may not have children), and
    only from a process with one thread: a fork copies every lock another
    thread may hold at that instant (logging's, the import lock, malloc's) into
    a child that can then wait on it forever. A Jupyter kernel always runs
    several threads (heartbeat, IOPub, control), so a runbook's log steps count
    in-process; cron's `ccops logs summary` has one thread and uses both cores.
    """
    import multiprocessing
    import threading

    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return False
    return not multiprocessing.current_process().daemon


def worth_it(paths: list[Path], workers: int, min_bytes: int = PARALLEL_MIN_BYTES) -> bool:
    """Whether counting `paths` in `workers` processes pays for the forks: two files or more, enough bytes."""
    if workers < 2 or len(paths) < 2:
        return False
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:
            continue  # the reader reports it
    return total >= min_bytes and can_fork()


def _start(job: Callable[[Any], Any]) -> None:
    global _job
    _job = job


def _run(item: Any) -> Any:
    assert _job is not None, "worker started without a job"
    return _job(item)


def map_in_order(job: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """job(item) for each item, in `workers` forked processes, yielded in the items' order.

    `job` reaches the workers through fork (never pickled); items and results are
    pickled, so keep both small. At most two items per worker are in flight, so what
    waits here does not grow with the number of items. A worker's exception is raised
    here; a worker that dies (killed, out of memory) raises BrokenProcessPool instead of
    leaving the caller waiting, which matters under cron. Closing the iterator early
    stops the workers.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    pending: deque[Future[Any]] = deque()
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(job,))
    try:
        for item in items:
            pending.append(executor.submit(_run, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
