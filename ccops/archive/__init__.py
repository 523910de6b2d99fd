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
half-written file; a run's files are all written to temporary names first and
renamed together, so a write that fails (a full disk) leaves nothing behind
and raises ArchiveError, one line naming the path and the errno.

Reports hold what the deployment looked like, so the archive is private:
files 0600 and folders 0700, or, with a reviewers' group configured
(`archive.group`), 0640 / 0750 owned by that group (Permissions).

Retention deletes runs (all four files) older than `archive.keep_days`, but
always keeps the latest completed and the latest failed run of each runbook:
a reviewer must still find what the last good run looked like and why the
last bad one broke, however long ago that was.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ccops.archive import indexstate
from ccops.archive.html import counts_text, render_index
from ccops.archive.records import (  # noqa: F401 - the archive's reading API, used as archive.<name>
    ACK_SUFFIX,
    COMPLETED,
    FAILED,
    FLEET_JSON,
    INDEX_HTML,
    INDEX_JSON,
    PROBLEM,
    SIDECARS,
    SUFFIXES,
    SUMMARY_KEYS,
    ack_path,
    check_statuses,
    compare_statuses,
    iter_record_files,
    load_summaries,
    read_acks,
    summary,
)
from ccops.archive.records import read_record as _read_record
from ccops.archive.store import (  # noqa: F401 - the archive's writing API, used as archive.<name>
    ArchiveError,
    Permissions,
    _set_mode,
    describe_os_error,
    group_id,
    make_dirs,
    write_atomic,
    write_files,
)
from ccops.core import fs
from ccops.core.errors import CcopsError
from ccops.core.paths import display_path
from ccops.core.reader import SectionReader

INDEX_LOCK = ".index.lock"
DEFAULT_KEEP_DAYS = 90


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



_RENDER_LOCK = threading.Lock()  # the warm-up thread and the runner's own renders share the exporters


@functools.lru_cache(maxsize=2)
def _exporter(exclude_input: bool) -> Any:
    """One HTMLExporter per mode and process: building one loads and compiles its templates."""
    from jinja2 import DictLoader

    from ccops.archive.exporter import ArchiveExporter

    # The archive is read offline, from a copy: no require.js or MathJax from a CDN (a browser's console
    # shows each as a failed load, and MathJax would typeset a "$HOME ... $PREFIX" as maths).
    offline = DictLoader({"ccops_offline.html.j2": "{%- extends 'index.html.j2' -%}"
                          "{%- block html_head_js_requirejs -%}{%- endblock -%}"
                          "{%- block html_head_js_mathjax -%}{%- endblock -%}"})
    # optimistic_validation: nbconvert validates the notebook once, after its preprocessors, not after each
    return ArchiveExporter(exclude_input=exclude_input, exclude_input_prompt=exclude_input,
                           exclude_output_prompt=exclude_input, extra_loaders=[offline],
                           template_file="ccops_offline.html.j2", optimistic_validation=True)


def render_html(notebook: Any, exclude_input: bool = False) -> str:
    """The notebook as a standalone HTML page (nbconvert); exclude_input drops the code for reviewers."""
    import nbformat

    node = notebook if isinstance(notebook, nbformat.NotebookNode) else nbformat.from_dict(notebook)
    with _RENDER_LOCK:
        body, _ = _exporter(exclude_input).from_notebook_node(node)
    return body


def render_reports(notebook: Any, record: dict[str, Any]) -> tuple[str, str]:
    """(full page, code-free page), each starting with the run's header (archive_header) and titled by it.

    The caller scrubs both afterwards, header included.
    """
    from ccops.archive.header import inject

    return (inject(render_html(notebook), record), inject(render_html(notebook, exclude_input=True), record))


def warm_renderer() -> None:
    """Import nbconvert and render a small notebook in both modes, so the run's own renders start warm.

    The first render in a process costs over a second (imports, templates,
    markdown and highlighting set-up); the runner calls this in a thread while
    papermill runs, when this process only waits.
    """
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Warm-up\n\nA *paragraph* with `code`."),
        nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/html": "<table><tr><td>1</td></tr></table>", "text/plain": "1"})]),
    ])
    for exclude_input in (False, True):
        render_html(notebook, exclude_input=exclude_input)



