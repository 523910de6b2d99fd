"""FACTS.md's two deployments, pinned with inputs written from FACTS.md and real tools' output.

- plain processes (what production ran): a project dir with scripts/start_content_creator.sh
  (`nohup python main.py --scheduled > logs/output.log 2> logs/error.log &`) and a stop script
  (SIGTERM, SIGKILL after 2 s); the app is found again by its command line. The app's current
  head dies at import with a SyntaxError (a missing comma in src/database/models.py): a restart
  of it must read "crashed at start: SyntaxError ...", never "UP". PostgreSQL by pg_ctl.
- docker compose: the repository's docker-compose.yml is two files pasted together (repeated
  `version` and `services`); service, container and role names come from settings.

Every app here is a real process started by a real shell script; each test's processes are
told apart by their working directory, so parallel test runs (and other apps running
`python main.py --scheduled` on this machine) are never touched.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from ccops.checks import services as service_checks
from ccops.core import localpg
from ccops.core.context import RunContext
from ccops.core.findings import Status
from ccops.core.settings import load_settings
from ccops.deploy import services

AS_OF = datetime(2026, 11, 28, 8, 0)

START_SCRIPT = """#!/bin/bash
# scripts/start_content_creator.sh (FACTS.md): run from anywhere, the app runs in the project dir
cd "$(dirname "$0")/.." || exit 1
mkdir -p logs
nohup python main.py --scheduled > logs/output.log 2> logs/error.log &
echo "Content Creator started (PID $!)"
"""

# scripts/stop_content_creator.sh (FACTS.md): SIGTERM, then SIGKILL after 2 s. The real script kills
# every `python main.py --scheduled`; this one only those running in its project dir, so that a test
# never kills another test's (or the demo's) app.
STOP_SCRIPT = """#!/bin/bash
cd "$(dirname "$0")/.." || exit 1
ours() { for p in $(pgrep -f "^python main.py --scheduled$"); do
  [ "$(readlink /proc/$p/cwd)" = "$PWD" ] && echo "$p"; done; }
PIDS=$(ours)
[ -z "$PIDS" ] && { echo "Content Creator is not running"; exit 0; }
kill -TERM $PIDS
sleep 2
LEFT=$(ours)
[ -n "$LEFT" ] && kill -KILL $LEFT
echo "Content Creator stopped"
"""

# loguru's stdout lines, with colour codes, as output.log holds them
GOOD_MAIN = r'''
import sys, time
print("\x1b[32m2026-11-28 09:00:00\x1b[0m | \x1b[1mINFO    \x1b[0m | \x1b[36m__main__\x1b[0m:\x1b[36mmain\x1b[0m"
      " - Starting Content Creator in scheduled mode", flush=True)
print("warning from a library, straight to stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(0.5)
'''

# the repository's head: main.py imports the models, and models.py misses a comma
BROKEN_MAIN = "from src.database.models import Base, MarketData\n"
BROKEN_MODELS = '''from sqlalchemy import Column, Integer, String
from sqlalchemy.orm import declarative_base

Base = declarative_base()


class MarketData(Base):
    __tablename__ = "market_data"
    id = Column(Integer, primary_key=True)
    asset = Column(String(20) nullable=False)
'''

DIES_MAIN = '''
import time
time.sleep(0.5)
raise ConnectionRefusedError("could not connect to server: Connection refused")
'''

STUBBORN_MAIN = '''
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.2)
'''

MAINS = {"good": GOOD_MAIN, "broken": BROKEN_MAIN, "dies": DIES_MAIN, "stubborn": STUBBORN_MAIN}


def make_app(root: Path, kind: str = "good") -> Path:
    """A project dir laid out like $HOME/projects/content-creator, with the app's own scripts."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "scripts").mkdir(exist_ok=True)
    (root / "main.py").write_text(MAINS[kind])
    if kind == "broken":
        (root / "src" / "database").mkdir(parents=True)
        (root / "src" / "__init__.py").write_text("")
        (root / "src" / "database" / "__init__.py").write_text("")
        (root / "src" / "database" / "models.py").write_text(BROKEN_MODELS)
    for name, text in (("start_content_creator.sh", START_SCRIPT), ("stop_content_creator.sh", STOP_SCRIPT)):
        (root / "scripts" / name).write_text(text)
        (root / "scripts" / name).chmod(0o755)
    return root


