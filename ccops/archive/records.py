"""Reading the archive: run records, their sidecars (acks, rechecks), the summaries the index shows.

Split from ccops.archive so the index state (ccops.archive.indexstate) reads runs
exactly as a full rebuild does, one folder at a time, without importing the
package that imports it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ccops.archive.figures import figures, worst_findings
from ccops.archive.rechecks import RECHECK_SUFFIX, latest_for
from ccops.core.findings import Status, severity_rank

INDEX_JSON = "index.json"
INDEX_HTML = "index.html"
FLEET_JSON = "fleet.json"  # the fleet overview's data, at the root of a fleet's archive (ccops.archive.fleet)
ROOT_FILES = frozenset({INDEX_JSON, FLEET_JSON})  # JSON at the archive root that is ours, never a run record
SUFFIXES = (".ipynb", ".html", ".report.html", ".json")
ACK_SUFFIX = ".ack.json"  # reviewers' acknowledgements of a run, beside its record (never inside it)
SIDECARS = (ACK_SUFFIX, RECHECK_SUFFIX)  # files that belong to a run but are not its record
SUMMARY_KEYS = (
    "runbook", "run_id", "start", "end", "as_of", "outcome", "exit_code", "duration_s", "counts", "paths", "error",
    "parameters", "incident", "not_configured", "undecided", "mode", "user_host",
)
COMPLETED = ("ok", "warning", "critical", "unknown")  # the notebook ran to its end; its findings decided
FAILED = ("failed", "timed-out", "killed")  # the notebook did not finish


# ---- reading ----------------------------------------------------------------

def iter_record_files(archive_dir: Path) -> Iterable[Path]:
    """Every run record: *.json under the runbook folders (dot-folders and the index skipped)."""
    for path, _ in _records_with_siblings(archive_dir):
        yield path


def _records_with_siblings(archive_dir: Path) -> Iterable[tuple[Path, set[str]]]:
    """Each run record with the names of the files beside it, so a sidecar (.ack.json,
    .recheck.json) is opened only where it exists: trying to open two absent files per
    run was a third of an index rebuild at 10,000 runs."""
    root = Path(archive_dir)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        at_root = dirpath == str(root)
        siblings = set(filenames)
        for name in filenames:
            if is_record_name(name, at_root):
                yield Path(dirpath) / name, siblings


def is_record_name(name: str, at_root: bool = False) -> bool:
    """Could this file be a run record? *.json, not hidden (a temporary file), not a sidecar, not the index."""
    return (name.endswith(".json") and not name.startswith(".") and not name.endswith(SIDECARS)
            and not (at_root and name in ROOT_FILES))


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a run record the index and `ccops reports list` show.

    Besides the record's own fields: `worst`, its most severe findings (for the
    latest-per-runbook panel), and `figures`, the values of the charted checks
    (archive_figures), so the index page never needs the full findings.
    """
    from ccops.archive.header import run_mark

    found = {key: record.get(key) for key in SUMMARY_KEYS}
    findings = record.get("findings")
    found["mark"] = run_mark(record)
    found["worst"] = worst_findings(findings)
    found["figures"] = figures(findings)
    return found


def load_summaries(archive_dir: Path) -> list[dict[str, Any]]:
    """Summaries of every readable run record, newest first; unreadable files are skipped.

    Each also carries its reviewers' acknowledgements (`acks`) and, for a
    completed run, what changed since the runbook's previous completed run
    (`changes`), both computed here because they need more than one file.
    """
    found: list[dict[str, Any]] = []
    statuses: dict[int, dict[str, str]] = {}
    for path, siblings in _records_with_siblings(archive_dir):
        run = read_run(path, siblings)
        if run is not None:
            item, statuses[id(run[0])] = run
            found.append(item)
    sort_newest_first(found)
    add_changes(found, statuses)
    return found