def resolve_record(archive_dir: Path, spec: str) -> Path:
    """The run record a reviewer names: a path to any of the run's files, or `runbook/STAMP` (stamp, start or run id).

    UsageError (exit 64) when nothing, or more than one run, matches.
    """
    from ccops.core.errors import UsageError

    root = Path(archive_dir)
    for candidate in (Path(spec), root / spec):
        if candidate.is_file():
            base = _run_base(candidate.name)
            if base is not None and (record := candidate.with_name(base + ".json")).is_file():
                return record
    runbook, _, key = spec.strip().rstrip("/").rpartition("/")
    matches = [r for r in list_records(root, runbook=runbook) if runbook and key and key in _run_keys(r)]
    if len(matches) != 1:
        why = "no archived run matches" if not matches else f"{len(matches)} runs match"
        raise UsageError(f"{spec!r}: {why}; give a run's file, or runbook/STAMP as `ccops reports list` shows")
    return root / str((matches[0].get("paths") or {}).get("json"))


def _run_keys(run: dict[str, Any]) -> set[str]:
    stem = Path(str((run.get("paths") or {}).get("json") or "")).name.removesuffix(".json")
    return {stem, stem.split("-")[0], str(run.get("start")), str(run.get("run_id"))}


def acknowledge(record_path: Path, by: str, note: str = "", at: datetime | None = None,
                perms: Permissions | None = None) -> dict[str, Any]:
    """Record that `by` reviewed the run (appended to its ack file; the run record is never rewritten)."""
    record_path = Path(record_path)
    record = _read_record(record_path)
    if record is None:
        raise CcopsError(f"{record_path}: not a run record")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    entry = {"by": by, "at": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "note": note}
    acks = [*read_acks(record_path), entry]
    text = json.dumps({"run_id": record.get("run_id"), "acks": acks}, indent=1, ensure_ascii=False) + "\n"
    write_atomic(ack_path(record_path), text, perms or Permissions.of_archive(record_path.parent))
    return entry



def list_records(archive_dir: Path, runbook: str | None = None, outcome: str | None = None,
                 newest: int | None = None) -> list[dict[str, Any]]:
    """Archived runs (summaries, as load_summaries reads them), newest first, optionally of one runbook
    and/or one outcome, and only the `newest` few of those.

    Served from the index state (indexstate.select_runs): the summaries are in its
    shards, and what changed since the last index update is read as the update
    would; without a state that can be trusted, from the run records.
    """
    name = runbook.removesuffix(".ipynb") if runbook else None
    records = indexstate.select_runs(Path(archive_dir), runbook=name, newest=None if outcome else newest)
    if outcome:
        records = [r for r in records if r.get("outcome") == outcome]
        if newest is not None:
            records = records[:max(newest, 0)]
    return records


def latest_per_runbook(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest of each runbook's runs (records newest first), by runbook name."""
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        latest.setdefault(str(r.get("runbook")), r)
    return [latest[name] for name in sorted(latest)]


def format_records(records: list[dict[str, Any]], archive_dir: Path | None = None) -> str:
    """For the terminal, what index.html shows: the latest run of each runbook, then every run.

    Report paths are the reviewer copy (without code) when there is one; with
    archive_dir they are given as openable paths rather than archive-relative.
    """
    if not records:
        return "no archived runs"
    latest = latest_per_runbook(records)
    parts = [
        "Latest run of each runbook",
        _text_table(("runbook", "outcome", "start", "duration", "findings", "report"),
                    [_text_row(r, archive_dir, runbook_first=True) for r in latest]),
        "",
        f"All runs, newest first ({len(records)})",
        _text_table(("start", "runbook", "outcome", "duration", "findings", "report"),
                    [_text_row(r, archive_dir) for r in records]),
    ]
    return "\n".join(parts)


def _text_row(r: dict[str, Any], archive_dir: Path | None, runbook_first: bool = False) -> tuple[str, ...]:
    paths = r.get("paths") or {}
    report = str(paths.get("report_html") or paths.get("html") or "")
    if report and archive_dir is not None:
        report = display_path(Path(archive_dir) / report)
    start, runbook, outcome = str(r.get("start") or ""), str(r.get("runbook") or ""), str(r.get("outcome") or "")
    detail = counts_text(r.get("counts"))
    if r.get("error"):
        detail = f"{detail}; {r['error']}" if detail else str(r["error"])
    head = (runbook, outcome, start) if runbook_first else (start, runbook, outcome)
    return (*head, _duration(r.get("duration_s")), detail, report)


def _text_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Columns padded to their widest cell; the last column (a path) is not padded."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1] for row in table
    )


