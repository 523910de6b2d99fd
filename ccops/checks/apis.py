"""Live API rate-limit probes: what X and Anthropic say is left, from their response headers.

The guide: "Twitter: check via API headers; Anthropic: check dashboard". Both
APIs report their rate-limit state on every response, so one cheap request
each tells us: X's `GET /2/users/me` (x-rate-limit-limit / -remaining /
-reset, the reset in epoch seconds) and Anthropic's free
`POST /v1/messages/count_tokens` (anthropic-ratelimit-requests-limit /
-remaining / -reset in RFC 3339, and retry-after on 429). A probe spends one
request of the budget it measures; that is the price of knowing.

The credentials are the app's own keys (FACTS.md): `TWITTER_BEARER_TOKEN`,
`ANTHROPIC_API_KEY`, `STRIPE_API_KEY` (names are settings: apis.*_env), read
from ccops' environment, else from the app's `.env` - unless the settings say
apis.app_env_credentials = false, as the demo's do: its `.env` holds fake
credentials that must never be sent anywhere.
Probes run only when a credential is found (an INFO finding says which key to
set otherwise), base URLs are settings (tests point them at 127.0.0.1), and no
token ever reaches a finding: summaries are built from headers and status codes
only, and scrubbed of the token besides.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Status, optional_not_configured

LABELS = {"x": "X", "anthropic": "Anthropic"}
HEADERS = {
    "x": ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"),
    "anthropic": ("anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining",
                  "anthropic-ratelimit-requests-reset"),
}
ANTHROPIC_VERSION = "2023-06-01"
PROBE_MODEL = "claude-sonnet-4-5"
STRIPE_NOTE = ("Stripe: no probe; check the Stripe dashboard "
               "(rate limits are per-request, 100 read/s in live mode)")


def credential(settings: Any, name: str) -> tuple[str, str]:
    """(value, where it came from) of the app's key `name`: the environment, else the app's .env.

    The app's settings read .env case-insensitively, so the key is matched so too.
    Not with apis.app_env_credentials = false (the demo's deployment says so: its .env's keys are fake).
    """
    if not name:
        return "", ""
    value = os.environ.get(name, "").strip()
    if value:
        return value, "environment"
    if not getattr(getattr(settings, "apis", None), "app_env_credentials", False):
        return "", ""  # e.g. the demo's .env: fake credentials, never sent
    from ccops.core.settings import read_env_file

    env_file = settings.optional("app_env_file")
    for key, found in read_env_file(env_file).items():
        if key.upper() == name.upper() and found.strip():
            return found.strip(), str(env_file)
    return "", ""


def _lower(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    return {str(k).lower(): str(v).strip() for k, v in items}


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return _naive_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _retry_after(value: str | None, now: datetime) -> int | None:
    """retry-after is seconds, or an HTTP date (RFC 9110); either way: seconds from now."""
    if not value:
        return None
    seconds = _int(value)
    if seconds is not None:
        return max(seconds, 0)
    try:
        when = _naive_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError):
        return None
    return max(int((when - now).total_seconds()), 0)


def parse_rate_limit_headers(api: str, status_code: int, headers: Any, now: datetime) -> dict[str, Any]:
    """limit, remaining, reset_at (naive UTC) and retry_after (s) from either API's headers."""
    found = _lower(headers)
    limit_name, remaining_name, reset_name = HEADERS[api]
    raw_reset = found.get(reset_name)
    if api == "x":
        epoch = _int(raw_reset)
        reset_at = datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None) if epoch else None
    else:
        reset_at = _rfc3339(raw_reset)
    retry_after = _retry_after(found.get("retry-after"), now)
    if reset_at is None and retry_after is not None:
        reset_at = now + timedelta(seconds=retry_after)
    return {"status_code": status_code, "limit": _int(found.get(limit_name)),
            "remaining": _int(found.get(remaining_name)), "reset_at": reset_at, "retry_after": retry_after}


