"""The compose log source: `docker compose logs` of the app service, as the app wrote its lines."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from ccops.logs.clock import naive
from ccops.logs.errors import LogSourceError
from ccops.logs.format import LogFormat, default_format

if TYPE_CHECKING:  # pragma: no cover
    from ccops.core.settings import Settings

COMPOSE_TIMEOUT_SECONDS = 300
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
COMPOSE_PREFIX_RE = re.compile(r"^[A-Za-z0-9][\w.-]*\s*\| ?")


def parse_compose_lines(lines: Iterable[str], fmt: LogFormat | None = None) -> Iterator[str]:
    """`docker compose logs` lines as the app wrote them: container prefix and colours removed.

    Compose prints `app-1  | <line>` (the name padded to the longest container name);
    loguru may colour its own output. A line that already starts with a timestamp is
    left alone, so unprefixed output (`--no-log-prefix`) passes through.
    """
    fmt = fmt or default_format()
    for raw in lines:
        line = raw.rstrip("\r\n")
        if "\x1b" in line:
            line = ANSI_RE.sub("", line)
        if fmt.level_of(line, len(line)) is None:
            match = COMPOSE_PREFIX_RE.match(line)
            if match:
                line = line[match.end():]
        yield line


def compose_command(settings: Settings, since: datetime, until: datetime) -> list[str]:
    """`docker compose logs` of the app service over [since, until), as the configured project names it."""
    compose = settings.compose
    command = ["docker", "compose"]
    if compose.file:
        command += ["-f", compose.file]
    command += [
        "--project-directory", compose.project_dir or ".",
        "logs", "--no-color",
        "--since", naive(since).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--until", naive(until).strftime("%Y-%m-%dT%H:%M:%SZ"),
        compose.app_service,
    ]
    return command


def compose_log_lines(
    settings: Settings, since: datetime, until: datetime, timeout: float = COMPOSE_TIMEOUT_SECONDS,
    fmt: LogFormat | None = None,
) -> Iterator[str]:
    """The app service's lines from `docker compose logs`, stripped, streamed.

    Raises LogSourceError (one line) when docker is missing, the engine is down, or the
    command outlives `timeout`; the message is what docker said.
    """
    command = compose_command(settings, since, until)
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                text=True, encoding="utf-8", errors="replace",
            )
        except FileNotFoundError:
            raise LogSourceError(
                "docker not found: cannot run `docker compose logs` (set CCOPS_LOG_DIR to the app's log dir)"
            ) from None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            yield from parse_compose_lines(proc.stdout, fmt)
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if timed_out.is_set():
            raise LogSourceError(f"`docker compose logs` timed out after {timeout:g} s")
        if proc.returncode != 0:
            errors.seek(0)
            said = [ln.strip() for ln in errors.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            reason = said[-1] if said else f"exit status {proc.returncode}"
            raise LogSourceError(f"`docker compose logs` failed: {reason}")
