"""systemctl and journalctl on the units named in [systemd].

`systemctl show` prints KEY=VALUE blocks separated by blank lines; the parser
reads that real format and maps systemd's states onto compose's vocabulary.
"""

from __future__ import annotations

import re

from ccops.core.settings import Settings
from ccops.deploy.backends.base import (
    LOGICAL,
    STATUS_TIMEOUT,
    BackendError,
    CommandBackend,
    ServiceState,
    check_verb,
    run_tool,
)

SYSTEMD_PROPERTIES = "Id,ActiveState,SubState,NRestarts,ExecMainStatus,Result,LoadState"


def systemctl_blocks(text: str) -> list[dict[str, str]]:
    """`systemctl show` output as one dict per unit (blocks separated by blank lines)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def systemd_state(props: dict[str, str], service: str | None = None) -> ServiceState:
    """One unit's properties in compose's vocabulary.

    active/exited counts as running: Debian's postgresql.service is a oneshot
    wrapper that stays active/exited while the cluster units do the work.
    """
    unit = props.get("Id", service or "?")
    load = props.get("LoadState", "")
    active, sub = props.get("ActiveState", ""), props.get("SubState", "")
    if load in ("not-found", "masked", "bad-setting", "error"):
        state = "not-found" if load == "not-found" else load
    elif active in ("active", "reloading"):
        state = "running"
    elif active == "activating":
        state = "restarting" if sub == "auto-restart" else "starting"
    elif active == "deactivating":
        state = "stopping"
    elif active == "inactive":
        state = "stopped"
    elif active == "failed":
        state = "failed"
    else:
        state = "unknown"
    restarts = int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None
    detail = f"{unit}: {active or '?'}/{sub or '?'}"
    if load and load != "loaded":
        detail += f", unit {load}"
    if props.get("Result") and props["Result"] != "success":
        detail += f", result {props['Result']}"
    if props.get("ExecMainStatus") not in (None, "", "0"):
        detail += f", exit status {props['ExecMainStatus']}"
    return ServiceState(service or unit, state, "", restarts, detail, unit)


def parse_systemctl_show(text: str) -> ServiceState:
    """`systemctl show UNIT --property=...` for one unit."""
    blocks = systemctl_blocks(text)
    if not blocks:
        raise BackendError("systemctl show printed no properties")
    return systemd_state(blocks[0])


def parse_systemctl_show_many(text: str) -> list[ServiceState]:
    """`systemctl show UNIT1 UNIT2 ...`: one state per unit, in the order printed (= the order asked)."""
    return [systemd_state(block) for block in systemctl_blocks(text)]


def unit_id(unit: str) -> str:
    """systemd's Id for a configured unit name: `content-creator` means `content-creator.service`."""
    return unit if re.search(r"\.(service|socket|target|timer|mount|scope|slice|path)$", unit) else f"{unit}.service"


class SystemdBackend(CommandBackend):
    """systemctl and journalctl on the units named in [systemd]."""

    name = "systemd"

    def __init__(self, settings: Settings) -> None:
        self.units = {"app": settings.systemd.app_unit, "db": settings.systemd.db_unit}

    def _units(self, service: str | None, reverse: bool = False) -> list[str]:
        if service:
            return [self.units.get(service, service)]
        order = reversed(LOGICAL) if reverse else LOGICAL
        return [self.units[name] for name in order]

    def command(self, verb: str, service: str | None, tail: int = 100) -> list[str]:
        check_verb(verb)
        if verb == "logs":
            return ["journalctl", "-u", self._units(service or "app")[0], "-n", str(int(tail)), "--no-pager"]
        if verb == "status":
            return ["systemctl", "show", *self._units(service), f"--property={SYSTEMD_PROPERTIES}"]
        return ["systemctl", verb, *self._units(service, reverse=verb == "stop")]

    def status(self) -> list[ServiceState]:
        states = parse_systemctl_show_many(run_tool(self.command("status", None), STATUS_TIMEOUT))
        by_id = {unit_id(unit): ours for ours, unit in self.units.items()}
        for position, state in enumerate(states):
            fallback = LOGICAL[position] if position < len(LOGICAL) else state.service
            state.service = by_id.get(state.name, fallback)
        return states
