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
from ccops.core.context import RunContext
from ccops.core.settings import load_settings


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
    assert finding.status.value == "UNKNOWN" and "security.tls_warning_days: expected a whole number, got 'soon'" in finding.summary


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


# ---- the quarterly access review -------------------------------------------------------------------

def _psql(cluster, sql: str, dbname: str = "postgres", **env: str) -> subprocess.CompletedProcess:
    import os

    environ = {**os.environ, **cluster.libpq_env(), "PGDATABASE": dbname, **env}
    return subprocess.run([str(cluster.bindir / "psql"), "-X", "-A", "-t", "-c", sql],
                          capture_output=True, text=True, env=environ, timeout=60)


@pytest.fixture
def connection_logging(pg_cluster):
    """The test cluster with log_connections on (a reload is enough: it applies to new sessions)."""
    assert _psql(pg_cluster, "ALTER SYSTEM SET log_connections = on").returncode == 0
    _psql(pg_cluster, "SELECT pg_reload_conf()")
    yield pg_cluster
    _psql(pg_cluster, "ALTER SYSTEM RESET log_connections")
    _psql(pg_cluster, "SELECT pg_reload_conf()")


def test_access_log_counts_connections_and_failed_logins_as_postgres_writes_them(
        connection_logging, make_database, ccops_env, monkeypatch):
    cluster = connection_logging
    url = make_database("production")
    role = "access_review_reader"
    _psql(cluster, f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'right-one'")
    for _ in range(2):
        assert _psql(cluster, "SELECT 1", PGUSER=role, PGPASSWORD="right-one", PGAPPNAME="content-creator").returncode == 0
    assert _psql(cluster, "SELECT 1", PGUSER=role, PGPASSWORD="wrong-one").returncode != 0
    (ccops_env / "ccops.toml").write_text(f'[security]\npostgres_log = "{cluster.logfile}"\n')
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=datetime.now(timezone.utc).replace(tzinfo=None)
                     + timedelta(minutes=1))

    [finding] = security.postgres_access_log(ctx)
    log = Path(cluster.logfile).read_text()
    # by hand: the server's own lines
    authorized = [line for line in log.splitlines() if f"connection authorized: user={role} " in line]
    refused = [line for line in log.splitlines() if f'password authentication failed for user "{role}"' in line]
    assert len(authorized) == 2 and len(refused) == 1, log[-2000:]
    assert finding.status.value == "WARNING"
    failed = finding.data[finding.data["user"] == role]
    assert len(failed) == 1 and failed.iloc[0]["host"] == "127.0.0.1"
    assert f"{role} 1" in finding.summary

    table, _, unknown = security.parse_connection_log(log.splitlines(), ctx.as_of - timedelta(days=1), ctx.as_of)
    mine = table[(table["user"] == role) & (table["application"] == "content-creator")]
    assert int(mine["connections"].sum()) == 2 and unknown == 0


def test_access_log_without_connection_logging_says_so(make_database, ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("production"))
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=datetime(2026, 11, 20, 18))
    [finding] = security.postgres_access_log(ctx)
    assert finding.status.value == "UNKNOWN" and finding.not_configured
    assert finding.summary.startswith("not configured: set log_connections = on in postgresql.conf")


def test_connection_log_lines_in_other_zones():
    lines = [
        "2026-11-20 09:00:00.123 +01 [77] LOG:  connection authorized: user=app database=cc application_name=x",
        "2026-11-20 09:00:00.123 CET [78] LOG:  connection authorized: user=app database=cc",
        '2026-11-20 09:00:01.000 UTC [79] FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "mallory", '
        'database "cc", no encryption',
        '2026-11-20 09:00:02.000 UTC [80] FATAL:  role "ghost" does not exist',
    ]
    table, failed, unknown = security.parse_connection_log(lines, datetime(2026, 11, 20), datetime(2026, 11, 21))
    assert table.iloc[0]["first"] == datetime(2026, 11, 20, 8, 0, 0), "+01 is converted to UTC"
    assert unknown == 1, "CET is a name whose offset the line does not carry"
    assert list(failed["user"]) == ["mallory", "ghost"] and failed.iloc[0]["host"] == "10.0.0.9"


def test_api_keys_table_reviewed_when_present(make_database, ccops_env, monkeypatch, pg_cluster):
    url = make_database("production")
    dbname = url.rsplit("/", 1)[1]
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    as_of = datetime(2026, 11, 20, 18)
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=as_of)
    [absent] = security.api_key_review(ctx)
    assert absent.status.value == "INFO" and "no api_keys table" in absent.summary

    pg_cluster.psql("""CREATE TABLE api_keys (id serial PRIMARY KEY, name text, key_hash text,
        created_at timestamp, last_used_at timestamp, is_active boolean);
        INSERT INTO api_keys (name, created_at, last_used_at, is_active) VALUES
        ('never', '2026-11-01', NULL, true),
        ('idle', '2026-09-01', '2026-08-10', true),
        ('ancient', '2026-03-01', '2026-11-19', true),
        ('fine', '2026-10-01', '2026-11-19', true),
        ('off', '2025-01-01', NULL, false)""", dbname=dbname)
    [finding] = security.api_key_review(ctx)
    # by hand, as psql counts them
    need = pg_cluster.psql("SELECT count(*) FROM api_keys WHERE is_active AND (last_used_at IS NULL "
                           "OR last_used_at < timestamp '2026-11-20 18:00' - interval '90 days' "
                           "OR created_at < timestamp '2026-11-20 18:00' - interval '90 days')", dbname=dbname)
    assert finding.value == int(need) == 3
    assert finding.status.value == "WARNING"
    assert finding.summary == ("3 of 4 active API keys need review: 1 never used, 1 unused for over 90 days, "
                               "1 older than the 90-day rotation period")
    assert dict(zip(finding.data["key"], finding.data["problem"], strict=True)) == {
        "never": "never used", "idle": "unused for 102 days", "ancient": "264 days old"}
