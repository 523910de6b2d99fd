"""The log read of a run, done beside papermill and the kernel's start (ccops.logs.snapshot).

`ccops run` starts this module in a process of its own before papermill when the
runbook has log steps. It opens the run as the notebook will (same settings, as_of
and parameters), walks the runbook's code cells for its `ctx.section(...)` calls and
its `logs.<step>(ctx...)` calls, runs those log steps (with their defaults: a step
called with another window asks another question, which the kernel then answers
itself) while ccops.logs records every answer, and writes the answers to the file
the kernel will look in. Findings made here are thrown away: the kernel makes the
run's own. Any failure here only means the kernel reads the logs itself.

    python -m ccops.runbook.prefetch NOTEBOOK PARAMETERS.yaml SNAPSHOT LOCK_FD
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

# `logs.recent_errors(ctx, limit=error_limit)`, `ctx.section("evening")`: one call per code cell (DESIGN)
_STEP = re.compile(r"^\s*logs\.([a-z_]+)\(\s*ctx\b", re.MULTILINE)
_SECTION = re.compile(r"""^\s*ctx\.section\(\s*["']([^"']+)["']""", re.MULTILINE)


def log_steps(notebook: Path) -> list[tuple[str, str]]:
    """("section", name) and ("step", name) in the order of the runbook's code cells; [] when it has no log step."""
    import json

    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return []
    plan: list[tuple[str, str]] = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", ""))
        for match in _SECTION.finditer(source):
            plan.append(("section", match.group(1)))
        for match in _STEP.finditer(source):
            plan.append(("step", match.group(1)))
    return plan if any(kind == "step" for kind, _ in plan) else []


def prefetch(notebook: Path, values: dict[str, Any], target: Path) -> None:
    """Run the runbook's log steps with recording on; the answers go to `target`."""
    from ccops.checks import logs as log_checks
    from ccops.core.context import RunContext, parse_as_of
    from ccops.core.settings import load_settings
    from ccops.logs import snapshot

    plan = log_steps(notebook)
    params = {k: v for k, v in values.items() if k not in ("as_of", "config")}
    # the context the runbook's `start(...)` cell opens: same settings, as_of and parameters
    ctx = RunContext(runbook=notebook.stem, settings=load_settings(values.get("config") or None),
                     as_of=parse_as_of(values.get("as_of") or None), params=params)
    with snapshot.recording(target):
        for kind, name in plan:
            if kind == "section":
                ctx.section(name)
                continue
            step = getattr(log_checks, name, None)
            if callable(step) and hasattr(step, "check_id"):
                step(ctx)


def main(argv: list[str]) -> int:
    import yaml

    from ccops.core.findings import FINDINGS_FILE_ENV

    notebook, params_file, target, lock_fd = Path(argv[0]), Path(argv[1]), Path(argv[2]), int(argv[3])
    from ccops.logs.reader import WORKERS_ENV

    os.environ.pop(FINDINGS_FILE_ENV, None)  # the kernel records the run's findings, not this helper
    os.environ[WORKERS_ENV] = "1"  # one core: the other starts papermill and the kernel meanwhile
    try:
        values = yaml.safe_load(params_file.read_text(encoding="utf-8")) or {}
        prefetch(notebook, values, target)
    finally:
        os.close(lock_fd)  # the kernel waits on this lock: release it whatever happened
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
