"""The demo app's directory, laid out like production's project dir (FACTS.md, plain processes).

`$CCOPS_HOME/demo/app/` holds what an operator finds in `$HOME/projects/content-creator`:
`main.py`, `src/config/settings.py` (refuses `.env` keys it does not define), `.env`
and `.env.example`, `logs/` (the loguru files, `output.log`, `error.log`) and
`scripts/start_content_creator.sh`, `scripts/stop_content_creator.sh` and
`scripts/backup.sh`. The scripts are complete on their own, so any process
supervisor (ccops' `process` backend included) can run them unchanged:

    start_command = "sh scripts/start_content_creator.sh"   workdir = <app dir>
    stop_command  = "sh scripts/stop_content_creator.sh"    match = "python main.py --scheduled"
    pid_file      = "content_creator.pid"                   error_log = "logs/error.log"

Several demos may run on one machine (the tests start a few), so "running" is
a process whose command line holds `python main.py --scheduled` AND whose
working directory is this app dir; the stop script matches the same way.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from ccops.demo import appenv
from ccops.demo.applog import DEMO_TIMEZONE

SOURCE = Path(__file__).resolve().parent / "app"
APP_FILES = ("main.py", "src/__init__.py", "src/config/__init__.py", "src/config/settings.py")
MATCH = "python main.py --scheduled"
PID_FILE = "content_creator.pid"
START_SCRIPT = "scripts/start_content_creator.sh"
STOP_SCRIPT = "scripts/stop_content_creator.sh"
BACKUP_SCRIPT = "scripts/backup.sh"
STOP_GRACE_SECONDS = 2

START = """#!/bin/sh
# Start Content Creator in scheduled mode, as production does: from the project dir, nohup,
# stdout to logs/output.log, stderr to logs/error.log (a crash at start shows there).
# Written by `ccops demo up`.
cd "$(dirname "$0")/.." || exit 1
mkdir -p logs
export TZ={tz}  # the demo host's clock: the app's log lines carry this zone's local time
nohup {python} main.py --scheduled > logs/output.log 2> logs/error.log &
echo $! > {pid_file}
echo "Content Creator started (pid $!)"
"""

STOP = """#!/bin/sh
# Stop Content Creator: SIGTERM, then SIGKILL after {grace} s. Only the app of this directory:
# a process whose command line holds '{match}' and whose working dir is here. The whole
# process table is read once; the wait re-checks only the processes signalled (still this app).
# Written by `ccops demo up`.
cd "$(dirname "$0")/.." || exit 1
here=$(pwd -P)
is_app() {{
  cmd=$(tr '\\000' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  case "$cmd" in *"{match}"*) ;; *) return 1 ;; esac
  [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$here" ]
}}
app_pids() {{
  for pid in "$@"; do
    is_app "$pid" && echo "$pid"
  done
}}
running=$(cd /proc && app_pids [0-9]*)
if [ -z "$running" ]; then
  rm -f {pid_file}
  echo "Content Creator is not running"
  exit 0
fi
kill -TERM $running 2>/dev/null
waited=0
while [ $waited -lt {ticks} ] && [ -n "$(app_pids $running)" ]; do
  sleep 0.1
  waited=$((waited + 1))
done
left=$(app_pids $running)
if [ -n "$left" ]; then
  kill -KILL $left 2>/dev/null
  echo "Content Creator killed after {grace} s (pid $left)"
fi
rm -f {pid_file}
echo "Content Creator stopped"
"""

BACKUP = """#!/bin/sh
# The app's own backup: database (plain pg_dump), a copy of .env, the logs; files older than
# 30 days deleted. Written by `ccops demo up`, shaped like production's scripts/backup.sh.
cd "$(dirname "$0")/.." || exit 1
BACKUP_DIR=${{BACKUP_DIR:-{backup_dir}}}
STAMP=$(date +%Y%m%d_%H%M%S)
mkdir -p "$BACKUP_DIR"
DATABASE_URL=$(grep '^DATABASE_URL=' .env | cut -d= -f2-)
{pg_dump} "$DATABASE_URL" > "$BACKUP_DIR/db_$STAMP.sql" || exit 1
cp .env "$BACKUP_DIR/env_$STAMP" && chmod 600 "$BACKUP_DIR/env_$STAMP"
tar -czf "$BACKUP_DIR/logs_$STAMP.tar.gz" logs
find "$BACKUP_DIR" -maxdepth 1 -type f \\( -name 'db_*.sql' -o -name 'env_*' -o -name 'logs_*.tar.gz' \\) -mtime +30 -delete
echo "Backup done: $BACKUP_DIR/*_$STAMP*"
"""


def venv_python() -> str:
    """The interpreter the app runs with, named `python` so its command line reads `python main.py`."""
    plain = Path(sys.executable).with_name("python")
    return str(plain if plain.exists() else Path(sys.executable))


def install(app: Path, backup_dir: Path, pg_dump: str = "pg_dump", timezone: str = DEMO_TIMEZONE) -> None:
    """Lay out (or refresh) the app dir: code, .env.example and scripts; .env and logs are written elsewhere."""
    for name in APP_FILES:
        target = app / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCE / name, target)
    (app / ".env.example").write_text(appenv.render_example(), encoding="utf-8")
    (app / "logs").mkdir(parents=True, exist_ok=True)
    scripts = {
        START_SCRIPT: START.format(tz=shlex.quote(timezone), python=shlex.quote(venv_python()), pid_file=PID_FILE),
        STOP_SCRIPT: STOP.format(grace=STOP_GRACE_SECONDS, ticks=STOP_GRACE_SECONDS * 10, match=MATCH, pid_file=PID_FILE),
        BACKUP_SCRIPT: BACKUP.format(backup_dir=shlex.quote(str(backup_dir)), pg_dump=shlex.quote(pg_dump)),
    }
    for name, text in scripts.items():
        path = app / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.chmod(path, 0o755)
