"""System down: see what is down, restart through the backend, full reset if that was not enough.

The guide's sequence (ps, logs, restart, down/up, verify the database) is kept,
with two changes an on-call engineer would want: every restart waits for the
services to come back and says whether they did, and the full reset only runs
when the plain restart did not bring the system back.

"Back" means still running after the settle time, not "the command returned":
the real app's head dies at import, and a restart of it must read "crashed at
start: SyntaxError ...", never "restarted". For the plain-process deployment
the logs step reads error.log (where such a crash shows) and output.log.
The status endpoint is only probed when configured (http.status_url) or on
ccops' own demo: the app run with --scheduled has no HTTP server at all.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import pandas as pd

from ccops import actions
from ccops.core.context import RunContext, check, describe
from ccops.core.findings import Finding, Findings, Status, recovered
from ccops.core.settings import Settings

SERVICES = ("db", "app")
# what a verified restart resolves: the state, service status and logs found before it, and a failed first try
RESOLVES = ("system_down.state", "services.status", "system_down.logs", "action.restart", "action.full_reset")


@dataclass
class SystemState:
    """Is the platform up: every service running, the database answering, the status endpoint too."""

    services: pd.DataFrame
    database: str
    endpoint: str

    @property
    def reasons(self) -> list[str]:
        found = []
        if not self.services.empty:
            down = self.services[self.services["state"] != "running"]
            found += [f"{row.service} is {row.state}" + (f" ({row.reason})" if row.reason else "")
                      for row in down.itertuples()]
        if self.database:
            found.append(self.database)
        if self.endpoint:
            found.append(self.endpoint)
        return found

    @property
    def up(self) -> bool:
        return not self.reasons


def probe_database(settings: Settings) -> str:
    """'' when a trivial query works, else the one-line reason."""
    from sqlalchemy import text

    from ccops.core.db import connect

    try:
        with connect(settings.resolved_database_url(), statement_timeout_ms=5000) as conn:
            conn.execute(text("SELECT 1"))
        return ""
    except Exception as exc:  # noqa: BLE001
        reason = describe(exc)
        return reason if reason.startswith("database unreachable") else f"database unreachable: {reason}"


def probe_endpoint(url: str, timeout: float = 5) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return ""
            return f"status endpoint {url} answered HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"status endpoint {url} answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"status endpoint {url} not answering: {reason}"


COLUMNS = ["service", "state", "health", "restarts", "detail", "reason"]


def system_state(settings: Settings) -> SystemState:
    """Services by the backend, the database by a query, the status endpoint where there is one."""
    from ccops.checks.services import configured_status_url
    from ccops.deploy.services import get_backend

    rows = []
    try:
        for state in get_backend(settings).status():
            rows.append({"service": state.service, "state": state.state, "health": state.health,
                         "restarts": state.restarts, "detail": state.detail, "reason": state.reason})
    except Exception as exc:  # noqa: BLE001 - the backend itself may be what is broken
        rows.append({"service": "backend", "state": "unknown", "health": "", "restarts": None,
                     "detail": describe(exc), "reason": ""})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    url = configured_status_url(settings)
    endpoint = probe_endpoint(url, settings.apis.timeout_seconds) if url else ""
    return SystemState(frame, probe_database(settings), endpoint)


def up_words(settings: Settings) -> str:
    """What "up" was checked against: say so when no status endpoint was there to ask."""
    from ccops.checks.services import configured_status_url

    if configured_status_url(settings):
        return "services running, database and status endpoint answering"
    return "services running, database answering (no status endpoint configured: http.status_url)"


def wait_until_up(settings: Settings, timeout_s: float, interval_s: float = 1.0) -> SystemState:
    deadline = time.monotonic() + timeout_s
    while True:
        state = system_state(settings)
        if state.up or time.monotonic() >= deadline:
            return state
        time.sleep(interval_s)


# loguru's level field, PostgreSQL's FATAL, and a Python traceback's header and last line (error.log holds
# what never went through loguru: a crash at import ends "SyntaxError: ..."), after an optional "[file] " label
ERROR_LINE = re.compile(r"\| (ERROR|CRITICAL)\b|FATAL|Traceback \(most recent call last\)"
                        r"|^(\[[^\]]+\] )?([A-Za-z_][\w.]*)?(Error|Exception|Exit)(: |$)")


@check("system_down.logs")
def service_logs(ctx: RunContext, tail: int = 100) -> list[Finding]:
    """The guide's `docker-compose logs --tail=100`: the last lines of each service (process: error.log, output.log)."""
    from ccops.deploy.services import BackendError, get_backend

    backend = get_backend(ctx.settings)
    found = []
    for service in SERVICES:
        try:
            lines = backend.logs(service, tail)
        except Exception as exc:  # noqa: BLE001
            reason = str(exc) if isinstance(exc, BackendError) else describe(exc)
            status = Status.INFO if reason.startswith("not configured") else Status.UNKNOWN
            found.append(Finding(f"system_down.logs:{service}", status, f"no logs for {service}: {reason}"))
            continue
        errors = [line for line in lines if ERROR_LINE.search(line)]
        table = pd.DataFrame({"line": lines[-tail:]})
        status = Status.WARNING if errors else Status.INFO
        summary = f"{service}: last {len(lines)} log lines, {len(errors)} of them ERROR/CRITICAL/FATAL"
        if errors:
            summary += f"; latest: {ctx.excerpt(errors[-1], 160)}"
        found.append(Finding(f"system_down.logs:{service}", status, summary, len(errors), data=table))
    return found