# ---- the index ----------------------------------------------------------------

def rebuild_index(archive_dir: Path, perms: Permissions | None = None, full: bool = False) -> Sequence[dict[str, Any]]:
    """Bring index.html, index.json, the month pages and the index state up to date; returns the runs, newest first.

    Incremental (ccops.archive.indexstate): only folders whose files changed since
    the last update are read again, so the cost of indexing a new run, an ack or a
    recheck does not grow with the archive. `full`, or a state that is missing or
    fails its checks, rebuilds everything from the run records alone (a distrusted
    state is named on stderr and on the page). The runs returned are read from the
    index when looked at (their count is known at once).

    Without perms the archive keeps the modes its folder has (Permissions.of_archive).
    ArchiveError (nothing half-written) when the index cannot be written.
    """
    root = Path(archive_dir)
    perms = perms or Permissions.of_archive(root)
    try:
        make_dirs(root, perms)
    except OSError as exc:
        raise ArchiveError(root, exc) from None
    with _index_lock(root, perms):
        try:
            result = indexstate.update(root, perms, full=full)
        except OSError as exc:
            raise ArchiveError(Path(exc.filename or root), exc) from None
    return indexstate.IndexedRuns(root, result)


@contextmanager
def _index_lock(root: Path, perms: Permissions | None = None) -> Iterator[None]:
    """Serialise rebuilds: two runbooks finishing together must not leave the index of the one that read first.

    Whoever holds the lock reads the records after every earlier writer's
    record is on disk, so the last rebuild to finish always lists every run.
    The lock file stays empty, so taking it needs no free space.
    """
    path = root / INDEX_LOCK
    perms = perms or Permissions()
    with ExitStack() as stack:
        try:
            stack.enter_context(fs.exclusive_lock(path, blocking=True, mode=perms.file_mode))
        except OSError as exc:
            raise ArchiveError(path, exc) from None
        _set_mode(path, perms.file_mode, perms.gid)
        yield


def index_json(records: list[dict[str, Any]]) -> str:
    """A JSON list, one run per line: diffable and greppable, and written by the C encoder (indent is 5x slower)."""
    return indexstate.index_json(records)


def index_html(records: list[dict[str, Any]], generated: datetime | None = None) -> str:
    """The reviewers' page (archive_html) from summaries, newest first (every run on one page: a small archive)."""
    return render_index(records, generated or datetime.now(UTC))


def _duration(value: Any) -> str:
    return f"{float(value):.1f}s" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


# ---- retention ----------------------------------------------------------------

@dataclass
class ArchivedRun:
    """One run's files in the archive; outcome None when its run record is missing or unreadable."""

    stem: Path  # the files' common path without suffix
    runbook: str
    start: datetime  # naive UTC
    outcome: str | None
    files: list[Path] = field(default_factory=list)
    bytes: int = 0
    reason: str = ""

    def row(self, action: str, archive_dir: Path) -> dict[str, Any]:
        return {
            "action": action, "run": self.stem.relative_to(archive_dir).as_posix(), "runbook": self.runbook,
            "start": self.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": self.outcome,
            "files": len(self.files), "bytes": self.bytes, "reason": self.reason,
        }


@dataclass
class RetentionPlan:
    """What retention would delete and keep, and why; nothing happens until apply_retention."""

    archive_dir: Path
    now: datetime
    keep_days: int
    keep: list[ArchivedRun] = field(default_factory=list)
    delete: list[ArchivedRun] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(run.bytes for run in self.delete)

    def paths(self) -> list[Path]:
        """Every file to delete, each run's record first (a record must never point at deleted files)."""
        return [path for run in self.delete for path in run.files]

    def rows(self) -> list[dict[str, Any]]:
        """One row per run, deletions first, then what is kept, each newest first."""
        return ([r.row("delete", self.archive_dir) for r in self.delete]
                + [r.row("keep", self.archive_dir) for r in self.keep])


def keep_days_setting(settings: Any) -> int:
    """`archive.keep_days` from the settings file (default 90); ConfigError naming the key and the file."""
    section = SectionReader.of(settings, "archive")
    section.unknown(("keep_days", "group"))  # group: Settings.archive_group, read by the settings loader
    return section.integer("keep_days", DEFAULT_KEEP_DAYS, minimum=1)


