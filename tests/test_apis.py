"""Live rate-limit probes against a real HTTP server on 127.0.0.1 that answers like X and Anthropic do."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ccops.checks import apis
from ccops.core.context import RunContext
from ccops.core.findings import Status
from ccops.core.settings import load_settings
from ccops.demo.places import write_deployment

AS_OF = datetime(2026, 11, 28, 8, 0)
X_TOKEN = "AAAAAAAAAAAAAAAAAAAAAx-test-bearer-token-0123456789"
ANTHROPIC_KEY = "sk-ant-api03-test-key-000111222333"
RESET_EPOCH = int(datetime(2026, 11, 28, 8, 15, tzinfo=UTC).timestamp())


def make_ctx() -> RunContext:
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


class Api:
    """A real HTTP server standing in for both APIs: answers with the code and headers the test sets."""

    def __init__(self) -> None:
        self.code, self.headers, self.seen = 200, {}, []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                api.seen.append({"method": self.command, "path": self.path, "headers": self.headers, "body": body})
                payload = b'{"data": {"id": "1", "username": "cc"}}' if api.code == 200 else b'{"title": "Too Many Requests"}'
                self.send_response(api.code)
                for key, value in api.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def server():
    api = Api()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def x_api(ccops_env, monkeypatch, server):
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", server.url)
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", X_TOKEN)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return server


@pytest.fixture
def anthropic_api(ccops_env, monkeypatch, server):
    monkeypatch.setenv("CCOPS_APIS_ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    return server


def probe_all() -> dict:
    return {f.check: f for f in apis.live_rate_limits(make_ctx())}


def assert_no_secret(findings: dict) -> None:
    for finding in findings.values():
        text = repr(vars(finding)) + json.dumps(finding.to_dict())
        if finding.data is not None:
            text += finding.data.to_csv()
        assert X_TOKEN not in text and ANTHROPIC_KEY not in text, finding


# ---- pure parsing ----------------------------------------------------------------------------

def test_parse_x_headers():
    headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "3", "x-rate-limit-reset": str(RESET_EPOCH)}
    info = apis.parse_rate_limit_headers("x", 200, headers, AS_OF)
    assert info == {"status_code": 200, "limit": 75, "remaining": 3,
                    "reset_at": datetime(2026, 11, 28, 8, 15), "retry_after": None}


def test_parse_anthropic_headers_in_any_case_and_offset():
    headers = {"Anthropic-RateLimit-Requests-Limit": "50", "anthropic-ratelimit-requests-remaining": "0",
               "anthropic-ratelimit-requests-reset": "2026-11-28T09:01:30+01:00", "Retry-After": "90"}
    info = apis.parse_rate_limit_headers("anthropic", 429, headers, AS_OF)
    assert (info["limit"], info["remaining"], info["retry_after"]) == (50, 0, 90)
    assert info["reset_at"] == datetime(2026, 11, 28, 8, 1, 30), "RFC 3339 with an offset, as naive UTC"


def test_retry_after_alone_gives_the_reset_and_may_be_an_http_date():
    info = apis.parse_rate_limit_headers("anthropic", 429, {"retry-after": "120"}, AS_OF)
    assert info["reset_at"] == datetime(2026, 11, 28, 8, 2) and info["limit"] is None
    info = apis.parse_rate_limit_headers("x", 429, {"Retry-After": "Sat, 28 Nov 2026 08:05:00 GMT"}, AS_OF)
    assert info["retry_after"] == 300 and info["reset_at"] == datetime(2026, 11, 28, 8, 5)
    info = apis.parse_rate_limit_headers("x", 200, {"x-rate-limit-reset": "soon"}, AS_OF)
    assert info["reset_at"] is None


def test_classify():
    def info(code, limit, remaining):
        return {"status_code": code, "limit": limit, "remaining": remaining,
                "reset_at": datetime(2026, 11, 28, 8, 15), "retry_after": None}

    assert apis.classify("x", info(200, 75, 70), 0.1)[0] == Status.OK
    assert apis.classify("x", info(200, 100, 10), 0.1)[0] == Status.OK, "at the share is not below it"
    status, summary = apis.classify("x", info(200, 100, 9), 0.1, now=AS_OF)
    assert status == Status.WARNING and summary == (
        "X: only 9 of 100 requests left, below 10%, resets 2026-11-28 08:15:00 UTC (in 15 min)")
    status, summary = apis.classify("anthropic", info(429, 50, 0), 0.1)
    assert status == Status.CRITICAL and summary.startswith("Anthropic: rate limit exceeded (HTTP 429), resets")
    assert apis.classify("x", info(200, None, None), 0.1)[0] == Status.UNKNOWN
    assert apis.classify("x", info(401, None, None), 0.1) == (
        Status.WARNING, "X: credential rejected (HTTP 401): cannot read the rate limit")


# ---- live probes against a real server -----------------------------------------------------------

def test_x_probe_low_remaining_warns_and_sends_the_bearer_token(x_api):
    x_api.headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "3", "x-rate-limit-reset": str(RESET_EPOCH)}
    found = probe_all()
    x = found["apis.x.rate_limit"]
    assert x.status == Status.WARNING and (x.value, x.threshold) == (3, 7.5)
    assert x.summary == "X: only 3 of 75 requests left, below 10%, resets 2026-11-28 08:15:00 UTC (in 15 min)"
    request = x_api.seen[-1]
    assert (request["method"], request["path"]) == ("GET", "/2/users/me")
    assert request["headers"].get("authorization") == f"Bearer {X_TOKEN}"
    assert found["apis.anthropic.rate_limit"].status == Status.INFO
    assert found["apis.anthropic.rate_limit"].summary == (
        "not configured: set ANTHROPIC_API_KEY (Anthropic: in the app's .env or the environment, to probe its limits)")
    assert found["apis.anthropic.rate_limit"].not_configured, "listed among the steps that did nothing"
    assert found["apis.stripe"].status == Status.INFO and "Stripe dashboard" in found["apis.stripe"].summary
    assert_no_secret(found)


def test_x_probe_429_is_critical_with_the_reset_time(x_api):
    x_api.code = 429
    x_api.headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(RESET_EPOCH)}
    found = probe_all()
    x = found["apis.x.rate_limit"]
    assert x.status == Status.CRITICAL and x.value == 0
    assert "HTTP 429" in x.summary and "resets 2026-11-28 08:15:00 UTC" in x.summary
    assert_no_secret(found)


def test_x_probe_healthy_is_ok(x_api):
    x_api.headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "74", "x-rate-limit-reset": str(RESET_EPOCH)}
    x = probe_all()["apis.x.rate_limit"]
    assert x.status == Status.OK and x.summary.startswith("X: 74 of 75 requests left")
    assert list(x.data.columns) == ["api", "status_code", "limit", "remaining", "reset_at", "retry_after"]


def test_anthropic_probe_posts_count_tokens_and_reads_its_headers(anthropic_api):
    anthropic_api.code = 429
    anthropic_api.headers = {
        "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-11-28T08:01:00Z", "retry-after": "60"}
    found = probe_all()
    a = found["apis.anthropic.rate_limit"]
    assert a.status == Status.CRITICAL
    assert a.summary == ("Anthropic: rate limit exceeded (HTTP 429), resets 2026-11-28 08:01:00 UTC (in 60 s), "
                         "retry after 60 s")
    request = anthropic_api.seen[-1]
    assert (request["method"], request["path"]) == ("POST", "/v1/messages/count_tokens")
    assert request["headers"].get("x-api-key") == ANTHROPIC_KEY
    assert request["headers"].get("anthropic-version") == "2023-06-01"
    assert json.loads(request["body"]) == {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "ping"}]}
    assert found["apis.x.rate_limit"].summary == (
        "not configured: set TWITTER_BEARER_TOKEN (X: in the app's .env or the environment, to probe its limits)")
    assert_no_secret(found)


def test_anthropic_probe_healthy(anthropic_api):
    anthropic_api.headers = {"anthropic-ratelimit-requests-limit": "4000",
                             "anthropic-ratelimit-requests-remaining": "3999",
                             "anthropic-ratelimit-requests-reset": "2026-11-28T08:00:01Z"}
    a = probe_all()["apis.anthropic.rate_limit"]
    assert a.status == Status.OK and a.value == 3999 and a.threshold == 400


def test_answer_without_headers_is_unknown(x_api):
    x = probe_all()["apis.x.rate_limit"]
    assert x.status == Status.UNKNOWN and x.summary == "X: HTTP 200 without rate-limit headers"


def test_nothing_listening_is_unknown_with_the_reason(ccops_env, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", X_TOKEN)
    found = probe_all()
    x = found["apis.x.rate_limit"]
    assert x.status == Status.UNKNOWN
    assert x.summary == f"X: http://127.0.0.1:{port} not reachable: connection refused (nothing listening)"
    assert_no_secret(found)


def test_not_configured_is_info_for_both(ccops_env, monkeypatch):
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("CCOPS_APIS_X_TOKEN_ENV", "CC_X_TOKEN")
    found = probe_all()
    assert [f.status for f in found.values()] == [Status.INFO, Status.INFO, Status.INFO]
    assert found["apis.x.rate_limit"].summary == (
        "not configured: set CC_X_TOKEN (X: in the app's .env or the environment, to probe its limits)")


# ---- the app's own key names, from its .env (FACTS.md) -----------------------------------------

def configured_app(ccops_env, monkeypatch, env_text: str):
    """A configured (non-demo) deployment whose .env is written from FACTS.md's key names."""
    env_file = ccops_env / "app" / ".env"
    env_file.parent.mkdir()
    env_file.write_text(env_text)
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://contentcreator@127.0.0.1:1/content_creator")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    for name in ("TWITTER_BEARER_TOKEN", "X_BEARER_TOKEN", "ANTHROPIC_API_KEY", "STRIPE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return env_file


