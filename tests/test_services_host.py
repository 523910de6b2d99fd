"""Service backends parsed from real output formats, host thresholds, endpoints and rate-limit probes on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccops import services
from ccops.checks import apis, host
from ccops.checks import services as service_checks
from ccops.config import Thresholds, load_settings
from ccops.context import RunContext

DATA = Path(__file__).parent / "data"
AS_OF = datetime(2026, 11, 28, 8, 0)


def make_ctx() -> RunContext:
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


def test_compose_ps_json_array_shape():
    states = services.parse_compose_ps((DATA / "compose_ps_array.json").read_text())
    assert [(s.service, s.state, s.health) for s in states] == [("db", "running", "healthy"), ("app", "exited", "")]
    assert states[1].detail == "content-creator-app-1: Exited (1) 3 minutes ago"
    assert [s.running for s in states] == [True, False]


def test_compose_ps_one_object_per_line_shape():
    states = services.parse_compose_ps((DATA / "compose_ps_ndjson.json").read_text())
    assert [(s.service, s.state) for s in states] == [("postgres", "running"), ("app", "restarting")]
    assert services.parse_compose_ps("\n") == []


def test_docker_inspect_restart_counts():
    assert services.parse_inspect_restarts("/content-creator-app-1 7\n/content-creator-db-1 0\n") == {
        "content-creator-app-1": 7, "content-creator-db-1": 0}


def test_systemctl_show_blocks():
    blocks = services.parse_systemctl_show_many((DATA / "systemctl_show.txt").read_text())
    app = services.systemd_state(blocks[0], "app")
    db = services.systemd_state(blocks[1], "db")
    assert (app.state, app.health, app.restarts) == ("stopped", "unhealthy", 5)
    assert (db.state, db.restarts) == ("running", 0)


def test_no_backend_is_info_and_actions_refuse(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    assert service_checks.service_status(make_ctx())[0].status.value == "INFO"
    with pytest.raises(services.BackendError, match="no service backend configured"):
        services.get_backend(load_settings()).restart("app")


def test_compose_without_docker_engine_is_unknown_not_a_crash(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    monkeypatch.setenv("PATH", str(ccops_env))  # no docker binary at all
    (finding,) = service_checks.service_status(make_ctx())
    assert finding.status.value == "UNKNOWN" and "docker not found" in finding.summary


def test_local_backend_reports_the_demo(demo_env):
    (finding,) = service_checks.service_status(make_ctx())
    assert finding.status.value == "OK"
    assert set(finding.data["service"]) == {"db", "app"}


@pytest.mark.parametrize(("free", "expected"), [(25, "OK"), (15, "WARNING"), (9.9, "CRITICAL")])
def test_disk_thresholds(free, expected):
    assert host.classify_disk(free, Thresholds()).value == expected


@pytest.fixture
def full_tmpfs(tmp_path):
    mount = tmp_path / "fs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    with open(mount / "filler", "wb") as handle:
        handle.write(b"\0" * int(1.9 * 1024 * 1024))
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_real_nearly_full_filesystem_is_critical(ccops_env, full_tmpfs):
    findings = host.disk_space(make_ctx(), paths=[str(full_tmpfs), str(ccops_env / "missing")])
    by_id = {f.check: f for f in findings}
    assert by_id[f"host.disk:{full_tmpfs}"].status.value == "CRITICAL"
    assert by_id[f"host.disk:{full_tmpfs}"].value < 10
    assert by_id[f"host.disk:{ccops_env / 'missing'}"].status.value == "UNKNOWN"


def test_memory_from_meminfo(ccops_env, tmp_path):
    sample = tmp_path / "meminfo"
    sample.write_text("MemTotal:       1000000 kB\nMemFree:         50000 kB\nMemAvailable:    150000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
    (finding,) = host.memory(make_ctx(), meminfo_path=str(sample))
    assert finding.value == 85.0 and finding.status.value == "WARNING"
    sample.write_text(sample.read_text().replace("150000", "50000"))
    assert host.memory(make_ctx(), meminfo_path=str(sample))[0].status.value == "CRITICAL"


class Peer:
    """A real HTTP server on 127.0.0.1 whose next answer the test sets."""

    def __init__(self) -> None:
        self.code, self.headers, self.body, self.seen = 200, {}, b"{}", []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                peer.seen.append((self.command, self.path, self.headers))
                self.send_response(peer.code)
                for key, value in peer.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(peer.body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def peer():
    server = Peer()
    yield server
    server.server.shutdown()


def test_status_endpoint_ok_error_and_refused(ccops_env, monkeypatch, peer):
    peer.body = json.dumps({"status": "running", "project": "Content Creator API"}).encode()
    monkeypatch.setenv("CCOPS_STATUS_URL", peer.url + "/api/status")
    assert service_checks.status_endpoint(make_ctx())[0].status.value == "OK"
    peer.code = 500
    assert service_checks.status_endpoint(make_ctx())[0].status.value == "CRITICAL"
    monkeypatch.setenv("CCOPS_STATUS_URL", "http://127.0.0.1:1/api/status")
    (finding,) = service_checks.status_endpoint(make_ctx())
    assert finding.status.value == "CRITICAL" and "refused" in finding.summary.lower()
    monkeypatch.setenv("CCOPS_HEALTH_URL", "http://127.0.0.1:1/health")
    assert service_checks.health_endpoint(make_ctx())[0].status.value == "WARNING"


TOKEN = "AAAA-test-bearer-token-0123456789"


def test_x_rate_limit_probe(ccops_env, monkeypatch, peer):
    monkeypatch.setenv("CCOPS_APIS_X_BASE_URL", peer.url)
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    reset = int(datetime(2026, 11, 28, 8, 15).timestamp())
    peer.headers = {"x-rate-limit-limit": "75", "x-rate-limit-remaining": "3", "x-rate-limit-reset": str(reset)}
    found = {f.check: f for f in apis.live_rate_limits(make_ctx())}
    x = found["apis.x.rate_limit"]
    assert x.status.value == "WARNING" and "only 3 of 75 requests left" in x.summary
    assert peer.seen[-1][1] == "/2/users/me" and peer.seen[-1][2]["Authorization"] == f"Bearer {TOKEN}"
    peer.code, peer.headers["x-rate-limit-remaining"] = 429, "0"
    x = {f.check: f for f in apis.live_rate_limits(make_ctx())}["apis.x.rate_limit"]
    assert x.status.value == "CRITICAL" and "HTTP 429" in x.summary
    peer.code, peer.headers["x-rate-limit-remaining"] = 200, "70"
    x = {f.check: f for f in apis.live_rate_limits(make_ctx())}["apis.x.rate_limit"]
    assert x.status.value == "OK"
    assert found["apis.anthropic.rate_limit"].status.value == "INFO", "no key: not probed"
    assert all(TOKEN not in str(vars(f)) for f in found.values())


def test_anthropic_probe_reads_its_headers(ccops_env, monkeypatch, peer):
    monkeypatch.setenv("CCOPS_APIS_ANTHROPIC_BASE_URL", peer.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-000")
    peer.code = 429
    peer.headers = {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
                    "anthropic-ratelimit-requests-reset": "2026-11-28T08:01:00Z", "retry-after": "60"}
    a = {f.check: f for f in apis.live_rate_limits(make_ctx())}["apis.anthropic.rate_limit"]
    assert a.status.value == "CRITICAL" and "resets 2026-11-28 08:01:00 UTC" in a.summary
    method, path, headers = peer.seen[-1]
    assert (method, path) == ("POST", "/v1/messages/count_tokens") and headers["anthropic-version"] == "2023-06-01"
    assert os.environ["ANTHROPIC_API_KEY"] not in a.summary
