"""No secret in the archive, in any form (issue 12, item 4).

Secrets are planted the ways an operator's deployment really leaks them: a slow
`ALTER ROLE ... PASSWORD '...'` kept by pg_stat_statements, a keyword connection
string passed as a runbook parameter, a bearer token and a Slack webhook URL in
the app's error log, the alert webhook's URL, and secret-named keys of the app's
`.env` (one of its lines not UTF-8). Then the runbooks that show them run for real
(papermill, a real PostgreSQL, a real webhook receiver) and every file under the
archive, the state dir and the backup dir is searched, as bytes, for each value.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import pytest

from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import DEMO_AS_OF

SQL_PASSWORD = "plantedsecret1"  # ALTER ROLE ... PASSWORD in pg_stat_statements
DSN_PASSWORD = "plantedsecret2"  # keyword DSN given as `recovery -p target`
BEARER = "plantedBearer3x9Kq"  # Authorization header in an app log line (value unknown to ccops)
SLACK_TOKEN = "plantedSlack4Zz9QwErTy"  # hooks.slack.com path token in an app log line
HOOK_TOKEN = "pLaNtEdHook5Path"  # path token of the configured alert webhook
ENV_SECRETS = {  # secret-named keys of the app's .env, the value known to ccops only from that file
    "TELEGRAM_BOT_TOKEN": "plantedtelegram6",
    "BINANCE_API_SECRET": "plantedbinance7",
    "STRIPE_WEBHOOK_SECRET": "plantedstripe8",
    "ANTHROPIC_API_KEY": "plantedanthropic9",
}
ENV_DB_PASSWORD = "plantedDbPw10"  # DATABASE_URL password in the app's .env
X_TOKEN = "plantedXtoken11"  # X bearer token in the environment (apis.x_token_env)
PLANTED = [SQL_PASSWORD, DSN_PASSWORD, BEARER, SLACK_TOKEN, HOOK_TOKEN, ENV_DB_PASSWORD, X_TOKEN,
           *ENV_SECRETS.values()]


class Receiver:
    """The alert webhook: a real HTTP server on 127.0.0.1 that keeps every body it gets."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def plant_slow_alter_role(url: str) -> None:
    """`ALTER ROLE ... PASSWORD 'plantedsecret1'` that waits 1.5 s for a lock: the slowest statement of the database."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS ccops_planted_role")
        admin.execute("CREATE ROLE ccops_planted_role LOGIN")
    holder = psycopg.connect(conninfo)
    holder.execute("LOCK TABLE pg_catalog.pg_authid IN SHARE MODE")  # ALTER ROLE needs ROW EXCLUSIVE on it
    errors: list[BaseException] = []

    def alter() -> None:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(f"ALTER ROLE ccops_planted_role WITH ENCRYPTED PASSWORD '{SQL_PASSWORD}'")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=alter)
    worker.start()
    time.sleep(1.5)
    holder.commit()
    holder.close()
    worker.join(30)
    assert not errors, errors
    with psycopg.connect(conninfo) as conn:
        texts = [r[0] for r in conn.execute(
            "SELECT query FROM pg_stat_statements WHERE query LIKE %s AND mean_exec_time > 1000",
            (f"%{SQL_PASSWORD}%",))]
    assert texts, "pg_stat_statements keeps the slow ALTER ROLE verbatim"


def write_app_log(log_dir: Path) -> None:
    """Error records of the last hours, as the app writes them, that carry secrets in their text.

    The latest one (its first 120 characters are quoted in the daily report's summary) holds a
    bearer token and a Slack webhook URL ccops was never told about; the others (their first 50
    characters are shown in the report's table) values it knows only from the app's .env.
    """
    log_dir.mkdir(parents=True)
    lines = [
        f"2026-11-20 16:10:00 | ERROR    | src.api_integrations.exchange_api:get_ticker_24h - secret "
        f"{ENV_SECRETS['BINANCE_API_SECRET']} rejected",
        f"2026-11-20 16:20:00 | ERROR    | src.api_integrations.telegram_api:send - bot "
        f"{ENV_SECRETS['TELEGRAM_BOT_TOKEN']} rejected: 401",
        f"2026-11-20 16:30:00 | ERROR    | src.database:connect - password {ENV_DB_PASSWORD} refused",
        f"2026-11-20 16:50:00 | CRITICAL | src.notifications:notify - Bearer {BEARER} refused by "
        f"https://hooks.slack.com/services/T0/B0/{SLACK_TOKEN}",
    ]
    (log_dir / "content_creator_2026-11-20.log").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_app_env(path: Path) -> None:
    """The app's .env: secret-named keys, one line that is not UTF-8 (a latin-1 é)."""
    text = "".join(f"{key}={value}\n" for key, value in ENV_SECRETS.items())
    data = (f"DATABASE_URL=postgresql://contentcreator:{ENV_DB_PASSWORD}@postgres:5432/content_creator\n".encode()
            + b"CONTENT_PERSONALITY=caf\xe9 analyst\n" + text.encode() + b"LOG_LEVEL=INFO\n")
    path.parent.mkdir(parents=True)
    path.write_bytes(data)


@pytest.fixture
def planted(ccops_env: Path, make_database, monkeypatch: pytest.MonkeyPatch):
    root = ccops_env
    url = make_database("production")
    plant_slow_alter_role(url)
    receiver = Receiver()
    app = root / "app"  # the app's own files: outside every directory that is searched
    write_app_env(app / ".env")
    write_app_log(app / "logs")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(app / ".env"))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(app / "logs"))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(root / "backups"))
    monkeypatch.setenv("CCOPS_BACKEND", "none")
    monkeypatch.setenv("X_BEARER_TOKEN", X_TOKEN)
    monkeypatch.setenv("PLANTED_HOOK_URL", f"{receiver.url}/services/T0HOOK/{HOOK_TOKEN}")
    (root / "ccops.toml").write_text(
        '[[alerts.channels]]\ntype = "webhook"\nname = "ops-slack"\nurl_env = "PLANTED_HOOK_URL"\nformat = "slack"\n')
    yield root, url, receiver
    receiver.close()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS ccops_planted_role")


