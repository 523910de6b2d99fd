"""The report archive: where each run's files go, and the index built from the run records alone.

Layout (under the archive dir, `outputs/` by default):

    <runbook>/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>-<name>.ipynb        executed notebook
                                                  .html         rendered report
                                                  .report.html  the same without code, for reviewers
                                                  .json         run record
    index.json  index.html

The run record is the unit of truth: it is written last, so a record on disk
means its notebook and HTML are complete, and the index is rebuilt from the
records only (never from notebooks, which are large and may be pruned). All
writes go through a temporary file and os.replace, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

INDEX_JSON = "index.json"
INDEX_HTML = "index.html"
SUFFIXES = (".ipynb", ".html", ".report.html", ".json")
SUMMARY_KEYS = (
    "runbook", "run_id", "start", "end", "as_of", "outcome", "exit_code", "duration_s", "counts", "paths", "error",
)
OUTCOME_COLOURS = {
    "ok": "#d4edda",
    "warning": "#fff3cd",
    "critical": "#f8d7da",
    "unknown": "#e2e3e5",
    "failed": "#f5c6cb",
    "timed-out": "#ffe0b2",
}


# ---- writing ----------------------------------------------------------------

def stamp(start: datetime) -> str:
    """YYYYMMDDTHHMMSSZ of a naive-UTC or aware instant."""
    return start.strftime("%Y%m%dT%H%M%SZ")


def reserve_stem(archive_dir: Path, runbook: str, start: datetime) -> Path:
    """The path stem (without suffix) of a new run's files; `-2`, `-3`, ... on a same-second collision.

    Callers hold the runbook's lock, so only a finished earlier run of the same
    runbook can collide; checking every suffix is enough.
    """
    folder = Path(archive_dir) / runbook / f"{start:%Y}" / f"{start:%m}"
    base = f"{stamp(start)}-{runbook.rsplit('/', 1)[-1]}"
    n = 1
    while True:
        name = base if n == 1 else f"{base}-{n}"
        stem = folder / name
        if not any(stem.with_name(name + s).exists() for s in SUFFIXES):
            return stem
        n += 1


def write_atomic(path: Path, text: str) -> None:
    """Write text so readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_html(notebook: Any, exclude_input: bool = False) -> str:
    """The notebook as a standalone HTML page (nbconvert); exclude_input drops the code for reviewers."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=exclude_input, exclude_input_prompt=exclude_input,
                            exclude_output_prompt=exclude_input)
    node = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.from_dict(notebook)
    body, _ = exporter.from_notebook_node(node)
    return body


# ---- reading ----------------------------------------------------------------

def iter_record_files(archive_dir: Path) -> Iterable[Path]:
    """Every run record: *.json under the runbook folders (dot-folders and the index skipped)."""
    root = Path(archive_dir)
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        at_root = dirpath == str(root)
        for name in filenames:
            if name.endswith(".json") and not name.startswith(".") and not (at_root and name == INDEX_JSON):
                yield Path(dirpath) / name


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a run record the index and `ccops reports list` show."""
    return {key: record.get(key) for key in SUMMARY_KEYS}


def load_summaries(archive_dir: Path) -> list[dict[str, Any]]:
    """Summaries of every readable run record, newest first; unreadable files are skipped."""
    found: list[dict[str, Any]] = []
    for path in iter_record_files(archive_dir):
        try:
            with open(path, encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "runbook" in record and "start" in record:
            found.append(summary(record))
    found.sort(key=lambda r: (str(r.get("start") or ""), str(r.get("run_id") or "")), reverse=True)
    return found


def list_records(archive_dir: Path, runbook: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
    """Archived runs (summaries), newest first, optionally of one runbook and/or one outcome."""
    records = load_summaries(archive_dir)
    if runbook:
        records = [r for r in records if r.get("runbook") == runbook.removesuffix(".ipynb")]
    if outcome:
        records = [r for r in records if r.get("outcome") == outcome]
    return records


def format_records(records: list[dict[str, Any]]) -> str:
    """A plain table for the terminal: one run per line."""
    if not records:
        return "no archived runs"
    rows = [("start", "runbook", "outcome", "duration", "findings", "report")]
    for r in records:
        rows.append((
            str(r.get("start") or ""),
            str(r.get("runbook") or ""),
            str(r.get("outcome") or ""),
            _duration(r.get("duration_s")),
            _counts_text(r.get("counts")),
            str((r.get("paths") or {}).get("html") or ""),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1] for row in rows
    )


# ---- the index ----------------------------------------------------------------

def rebuild_index(archive_dir: Path) -> list[dict[str, Any]]:
    """Write index.json and index.html from the run records alone; returns the summaries (newest first)."""
    root = Path(archive_dir)
    records = load_summaries(root)
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / INDEX_JSON, json.dumps(records, indent=1, ensure_ascii=False))
    write_atomic(root / INDEX_HTML, index_html(records))
    return records


def index_html(records: list[dict[str, Any]]) -> str:
    latest: dict[str, dict[str, Any]] = {}
    for r in records:  # newest first: the first seen per runbook is its latest
        latest.setdefault(str(r.get("runbook")), r)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ccops reports</title><style>",
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:2em}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f4f4f4}",
        "</style></head><body><h1>ccops reports</h1>",
        f"<p>{len(records)} runs archived.</p>",
        "<h2>Latest run of each runbook</h2>",
        _table(sorted(latest.values(), key=lambda r: str(r.get("runbook")))),
        "<h2>All runs, newest first</h2>",
        _table(records),
        "</body></html>",
    ]
    return "".join(parts)


def _table(records: list[dict[str, Any]]) -> str:
    head = ("<table><thead><tr><th>start</th><th>runbook</th><th>outcome</th><th>duration</th>"
            "<th>findings</th><th>report</th><th>notebook</th><th>error</th></tr></thead><tbody>")
    rows = []
    esc = html.escape
    for r in records:
        outcome = str(r.get("outcome") or "")
        paths = r.get("paths") or {}
        links = []
        for key, label in (("html", "report"), ("report_html", "without code")):
            if paths.get(key):
                links.append(f"<a href='{esc(paths[key])}'>{label}</a>")
        notebook = f"<a href='{esc(paths['ipynb'])}'>ipynb</a>" if paths.get("ipynb") else ""
        rows.append(
            f"<tr style='background:{OUTCOME_COLOURS.get(outcome, '#ffffff')}'>"
            f"<td>{esc(str(r.get('start') or ''))}</td><td>{esc(str(r.get('runbook') or ''))}</td>"
            f"<td><b>{esc(outcome)}</b></td><td>{_duration(r.get('duration_s'))}</td>"
            f"<td>{esc(_counts_text(r.get('counts')))}</td><td>{' · '.join(links)}</td><td>{notebook}</td>"
            f"<td>{esc(str(r.get('error') or ''))}</td></tr>"
        )
    return head + "".join(rows) + "</tbody></table>"


def _duration(value: Any) -> str:
    return f"{float(value):.1f}s" if isinstance(value, (int, float)) else ""


def _counts_text(counts: Any) -> str:
    if not isinstance(counts, dict):
        return ""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n)