@pytest.fixture
def python_on_path(ccops_env, monkeypatch) -> None:
    """`python` as the scripts call it (Termux and venvs have one; Debian may only have python3)."""
    bindir = ccops_env / "pybin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


@pytest.fixture
def process_env(ccops_env, python_on_path, monkeypatch):
    """Factory: point ccops' process backend at a fresh app dir of `kind`; its processes die at teardown."""
    made: list[Path] = []

    def _point(kind: str = "good", name: str = "content-creator", **extra: str) -> Path:
        app = make_app(ccops_env / "projects" / name, kind)
        made.append(app)
        monkeypatch.setenv("CCOPS_BACKEND", "process")
        monkeypatch.setenv("CCOPS_PROCESS_WORKDIR", str(app))
        monkeypatch.setenv("CCOPS_PROCESS_START_COMMAND", "scripts/start_content_creator.sh")
        monkeypatch.setenv("CCOPS_PROCESS_SETTLE_SECONDS", "1.5")
        for key, value in extra.items():
            monkeypatch.setenv(f"CCOPS_PROCESS_{key.upper()}", value)
        return app

    yield _point
    for app in made:
        for proc in services.find_processes("python main.py --scheduled", str(app)):
            services.send_signal(proc.pid, services.signal.SIGKILL)


def backend() -> services.ProcessBackend:
    found = services.get_backend(load_settings())
    assert isinstance(found, services.ProcessBackend)
    return found


# ---- plain processes --------------------------------------------------------------------------

def test_started_by_its_own_script_the_app_is_up_only_after_the_settle_time(process_env):
    app = process_env("good")
    ours = backend()
    started = time.monotonic()
    ours.restart("app")
    assert time.monotonic() - started >= 1.5, "UP is only said after the settle time"
    assert ours.last_result.startswith("app was not running; app UP: pid ")
    (state,) = [s for s in ours.status() if s.service == "app"]
    assert state.state == "running" and state.detail.startswith(f"{state.name}: python main.py --scheduled")
    pid = int(state.name.split()[1])
    assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"python\0main.py\0--scheduled\0"
    assert "\x1b[" in (app / "logs" / "output.log").read_text(), "output.log keeps loguru's colours"
    lines = ours.logs("app", 10)
    assert "[error.log] warning from a library, straight to stderr" in lines
    assert ("[output.log] 2026-11-28 09:00:00 | INFO     | __main__:main - Starting Content Creator in scheduled mode"
            in lines), "colour codes stripped for reading"
    ours.stop("app")
    assert ours.last_result == f"app stopped (pid {pid}, SIGTERM)"
    assert not Path(f"/proc/{pid}").exists() or services.read_proc(pid) is None


def test_the_real_heads_syntax_error_reads_crashed_at_start(process_env):
    process_env("broken")
    ours = backend()
    with pytest.raises(services.BackendError) as caught:
        ours.restart("app")
    assert str(caught.value) == (
        "app crashed at start: SyntaxError: invalid syntax. Perhaps you forgot a comma? "
        f"(src/database/models.py, line 10) (from {ours.log_path('error')})")
    (state,) = [s for s in ours.status() if s.service == "app"]
    assert state.state == "stopped"
    assert state.reason.endswith("SyntaxError: invalid syntax. Perhaps you forgot a comma? (src/database/models.py, line 10)")
    ctx = RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)
    (finding,) = service_checks.service_status(ctx)
    assert finding.status == Status.CRITICAL and "app stopped - last words in" in finding.summary
    assert "SyntaxError" in finding.summary


