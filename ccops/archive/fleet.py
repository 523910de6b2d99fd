"""The fleet overview (issue 17.1): the latest outcome of every runbook of every target, on one page.

With `[targets.<name>]` configured, each target's archive is a whole archive of
its own (`<archive_dir>/targets/<name>/`, or the target's own archive dir), with
its own index. The overview at `<archive_dir>/index.html` (and `fleet.json`)
puts the rows a reviewer must act on first: unreviewed CRITICAL and failed runs,
then reviewed ones, then WARNING and UNKNOWN, then OK.

It reads each target's index state (ccops.archive.indexstate: the manifest
holds each runbook's latest run in brief), never the run records, so it costs
the same at 100 or 100,000 runs per target. A target whose state is missing or
distrusted gets its index rebuilt first (rebuild_index says why on stderr).

Escaping: the page is a jinja2 template with autoescape on; every value (target
and runbook names, findings, errors) reaches it as a plain string, and links are
URL-quoted paths, so a hostile name renders as text.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ccops.archive import indexstate, rebuild_index
from ccops.archive.html import OUTCOME_COLOURS, View, counts_text, environment
from ccops.archive.records import FAILED, FLEET_JSON, INDEX_HTML
from ccops.archive.store import ArchiveError, Permissions, make_dirs, write_files

PROBLEMS = ("critical", *FAILED)  # outcomes a reviewer must acknowledge
RANKS = {"warning": 2, "unknown": 2, "ok": 3}


def rank(row: dict[str, Any]) -> int:
    """0 unreviewed CRITICAL/failed, 1 reviewed CRITICAL/failed, 2 WARNING or UNKNOWN, 3 OK (4 anything else)."""
    if row["outcome"] in PROBLEMS:
        return 1 if row["acked"] else 0
    return RANKS.get(str(row["outcome"]), 4)


def target_state(target_dir: Path, perms: Permissions | None) -> dict[str, Any] | None:
    """A target's index manifest; rebuilt first when missing or distrusted (None: the target has no archive yet)."""
    if not Path(target_dir).is_dir():
        return None
    try:
        manifest = indexstate.load_manifest(target_dir)
        if manifest is not None:
            indexstate.check_shard_files(target_dir, manifest)
            return manifest
    except indexstate.StateError:
        pass
    rebuild_index(target_dir, perms)  # says on stderr what was wrong with the state it replaces
    return indexstate.load_manifest(target_dir)


def latest_rows(name: str, target_dir: Path, root: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per runbook of a target: its latest run, with links relative to the fleet page."""
    newest: dict[str, tuple[list[Any], dict[str, Any]]] = {}
    for entry in manifest["folders"].values():
        for runbook, book in entry["runbooks"].items():
            if runbook not in newest or list(book["last"]) > newest[runbook][0]:
                newest[runbook] = (list(book["last"]), book["latest"])
    rows = []
    for runbook in sorted(newest):
        latest = newest[runbook][1]
        report = latest.get("report")
        rows.append({
            "target": name, "runbook": runbook, "outcome": str(latest.get("outcome") or ""),
            "start": latest.get("start"), "run_id": latest.get("run_id"), "acked": bool(latest.get("acked")),
            "acked_by": latest.get("acked_by") or "", "counts": latest.get("counts"), "error": latest.get("error"),
            "worst": latest.get("worst") or [],
            "report": _relative(Path(target_dir) / str(report), root) if report else None,
            "index": _relative(Path(target_dir) / INDEX_HTML, root),
        })
    return rows


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def write_fleet_index(root: Path, targets: dict[str, Path], perms: Permissions | None = None,
                      generated: datetime | None = None) -> list[dict[str, Any]]:
    """Write `<root>/index.html` and `<root>/fleet.json` for these targets (name -> archive dir); returns the rows.

    Rows are ordered for a reviewer: rank() first, then the newest run first,
    then target and runbook. ArchiveError (nothing half-written) when the pages
    cannot be written.
    """
    root = Path(root)
    perms = perms or Permissions.of_archive(root)
    generated = generated or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    empty: list[dict[str, str]] = []
    for name in sorted(targets):
        manifest = target_state(Path(targets[name]), perms)
        found = latest_rows(name, Path(targets[name]), root, manifest) if manifest else []
        rows += found
        if not found:
            empty.append({"name": name, "note": "no archived run yet"})
    rows.sort(key=lambda r: (r["target"], r["runbook"]))
    rows.sort(key=lambda r: str(r["start"] or ""), reverse=True)
    rows.sort(key=rank)
    for row in rows:
        row["unreviewed"] = rank(row) == 0
    try:
        make_dirs(root, perms)
    except OSError as exc:
        raise ArchiveError(root, exc) from None
    data = {"kind": "ccops-fleet", "generated": f"{generated:%Y-%m-%dT%H:%M:%SZ}", "targets": sorted(targets),
            "runs": rows}
    write_files([(root / FLEET_JSON, json.dumps(data, indent=1, ensure_ascii=False) + "\n"),
                 (root / INDEX_HTML, render_fleet(rows, sorted(targets), empty, generated))], perms)
    return rows


def render_fleet(rows: list[dict[str, Any]], targets: list[str], empty: list[dict[str, str]],
                 generated: datetime | None = None) -> str:
    """The overview page; every value a plain string for the template to escape, links URL-quoted."""
    views = [View({
        "target": str(r["target"]), "runbook": str(r["runbook"]), "outcome": str(r["outcome"]),
        "when": str(r["start"] or "").replace("T", " ").removesuffix("Z"), "unreviewed": bool(r["unreviewed"]),
        "acked_by": str(r["acked_by"] or ""), "error": str(r["error"] or ""), "counts": counts_text(r["counts"]),
        "worst": [View({"status": str(w.get("status", "")), "check": str(w.get("check", "")),
                        "summary": str(w.get("summary", ""))}) for w in r["worst"] if isinstance(w, dict)],
        "report": quote(r["report"], safe="/") if r["report"] else "", "index": quote(r["index"], safe="/"),
    }) for r in rows]
    return environment().get_template("fleet.html.j2").render(
        outcome_colours=OUTCOME_COLOURS, generated=f"{generated:%Y-%m-%d %H:%M}" if generated else "",
        targets=targets, rows=views, empty=[View(e) for e in empty],
        unreviewed=sum(1 for r in rows if r["unreviewed"]))