@check("system_down.state")
def current_state(ctx: RunContext) -> Finding:
    """Step 1 and the verdict: which of the services, database and status endpoint are down."""
    state = system_state(ctx.settings)
    if state.up:
        return Finding("system_down.state", Status.OK, f"the system is up: {up_words(ctx.settings)}",
                       0, data=state.services)
    return Finding("system_down.state", Status.CRITICAL, "DOWN: " + "; ".join(state.reasons), len(state.reasons),
                   data=state.services)


def restart_services(ctx: RunContext, dry_run: bool = True, confirm: bool = False, wait_s: float = 60) -> Findings:
    """Step 3: restart every service through the backend, then wait for them to come back."""
    from ccops.deploy.services import get_backend

    if system_state(ctx.settings).up:
        return ctx.record([Finding("action.restart", Status.OK, "not needed: the system is up")])
    backend = get_backend(ctx.settings)

    def run() -> str:
        backend.restart(None)  # the process backend raises "app crashed at start: ..." here
        state = wait_until_up(ctx.settings, wait_s)
        if not state.up:
            raise RuntimeError("still down after the restart: " + "; ".join(state.reasons))
        return "; ".join(filter(None, [getattr(backend, "last_result", ""), "all services back up"]))

    return actions.guarded(ctx, "restart", f"restart all services ({backend.describe_action('restart', None)})",
                           run, dry_run, confirm)


def full_reset(ctx: RunContext, dry_run: bool = True, confirm: bool = False, wait_s: float = 90) -> Findings:
    """Step 4: only when still down after the restart: stop everything, start everything."""
    from ccops.deploy.services import get_backend

    state = system_state(ctx.settings)
    if state.up:
        return ctx.record([Finding("action.full_reset", Status.OK, "not needed: the system is up")])
    backend = get_backend(ctx.settings)

    def run() -> str:
        backend.stop(None)  # every backend stops the app first, then the database
        backend.start(None)  # and starts the database first; the process backend leaves an unconfigured db alone
        after = wait_until_up(ctx.settings, wait_s)
        if not after.up:
            raise RuntimeError("still down after the full reset: " + "; ".join(after.reasons))
        return "all services back up"

    description = (f"full reset: {backend.describe_action('stop', None)}, then "
                   f"{backend.describe_action('start', None)} (still down: {'; '.join(state.reasons)})")
    return actions.guarded(ctx, "full_reset", description, run, dry_run, confirm)


@check("system_down.verdict")
def verdict(ctx: RunContext) -> Finding:
    """The last word: is the system up now, and was it brought back by this run."""
    state = system_state(ctx.settings)
    acted = [r for r in actions.timeline_of(ctx) if r.executed and r.ok]
    if state.up:
        how = f" after {', '.join(r.step for r in acted)}" if acted else ""
        summary = f"UP{how}: {up_words(ctx.settings)}"
        if acted:  # verified recovery: what step 1 found is this run's incident, resolved (findings.assess)
            return recovered("system_down.verdict", summary, RESOLVES)
        return Finding("system_down.verdict", Status.OK, summary)
    hint = "" if acted else " (nothing was changed: run again with dry_run = False and confirm = True)"
    return Finding("system_down.verdict", Status.CRITICAL, "STILL DOWN: " + "; ".join(state.reasons) + hint,
                   len(state.reasons), data=state.services)