def test_a_crash_is_read_the_way_python_prints_it(process_env):
    app = make_app(Path(os.environ["CCOPS_HOME"]).parent / "head", "broken")
    said = subprocess.run([sys.executable, "main.py", "--scheduled"], cwd=app, capture_output=True, text=True)
    assert said.returncode == 1 and said.stderr.startswith("Traceback (most recent call last):")
    assert services.crash_reason(said.stderr, str(app)) == (
        "SyntaxError: invalid syntax. Perhaps you forgot a comma? (src/database/models.py, line 10)")
    assert services.crash_reason("nohup: failed to run command 'python': No such file or directory\n") == \
        "nohup: failed to run command 'python': No such file or directory"


def test_an_app_that_dies_during_the_settle_time_is_not_up(process_env):
    process_env("dies")
    with pytest.raises(services.BackendError, match=r"^app crashed at start: ConnectionRefusedError: could not connect"):
        backend().start("app")


def test_a_start_command_that_fails_says_what_it_said(process_env, monkeypatch):
    process_env("good")
    monkeypatch.setenv("CCOPS_PROCESS_START_COMMAND", "scripts/start_content_creator.sh && echo 'no such venv' >&2; exit 3")
    with pytest.raises(services.BackendError, match=r"^app start failed: .* exited 3: no such venv$"):
        backend().start("app")


def test_default_stop_is_sigterm_then_sigkill_after_2_s(process_env):
    process_env("stubborn")
    ours = backend()
    ours.start("app")
    started = time.monotonic()
    ours.stop("app")
    assert time.monotonic() - started >= 2
    assert ours.last_result.endswith("SIGKILL after SIGTERM was ignored for 2 s)")
    assert ours.processes() == []


def test_the_apps_own_stop_script_as_stop_command(process_env):
    process_env("stubborn", stop_command="scripts/stop_content_creator.sh")
    ours = backend()
    ours.start("app")
    ours.stop("app")
    assert ours.last_result == "app stopped by `scripts/stop_content_creator.sh`" and ours.processes() == []
    assert ours.describe_action("stop", "app") == "`scripts/stop_content_creator.sh`"


def test_only_this_projects_app_is_matched(process_env):
    process_env("good", name="other-checkout")
    backend().start("app")
    (other_pid,) = [p.pid for p in backend().processes()]
    process_env("good")
    ours = backend()
    assert ours.processes() == [], "the other checkout's `python main.py --scheduled` is not ours"
    ours.stop("app")
    assert ours.last_result == "app was not running" and services.read_proc(other_pid) is not None


def test_a_pid_file_wins_over_the_match(process_env, ccops_env):
    app = process_env("good", pid_file="logs/app.pid")
    script = app / "scripts" / "start_content_creator.sh"
    script.write_text(START_SCRIPT.replace('echo "Content', 'echo $! > logs/app.pid\necho "Content'))
    ours = backend()
    ours.start("app")
    pid = int((app / "logs" / "app.pid").read_text())
    assert [p.pid for p in ours.processes()] == [pid]
    (app / "logs" / "app.pid").write_text("999999999\n")
    assert ours.app_state().state == "stopped", "the pid file names a dead process: stopped, whatever runs"


