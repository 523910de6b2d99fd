"""Live API rate-limit probes: what X and Anthropic say is left, from their response headers.

The guide: "Twitter: check via API headers; Anthropic: check dashboard". Both
APIs return their rate-limit state on every response, so one cheap request
each tells us: X's `GET /2/users/me` (x-rate-limit-limit / -remaining /
-reset as epoch seconds) and Anthropic's free `POST /v1/messages/count_tokens`
(anthropic-ratelimit-requests-limit / -remaining / -reset as RFC 3339, and
retry-after on 429). Probes run only when the credential's environment
variable is set, base URLs are settings (tests point them at 127.0.0.1), and
no token ever reaches a finding.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from typing import Any

from ccops.context import RunContext, check
from ccops.findings import Finding, Status


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name) if headers is not None else None
    return str(value) if value not in (None, "") else None


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def parse_rate_limit_headers(api: str, status_code: int, headers: Any, now: datetime) -> dict[str, Any]:
    """limit, remaining, reset_at (naive UTC) and retry_after (s) from either API's headers."""
    if api == "x":
        limit = _int(_header(headers, "x-rate-limit-limit"))
        remaining = _int(_header(headers, "x-rate-limit-remaining"))
        reset_epoch = _int(_header(headers, "x-rate-limit-reset"))
        reset_at = datetime.fromtimestamp(reset_epoch, timezone.utc).replace(tzinfo=None) if reset_epoch else None
    else:
        limit = _int(_header(headers, "anthropic-ratelimit-requests-limit"))
        remaining = _int(_header(headers, "anthropic-ratelimit-requests-remaining"))
        raw = _header(headers, "anthropic-ratelimit-requests-reset")
        try:
            reset_at = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(timezone.utc).replace(tzinfo=None) if raw else None
        except ValueError:
            reset_at = None
    retry_after = _int(_header(headers, "retry-after"))
    if reset_at is None and retry_after is not None:
        reset_at = now + timedelta(seconds=retry_after)
    return {"status_code": status_code, "limit": limit, "remaining": remaining, "reset_at": reset_at,
            "retry_after": retry_after}


def classify(api: str, info: dict[str, Any], warning_share: float) -> tuple[Status, str]:
    label = {"x": "X", "anthropic": "Anthropic"}.get(api, api)
    reset = f", resets {info['reset_at']:%Y-%m-%d %H:%M:%S} UTC" if info.get("reset_at") else ""
    if info["status_code"] == 429:
        return Status.CRITICAL, f"{label}: rate limit exceeded (HTTP 429){reset}"
    if info["status_code"] in (401, 403):
        return Status.UNKNOWN, f"{label}: credential rejected (HTTP {info['status_code']}): cannot read the limits"
    limit, remaining = info.get("limit"), info.get("remaining")
    if limit is None or remaining is None:
        return Status.UNKNOWN, f"{label}: HTTP {info['status_code']} without rate-limit headers"
    if limit and remaining / limit < warning_share:
        return Status.WARNING, f"{label}: only {remaining} of {limit} requests left{reset}"
    return Status.OK, f"{label}: {remaining} of {limit} requests left{reset}"


def _request(api: str, base_url: str, secret: str, timeout: float) -> tuple[int, Any]:
    if api == "x":
        request = urllib.request.Request(f"{base_url.rstrip('/')}/2/users/me",
                                         headers={"Authorization": f"Bearer {secret}"})
    else:
        body = json.dumps({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "ping"}]}).encode()
        request = urllib.request.Request(f"{base_url.rstrip('/')}/v1/messages/count_tokens", data=body, method="POST",
                                         headers={"x-api-key": secret, "anthropic-version": "2023-06-01",
                                                  "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


def probe(ctx: RunContext, api: str) -> Finding:
    s = ctx.settings.apis
    env_name, base_url = (s.x_token_env, s.x_base_url) if api == "x" else (s.anthropic_key_env, s.anthropic_base_url)
    check_id = f"apis.{api}.rate_limit"
    secret = os.environ.get(env_name, "")
    if not secret:
        return Finding(check_id, Status.INFO, f"not configured: set {env_name} to probe the {api} rate limit")
    try:
        code, headers = _request(api, base_url, secret, s.timeout_seconds)
    except (OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", exc)).replace(secret, "***")
        return Finding(check_id, Status.UNKNOWN, f"{api}: {base_url} not reachable: {reason}")
    info = parse_rate_limit_headers(api, code, headers, ctx.as_of)
    status, summary = classify(api, info, s.remaining_warning_share)
    value = info["remaining"] if info["remaining"] is not None else None
    return Finding(check_id, status, summary.replace(secret, "***"), value, info["limit"])


@check("apis.rate_limit")
def live_rate_limits(ctx: RunContext) -> list[Finding]:
    """X and Anthropic rate limits from their headers; Stripe has no probe."""
    return [
        probe(ctx, "x"),
        probe(ctx, "anthropic"),
        Finding("apis.stripe", Status.INFO, "Stripe: no probe; check the Stripe dashboard "
                "(limits are per second: 100 read requests/s in live mode)"),
    ]
