"""`ccops config check` proves a configuration against deployments built from FACTS.md.

Inputs are the real app's formats, not the demo's output: the production dump's 16 tables and
its owner role, loguru's file names and line format (a rotated `.log.zip` written with zipfile
as loguru does), `output.log` with colour codes and `error.log` beside them, a `.env` holding the
keys of the app's `.env.example`, the app as a real `python main.py --scheduled` process, and
an HTTP peer that answers like the app's Flask API (no /health). Plus the session demo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccops import cli
from ccops.checks.configuration import PRODUCTION_TABLES
from ccops.core import db
from ccops.core.db import normalize_url

# FACTS.md "Settings": keys from the app's .env.example (a subset, as a real .env holds)
APP_ENV = """\
DATABASE_URL={url}
ANTHROPIC_API_KEY=sk-ant-conformance0000
TWITTER_BEARER_TOKEN=AAAAconformanceBearer
TELEGRAM_BOT_TOKEN=123456:conformance
TELEGRAM_CHANNEL_ID=@contentcreator
HUMAN_IN_THE_LOOP=false
CONTENT_PERSONALITY=analytical
LOG_LEVEL=INFO
STRIPE_API_KEY=sk_test_conformance
"""
# FACTS.md "Logs": line format and its real examples; the host ran at UTC+1
LOG_LINES = """\
2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy
2025-11-23 15:40:12 | ERROR    | src.api_integrations.twitter_api:post_tweet - Failed to post tweet: 429 Too Many Requests
2025-11-23 15:48:04 | INFO     | src.orchestrator:run_cycle - cycle done
"""
OUTPUT_LOG = "\x1b[32m2025-11-23 15:48:04\x1b[0m | \x1b[1mINFO    \x1b[0m | src.orchestrator:run_cycle - cycle done\n"
MAIN_PY = "import time\nwhile True:\n    time.sleep(0.5)\n"


def ccops(*argv: str) -> tuple[int, str, str]:
    """`ccops ARGV` in its own process with this test's environment (stdin not a terminal)."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from ccops.cli import main; sys.exit(main())", *argv],
                          env=dict(os.environ), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def lines_of(out: str) -> dict[str, tuple[str, str]]:
    """piece -> (status, text) from the check's output lines ('  OK       database: ...')."""
    found = {}
    for line in out.splitlines():
        status, _, rest = line.strip().partition(" ")
        if status in ("OK", "WARNING", "FAIL"):
            piece, _, text = rest.strip().partition(": ")
            found[piece] = (status, text)
    return found


@pytest.fixture
def app_role(pg_cluster) -> Iterator[tuple[str, str]]:
    """A login role that is a member of the production owner role (content_creator_user), as the app's is."""
    role, password = f"cc_app_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE content_creator_user")
    yield role, password
    db.dispose_all()
    pg_cluster.psql(f"DROP ROLE IF EXISTS {role}")


def as_role(url: str, role: str, password: str) -> str:
    """The same database, connected as `role`."""
    head, _, tail = normalize_url(url).partition("://")
    return f"{head}://{role}:{password}@{tail.split('@', 1)[1]}"


@pytest.fixture
def app_dir(ccops_env: Path) -> Path:
    """$HOME/projects/content-creator as production had it: main.py, .env, logs/ with loguru's files."""
    app = ccops_env / "projects" / "content-creator"
    logs = app / "logs"
    logs.mkdir(parents=True)
    (app / "main.py").write_text(MAIN_PY)
    (logs / "content_creator_2025-11-23.log").write_text(LOG_LINES)
    with zipfile.ZipFile(logs / "content_creator_2025-11-22.2025-11-23_00-00-00_298768.log.zip", "w") as archive:
        archive.writestr("content_creator_2025-11-22.2025-11-23_00-00-00_298768.log", LOG_LINES.replace("-23 ", "-22 "))
    (logs / "output.log").write_text(OUTPUT_LOG)
    (logs / "error.log").write_text("")
    backups = ccops_env / "backups"
    backups.mkdir()
    (backups / "db_20251123_020000.sql").write_text("-- PostgreSQL database dump\n")  # backup.sh's names
    return app