def test_settings_not_set_say_which_key(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKEND", "process")
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://contentcreator@127.0.0.1:1/content_creator")
    ours = backend()
    with pytest.raises(services.BackendError, match=r"^not configured: set process.start_command"):
        ours.start("app")
    assert "python main.py --scheduled" in ours.describe_action("status")
    (finding,) = service_checks.status_endpoint(RunContext(runbook="t", settings=load_settings(), as_of=AS_OF))
    assert finding.summary.startswith("not configured: set http.status_url"), "no HTTP server with --scheduled"


def test_postgres_started_and_stopped_with_pg_ctl(process_env, ccops_env, monkeypatch):
    cluster = localpg.Cluster(ccops_env / "pg")
    url = cluster.start()
    port = cluster._state()["port"]
    cluster.stop()
    pg_ctl = shlex.join([str(cluster.bindir / "pg_ctl"), "-D", str(cluster.datadir)])
    as_server = "runuser -u postgres -- " if os.geteuid() == 0 else ""
    process_env("good", db_start_command=f"{as_server}{pg_ctl} -l {cluster.logfile} -w -o '-p {port}' start",
                db_stop_command=f"{as_server}{pg_ctl} -m fast -w stop")
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    try:
        ours = backend()
        assert ours.db_state().state == "stopped" and "no response" in ours.db_state().reason
        ours.start(None)
        assert ours.last_result.startswith("db start: ") and "app UP" in ours.last_result
        assert [s.state for s in ours.status()] == ["running", "running"]
        ours.stop(None)
        assert ours.last_result.startswith("app stopped") and ours.last_result.endswith("stop` done")
        assert [s.state for s in ours.status()] == ["stopped", "stopped"]
    finally:
        cluster.stop()


def test_db_answering_is_pg_isready_not_a_login(make_database):
    url = make_database("empty")
    assert services.ping_database(url) == (True, "accepting connections")
    wrong_password = url.replace("://", "://nobody:wrong@", 1) if "@" not in url else \
        url.split("://")[0] + "://nobody:wrong@" + url.split("@", 1)[1]
    assert services.ping_database(wrong_password)[0], "a server refusing our role is up, as pg_isready says"
    assert services.ping_database(f"postgresql://x@127.0.0.1:{localpg.free_port()}/db") == (False, "no response")


# ---- docker compose ---------------------------------------------------------------------------

# FACTS.md: two compose files pasted together, so `version` and `services` appear twice
COMPOSE_FILE = """version: '3.8'

services:
  postgres:
    image: postgres:15-alpine
    container_name: contentcreator-db
    environment:
      POSTGRES_USER: contentcreator
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      POSTGRES_DB: content_creator
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U contentcreator"]
      interval: 10s
  app:
    build: .
    container_name: contentcreator-app
    env_file: .env
    environment:
      DATABASE_URL: postgresql://contentcreator:${POSTGRES_PASSWORD}@postgres:5432/content_creator
    volumes:
      - ./logs:/app/logs
      - ./data:/app/data
    depends_on:
      - postgres
    restart: unless-stopped
    command: python main.py --scheduled
  pgadmin:
    image: dpage/pgadmin4
    profiles: ["tools"]

version: '3.8'

services:
  db:
    image: postgres:15-alpine
    container_name: content-creator-db
    environment:
      POSTGRES_USER: ${DB_USER}
      POSTGRES_PASSWORD: ${DB_PASSWORD}
      POSTGRES_DB: ${DB_NAME}
"""

# what compose v2 (Go, yaml.v3) prints for such a file: it refuses duplicate keys
COMPOSE_DUPLICATE_KEYS_STDERR = """yaml: unmarshal errors:
  line 31: mapping key "version" already defined at line 1
  line 33: mapping key "services" already defined at line 3
"""


def test_a_yaml_loader_keeps_the_second_half_of_the_real_compose_file():
    """Why ccops never parses the compose file itself: PyYAML silently drops postgres and app."""
    assert list(yaml.safe_load(COMPOSE_FILE)["services"]) == ["db"]
    lines = COMPOSE_FILE.splitlines()
    assert [i + 1 for i, line in enumerate(lines) if line.startswith(("version:", "services:"))] == [1, 3, 31, 33]


def test_composes_refusal_of_repeated_keys_is_one_line_naming_them():
    failed = subprocess.CompletedProcess(["docker", "compose", "config", "--services"], 15, "",
                                         COMPOSE_DUPLICATE_KEYS_STDERR)
    message = services.tool_failure(failed.args, failed)
    assert message == ('docker compose cannot read the compose file: line 31: mapping key "version" already '
                       'defined at line 1; line 33: mapping key "services" already defined at line 3 '
                       "(the file repeats keys; fix the file, compose will not pick one)")


def _compose_v2_works() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _compose_v2_works(), reason="the docker compose plugin is not installed on this machine")
def test_real_docker_compose_config_services_on_the_real_file(ccops_env, monkeypatch):
    (ccops_env / "docker-compose.yml").write_text(COMPOSE_FILE)
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    monkeypatch.setenv("CCOPS_COMPOSE_PROJECT_DIR", str(ccops_env))
    compose = services.get_backend(load_settings())
    with pytest.raises(services.BackendError, match='^docker compose cannot read the compose file: line 31: mapping key "version"'):
        compose.defined_services()
    (ccops_env / "docker-compose.yml").write_text(COMPOSE_FILE.split("\nversion: '3.8'\n")[0])
    assert sorted(compose.defined_services()) == ["app", "postgres"], "pgadmin is behind the tools profile"