def classify(api: str, info: dict[str, Any], warning_share: float, now: datetime | None = None) -> tuple[Status, str]:
    """The verdict on one probe: 429 CRITICAL, low remaining WARNING, else OK."""
    label = LABELS.get(api, api)
    code, limit, remaining = info.get("status_code"), info.get("limit"), info.get("remaining")
    reset = ""
    if info.get("reset_at"):
        reset = f", resets {info['reset_at']:%Y-%m-%d %H:%M:%S} UTC"
        if now is not None and info["reset_at"] > now:
            reset += f" (in {_duration((info['reset_at'] - now).total_seconds())})"
    if code == 429:
        retry = f", retry after {info['retry_after']} s" if info.get("retry_after") is not None else ""
        return Status.CRITICAL, f"{label}: rate limit exceeded (HTTP 429){reset}{retry}"
    known = limit is not None and remaining is not None
    note = "" if code is None or 200 <= code < 300 else f" (HTTP {code})"
    if not known:
        if code in (401, 403):
            return Status.WARNING, f"{label}: credential rejected (HTTP {code}): cannot read the rate limit"
        return Status.UNKNOWN, f"{label}: HTTP {code} without rate-limit headers"
    if limit and remaining / limit < warning_share:
        return Status.WARNING, (f"{label}: only {remaining} of {limit} requests left, below "
                                f"{warning_share:.0%}{reset}{note}")
    return Status.OK, f"{label}: {remaining} of {limit} requests left{reset}{note}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def build_request(api: str, base_url: str, secret: str) -> urllib.request.Request:
    """The one cheap request that returns the rate-limit headers."""
    base = base_url.rstrip("/")
    if api == "x":
        return urllib.request.Request(f"{base}/2/users/me", headers={"Authorization": f"Bearer {secret}"})
    body = json.dumps({"model": PROBE_MODEL, "messages": [{"role": "user", "content": "ping"}]}).encode()
    return urllib.request.Request(
        f"{base}/v1/messages/count_tokens", data=body, method="POST",
        headers={"x-api-key": secret, "anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json"},
    )


def send(request: urllib.request.Request, timeout: float) -> tuple[int, Any]:
    """Status code and headers; an HTTP error status is an answer too (429 carries the headers)."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured https URL
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


def probe(ctx: RunContext, api: str) -> Finding:
    """One API's rate-limit finding: INFO when not configured, UNKNOWN when unreachable."""
    from ccops.checks.services import network_reason

    s = ctx.settings.apis
    env_name, base_url = (s.x_token_env, s.x_base_url) if api == "x" else (s.anthropic_key_env, s.anthropic_base_url)
    check_id = f"apis.{api}.rate_limit"
    label = LABELS[api]
    secret, _ = credential(ctx.settings, env_name)
    if not secret:
        return optional_not_configured(check_id, env_name or "the API key variable",
                                       f"{label}: in the app's .env or the environment, to probe its limits")

    def scrub(text: str) -> str:
        return text.replace(secret, "***")

    try:
        code, headers = send(build_request(api, base_url, secret), s.timeout_seconds)
    except urllib.error.URLError as exc:
        reason = network_reason(exc.reason, s.timeout_seconds)
        return Finding(check_id, Status.UNKNOWN, scrub(f"{label}: {base_url} not reachable: {reason}"))
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = network_reason(exc, s.timeout_seconds)
        return Finding(check_id, Status.UNKNOWN, scrub(f"{label}: {base_url} not reachable: {reason}"))
    info = parse_rate_limit_headers(api, code, headers, ctx.as_of)
    status, summary = classify(api, info, s.remaining_warning_share, ctx.as_of)
    threshold = round(info["limit"] * s.remaining_warning_share, 2) if info["limit"] is not None else None
    table = pd.DataFrame([{"api": label, **info}])
    return Finding(check_id, status, scrub(summary), info["remaining"], threshold, data=table)


@check("apis.rate_limit")
def live_rate_limits(ctx: RunContext) -> list[Finding]:
    """X and Anthropic rate limits from their headers; Stripe has no probe."""
    return [probe(ctx, "x"), probe(ctx, "anthropic"), stripe_note(ctx)]


def stripe_note(ctx: RunContext) -> Finding:
    """Stripe has no rate-limit probe; say whether the app's key is there at all (never its value)."""
    name = getattr(ctx.settings.apis, "stripe_key_env", "STRIPE_API_KEY")
    found, where = credential(ctx.settings, name)
    have = f"{name} found in {where}" if found else f"{name} not found"
    return Finding("apis.stripe", Status.INFO, f"{STRIPE_NOTE}; {have}")