def plan_retention(archive_dir: Path, now: datetime, keep_days: int) -> RetentionPlan:
    """Runs older than keep_days go, except the latest completed and the latest failed run of each runbook.

    `now` is naive UTC (or aware, converted). A run's age is its start; files
    without a readable record (a run killed mid-archive) are dated by the stamp
    in their name and are never the protected latest. Files not named like a
    run's are not ours and are left alone.
    """
    if keep_days < 0:
        raise ValueError(f"keep_days must not be negative, got {keep_days}")
    root = Path(archive_dir)
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    plan = RetentionPlan(root, now, keep_days)
    runs = scan_runs(root)
    protected: dict[tuple[str, str], ArchivedRun] = {}
    for run in runs:  # oldest first: the last one seen of each (runbook, kind) is its latest
        kind = "completed" if run.outcome in COMPLETED else "failed" if run.outcome in FAILED else None
        if kind:
            protected[(run.runbook, kind)] = run
    latest = {id(run): kind for (_, kind), run in protected.items()}
    cutoff = now - timedelta(days=keep_days)
    for run in reversed(runs):
        if run.start >= cutoff:
            run.reason = f"newer than {keep_days} days"
            plan.keep.append(run)
        elif id(run) in latest:
            run.reason = f"the latest {latest[id(run)]} run of {run.runbook}"
            plan.keep.append(run)
        else:
            run.reason = f"older than {keep_days} days" + ("" if run.outcome else "; no run record")
            plan.delete.append(run)
    return plan


def apply_retention(plan: RetentionPlan) -> int:
    """Delete the plan's runs (record first, then its other files), drop emptied folders, rebuild the index.

    Returns the bytes freed. Files already gone are skipped, so a plan applied
    twice, or raced by a second prune, does no harm.
    """
    root = Path(plan.archive_dir)
    freed = 0
    folders: set[Path] = set()
    for path in plan.paths():
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        freed += size
        folders.add(path.parent)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        _remove_empty_up_to(folder, root)
    rebuild_index(root)
    return freed


def _remove_empty_up_to(folder: Path, root: Path) -> None:
    """rmdir folder and its parents while empty, never root itself or anything outside it."""
    root = root.resolve()
    current = folder.resolve()
    while current != root and root in current.parents:
        try:
            current.rmdir()
        except OSError:  # not empty (another run's files, a new run arriving) or already gone
            return
        current = current.parent


def scan_runs(archive_dir: Path) -> list[ArchivedRun]:
    """Every run in the archive grouped by stem, oldest first, records before other files in each run."""
    root = Path(archive_dir)
    groups: dict[Path, list[Path]] = {}
    if not root.is_dir():
        return []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if dirpath == str(root):
            continue  # the index lives here, runs never do
        for name in filenames:
            base = _run_base(name)
            if base is not None:
                groups.setdefault(Path(dirpath) / base, []).append(Path(dirpath) / name)
    runs = []
    for stem, files in groups.items():
        run = _archived_run(root, stem, files)
        if run is not None:
            runs.append(run)
    runs.sort(key=lambda r: (r.start, r.stem.name))
    return runs


def _run_base(name: str) -> str | None:
    """The stem of a run's file name (`<stamp>-<runbook>[-n]`), None for anything else."""
    if name.startswith("."):
        return None
    for suffix in (*SIDECARS, ".report.html", ".ipynb", ".html", ".json"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return base if _stamp_of(base) is not None else None
    return None


def _stamp_of(base: str) -> datetime | None:
    if len(base) < 17 or base[16:17] != "-":
        return None
    try:
        return datetime.strptime(base[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None


def _archived_run(root: Path, stem: Path, files: list[Path]) -> ArchivedRun | None:
    files.sort(key=lambda p: (not p.name.endswith(".json") or p.name.endswith(SIDECARS), p.name))
    size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except OSError:
            pass
    record = _read_record(files[0]) if files[0].name.endswith(".json") else None
    named = _stamp_of(stem.name)
    start = _parse_start(record.get("start")) if record else None
    if record is not None and start is not None:
        return ArchivedRun(stem, str(record.get("runbook")), start, str(record.get("outcome") or "unknown"),
                           files, size)
    if named is None:
        return None
    relative = stem.parent.relative_to(root).parts
    runbook = "/".join(relative[:-2]) if len(relative) > 2 else "/".join(relative)
    return ArchivedRun(stem, runbook, named, None, files, size)


def _parse_start(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
