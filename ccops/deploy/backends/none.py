"""No service backend: a deployment that has not said how its services run."""

from __future__ import annotations

from ccops.core.settings import Settings
from ccops.deploy.backends.base import Backend, BackendError, ServiceState, check_verb

NO_BACKEND = "no service backend configured: set service.backend (compose, systemd, process or local) or CCOPS_BACKEND"


class NoneBackend(Backend):
    """Nothing configured: report no services and refuse to act, saying how to configure one."""

    name = "none"

    def __init__(self, settings: Settings | None = None) -> None:
        """Takes the settings like every backend (the registry builds them all alike) and needs none."""

    def status(self) -> list[ServiceState]:
        return []

    def start(self, service: str | None = None) -> None:
        raise BackendError(NO_BACKEND)

    def stop(self, service: str | None = None) -> None:
        raise BackendError(NO_BACKEND)

    def restart(self, service: str | None = None) -> None:
        raise BackendError(NO_BACKEND)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        raise BackendError(NO_BACKEND)

    def describe_action(self, verb: str, service: str | None = None) -> str:
        check_verb(verb)
        return f"{verb} {service or 'all services'} by hand (no service backend configured)"
