"""Where an archived run's rechecks live, read by the index and written by `ccops reports recheck`.

Kept in the archive (not beside the recheck verb in ccops.runbook) because the
index shows the newest recheck of every run and the archive sits below the
runbook layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RECHECK_SUFFIX = ".recheck.json"
RECHECK_KIND = "ccops-recheck"


def recheck_path(record_path: Path) -> Path:
    """`<stem>.recheck.json` beside the run record: every recheck of the run, newest last."""
    return Path(record_path).with_name(Path(record_path).name.removesuffix(".json") + RECHECK_SUFFIX)


def read_rechecks(record_path: Path) -> list[dict[str, Any]]:
    """The run's rechecks, oldest first ([] when none or unreadable)."""
    try:
        data = json.loads(recheck_path(record_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    items = data.get("rechecks") if isinstance(data, dict) and data.get("kind") == RECHECK_KIND else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def latest_for(record_path: Path) -> dict[str, Any] | None:
    """For the index: the run's newest recheck in brief (when, verdict, reproduces, link), None when never rechecked."""
    history = read_rechecks(record_path)
    if not history:
        return None
    last = history[-1]
    return {"rechecked_at": last.get("rechecked_at"), "reproduces": bool(last.get("reproduces")),
            "verdict": str(last.get("verdict") or ""), "count": len(history), "file": recheck_path(record_path).name}


def note(latest: dict[str, Any] | None) -> str:
    """'rechecked 2026-12-03: reproduces' / 'rechecked 2026-12-03: differs: 2 findings' ('' when never)."""
    if not latest:
        return ""
    return f"rechecked {str(latest.get('rechecked_at') or '')[:10]}: {latest.get('verdict')}"
