"""The embedded Content Creator: `ccops demo up` gives a newcomer a deployment to run runbooks on.

Built from FACTS.md, not from the maintenance guide: a private PostgreSQL
cluster holding a month of realistic, deterministic data (with incidents worth
finding, and a clean day: `DemoFacts.clean_as_of`), and the app deployed the
way production ran it, as plain processes: `$CCOPS_HOME/demo/app/` with
`main.py` run as `python main.py --scheduled` by `scripts/start_content_creator.sh`,
its `.env` holding exactly the keys the app defines (it refuses any other),
its loguru logs in Europe/Amsterdam local time beside `output.log` and
`error.log`, and in the backup dir the files of the app's own `backup.sh`
from before ccops took over. A status server answers `/api/status` as the
app's API mode does (there is no `/health`). Re-running `up` regenerates
data, logs and `.env`; it starts only what is not running. `down` stops the
processes and keeps the data files.

ccops' settings do not know the demo: `up` writes the demo's deployment into
the home's deployment file (ccops.demo.places), which the settings read like
any ccops.toml while nothing else names a deployment; `down` removes it.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccops.core.errors import UsageError
from ccops.demo.places import demo_dir, places, publish, remove_deployment, write_deployment, written_by_demo

if TYPE_CHECKING:  # pragma: no cover
    from ccops.core.settings import Settings
    from ccops.demo.generator import DemoData, DemoFacts

# Why nothing heavy is imported here: `ccops --help` lists the demo's verbs through ccops.demo.cli,
# which imports this package; the service backend, the generator (and through them ccops.logs,
# the settings, the deploy backends) are imported by the functions below when a verb runs.
__all__ = [
    "DEFAULT_AS_OF", "DEFAULT_CLEAN_AS_OF", "build", "demo_dir", "down", "generate", "load", "places", "publish",
    "restart_service", "service", "services", "start_service", "status", "stop_service", "up", "write_deployment",
]

LOG_MARKER = ".ccops-demo"
# The tests' demo (seed 42, 30 days to DEFAULT_AS_OF) and its clean day: `ccops run daily` and
# `ccops run weekly` with `-p as_of DEFAULT_CLEAN_AS_OF` find nothing to warn about there.
DEFAULT_AS_OF = "2026-11-20T18:00:00Z"
DEFAULT_CLEAN_AS_OF = "2026-11-08T18:00:00Z"


# ---- the demo's data and services (ccops.demo.generator, .backend), imported when used -----------

def build(seed: int, days: int, as_of: datetime) -> DemoData:
    from ccops.demo import generator

    return generator.build(seed, days, as_of)


def load(url: str, data: DemoData) -> None:
    from ccops.demo import generator

    generator.load(url, data)


def generate(url: str, seed: int, days: int, as_of: datetime, log_dir: Path | None = None) -> DemoFacts:
    from ccops.demo import generator

    return generator.generate(url, seed, days, as_of, log_dir)


def service(settings: Settings, name: str) -> dict[str, Any]:
    from ccops.demo import backend

    return backend.service(settings, name)


def services(settings: Settings) -> list[dict[str, Any]]:
    from ccops.demo import backend

    return backend.services(settings)


def start_service(settings: Settings, name: str) -> dict[str, Any]:
    from ccops.demo import backend

    return backend.start_service(settings, name)


def stop_service(settings: Settings, name: str) -> dict[str, Any]:
    from ccops.demo import backend

    return backend.stop_service(settings, name)


def restart_service(settings: Settings, name: str) -> dict[str, Any]:
    from ccops.demo import backend

    return backend.restart_service(settings, name)


# ---- up, down, status -----------------------------------------------------------------------

def up(settings: Settings, seed: int = 42, days: int = 30, as_of: str | None = None) -> dict[str, Any]:
    """Start (or reuse) the demo's cluster and app, and regenerate its database, logs, `.env` and old backups."""
    from concurrent.futures import ThreadPoolExecutor

    from ccops.core import localpg, schema
    from ccops.core.context import parse_as_of
    from ccops.core.settings import mask_url
    from ccops.demo import appdir, appenv, applog, history
    from ccops.demo import backend as svc

    started = time.monotonic()
    when = parse_as_of(as_of)
    if days < 5:
        raise UsageError(f"--days must be at least 5 (the demo's incidents reach 4 days back), got {days}")
    where = places(settings)
    env_file = where["app_env_file"]
    appenv.guard(env_file)
    log_dir = where["log_dir"]
    _guard_log_dir(log_dir)
    backup_dir = where["backup_dir"]
    demo_dir(settings).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(build, seed, days, when)  # CPU-bound, overlaps the cluster start
        cluster = localpg.demo_cluster(settings.home)
        cluster.start()
        url = cluster.create_database(localpg.DEMO_DATABASE, drop_existing=True)
        schema.create_all(url)
        data: DemoData = future.result()
    # from here on ccops sees the demo
    write_deployment(settings, localpg.demo_database_url(settings.home), data_dir=cluster.datadir)
    load(url, data)
    app = svc.app_dir(settings)
    appdir.install(app, backup_dir, str(cluster.bindir / "pg_dump"))
    appenv.write(env_file, svc.app_database_url(settings), seed)
    svc.start_app(settings)  # before the logs: its start records must not land in the generated history
    server = svc.start_server(settings)
    publish(settings)
    for old in applog.demo_log_files(log_dir):
        old.unlink()
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / LOG_MARKER).write_text("written by `ccops demo up`; `demo up` replaces content_creator_*.log* here\n")
    files = applog.write_logs(data.records, log_dir, data.facts.as_of, data.facts.start)
    backups = history.write_app_backups(cluster, backup_dir, env_file, log_dir, data.facts)
    facts = data.facts
    info = {
        "database_url": mask_url(svc.app_database_url(settings)),
        "database": localpg.DEMO_DATABASE,
        "seed": seed,
        "days": days,
        "as_of": facts.as_of.isoformat() + "Z",
        "clean_as_of": facts.clean_as_of.isoformat() + "Z" if facts.clean_as_of else None,
        "app_dir": str(app),
        "app_command": appdir.MATCH,
        "log_dir": str(log_dir),
        "logs_timezone": applog.DEMO_TIMEZONE,
        "log_files": len(files),
        "app_env_file": str(env_file),
        "app_backups": [path.name for path in backups],
        "counts": facts.counts,
        "anomalies": facts.anomalies(),
        "server_port": server["port"],
        "status_url": f"http://127.0.0.1:{server['port']}/api/status",
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }
    _save_last_run(settings, info)
    return info


