"""Service checks: the guide's `docker-compose ps`, and the app's HTTP endpoints.

A configured service (app or db) that is not running, or runs unhealthy, is
CRITICAL: part of the platform is down. A service restarting right now, or one
that has restarted more than thresholds.services.restarts times, is a WARNING: it is
flapping, and whether users notice is the status endpoint's verdict, which is
CRITICAL when the API does not answer. Other services of a compose project
(one-off tasks such as a migration container) only count when they are
restarting, dead or unhealthy: an exited one-off is normal.

The endpoints are probed the way a monitor would (GET, short timeout): the
Flask API's `/api/status` must say `{"status": "running"}`; the guide's
`/health` probe has a caller-chosen severity, because the weekly audit treats
a missing health endpoint as a warning while the system-down runbook treats
it as the outage.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Status
from ccops.core.scrub import excerpt
from ccops.core.settings import Settings, mask_url
from ccops.core.thresholds import Level, Services

if TYPE_CHECKING:
    from ccops.deploy.services import ServiceState

REQUIRED = ("db", "app")
TRANSIENT = ("restarting", "starting")
COLUMNS = ["service", "state", "health", "restarts", "detail"]


def _label(state: ServiceState) -> str:
    return f"{state.service} {state.state}" + (f" ({state.health})" if state.health else "")


def _down_label(state: ServiceState) -> str:
    """A down service with the backend's reason: "app stopped - last words in error.log: SyntaxError ..."."""
    return _label(state) + (f" - {state.reason}" if state.reason else "")


def assess(states: list[ServiceState], backend: str, restarts: Level | None = None) -> tuple[Status, str, int]:
    """Status, summary and number of problem services for a backend's states (pure: tested on samples).

    `restarts` is thresholds.services.restarts (None: its default).
    """
    restarts = Services.restarts if restarts is None else restarts
    if not states:
        return Status.CRITICAL, f"{backend}: no services found (nothing created, or the wrong project)", len(REQUIRED)
    seen = {s.service for s in states}
    missing = [name for name in REQUIRED if name not in seen]
    down, flapping, undecided = [], [], []
    for s in states:
        required = s.service in REQUIRED
        if required and s.state == "unknown":
            undecided.append(s)
        elif required and not s.running and s.state not in TRANSIENT:
            down.append(s)
        elif s.state in TRANSIENT or restarts.beyond(s.restarts or 0):
            flapping.append(s)
        elif not required and (s.state == "dead" or s.health == "unhealthy"):
            flapping.append(s)
    if down or missing:
        parts = [_down_label(s) for s in down] + [f"{name} not found" for name in missing]
        return Status.CRITICAL, f"{backend}: service down: {'; '.join(parts)}", len(parts)
    if undecided:
        parts = [f"{s.service}: {s.reason or s.detail or 'state unknown'}" for s in undecided]
        return Status.UNKNOWN, f"{backend}: cannot tell whether {', '.join(s.service for s in undecided)} "\
                               f"is up: {'; '.join(parts)}", len(parts)
    if flapping:
        parts = [_label(s) + (f", {s.restarts} restarts" if s.restarts else "") for s in flapping]
        return Status.WARNING, f"{backend}: services restarting: {'; '.join(parts)}", len(parts)
    running = ", ".join(_label(s) for s in states)
    return Status.OK, f"{backend}: all {len(states)} services up: {running}", 0


