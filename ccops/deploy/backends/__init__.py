"""The service backends and the registry that picks one by name (service.backend).

compose, systemd, process and none ship here. Any other package contributes
a backend through the `ccops.backends` entry-point group (the embedded demo's
`local` does: `local = "ccops.demo.backend:LocalBackend"`), so nothing here
imports it; an entry point is looked up only when the name is not built in,
which keeps `ccops health` from scanning installed packages on every cron run.
"""

from __future__ import annotations

from collections.abc import Callable

from ccops.core.settings import BACKENDS_ENTRY_POINTS, Settings, valid_backends
from ccops.deploy.backends.base import Backend, BackendError, ServiceState, UnknownBackend
from ccops.deploy.backends.compose import ComposeBackend
from ccops.deploy.backends.none import NoneBackend
from ccops.deploy.backends.process import ProcessBackend
from ccops.deploy.backends.systemd import SystemdBackend

__all__ = ["BUILTIN", "Backend", "BackendError", "ServiceState", "UnknownBackend", "get_backend"]

BackendFactory = Callable[[Settings], Backend]

BUILTIN: dict[str, BackendFactory] = {
    "compose": ComposeBackend,
    "systemd": SystemdBackend,
    "process": ProcessBackend,
    "none": NoneBackend,
}


def get_backend(settings: Settings) -> Backend:
    """The backend settings.effective_backend names (NoneBackend for "none").

    A name nothing installed provides is bad usage, one line listing what is
    installed (exit 64), never a silent "no backend".
    """
    kind = settings.effective_backend
    factory = BUILTIN.get(kind)
    if factory is not None:
        return factory(settings)
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=BACKENDS_ENTRY_POINTS) if ep.name == kind]
    if not found:
        raise UnknownBackend(f"service.backend {kind!r}: no such backend installed "
                             f"(installed: {', '.join(valid_backends())})")
    try:
        loaded = found[0].load()
    except ImportError as exc:
        raise UnknownBackend(f"service.backend {kind!r}: its entry point {found[0].value} cannot be imported: "
                             f"{exc}") from None
    return loaded(settings)