def read_run(path: Path, siblings: set[str] | frozenset[str]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """One record's summary (with its acks and latest recheck, read only when `siblings` names them) and
    its checks' statuses (what `changes` compares); None when the file is not a readable run record."""
    record = read_record(path)
    if record is None:
        return None
    item = summary(record)
    stem = path.name.removesuffix(".json")
    item["acks"] = read_acks(path) if stem + ACK_SUFFIX in siblings else []
    item["recheck"] = latest_for(path) if stem + RECHECK_SUFFIX in siblings else None
    return item, check_statuses(record.get("findings"))


def run_order(r: dict[str, Any]) -> tuple[str, str]:
    """The key that orders runs: start, then run id (the index lists them by it, newest first)."""
    return (str(r.get("start") or ""), str(r.get("run_id") or ""))


def sort_newest_first(summaries: list[dict[str, Any]]) -> None:
    summaries.sort(key=run_order, reverse=True)


# ---- what changed since the previous run --------------------------------------------------

Previous = tuple[Any, Any, dict[str, str]]  # a completed run's (start, run id, check statuses)
PROBLEM = Status.UNKNOWN.rank  # UNKNOWN and worse are what a reviewer follows from run to run


def check_statuses(findings: Any) -> dict[str, str]:
    """Each check's worst status in a run (a finding a recovery resolved counts as OK)."""
    found: dict[str, str] = {}
    for f in findings if isinstance(findings, list) else []:
        if not isinstance(f, dict) or not f.get("check"):
            continue
        status = "OK" if f.get("resolved_by") else str(f.get("status") or "")
        held = found.get(str(f["check"]))
        if held is None or severity_rank(status) > severity_rank(held):
            found[str(f["check"])] = status
    return found


def compare_statuses(before: dict[str, str], after: dict[str, str]) -> dict[str, list[dict[str, str]]]:
    """Problems new, resolved, worse and better between two runs of a runbook (OK/INFO are not problems)."""
    changes: dict[str, list[dict[str, str]]] = {"new": [], "resolved": [], "worse": [], "better": []}
    if before == after:  # the common case (an hourly check like the one before): nothing moved
        return changes
    for check in sorted(set(before) | set(after)):
        old, new = before.get(check, "OK"), after.get(check, "OK")
        a, b = severity_rank(old), severity_rank(new)
        entry = {"check": check, "from": before.get(check, "-"), "to": after.get(check, "-")}
        if a < PROBLEM <= b:
            changes["new"].append(entry)
        elif b < PROBLEM <= a:
            changes["resolved"].append(entry)
        elif a >= PROBLEM and b > a:
            changes["worse"].append(entry)
        elif b >= PROBLEM and b < a:
            changes["better"].append(entry)
    return changes


def add_changes(summaries: list[dict[str, Any]], statuses: dict[int, dict[str, str]],
                before: dict[str, Previous] | None = None) -> dict[str, Previous]:
    """`changes` on each completed run: compared with the previous completed run of its runbook.

    `before` gives, per runbook, the completed run preceding these summaries (start, run id,
    statuses), for the index state that computes one folder at a time; returns the same for
    the newest completed run of each runbook here, to carry on with.
    """
    previous: dict[str, Previous] = dict(before or {})
    for item in reversed(summaries):  # oldest first
        if item.get("outcome") not in COMPLETED:
            item["changes"] = None
            continue
        name = str(item.get("runbook"))
        held = previous.get(name)
        if held is None:
            item["changes"] = None
        else:
            item["changes"] = {"since": held[0], "since_run": held[1], **compare_statuses(held[2], statuses[id(item)])}
        previous[name] = (item.get("start"), item.get("run_id"), statuses[id(item)])
    return previous


# ---- reviewers' acknowledgements ----------------------------------------------------------

def ack_path(record_path: Path) -> Path:
    """`<stem>.ack.json` beside the run record."""
    return Path(record_path).with_name(Path(record_path).name.removesuffix(".json") + ACK_SUFFIX)


def read_acks(record_path: Path) -> list[dict[str, Any]]:
    """Who reviewed the run and when, oldest first ([] when nobody did, or the file is unreadable)."""
    try:
        data = json.loads(ack_path(record_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    items = data.get("acks") if isinstance(data, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []



def read_record(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and "runbook" in record and "start" in record:
        return record
    return None