@check("services.status")
def service_status(ctx: RunContext) -> Finding:
    """State, health and restarts of every service of the configured backend."""
    from ccops.deploy.services import BackendError, get_backend

    ctx.settings.require("backend")  # a deployment naming no backend: "not configured: set service.backend"
    backend = get_backend(ctx.settings)
    if backend.name == "none":
        ctx.settings.require("backend")  # unset on a deployment: "not configured: set service.backend"
        return Finding("services.status", Status.INFO,
                       "no service backend configured; set service.backend (compose, systemd, process or local)")
    try:
        states = backend.status()
    except BackendError as exc:
        return Finding("services.status", Status.UNKNOWN, f"{backend.name} backend: {exc}")
    import pandas as pd  # here, not at the top: `config check` imports this module for its settings only

    table = pd.DataFrame([{c: getattr(s, c) for c in COLUMNS} for s in states], columns=COLUMNS)
    status, summary, problems = assess(states, backend.name, ctx.settings.thresholds.services.restarts)
    threshold = ctx.settings.thresholds.services.restarts.first if status == Status.WARNING else 0
    return Finding("services.status", status, summary, problems, threshold, data=table)


# ---- HTTP endpoints ----------------------------------------------------------------------

def probe(url: str, timeout: float) -> tuple[int | None, str]:
    """HTTP status and (start of the) body of a GET, or (None, why there was no answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
            return response.status, response.read(65536).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        body = exc.read(65536).decode("utf-8", "replace") if exc.fp else ""
        return exc.code, body
    except urllib.error.URLError as exc:
        return None, network_reason(exc.reason, timeout)
    except (OSError, ValueError) as exc:
        return None, network_reason(exc, timeout)


def network_reason(reason: object, timeout: float) -> str:
    """Why a request got no answer, in the words an operator uses (no errno numbers)."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listening)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return f"host name not resolved ({reason.strerror})"
    if isinstance(reason, ConnectionResetError):
        return "connection reset by the server"
    if isinstance(reason, ValueError):
        return f"not a usable URL ({reason})"
    return str(getattr(reason, "strerror", None) or reason)


def _endpoint(ctx: RunContext, check_id: str, url: str, severity: str, want_running: bool) -> Finding:
    bad = Status(str(severity).upper())
    shown = mask_url(url)
    code, body = probe(url, ctx.settings.apis.timeout_seconds)
    if code is None:
        return Finding(check_id, bad, f"{shown} not answering: {body}")
    if code != 200:
        return Finding(check_id, bad, f"{shown} answered HTTP {code}{_snippet(body)}", code, 200)
    if want_running:
        try:
            said = json.loads(body).get("status")
        except (ValueError, AttributeError):
            return Finding(check_id, bad, f"{shown} answered 200 but not with JSON{_snippet(body)}", code, 200)
        if said != "running":
            return Finding(check_id, bad, f"{shown} answered 200 with status {said!r}, not 'running'", code, 200)
        return Finding(check_id, Status.OK, f"{shown} answered 200, status 'running'", code, 200)
    return Finding(check_id, Status.OK, f"{shown} answered HTTP 200", code, 200)


def _snippet(body: str) -> str:
    text = excerpt(" ".join(body.split()), 120)
    return f": {text}" if text else ""


def configured_status_url(settings: Settings) -> str:
    """The status endpoint to probe: the configured one; the demo's only when ccops runs its own demo.

    FACTS: the app started with --scheduled (compose and production) runs no HTTP
    server at all, so a real deployment without http.status_url has nothing to probe.
    """
    return settings.optional("status_url") or ""


@check("services.status_endpoint")
def status_endpoint(ctx: RunContext, url: str | None = None, severity_if_down: str = "CRITICAL") -> Finding:
    """The Flask API's GET /api/status must answer 200 with {"status": "running"}."""
    target = url or ctx.settings.effective_status_url()  # unset on a deployment: "not configured" (INFO)
    return _endpoint(ctx, "services.status_endpoint", target, severity_if_down, want_running=True)


@check("services.health_endpoint")
def health_endpoint(ctx: RunContext, severity_if_down: str = "WARNING", url: str | None = None) -> Finding:
    """The guide's `curl http://localhost:8000/health`: any 200 is healthy."""
    target = url or ctx.settings.effective_health_url()
    return _endpoint(ctx, "services.health_endpoint", target, severity_if_down, want_running=False)
