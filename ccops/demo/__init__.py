"""The embedded Content Creator: `ccops demo up` gives a newcomer a deployment to run runbooks on.

A private PostgreSQL cluster holding a month of realistic, deterministic data
(with incidents worth finding), the app's log files and `.env`, and a status
server answering /api/status and /health. Re-running `up` regenerates data,
logs and `.env`; it starts only what is not running. `down` stops both
processes and keeps the data files.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ccops.config import Settings, mask_url
from ccops.demo.backend import (
    restart_service,
    service,
    services,
    start_service,
    stop_service,
)
from ccops.demo.generator import DemoData, DemoFacts, build, generate, load
from ccops.errors import UsageError

__all__ = [
    "DemoData", "DemoFacts", "build", "down", "generate", "load", "restart_service", "service",
    "services", "start_service", "status", "stop_service", "up",
]

LOG_MARKER = ".ccops-demo"


def up(settings: Settings, seed: int = 42, days: int = 30, as_of: str | None = None) -> dict[str, Any]:
    """Start (or reuse) the demo's cluster and server, and regenerate its database, logs and `.env`."""
    from ccops import localpg, schema
    from ccops.context import parse_as_of
    from ccops.demo import appenv, applog
    from ccops.demo import backend as svc

    started = time.monotonic()
    when = parse_as_of(as_of)
    if days < 5:
        raise UsageError(f"--days must be at least 5 (the demo's incidents reach 4 days back), got {days}")
    log_dir = Path(settings.effective_log_dir)
    env_file = Path(settings.effective_app_env_file)
    _guard_log_dir(log_dir)
    appenv.guard(env_file)
    settings.demo_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(build, seed, days, when)  # CPU-bound, overlaps the cluster start
        cluster = localpg.demo_cluster(settings.home)
        cluster.start()
        url = cluster.create_database(localpg.DEMO_DATABASE, drop_existing=True)
        schema.create_all(url)
        data: DemoData = future.result()
    load(url, data)
    for old in applog.demo_log_files(log_dir):
        old.unlink()
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / LOG_MARKER).write_text("written by `ccops demo up`; `demo up` replaces content_creator_*.log* here\n")
    files = applog.write_logs(data.records, log_dir, data.facts.as_of, data.facts.start.date())
    appenv.write(env_file, svc.app_database_url(settings), seed)
    server = svc.start_server(settings)
    facts = data.facts
    info = {
        "database_url": mask_url(svc.app_database_url(settings)),
        "database": localpg.DEMO_DATABASE,
        "seed": seed,
        "days": days,
        "as_of": facts.as_of.isoformat() + "Z",
        "log_dir": str(log_dir),
        "log_files": len(files),
        "app_env_file": str(env_file),
        "counts": facts.counts,
        "anomalies": facts.anomalies(),
        "server_port": server["port"],
        "status_url": f"http://127.0.0.1:{server['port']}/api/status",
        "health_url": f"http://127.0.0.1:{server['port']}/health",
        "elapsed_seconds": round(time.monotonic() - started, 2),
    }
    _save_last_run(settings, info)
    return info


def down(settings: Settings) -> dict[str, Any]:
    """Stop the status server and the cluster; the data files stay for the next `up`."""
    from ccops.demo import backend as svc

    app_was_running = svc.stop_server(settings)
    cluster = svc.cluster(settings)
    db_was_running = cluster.status().running
    cluster.stop()
    return {
        "app": "stopped" if app_was_running else "was not running",
        "db": "stopped" if db_was_running else "was not running",
        "data_dir": str(cluster.datadir),
        "note": "data kept; `ccops demo up` starts and regenerates it",
    }


def status(settings: Settings) -> dict[str, Any]:
    """What runs, where, and what the last `up` generated."""
    listed = services(settings)
    info: dict[str, Any] = {item["service"]: f"{item['state']}{' (' + item['health'] + ')' if item['health'] else ''}"
                            for item in listed}
    info["database_url"] = _demo_url_masked(settings)
    info["status_url"] = settings.effective_status_url()
    info["health_url"] = settings.effective_health_url()
    info["log_dir"] = str(settings.effective_log_dir)
    info["app_env_file"] = str(settings.effective_app_env_file)
    last = _last_run(settings)
    if last:
        info["generated"] = {key: last[key] for key in ("seed", "days", "as_of") if key in last}
        info["anomalies"] = last.get("anomalies", [])
    info["services"] = listed
    return info


def _demo_url_masked(settings: Settings) -> str:
    from ccops import localpg
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
    return settings.demo_dir / "demo.json"


def _save_last_run(settings: Settings, info: dict[str, Any]) -> None:
    _last_file(settings).write_text(json.dumps({**info, "generated_at": datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"}, indent=1))


def _last_run(settings: Settings) -> dict[str, Any]:
    try:
        return json.loads(_last_file(settings).read_text())
    except (OSError, ValueError):
        return {}
