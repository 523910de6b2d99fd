"""Security checks against real peers: a TLS server with a certificate made here, a package index on 127.0.0.1."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccops.checks import security
from ccops.config import load_settings
from ccops.context import RunContext


def make_cert(directory: Path, days: int) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", str(days), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path):
    """A real TLS server on 127.0.0.1 with a certificate expiring in 5 days."""
    cert, key = make_cert(tmp_path, days=5)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()


def context_with(ccops_env: Path, toml: str, as_of: datetime | None = None) -> RunContext:
    (ccops_env / "ccops.toml").write_text(toml)
    return RunContext(runbook="t", settings=load_settings(), as_of=as_of or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0))


def test_certificate_expiring_in_five_days_is_critical(ccops_env, tls_server):
    target, cert = tls_server
    ctx = context_with(ccops_env, f'[security]\ntls_targets = ["{target}"]\ntls_ca_file = "{cert}"\n')
    (finding,) = security.tls_expiry(ctx)
    assert finding.status.value == "CRITICAL"
    assert 4.9 < finding.value <= 5.0
    assert "does not verify" not in finding.summary


def test_same_certificate_is_warning_three_weeks_earlier(ccops_env, tls_server):
    target, cert = tls_server
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    ctx = context_with(ccops_env, f'[security]\ntls_targets = ["{target}"]\ntls_ca_file = "{cert}"\n',
                       as_of=now - timedelta(days=20))
    (finding,) = security.tls_expiry(ctx)
    assert finding.status.value == "WARNING" and 24 < finding.value < 26


def test_untrusted_certificate_is_critical_and_still_dated(ccops_env, tls_server):
    target, _ = tls_server
    ctx = context_with(ccops_env, f'[security]\ntls_targets = ["{target}"]\n')
    (finding,) = security.tls_expiry(ctx)
    assert finding.status.value == "CRITICAL"
    assert "does not verify" in finding.summary
    assert 4.9 < finding.value <= 5.0, "the expiry is still read, as openssl x509 -enddate would"


def test_nothing_listening_is_unknown_with_reason(ccops_env):
    ctx = context_with(ccops_env, '[security]\ntls_targets = ["127.0.0.1:1"]\n')
    (finding,) = security.tls_expiry(ctx)
    assert finding.status.value == "UNKNOWN" and "could not connect" in finding.summary


@pytest.fixture
def package_index():
    versions = {"requests": "2.34.2", "flask": "4.0.1", "tweepy": "4.14.0"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            name = self.path.strip("/").split("/")[1]  # /pypi/<name>/json
            if name not in versions:
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps({"info": {"name": name, "version": versions[name]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    server.shutdown()


def test_outdated_packages_from_requirements_against_local_index(ccops_env, package_index):
    requirements = ccops_env / "requirements.txt"
    requirements.write_text("requests==2.31.0\nflask==3.0.0  # web\ntweepy==4.14.0\nunlisted==1.0\nloguru>=0.7\n")
    ctx = context_with(ccops_env, f'[security]\nrequirements_file = "{requirements}"\npackage_index_url = "{package_index}"\n')
    (finding,) = security.outdated_packages(ctx)
    assert finding.status.value == "WARNING", "flask 3 -> 4 is a major update"
    table = finding.data.set_index("package")
    assert list(table.index) == ["flask", "requests"]
    assert table.loc["requests", "latest"] == "2.34.2" and not table.loc["requests", "major_update"]
    assert "1 not found on the index" in finding.summary


def test_unconfigured_and_bad_settings(ccops_env):
    ctx = context_with(ccops_env, "")
    assert security.outdated_packages(ctx)[0].status.value == "INFO"
    assert security.tls_expiry(ctx)[0].status.value == "INFO"
    ctx = context_with(ccops_env, '[security]\ntls_warning_days = "soon"\n')
    (finding,) = security.tls_expiry(ctx)
    assert finding.status.value == "UNKNOWN" and "security.tls_warning_days: expected int" in finding.summary


def test_log_events_count_records_not_lines(ccops_env, monkeypatch):
    logs = ccops_env / "logs"
    logs.mkdir()
    (logs / "content_creator_2026-11-20.log").write_text(
        "2026-11-20 10:00:00 | WARNING  | src.api.server:auth - Unauthorized request to /api/admin from 10.0.0.8\n"
        "2026-11-20 10:05:00 | ERROR    | src.integrations.stripe:charge - Payment failed for customer cus_1\n"
        "Traceback (most recent call last):\n  failed here too\n"
        "2026-11-20 10:06:00 | INFO     | src.main:run - All checks passed\n"
        "2026-11-20 10:07:00 | WARNING  | src.api.server:auth - 403 Forbidden for /api/stats\n"
    )
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    ctx = context_with(ccops_env, "", as_of=datetime(2026, 11, 21))
    (finding,) = security.log_security_events(ctx)
    assert finding.value == 3
    assert finding.status.value == "WARNING"
    assert sorted(finding.data["word"]) == ["failed", "forbidden", "unauthorized"]
