"""papermill's command line as the runner starts it: without two fixed costs of stock papermill.

- nbformat validates notebooks with jsonschema, whose format checker imports
  `rfc3987_syntax` when installed; that module compiles dozens of grammars at
  import time (about 1 s here), and the notebook schema never uses that format.
  Marking it absent makes jsonschema skip the format check, as it does when the
  package is not installed. The same goes for its other optional format
  checkers that nothing else here uses (durations, colours, URI templates...).
- papermill imports boto3 for its s3:// notebook paths (60-90 ms, before the
  kernel starts); the runner hands it local files only, so boto3 is marked
  absent in this process, and papermill's S3 handler becomes the one it has
  when boto3 is not installed (it would say so if an s3:// path ever came).
- After the last cell, papermill shuts the kernel down gracefully: it interrupts
  it, asks it to shut down, and polls until the interpreter has torn down every
  module the runbook imported (pandas, matplotlib, sqlalchemy: 0.4-1 s on this
  machine, against 0.1-0.3 s for an empty kernel). By then the kernel has nothing
  left to hand over: every output arrived before its cell was marked complete,
  the findings were appended and fsynced by the step that made them, and the
  kernel's history is in memory only. So the kernel is stopped at once
  (nbclient's `shutdown_kernel="immediate"`, a SIGKILL), as the runner would
  stop a hung one.
- papermill saves the whole notebook (validated, pretty-printed JSON: 3-5 ms for
  the daily one) when each cell starts and when it ends, markdown cells
  included, between one code cell and the next. A markdown cell changes nothing
  but its own papermill status, which the next save carries anyway, so only
  code cells are saved, and only when they start: the save as cell k+1 starts
  carries cell k's outputs and end as well, and the final save (papermill's,
  after the last cell, also after a failed or killed one) the last cell's. The
  file still shows every code cell running before it runs (what the progress
  line and a killed run's report read), and the final save is the same
  notebook; the kernel waits for one save between two cells instead of two
  (about 5 ms each for the daily runbook's 19 code cells).

- The kernel's five channels are Unix sockets in a private directory made for
  this run (jupyter_client's "ipc" transport), not TCP ports on 127.0.0.1.
  Over TCP, jupyter_client picks free ports, closes them, writes them into the
  connection file and starts the kernel, which binds them a second or more
  later; a port taken in between kills the kernel before it answers
  ("Kernel died before replying to kernel_info", jupyter/jupyter_client#154).
  With three test workers on two cores that happened to one of four runbooks
  started together; cron starting several runbooks (or several targets) at
  once is the same race. Socket files in a 0700 directory cannot be taken by
  anyone else, and no other local user can reach the kernel. The runner makes
  the directory and removes it when papermill has ended, however it ended (a
  killed papermill runs no exit handlers), and papermill removes it at exit
  too (a SIGKILLed runner cannot). Only when both are killed does an empty
  directory stay in the temp dir.

- The kernel starts through ccops.runbook.headless_kernel rather than
  ipykernel's launcher: the same kernel without the debugger (debugpy) that
  only JupyterLab's debugger panel uses (see that module).

- When papermill has written the notebook and stopped the kernel, the process
  exits at once (after flushing its output and logging) instead of tearing the
  interpreter down module by module: 0.15-0.2 s here, while the runner waits
  for it. Only a clean exit (papermill's own sys.exit with a number) takes this
  way; an exception leaves as it always did, traceback and all.

The runner and its papermill child both start this way.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from ccops.core.leave import exit_at_once

KERNEL_SOCKETS_ENV = "CCOPS_KERNEL_SOCKETS"  # the private directory the runner made for the kernel's sockets


# jsonschema's optional format checkers that nothing else in these processes imports: rfc3987_syntax
# (about 1 s of grammar compiling), and the rest about 50 ms together (isoduration brings arrow).
# idna and jsonpointer stay: HTTP clients and JSON patches use them too.
UNUSED_FORMAT_CHECKERS = ("rfc3987_syntax", "isoduration", "rfc3986_validator", "rfc3339_validator",
                          "webcolors", "uri_template", "fqdn")


def skip_unused_format_checkers() -> None:
    """Mark jsonschema's unused format checkers absent, as if not installed (see the module's docstring)."""
    for name in UNUSED_FORMAT_CHECKERS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def skip_s3_client() -> None:
    """papermill without its S3 handler: the runner's notebooks are local files (see the module's docstring)."""
    sys.modules.setdefault("boto3", None)  # type: ignore[arg-type]


def _engine_keywords(**keywords: Any) -> None:
    """Have the papermill CLI pass these keywords to execute_notebook, which hands them to nbclient."""
    import papermill.cli

    papermill.cli.execute_notebook = functools.partial(papermill.cli.execute_notebook, **keywords)


def stop_kernels_at_once() -> None:
    """Have nbclient stop the kernel at once after the last cell (see the module's docstring)."""
    _engine_keywords(shutdown_kernel="immediate")


def kernel_socket_dir() -> str:
    """A new private (0700) directory for a kernel's sockets: short, as a socket path has at most 107 bytes."""
    import tempfile

    return tempfile.mkdtemp(prefix="ccops-kernel-")


def kernels_over_unix_sockets() -> str:
    """Have nbclient start kernels on Unix sockets in a private directory (see the module's docstring); its path.

    The directory is the runner's (KERNEL_SOCKETS_ENV), else one made here; removed at exit either way.
    """
    import atexit
    import shutil

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    sockets = os.environ.get(KERNEL_SOCKETS_ENV, "") or kernel_socket_dir()
    atexit.register(shutil.rmtree, sockets, True)  # also the runner's: a SIGKILLed runner cannot remove it

    class UnixSocketKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            return os.path.join(sockets, "kernel")  # the channels are kernel-1 ... kernel-5 in there

        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return headless_kernel_command(super().format_kernel_cmd(extra_arguments))

    _engine_keywords(kernel_manager_class=UnixSocketKernelManager)
    return sockets


HEADLESS_KERNEL = "ccops.runbook.headless_kernel"


def headless_kernel_command(argv: list[str]) -> list[str]:
    """ipykernel's launcher in this Python swapped for ccops.runbook.headless_kernel (no debugger); else argv as is.

    Only the command of a kernelspec that runs `-m ipykernel_launcher` with a Python of this
    environment (its bin dir: that one imports ccops) changes; any other kernel starts as its spec says.
    """
    if "-m" not in argv or _bin_dir(argv[0]) != _bin_dir(sys.executable):
        return argv
    at = argv.index("-m")
    if argv[at + 1:at + 2] != ["ipykernel_launcher"]:
        return argv
    interpreter = [arg for arg in argv[:at] if arg != "-Xfrozen_modules=off"]  # only pydevd wants them off
    return [*interpreter, "-m", HEADLESS_KERNEL, *argv[at + 2:]]


def _bin_dir(executable: str) -> str:
    return os.path.realpath(os.path.dirname(os.path.abspath(executable)))  # not the binary's: a venv links it


def save_at_code_cells_only() -> None:
    """Save the whole notebook only when a code cell starts (the next start or papermill's final save has the rest)."""
    from papermill.engines import NotebookExecutionManager

    NotebookExecutionManager.cell_start = _unsaved_unless_code(NotebookExecutionManager.cell_start)
    NotebookExecutionManager.cell_complete = _unsaved_unless_code(NotebookExecutionManager.cell_complete,
                                                                  code_too=False)


def _unsaved_unless_code(method: Callable[..., Any], code_too: bool = True) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Any, cell: Any, *args: Any, **kwargs: Any) -> Any:
        if code_too and cell.get("cell_type") == "code":
            return method(self, cell, *args, **kwargs)
        self.save = _no_save  # shadows the manager's save for this call only
        try:
            return method(self, cell, *args, **kwargs)
        finally:
            del self.save

    return wrapper


def _no_save(**kwargs: Any) -> None:
    return None


def main() -> None:
    skip_unused_format_checkers()
    skip_s3_client()
    stop_kernels_at_once()
    kernels_over_unix_sockets()
    save_at_code_cells_only()
    from papermill.cli import papermill

    try:
        papermill()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            exit_at_once(done.code or 0)
        raise


if __name__ == "__main__":
    main()