def test_x_probe_uses_the_apps_twitter_bearer_token_from_its_env(ccops_env, monkeypatch, server):
    configured_app(ccops_env, monkeypatch, f"DATABASE_URL=postgresql://u:p@db/cc\nTWITTER_BEARER_TOKEN={X_TOKEN}\n"
                                           "STRIPE_API_KEY=sk_live_abcdefgh12345678\n")
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", server.url)
    server.headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "74", "x-rate-limit-reset": str(RESET_EPOCH)}
    found = probe_all()
    assert found["apis.x.rate_limit"].status == Status.OK
    assert server.seen[-1]["headers"].get("authorization") == f"Bearer {X_TOKEN}"
    assert found["apis.stripe"].summary.endswith(f"STRIPE_API_KEY found in {ccops_env / 'app' / '.env'}")
    assert "sk_live_abcdefgh12345678" not in repr([f.to_dict() for f in found.values()])
    assert_no_secret(found)


def test_invented_key_names_are_not_read(ccops_env, monkeypatch, server):
    """X_BEARER_TOKEN and STRIPE_SECRET_KEY are not the app's keys: finding them probes nothing."""
    configured_app(ccops_env, monkeypatch, f"X_BEARER_TOKEN={X_TOKEN}\nSTRIPE_SECRET_KEY=sk_live_x1234567\n")
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", server.url)
    found = probe_all()
    assert found["apis.x.rate_limit"].status == Status.INFO and not server.seen
    assert found["apis.stripe"].summary.endswith("STRIPE_API_KEY not found")


def test_the_environment_wins_over_the_apps_env(ccops_env, monkeypatch, server):
    configured_app(ccops_env, monkeypatch, "TWITTER_BEARER_TOKEN=from-the-file-0000000000\n")
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", server.url)
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", X_TOKEN)
    server.headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "74"}
    probe_all()
    assert server.seen[-1]["headers"].get("authorization") == f"Bearer {X_TOKEN}"


def test_the_embedded_demos_fake_credentials_are_never_sent(ccops_env, monkeypatch, server):
    monkeypatch.delenv("TWITTER_BEARER_TOKEN", raising=False)
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", server.url)
    write_deployment(load_settings(), "")  # what `ccops demo up` writes into the home
    settings = load_settings()
    env_file = settings.effective_app_env_file  # where the demo keeps its app's .env
    env_file.parent.mkdir(parents=True)
    env_file.write_text(f"TWITTER_BEARER_TOKEN={X_TOKEN}\n")
    assert settings.deployment_file and not settings.apis.app_env_credentials
    assert probe_all()["apis.x.rate_limit"].status == Status.INFO and not server.seen
