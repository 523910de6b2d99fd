"""papermill's command line as the runner starts it: without two fixed costs of stock papermill.

- nbformat validates notebooks with jsonschema, whose format checker imports
  `rfc3987_syntax` when installed; that module compiles dozens of grammars at
  import time (about 1 s here), and the notebook schema never uses that format.
  Marking it absent makes jsonschema skip the format check, as it does when the
  package is not installed.
- After the last cell, papermill shuts the kernel down gracefully: it interrupts
  it, asks it to shut down, and polls until the interpreter has torn down every
  module the runbook imported (pandas, matplotlib, sqlalchemy: 0.4-1 s on this
  machine, against 0.1-0.3 s for an empty kernel). By then the kernel has nothing
  left to hand over: every output arrived before its cell was marked complete,
  the findings were appended and fsynced by the step that made them, and the
  kernel's history is in memory only. So the kernel is stopped at once
  (nbclient's `shutdown_kernel="immediate"`, a SIGKILL), as the runner would
  stop a hung one.

The runner and its papermill child both start this way.
"""

from __future__ import annotations

import functools
import sys


def skip_slow_format_grammars() -> None:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def stop_kernels_at_once() -> None:
    """Have the papermill CLI ask nbclient for an immediate kernel shutdown (an engine keyword of execute_notebook)."""
    import papermill.cli

    papermill.cli.execute_notebook = functools.partial(papermill.cli.execute_notebook, shutdown_kernel="immediate")


if __name__ == "__main__":
    skip_slow_format_grammars()
    stop_kernels_at_once()
    from papermill.cli import papermill

    sys.exit(papermill())
