"""Channels against real peers: an SMTP server on 127.0.0.1 (plain and STARTTLS), a real alert.sh.

The SMTP server is a small socketserver speaking enough of RFC 5321 (EHLO,
STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive what smtplib sends;
STARTTLS is offered only when the test gives it a certificate, made with the
openssl command line for 127.0.0.1.
"""

from __future__ import annotations

import base64
import email
import shutil
import socketserver
import ssl
import subprocess
import threading
from datetime import datetime
from email import policy
from pathlib import Path

import pytest

from ccops import alerts
from ccops.core.settings import load_settings
from tests.test_alerts import rules_only

T0 = datetime(2026, 11, 28, 8, 0, 0)
RECORD = {"runbook": "daily", "start": "2026-11-28T07:00:00Z", "outcome": "critical", "findings": [
    {"check": "backup.daily", "status": "CRITICAL", "summary": "no backup from 2026-11-28 in /backups"},
    {"check": "content.published_yesterday", "status": "WARNING", "summary": "10 posts, usually 30"},
]}


class SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext | None = None, credentials: tuple[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), SMTPHandler)
        self.context = context
        self.credentials = credentials
        self.messages: list[dict] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class SMTPHandler(socketserver.StreamRequestHandler):
    def send(self, line: str) -> None:
        self.connection.sendall(line.encode() + b"\r\n")

    def handle(self) -> None:  # noqa: C901 - one branch per SMTP verb
        server: SMTPServer = self.server  # type: ignore[assignment]
        tls, user, sender, rcpts = False, None, None, []
        self.send("220 127.0.0.1 test ESMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            upper = line.upper()
            if upper.startswith(("EHLO", "HELO")):
                features = ["127.0.0.1 hello", "8BITMIME", "SIZE 10000000"]
                if server.context is not None and not tls:
                    features.append("STARTTLS")
                if server.credentials and (tls or server.context is None):
                    features.append("AUTH PLAIN")
                for feature in features[:-1]:
                    self.send(f"250-{feature}")
                self.send(f"250 {features[-1]}")
            elif upper == "STARTTLS" and server.context is not None and not tls:
                self.send("220 ready to start TLS")
                self.connection = server.context.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile("rb")
                tls, user, sender, rcpts = True, None, None, []
            elif upper.startswith("AUTH PLAIN"):
                parts = line.split()
                if len(parts) < 3:
                    self.send("334 ")
                    parts.append(self.rfile.readline().decode().strip())
                _, name, password = base64.b64decode(parts[2]).decode().split("\0")
                if server.credentials == (name, password):
                    user = name
                    self.send("235 2.7.0 authenticated")
                else:
                    self.send("535 5.7.8 bad credentials")
            elif upper.startswith("MAIL FROM:"):
                if server.credentials and user is None:
                    self.send("530 5.7.0 authentication required")
                    continue
                sender, rcpts = line[10:].split()[0].strip("<>"), []
                self.send("250 ok")
            elif upper.startswith("RCPT TO:"):
                rcpts.append(line[8:].strip().strip("<>"))
                self.send("250 ok")
            elif upper == "DATA":
                self.send("354 end with <CRLF>.<CRLF>")
                body = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                server.messages.append({"from": sender, "to": rcpts, "tls": tls, "user": user,
                                        "message": email.message_from_bytes(b"".join(body), policy=policy.default)})
                self.send("250 queued")
            elif upper == "QUIT":
                self.send("221 bye")
                return
            elif upper in ("RSET", "NOOP"):
                self.send("250 ok")
            else:
                self.send("502 command not implemented")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl command line not installed: cannot make a certificate for the STARTTLS test")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key


def mail_config(port: int, starttls: bool, extra: str = "") -> str:
    return f"""{rules_only()}
[[alerts.channels]]
type = "email"
name = "mail"
host = "127.0.0.1"
port = {port}
starttls = {str(starttls).lower()}
from = "ccops@ops.example.org"
to = ["oncall@example.org", "lead@example.org"]
timeout_seconds = 5
{extra}
"""


def settings_for(root: Path, text: str):
    (root / "ccops.toml").write_text(text)
    return load_settings()


def test_email_delivered_to_a_plain_smtp_server(ccops_env):
    server = SMTPServer()
    try:
        settings = settings_for(ccops_env, mail_config(server.port, starttls=False))
        out = alerts.raise_from_run(settings, RECORD, now=T0)
        assert [c.error for c in out.channels] == [""]
    finally:
        server.close()
    assert len(server.messages) == 1, "two alerts opening together are one e-mail"
    got = server.messages[0]
    assert got["from"] == "ccops@ops.example.org"
    assert got["to"] == ["oncall@example.org", "lead@example.org"]
    assert got["tls"] is False
    mail = got["message"]
    assert mail["Subject"].endswith("CRITICAL: 2 alerts (2 opened)")
    assert mail["X-Ccops-Severity"] == "critical"
    body = mail.get_content()
    assert "OPENED CRITICAL daily: backup.daily: no backup from 2026-11-28 in /backups [run:daily:backup.daily]" in body
    assert "OPENED WARNING daily: content.published_yesterday: 10 posts, usually 30" in body


def test_email_over_starttls_with_login_from_the_environment(ccops_env, certificate, monkeypatch):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = SMTPServer(context=context, credentials=("ops", "smtp-pa55word"))
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "smtp-pa55word")
    try:
        settings = settings_for(ccops_env, mail_config(
            server.port, starttls=True, extra=f'username = "ops"\npassword_env = "ALERT_SMTP_PASSWORD"\nca_file = "{cert}"'))
        assert "smtp-pa55word" in settings.secret_values()
        out = alerts.send_test(settings, "mail", now=T0)
        assert [c.error for c in out.channels] == [""]

        # the same server seen without trusting its certificate: refused, nothing sent in clear
        untrusting = settings_for(ccops_env, mail_config(
            server.port, starttls=True, extra='username = "ops"\npassword_env = "ALERT_SMTP_PASSWORD"'))
        failed = alerts.send_test(untrusting, "mail", now=T0)
        assert "CERTIFICATE_VERIFY_FAILED" in failed.channels[0].error
        assert "smtp-pa55word" not in failed.channels[0].error
    finally:
        server.close()
    assert len(server.messages) == 1
    got = server.messages[0]
    assert got["tls"] is True and got["user"] == "ops", "delivered after STARTTLS, logged in with the env password"
    assert got["message"]["Subject"].endswith("INFO: Test alert")