def run(name: str, *params: tuple[str, str]) -> dict:
    result = runner.run_runbook(load_settings(), name, [list(p) for p in params], timeout=300)
    assert result.record["outcome"] not in ("failed", "timed-out"), result.record.get("error")
    return result.record


def files_under(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file()]


def test_no_planted_secret_reaches_the_archive_the_state_dir_or_the_backups(planted):
    root, url, receiver = planted
    weekly = run("weekly", ("as_of", DEMO_AS_OF))
    daily = run("daily", ("as_of", DEMO_AS_OF))
    backup = run("backup", ("as_of", DEMO_AS_OF))
    dsn = (f"host=127.0.0.1 port={urlsplit(url).port} dbname=content_creator_restored user=postgres "
           f"password={DSN_PASSWORD} sslmode=disable")
    recovery = run("recovery", ("as_of", DEMO_AS_OF), ("target", dsn))

    archive, home, backups = root / "outputs", root / "home", root / "backups"
    files = files_under(archive, home, backups)
    assert len(files_under(archive)) >= 4 * 4, "every run archived (.ipynb, .html, .report.html, .json)"
    leaks = []
    for path in files:
        data = path.read_bytes()
        for secret in PLANTED:
            for form in {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}:
                if form.encode() in data:
                    leaks.append(f"{path.relative_to(root)}: {secret}")
    assert not leaks, "\n".join(sorted(set(leaks)))
    # the runs report on DEMO_AS_OF, in the past: they leave live alerts alone (issue 14.2) and record
    # what they would have raised; send the daily's as a live run would, through the real channel
    from ccops.alerts.engine import alerts_for_run

    assert daily["alerts"].get("backdated"), "a backdated run raises nothing"
    alerts_for_run(load_settings(), daily)
    assert receiver.bodies, "the daily's CRITICAL findings went out to the alert webhook"
    sent = b"\n".join(receiver.bodies)
    assert not [secret for secret in PLANTED if secret.encode() in sent], "nor into the alerts"

    # the planted values did reach the reports, masked: the test exercises every path
    def archived(record: dict) -> str:
        stem = archive / record["paths"]["json"][: -len(".json")]
        return "".join(p.read_text(encoding="utf-8", errors="replace")
                       for p in stem.parent.glob(stem.name + ".*"))

    weekly_text = archived(weekly)
    assert "PASSWORD '***'" in weekly_text or "PASSWORD &#39;***&#39;" in weekly_text \
        or "PASSWORD &#x27;***&#x27;" in weekly_text, "the slow ALTER ROLE is listed, masked"
    [errors] = [f for f in daily["findings"] if f["check"] == "logs.recent_errors"]
    assert errors["summary"].endswith("Bearer *** refused by https://hooks.slack.com/services/***")
    daily_text = archived(daily)
    assert all(f in daily_text for f in ("secret *** rejected", "bot *** rejected", "password *** refused")), \
        "values known only from the .env are masked"
    recovery_text = archived(recovery)
    assert "password=***" in recovery_text
    assert "password=***" in (archive / "index.json").read_text(), "the parameter is listed in the index, masked"
    assert backup["outcome"] != "failed" and not list((home / "runs").glob("*")), "no unscrubbed work dir is left"