def _ps(service: str, container: str, state: str = "running", status: str = "Up 3 hours") -> str:
    """One line of `docker compose ps --all --format json` as compose 2.21+ prints it."""
    import json

    return json.dumps({"Command": "\"docker-entrypoint.sh postgres\"", "CreatedAt": "2026-11-20 09:00:00 +0000 UTC",
                       "ExitCode": 0, "Health": "", "ID": "3f1c0ad2b7e9", "Image": "postgres:15-alpine",
                       "Labels": "", "LocalVolumes": "1", "Mounts": "pgdata", "Name": container, "Names": container,
                       "Networks": "content-creator_default", "Ports": "", "Project": "content-creator",
                       "Publishers": None, "RunningFor": "3 hours ago", "Service": service, "Size": "0B",
                       "State": state, "Status": status})


def test_first_halfs_names_from_settings(ccops_env):
    (ccops_env / "ccops.toml").write_text(
        "[service]\nbackend = \"compose\"\n[compose]\ndb_service = \"postgres\"\napp_service = \"app\"\n"
        "db_container = \"contentcreator-db\"\napp_container = \"contentcreator-app\"\ndb_user = \"contentcreator\"\n")
    settings = load_settings()
    compose = services.get_backend(settings)
    ps = "\n".join([_ps("postgres", "contentcreator-db"), _ps("app", "contentcreator-app", "restarting",
                                                               "Restarting (1) 4 seconds ago")])
    states = compose.states(["postgres", "app"], ps, "/contentcreator-db 0\n/contentcreator-app 12\n")
    assert [(s.service, s.state, s.restarts) for s in states] == [("db", "running", 0), ("app", "restarting", 12)]
    assert compose.describe_action("restart", "db").endswith("restart postgres")
    assert settings.compose.db_user == "contentcreator"


def test_second_halfs_names_and_a_service_the_file_does_not_define(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    monkeypatch.setenv("CCOPS_COMPOSE_DB_CONTAINER", "content-creator-db")
    monkeypatch.setenv("CCOPS_COMPOSE_DB_USER", "cc_admin")  # whatever ${DB_USER} is in that deployment
    compose = services.get_backend(load_settings())
    ps = _ps("database", "content-creator-db")  # matched by its container name, whatever its service is called
    states = compose.states(["database"], ps)
    assert [(s.service, s.state) for s in states] == [("db", "running"), ("app", "not-found")]
    assert states[1].reason == ("the compose file defines no service 'app' (it defines: database); "
                                "set compose.app_service")
    status, summary, _ = service_checks.assess(states, "compose")
    assert status == Status.CRITICAL and "set compose.app_service" in summary
    assert load_settings().compose.db_user == "cc_admin"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")
@pytest.mark.skipif(_compose_v2_works(), reason="compose installed: the refusal is tested on the real file above")
def test_without_the_compose_plugin_config_services_says_so(ccops_env, monkeypatch):
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    with pytest.raises(services.BackendError, match=r"^docker compose \(v2 plugin\) not installed"):
        services.get_backend(load_settings()).defined_services()
