"""The kernel `ccops run` starts: ipykernel's own launcher, without the debugger a headless run never uses.

ipykernel imports debugpy (and pydevd behind it) in every kernel, so that
JupyterLab's debugger panel can attach: 0.07-0.15 s of CPU per kernel here, and
its kernelspec runs Python with frozen modules off for pydevd's breakpoints,
which makes every standard-library import at start-up read a .pyc. papermill
never sends a debug request, so the runner's kernels start through this module
instead (ccops.runbook.papermill_entry swaps it into the installed python3
kernelspec's command, nothing else): debugpy is marked absent, as if not
installed, and ipykernel answers a debug request by saying it has no debugger,
as it does then. The kernels JupyterLab starts for an operator keep theirs.

    python -m ccops.runbook.headless_kernel -f CONNECTION_FILE [ipykernel options]
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    # as ipykernel_launcher does: the working dir leaves sys.path while ipykernel loads (its shell puts it back)
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    sys.modules.setdefault("debugpy", None)  # type: ignore[arg-type]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
