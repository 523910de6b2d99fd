"""Where the runbooks are: the names under the runbooks directory and the notebook a name means.

Kept in the foundation because the runner, the schedule (which warns about an
entry whose runbook is missing) and the CLI all need it, and the schedule sits
below the runbook layer.
"""

from __future__ import annotations

from pathlib import Path

from ccops.core.errors import UsageError


def locate(runbooks_dir: Path, runbook: str) -> tuple[str, Path]:
    """(normalised name, notebook path); UsageError naming the available runbooks when unknown."""
    name = runbook.strip().removesuffix(".ipynb").strip("/")
    parts = name.split("/")
    if (not name or runbook.strip().startswith("/") or "\\" in name
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise UsageError(f"bad runbook name {runbook!r}: use a name such as daily or emergency/system_down")
    path = Path(runbooks_dir) / f"{name}.ipynb"
    if not path.is_file():
        known = available(runbooks_dir)
        raise UsageError(f"unknown runbook {runbook!r}; available: {', '.join(known) or '(none in ' + str(runbooks_dir) + ')'}")
    return name, path


def available(runbooks_dir: Path) -> list[str]:
    root = Path(runbooks_dir)
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.rglob("*.ipynb")
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
