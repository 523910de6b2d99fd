"""Service backends' public face: the names runbooks, checks and actions import.

The backends live in ccops.deploy.backends, one module each (compose,
systemd, process, none; base holds the interface and what they share);
other packages contribute theirs through the `ccops.backends` entry points
(the demo's `local`). This module keeps `from ccops.deploy.services import
get_backend` and friends working for every caller.
"""

from __future__ import annotations

import signal

from ccops.deploy.backends import BUILTIN, get_backend
from ccops.deploy.backends.base import (
    ACTION_TIMEOUT,
    LOGICAL,
    STATUS_TIMEOUT,
    Backend,
    BackendError,
    CommandBackend,
    ServiceState,
    UnknownBackend,
    check_verb,
    exec_tool,
    run_tool,
    tail_lines,
    tool_failure,
)
from ccops.deploy.backends.compose import (
    INSPECT_FORMAT,
    ComposeBackend,
    parse_compose_ps,
    parse_compose_services,
    parse_inspect_restarts,
)
from ccops.deploy.backends.none import NO_BACKEND, NoneBackend
from ccops.deploy.backends.process import (
    KILL_AFTER_S,
    Proc,
    ProcessBackend,
    cmdline_matches,
    crash_reason,
    find_processes,
    ping_database,
    read_proc,
    send_signal,
    strip_ansi,
)
from ccops.deploy.backends.systemd import (
    SYSTEMD_PROPERTIES,
    SystemdBackend,
    parse_systemctl_show,
    parse_systemctl_show_many,
    systemctl_blocks,
    systemd_state,
    unit_id,
)

__all__ = [
    "ACTION_TIMEOUT", "BUILTIN", "INSPECT_FORMAT", "KILL_AFTER_S", "LOGICAL", "NO_BACKEND",
    "STATUS_TIMEOUT", "SYSTEMD_PROPERTIES", "Backend", "BackendError", "CommandBackend", "ComposeBackend",
    "NoneBackend", "Proc", "ProcessBackend", "ServiceState", "SystemdBackend", "UnknownBackend", "check_verb",
    "cmdline_matches", "crash_reason", "exec_tool", "find_processes", "get_backend",
    "parse_compose_ps", "parse_compose_services", "parse_inspect_restarts", "parse_systemctl_show",
    "parse_systemctl_show_many", "ping_database", "read_proc", "run_tool", "send_signal", "signal",
    "strip_ansi", "systemctl_blocks", "systemd_state", "tail_lines", "tool_failure", "unit_id",
]
