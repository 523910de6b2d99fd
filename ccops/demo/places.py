"""Where the demo lives under the home, and the deployment file that points ccops at it.

ccops' settings know nothing of the demo: `ccops demo up` writes the demo's
deployment (database URL, log dir, the log zone, the app's .env, backend
"local", the status URL) into the home's default deployment file, which the
settings loader reads like any ccops.toml when nothing else names a
deployment. The file holds the cluster's password inside its URL, so it is
written whole (a temporary file renamed over it) with mode 0600; `down`
removes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccops.core import fs

if TYPE_CHECKING:  # pragma: no cover - the settings and the log zone are read when a file is written
    from ccops.core.settings import Settings

MARKER = "# written by `ccops demo up`: the embedded demo is this home's deployment; `ccops demo down` removes it"


def demo_dir(settings: Settings) -> Path:
    return Path(settings.home) / "demo"


def places(settings: Settings) -> dict[str, Path]:
    """The demo app's log dir, .env and backup dir: what the settings name, else the demo's own under the home."""
    defaults = {
        "log_dir": demo_dir(settings) / "app" / "logs",
        "app_env_file": demo_dir(settings) / "app" / ".env",
        "backup_dir": Path(settings.home) / "backups",
    }
    return {name: Path(settings.optional(name) or default) for name, default in defaults.items()}


def _toml(value: Any) -> str:
    """A TOML value: JSON's string, boolean and number forms are TOML's too."""
    return json.dumps(str(value) if isinstance(value, Path) else value)


def render(tables: dict[str, dict[str, Any]]) -> str:
    lines = [MARKER]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{key} = {_toml(value)}" for key, value in table.items())]
    return "\n".join(lines) + "\n"


def write_deployment(settings: Settings, database_url: str, status_url: str = "",
                     data_dir: Path | None = None) -> Path:
    """Write the demo's deployment file (0600, atomically) and make `settings` that deployment."""
    from ccops.core.settings import use_default_deployment
    from ccops.demo.applog import DEMO_TIMEZONE

    where: dict[str, Any] = dict(places(settings))
    if data_dir:
        where["data_dir"] = data_dir
    tables: dict[str, dict[str, Any]] = {
        "database": {"url": database_url} if database_url else {},
        "paths": where,
        "logs": {"timezone": DEMO_TIMEZONE},
        "service": {"backend": "local"},
        "http": {"status_url": status_url} if status_url else {},
        "apis": {"app_env_credentials": False},  # the demo's .env holds fake keys: never sent anywhere
    }
    path = settings.default_deployment_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fs.write_atomic(path, render({name: table for name, table in tables.items() if table}))  # 0600
    use_default_deployment(settings)
    return path


def publish(settings: Settings) -> Path:
    """Write the demo's deployment file with the cluster's URL and the status server's port as they are now."""
    from ccops.core import localpg

    try:
        port = int(json.loads((demo_dir(settings) / "server.json").read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        port = 0
    return write_deployment(settings, localpg.demo_database_url(settings.home),
                            f"http://127.0.0.1:{port}/api/status" if port else "",
                            localpg.demo_cluster(settings.home).datadir)


def republish(settings: Settings) -> None:
    """After the demo's cluster or status server started (their ports may have changed): the file follows."""
    if written_by_demo(settings):
        publish(settings)


def written_by_demo(settings: Settings) -> bool:
    """Whether the home's deployment file is the demo's (never rewrite or remove someone else's)."""
    try:
        with open(settings.default_deployment_file, encoding="utf-8") as file:
            return file.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def remove_deployment(settings: Settings) -> bool:
    """Remove the demo's deployment file; True when there was one."""
    if not written_by_demo(settings):
        return False
    settings.default_deployment_file.unlink(missing_ok=True)
    return True
