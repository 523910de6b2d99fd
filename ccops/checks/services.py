"""Service checks: the guide's `docker-compose ps`, and the app's HTTP endpoints.

A service that is not running is CRITICAL: some part of the platform is down.
The endpoints are probed the way a monitor would (GET, short timeout): the
Flask API's `/api/status` must say `{"status": "running"}`; the guide's
`/health` probe is reported with a caller-chosen severity, because the weekly
audit treats a missing health endpoint as a warning while the system-down
runbook treats it as the outage.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pandas as pd

from ccops.context import RunContext, check
from ccops.findings import Finding, Status

RESTART_WARNING = 3


@check("services.status")
def service_status(ctx: RunContext) -> Finding:
    """State, health and restarts of every service of the configured backend."""
    from ccops.services import get_backend

    backend = get_backend(ctx.settings)
    if backend.name == "none":
        return Finding("services.status", Status.INFO, "no service backend configured; set service.backend "
                       "(compose, systemd or local) to check services")
    states = backend.status()
    table = pd.DataFrame([vars(s) for s in states], columns=["service", "state", "health", "restarts", "detail"])
    if table.empty:
        return Finding("services.status", Status.CRITICAL, f"{backend.name}: no services found", 0)
    down = [s for s in states if not s.running]
    flapping = [s for s in states if s.state == "restarting" or (s.restarts or 0) > RESTART_WARNING]
    if down:
        names = ", ".join(f"{s.service} {s.state}{' (' + s.health + ')' if s.health else ''}" for s in down)
        return Finding("services.status", Status.CRITICAL, f"{len(down)} of {len(states)} services down: {names}",
                       len(down), 0, data=table)
    if flapping:
        names = ", ".join(f"{s.service} ({s.restarts} restarts)" for s in flapping)
        return Finding("services.status", Status.WARNING, f"services restarting often: {names}", len(flapping),
                       RESTART_WARNING, data=table)
    return Finding("services.status", Status.OK, f"all {len(states)} services running ({backend.name})", 0, data=table)


def probe(url: str, timeout: float) -> tuple[int | None, str]:
    """HTTP status and body of a GET, or (None, reason)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace") if exc.fp else ""
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, str(reason)


def _endpoint(ctx: RunContext, check_id: str, url: str, severity: str, want_running: bool) -> Finding:
    code, body = probe(url, ctx.settings.apis.timeout_seconds)
    bad = Status(severity)
    if code is None:
        return Finding(check_id, bad, f"{url} not answering: {body}")
    if code != 200:
        return Finding(check_id, bad, f"{url} answered HTTP {code}", code, 200)
    if want_running:
        try:
            status = json.loads(body).get("status")
        except (ValueError, AttributeError):
            status = None
        if status != "running":
            return Finding(check_id, bad, f"{url} answered 200 but status is {status!r}, not 'running'", code, 200)
    return Finding(check_id, Status.OK, f"{url} answered HTTP 200", code, 200)


@check("services.status_endpoint")
def status_endpoint(ctx: RunContext, url: str | None = None, severity_if_down: str = "CRITICAL") -> Finding:
    """The Flask API's GET /api/status must answer {"status": "running"}."""
    return _endpoint(ctx, "services.status_endpoint", url or ctx.settings.effective_status_url(), severity_if_down, True)


@check("services.health_endpoint")
def health_endpoint(ctx: RunContext, url: str | None = None, severity_if_down: str = "WARNING") -> Finding:
    """The guide's `curl http://localhost:8000/health`."""
    return _endpoint(ctx, "services.health_endpoint", url or ctx.settings.effective_health_url(), severity_if_down, False)
