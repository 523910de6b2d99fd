"""Where alerts go: a log file, the console, a JSON (or Slack) webhook, e-mail over SMTP, a command.

One call delivers one message holding every notification of an evaluation
for that channel, so ten alerts opening at once are one e-mail, not ten.
Every failure becomes a DeliveryError with one scrubbed line (a webhook URL
carries its token; an SMTP error may echo the login), and the engine keeps
the undelivered notifications for the next attempt.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from ccops.alerts.config import ChannelConfig
from ccops.alerts.state import parse_iso
from ccops.core.errors import CcopsError
from ccops.core.findings import severity_rank

MAX_LINES = 50
KIND_LABEL = {"opened": "OPENED", "escalated": "ESCALATED", "repeat": "STILL OPEN", "resolved": "RESOLVED",
              "info": "INFO", "test": "TEST"}


class DeliveryError(CcopsError):
    """A channel could not deliver; the message is one line without secrets."""


@dataclass
class Message:
    subject: str
    text: str
    severity: str  # the worst severity among the notifications ("resolved" when all are resolutions)
    items: list[dict[str, Any]]
    host: str

    def payload(self) -> dict[str, Any]:
        return {"source": "ccops", "host": self.host, "subject": self.subject, "severity": self.severity,
                "text": self.text, "alerts": self.items}


def _duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return ""
    minutes = int((end - start).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def describe(item: dict[str, Any]) -> str:
    """One line per notification, the same in every channel."""
    kind = KIND_LABEL.get(item["kind"], item["kind"].upper())
    severity = "" if item["kind"] in ("info", "test") else f" {item.get('severity', '').upper()}"
    line = f"{kind}{severity} {item['title']}: {item['message']} [{item['key']}]"
    opened, at = parse_iso(item.get("opened_at")), parse_iso(item.get("at"))
    if item["kind"] == "repeat":
        line += f" (open since {item['opened_at']}, {_duration(opened, at)})"
    elif item["kind"] == "resolved":
        line += f" (was open {_duration(opened, at)})"
    return line


def origin(target: str = "") -> str:
    """Where an alert comes from, as its subject names it: the host, and the target when ccops serves several."""
    host = socket.gethostname()
    return f"{host}/{target}" if target else host


def compose(items: list[dict[str, Any]], host: str | None = None, digest: bool = False) -> Message:
    host = host or socket.gethostname()
    active = [i for i in items if i["kind"] != "resolved"]
    worst = max((i.get("severity", "info") for i in active), key=severity_rank, default="resolved")
    counts: dict[str, int] = {}
    for item in items:
        counts[item["kind"]] = counts.get(item["kind"], 0) + 1
    if digest:
        subject = f"[ccops {host}] daily digest: {len(items)} info alert{'s' * (len(items) != 1)}"
    elif len(items) == 1:
        label = "RESOLVED" if worst == "resolved" else worst.upper()
        extra = " (still open)" if items[0]["kind"] == "repeat" else ""
        subject = f"[ccops {host}] {label}: {items[0]['title']}{extra}"
    else:
        parts = ", ".join(f"{n} {KIND_LABEL.get(k, k).lower()}" for k, n in counts.items())
        label = "RESOLVED" if worst == "resolved" else worst.upper()
        subject = f"[ccops {host}] {label}: {len(items)} alerts ({parts})"
    lines = [describe(i) for i in items[:MAX_LINES]]
    if len(items) > MAX_LINES:
        lines.append(f"... and {len(items) - MAX_LINES} more (see `ccops alerts list` on {host})")
    return Message(subject, "\n".join(lines), worst, items, host)


# ---- delivery ---------------------------------------------------------------------------

def deliver(channel: ChannelConfig, message: Message) -> None:
    """Send one message; DeliveryError on any failure."""
    try:
        {"log": _log, "console": _console, "webhook": _webhook, "email": _email, "command": _command}[channel.type](
            channel, message)
    except DeliveryError:
        raise
    except (OSError, smtplib.SMTPException, ssl.SSLError, subprocess.SubprocessError, ValueError) as exc:
        raise DeliveryError(f"{channel.name}: {exc.__class__.__name__}: {exc}") from None


def _log(channel: ChannelConfig, message: Message) -> None:
    path = Path(channel.path or "alerts.log")
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    text = "".join(f"{stamp} {line}\n" for line in [message.subject, *message.text.splitlines()])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))  # one write: concurrent writers never interleave inside it
    finally:
        os.close(fd)


def _console(channel: ChannelConfig, message: Message) -> None:
    """To stderr: cron mails it, and `--json` on stdout stays parseable."""
    import sys

    print(message.subject, file=sys.stderr)
    print(message.text, file=sys.stderr)


def _secret(channel: ChannelConfig, env_name: str, what: str) -> str:
    value = os.environ.get(env_name, "")
    if not value:
        raise DeliveryError(f"{channel.name}: ${env_name} is not set (it holds the {what})")
    return value


def _webhook(channel: ChannelConfig, message: Message) -> None:
    url = _secret(channel, channel.url_env, "webhook URL")
    if channel.format == "slack":
        body: dict[str, Any] = {"text": f"*{message.subject}*\n{message.text}"}
    else:
        body = message.payload()
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "ccops-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=channel.timeout_seconds) as response:
            if not 200 <= response.status < 300:
                raise DeliveryError(f"{channel.name}: webhook answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{channel.name}: webhook answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{channel.name}: webhook not reachable: {str(reason).replace(url, '***')}") from None


def email_message(channel: ChannelConfig, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.to)
    mail["Date"] = format_datetime(datetime.now().astimezone())
    mail["Message-ID"] = make_msgid(domain=channel.sender.rsplit("@", 1)[-1])
    mail["X-Ccops-Severity"] = message.severity
    mail.set_content(message.text + "\n\n-- \nccops alerts on " + message.host + "\n")
    return mail


def _email(channel: ChannelConfig, message: Message) -> None:
    context = ssl.create_default_context(cafile=channel.ca_file or None)
    mail = email_message(channel, message)
    password = _secret(channel, channel.password_env, "SMTP password") if channel.username else ""
    if channel.ssl:
        client: smtplib.SMTP = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout_seconds,
                                                context=context)
    else:
        client = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout_seconds)
    try:
        client.ehlo()
        if channel.starttls:
            if not client.has_extn("starttls"):
                raise DeliveryError(f"{channel.name}: {channel.host}:{channel.port} does not offer STARTTLS; "
                                    "refusing to send the login and the alert in clear text")
            client.starttls(context=context)
            client.ehlo()
        if channel.username:
            try:
                client.login(channel.username, password)
            except smtplib.SMTPAuthenticationError as exc:
                raise DeliveryError(f"{channel.name}: SMTP login as {channel.username} refused ({exc.smtp_code})") from None
        refused = client.send_message(mail)
        if refused:
            raise DeliveryError(f"{channel.name}: recipients refused: {', '.join(sorted(refused))}")
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _command(channel: ChannelConfig, message: Message) -> None:
    env = {**os.environ, "CCOPS_ALERT_SUBJECT": message.subject, "CCOPS_ALERT_SEVERITY": message.severity,
           "CCOPS_ALERT_COUNT": str(len(message.items)), "CCOPS_ALERT_JSON": json.dumps(message.payload())}
    proc = subprocess.run(list(channel.command), input=f"{message.subject}\n\n{message.text}\n", env=env,
                          capture_output=True, text=True, timeout=channel.timeout_seconds)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1][:200]
        raise DeliveryError(f"{channel.name}: {channel.command[0]} exited with {proc.returncode}: {tail}")
