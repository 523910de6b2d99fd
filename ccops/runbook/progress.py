"""`ccops run` on a terminal: "step k of n: <title>" while papermill works, nothing under cron.

papermill's own progress bar is off (it would fill cron mail and the run's
log with carriage returns). Instead a thread reads the output notebook that
papermill saves at the start of every cell: the latest started code cell is
the current step, and the markdown heading above it - the guide's step - is
its title.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from ccops.runbook.parameters import step_titles

POLL_SECONDS = 0.25
STARTED = ("running", "completed", "failed")


def wanted(stream: TextIO | None = None) -> bool:
    """Progress only for a person watching: stderr is a terminal and CCOPS_NO_PROGRESS is unset."""
    stream = stream or sys.stderr
    try:
        return stream.isatty() and not os.environ.get("CCOPS_NO_PROGRESS")
    except (AttributeError, ValueError):  # a closed or odd stream: stay quiet
        return False


def current_step(notebook: dict[str, Any]) -> tuple[int, int, str] | None:
    """(k, n, title) of the latest code cell papermill has started, counted among code cells; None before the first.

    Started means running or done: a cell quicker than one poll is never seen
    "running", yet it was a step. papermill's injected-parameters cell counts
    as a step like any other: it is the one the operator sees first in the
    executed notebook.
    """
    code = [c for c in notebook.get("cells", []) if c.get("cell_type") == "code"]
    started = [index for index, cell in enumerate(code)
               if (cell.get("metadata", {}).get("papermill") or {}).get("status") in STARTED]
    if not started:
        return None
    titles = step_titles(notebook)
    index = started[-1]
    return index + 1, len(code), titles[index] if index < len(titles) else ""


def _read(path: Path) -> dict[str, Any] | None:
    """The notebook as saved so far; None while it does not exist or is half-written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Watcher:
    """A daemon thread printing one line per new step; stop() ends it."""

    def __init__(self, output: Path, stream: TextIO, label: str) -> None:
        self.output, self.stream, self.label = output, stream, label
        self._stop = threading.Event()
        self._done = 0  # the steps already shown
        self._thread = threading.Thread(target=self._loop, name="ccops-progress", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the thread, then show the steps begun since its last poll.

        A notebook whose cells together take less than one poll interval (a
        small runbook, or every step after a slow one) would otherwise end
        with steps the operator never saw named.
        """
        gone = self._stop.is_set()  # set before stop() only when the terminal went away
        self._stop.set()
        self._thread.join(timeout=2)
        if not gone and not self._thread.is_alive():
            self.poll()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()

    def poll(self) -> None:
        """Print every step begun since the last poll (fast cells included), in order."""
        notebook = _read(self.output)
        step = current_step(notebook) if notebook else None
        if notebook is None or step is None or step[0] <= self._done:
            return
        titles = step_titles(notebook)
        k, n, _ = step
        try:
            for number in range(self._done + 1, k + 1):
                title = titles[number - 1] if number - 1 < len(titles) else ""
                print(f"{self.label}: step {number} of {n}" + (f": {title}" if title else ""),
                      file=self.stream, flush=True)
        except (OSError, ValueError):  # the terminal went away: the run goes on
            self._stop.set()
        self._done = k


def start(output: Path, label: str, stream: TextIO | None = None) -> Watcher | None:
    """A running Watcher when progress is wanted, else None (cron, pipes, --json consumers)."""
    stream = stream or sys.stderr
    return Watcher(output, stream, label).start() if wanted(stream) else None