def down(settings: Settings) -> dict[str, Any]:
    """Stop the app (its stop script), the status server and the cluster; the data files stay, the deployment file goes."""
    from ccops.demo import backend as svc

    svc.stop_server(settings)
    app_was_running = svc.stop_app(settings)
    cluster = svc.cluster(settings)
    db_was_running = cluster.status().running
    cluster.stop()
    removed = remove_deployment(settings)
    return {
        "app": "stopped" if app_was_running else "was not running",
        "db": "stopped" if db_was_running else "was not running",
        "data_dir": str(cluster.datadir),
        "deployment_file": f"{settings.default_deployment_file} removed" if removed else "none of the demo's",
        "note": "data kept; `ccops demo up` starts and regenerates it",
    }


def status(settings: Settings) -> dict[str, Any]:
    """What runs, where, and what the last `up` generated."""
    listed = services(settings)
    info: dict[str, Any] = {item["service"]: f"{item['state']}{' (' + item['health'] + ')' if item['health'] else ''}"
                            for item in listed}
    info["database_url"] = _demo_url_masked(settings)
    where = places(settings)
    info["status_url"] = settings.optional("status_url")
    info["app_dir"] = str(demo_dir(settings) / "app")
    info["log_dir"] = str(where["log_dir"])
    info["app_env_file"] = str(where["app_env_file"])
    info["deployment_file"] = str(settings.default_deployment_file) if written_by_demo(settings) else None
    last = _last_run(settings)
    if last:
        info["generated"] = {key: last[key] for key in ("seed", "days", "as_of", "clean_as_of") if key in last}
        info["anomalies"] = last.get("anomalies", [])
    info["services"] = listed
    return info


def _demo_url_masked(settings: Settings) -> str:
    from ccops.core import localpg
    from ccops.core.settings import mask_url
    from ccops.demo import backend as svc

    try:
        return mask_url(svc.app_database_url(settings))
    except localpg.LocalPgError:
        return "(no demo cluster yet: run `ccops demo up`)"


def _guard_log_dir(log_dir: Path) -> None:
    """Never replace a real deployment's logs: only an empty dir or one the demo wrote."""
    from ccops.demo.applog import demo_log_files

    if demo_log_files(log_dir) and not (log_dir / LOG_MARKER).exists():
        raise UsageError(f"{log_dir} holds Content Creator logs the demo did not write: refusing to replace them "
                         "(set CCOPS_LOG_DIR to another directory)")


def _last_file(settings: Settings) -> Path:
    return demo_dir(settings) / "demo.json"


def _save_last_run(settings: Settings, info: dict[str, Any]) -> None:
    _last_file(settings).write_text(json.dumps({**info, "generated_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"}, indent=1))


def _last_run(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(_last_file(settings).read_text())
    except (OSError, ValueError):
        return {}