def test_starttls_required_but_not_offered_sends_nothing(ccops_env):
    server = SMTPServer()  # no certificate: does not offer STARTTLS
    try:
        settings = settings_for(ccops_env, mail_config(server.port, starttls=True))
        out = alerts.raise_from_run(settings, RECORD, now=T0)
    finally:
        server.close()
    assert "does not offer STARTTLS" in out.channels[0].error
    assert server.messages == []
    assert alerts.list_open(settings)["pending"] == {"mail": 2}, "kept for the next attempt"


def test_missing_password_variable_is_named_not_guessed(ccops_env, monkeypatch):
    monkeypatch.delenv("ALERT_SMTP_PASSWORD", raising=False)
    settings = settings_for(ccops_env, mail_config(1, starttls=True,
                                                   extra='username = "ops"\npassword_env = "ALERT_SMTP_PASSWORD"'))
    out = alerts.send_test(settings, "mail", now=T0)
    assert out.channels[0].error == "mail: $ALERT_SMTP_PASSWORD is not set (it holds the SMTP password)"


def test_command_channel_runs_alert_sh_with_the_message(ccops_env):
    script = ccops_env / "alert.sh"
    sink = ccops_env / "received.txt"
    script.write_text('#!/bin/sh\n{ echo "subject=$CCOPS_ALERT_SUBJECT"; echo "severity=$CCOPS_ALERT_SEVERITY";'
                      ' echo "count=$CCOPS_ALERT_COUNT"; cat; } >> "$1"\n')
    script.chmod(0o755)
    failing = ccops_env / "broken.sh"
    failing.write_text("#!/bin/sh\necho 'pager API said no' >&2\nexit 3\n")
    failing.chmod(0o755)
    settings = settings_for(ccops_env, f"""{rules_only()}
[[alerts.channels]]
type = "command"
name = "pager"
command = ["{script}", "{sink}"]

[[alerts.channels]]
type = "command"
name = "broken"
command = "{failing}"
""")
    out = alerts.raise_from_run(settings, RECORD, now=T0)
    text = sink.read_text()
    assert "severity=critical" in text and "count=2" in text
    assert "subject=[ccops " in text and "CRITICAL: 2 alerts (2 opened)" in text
    assert "OPENED WARNING daily: content.published_yesterday: 10 posts, usually 30" in text
    errors = {c.channel: c.error for c in out.channels}
    assert errors == {"pager": "", "broken": f"broken: {failing} exited with 3: pager API said no"}
    assert out.exit_code == 2


def test_severity_routing_and_the_default_log_channel(ccops_env):
    log = ccops_env / "logs" / "alerts.log"
    settings = settings_for(ccops_env, f"""{rules_only()}
[[alerts.channels]]
type = "log"
name = "critical-only"
path = "{log}"
severities = ["critical"]
""")
    warning_only = {"runbook": "weekly", "start": "2026-11-28T06:00:00Z", "outcome": "warning",
                    "findings": [{"check": "security.ssl", "status": "WARNING", "summary": "expires in 20 days"}]}
    alerts.raise_from_run(settings, warning_only, now=T0)
    assert not log.exists(), "a warning does not go to a critical-only channel"
    alerts.raise_from_run(settings, RECORD, now=T0)
    lines = log.read_text().splitlines()
    assert any("OPENED CRITICAL daily: backup.daily" in line for line in lines)
    assert not any("content.published_yesterday" in line for line in lines)