@pytest.fixture
def running_app(app_dir: Path) -> Iterator[subprocess.Popen]:
    """The app as production runs it: a process whose command line is `python main.py --scheduled`."""
    proc = subprocess.Popen(["python", "main.py", "--scheduled"], executable=sys.executable, cwd=app_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def plain_process_deployment(make_database, app_role, app_dir, running_app, ccops_env, monkeypatch) -> Path:
    """Every setting of the README's plain-process walk-through, pointed at the pieces above."""
    role, password = app_role
    url = as_role(make_database("production"), role, password)
    (app_dir / ".env").write_text(APP_ENV.format(url=url))
    (app_dir / ".env").chmod(0o600)
    for name, value in {"CCOPS_DATABASE_URL": url, "CCOPS_LOG_DIR": str(app_dir / "logs"),
                        "CCOPS_LOGS_TIMEZONE": "Europe/Amsterdam", "CCOPS_APP_ENV_FILE": str(app_dir / ".env"),
                        "CCOPS_BACKUP_DIR": str(ccops_env / "backups"), "CCOPS_BACKEND": "process",
                        "CCOPS_PROCESS_WORKDIR": str(app_dir)}.items():
        monkeypatch.setenv(name, value)
    return app_dir


def test_a_plain_process_deployment_configured_as_the_readme_says_passes(plain_process_deployment, app_role):
    code, out, err = ccops("config", "check")
    found = lines_of(out)
    assert code == 0, out + err
    role, _ = app_role
    assert found["database"][0] == "OK" and f" as {role} " in found["database"][1]
    assert f"all {len(PRODUCTION_TABLES)} production tables" in found["database"][1]
    logs = found["logs"][1]
    assert "2 app log files, newest content_creator_2025-11-23.log" in logs, "output.log and error.log not counted"
    assert "times read as Europe/Amsterdam" in logs
    assert found["app .env"] == ("OK", f"{plain_process_deployment / '.env'}: readable, 9 keys, all known to the app "
                                       "(from the app's settings class (FACTS.md))")
    assert found["backend"][0] == "OK" and "app running" in found["backend"][1]
    assert found["backups"] == ("OK", f"{plain_process_deployment.parent.parent / 'backups'}: 1 files")
    assert found["health probe"][0] == "OK" and found["health probe"][1].startswith("not configured: set http.health_url")
    assert "the app has no /health" in found["health probe"][1]


def test_only_a_database_url_names_each_missing_piece(make_database, ccops_env, monkeypatch):
    """The half-configured deployment of issue 13: the database is proved, every other piece is named."""
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("production"))
    code, out, err = ccops("config", "check")
    found = lines_of(out)
    assert code == 2 and err == ""
    assert found["database"][0] == "OK"
    assert found["logs"] == ("FAIL", "not configured: set paths.log_dir (or CCOPS_LOG_DIR: the app's logs/, "
                                     "where content_creator_YYYY-MM-DD.log are)")
    assert found["app .env"][0] == "FAIL" and found["app .env"][1].startswith("not configured: set paths.app_env_file")
    assert found["backend"][0] == "FAIL" and found["backend"][1].startswith("not configured: set service.backend")
    assert found["backups"][0] == "FAIL" and found["backups"][1].startswith("not configured: set paths.backup_dir")
    assert found["health probe"][0] == "OK" and "not configured" in found["health probe"][1]


def test_an_env_key_the_app_does_not_define_is_a_failure(plain_process_deployment):
    """FACTS: one unknown key in .env and the app cannot start (the guide's ENABLE_* flags do not exist)."""
    env = plain_process_deployment / ".env"
    env.write_text(env.read_text() + "ENABLE_MARKET_SCANNER=false\n")
    code, out, _ = ccops("config", "check")
    status, text = lines_of(out)["app .env"]
    assert code == 2 and status == "FAIL"
    assert "1 keys the app does not define: ENABLE_MARKET_SCANNER" in text and "refuses to start" in text


def test_a_log_dir_without_the_apps_files_is_a_warning_naming_the_patterns(plain_process_deployment, monkeypatch):
    """Issue 13 (8): the parent of the real log dir gave 0 records and no warning."""
    monkeypatch.setenv("CCOPS_LOG_DIR", str(plain_process_deployment))
    code, out, _ = ccops("config", "check")
    status, text = lines_of(out)["logs"]
    assert code == 1 and status == "WARNING"
    assert "no app log file matching content_creator_YYYY-MM-DD.log" in text and ".log.zip" in text


def test_a_database_without_the_production_schema_names_the_missing_tables(make_database, plain_process_deployment,
                                                                           monkeypatch):
    monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("empty"))
    code, out, _ = ccops("config", "check", "--json")
    report = json.loads(out)
    database = next(line for line in report["lines"] if line["piece"] == "database")
    assert code == 2 and report["exit_code"] == 2 and report["deployment_file"] is None  # named by the environment
    assert database["status"] == "FAIL"
    assert "16 of the 16 production tables missing: market_data, news_articles" in database["text"]


def test_a_role_that_cannot_read_the_tables_is_a_failure(plain_process_deployment, make_database, pg_cluster,
                                                         monkeypatch):
    role, password = f"cc_other_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        monkeypatch.setenv("CCOPS_DATABASE_URL", as_role(make_database("production"), role, password))
        code, out, _ = ccops("config", "check")
        status, text = lines_of(out)["database"]
        assert code == 2 and status == "FAIL" and f"role {role} may not read ab_tests" not in text
        assert f"role {role} may not read market_data, news_articles" in text
    finally:
        db.dispose_all()
        pg_cluster.psql(f"DROP ROLE IF EXISTS {role}")


class FlaskLike(BaseHTTPRequestHandler):
    """The app's API mode as FACTS.md describes it: /api/status answers, there is no /health."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/api/status":
            body, code = b'{"status": "running"}', 200
        else:
            body, code = b"<h1>Not Found</h1>", 404
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_configured_health_probe_must_answer(plain_process_deployment, monkeypatch):
    """The guide's localhost:8000/health does not exist: configuring it anyway is a failure, said plainly."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlaskLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("CCOPS_HEALTH_URL", f"http://127.0.0.1:{server.server_address[1]}/health")
        code, out, _ = ccops("config", "check")
        assert code == 2 and lines_of(out)["health probe"] == ("FAIL", f"{os.environ['CCOPS_HEALTH_URL']} answered HTTP 404")
        monkeypatch.setenv("CCOPS_HEALTH_URL", f"http://127.0.0.1:{server.server_address[1]}/api/status")
        code, out, _ = ccops("config", "check")
        assert code == 0 and lines_of(out)["health probe"][0] == "OK"
    finally:
        server.shutdown()


def test_the_demo_passes(demo_env, capsys):
    assert cli.main(["config", "check"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "checking a deployment (" in out and "deployment.toml" in out, "the file `ccops demo up` wrote"
    found = lines_of(out)
    assert {piece for piece, (status, _) in found.items() if status != "OK"} == set()
    assert set(found) == {"database", "logs", "app .env", "backend", "backups", "health probe"}
