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

import errno
import functools
import grp
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ccops.archive.figures import figures, worst_findings
from ccops.archive.html import counts_text, render_index
from ccops.archive.rechecks import RECHECK_SUFFIX, latest_for
from ccops.core import fs
from ccops.core.errors import CcopsError
from ccops.core.findings import Status, severity_rank
from ccops.core.paths import display_path
from ccops.core.reader import SectionReader

INDEX_JSON = "index.json"
INDEX_HTML = "index.html"
INDEX_LOCK = ".index.lock"
SUFFIXES = (".ipynb", ".html", ".report.html", ".json")
ACK_SUFFIX = ".ack.json"  # reviewers' acknowledgements of a run, beside its record (never inside it)
SIDECARS = (ACK_SUFFIX, RECHECK_SUFFIX)  # files that belong to a run but are not its record
SUMMARY_KEYS = (
    "runbook", "run_id", "start", "end", "as_of", "outcome", "exit_code", "duration_s", "counts", "paths", "error",
    "parameters", "incident", "not_configured", "undecided", "mode", "user_host",
)
COMPLETED = ("ok", "warning", "critical", "unknown")  # the notebook ran to its end; its findings decided
FAILED = ("failed", "timed-out", "killed")  # the notebook did not finish
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


class ArchiveError(CcopsError):
    """A file of the archive could not be written; nothing partial was left. Exit 3 (run failed)."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = Path(path)
        self.errno = exc.errno
        super().__init__(f"cannot write {self.path}: {describe_os_error(exc)}")


def describe_os_error(exc: OSError) -> str:
    """`No space left on device (ENOSPC)`: the text and the symbolic errno an operator can search for."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


@dataclass(frozen=True)
class Permissions:
    """Modes (and group) of the archive's files and folders."""

    file_mode: int = 0o600
    dir_mode: int = 0o700
    gid: int | None = None

    @classmethod
    def for_settings(cls, settings: Any) -> Permissions:
        """Private by default; with `archive.group` (Settings.archive_group) 0640/0750 owned by that group."""
        group = getattr(settings, "archive_group", None)
        if group in (None, ""):
            return cls()
        return cls(0o640, 0o750, group_id(str(group)))

    @classmethod
    def of_archive(cls, archive_dir: Path) -> Permissions:
        """For writers without settings (`reports index`, retention): keep what the archive folder says.

        A folder readable by its group is a reviewers' archive (0640/0750 for
        that group); anything else, or a new archive, is private.
        """
        try:
            st = Path(archive_dir).stat()
        except OSError:
            return cls()
        if st.st_mode & 0o050 == 0o050 and not st.st_mode & 0o007:
            return cls(0o640, 0o750, st.st_gid)
        return cls()


def group_id(group: str) -> int:
    """The gid of a group name (or number) this process may give files to; ConfigError otherwise."""
    from ccops.core.settings import ConfigError

    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"archive.group: no group named {group!r} on this host") from None
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise ConfigError(f"archive.group: {group!r}: this user is not a member, so cannot give the archive to it")
    return gid


def make_dirs(path: Path, perms: Permissions | None = None, top: Path | None = None) -> list[Path]:
    """Create path and its missing parents with perms' folder mode; the folders created, outermost first.

    Folders between `top` (the archive root, included) and path that exist
    already get the mode and group too, so an archive made by an older
    version (0755) turns private as it is written to.
    """
    perms = perms or Permissions()
    path = Path(path)
    created: list[Path] = []
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=perms.dir_mode)
        except FileExistsError:
            continue
        created.append(folder)
    chain = [path]
    if top is not None:
        top = Path(top)
        chain = [p for p in [path, *path.parents] if p == top or top in p.parents]
    for folder in set(chain) | set(created):
        _set_mode(folder, perms.dir_mode, perms.gid)
    return created


def _set_mode(path: Path, mode: int, gid: int | None) -> None:
    try:
        st = path.stat()
        if st.st_uid != os.geteuid() and os.geteuid() != 0:
            return  # not ours to change
        if gid is not None and st.st_gid != gid:
            os.chown(path, -1, gid)
        if st.st_mode & 0o7777 != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def write_files(items: list[tuple[Path, str]], perms: Permissions | None = None, top: Path | None = None) -> None:
    """Write every (path, text) or none: each to a temporary name beside it, then all renamed, in order.

    Any failure (ENOSPC above all) removes every temporary file, every file
    already renamed into place and every folder this call created, then
    raises ArchiveError naming the path. Put the file that marks the set as
    complete (a run record) last.
    """
    perms = perms or Permissions()
    created: list[Path] = []
    temps: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    current = items[0][0] if items else Path(".")
    try:
        for path, _ in items:
            current = Path(path)
            created += make_dirs(current.parent, perms, top)
        for path, text in items:
            current = Path(path)
            temps.append((_write_temp(current, text, perms), current))
        for tmp, path in temps:
            current = path
            os.replace(tmp, path)
            placed.append(path)
        for folder in {path.parent for _, path in temps}:
            fs.fsync_dir(folder)
    except BaseException as exc:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise ArchiveError(current, exc) from None
        raise


def _write_temp(path: Path, text: str, perms: Permissions) -> Path:
    return fs.write_temp(path, text, perms.file_mode, gid=perms.gid)


def write_atomic(path: Path, text: str, perms: Permissions | None = None) -> None:
    """Write text so readers see the old file or the whole new one, never a part (0600 unless perms say)."""
    write_files([(Path(path), text)], perms)


_RENDER_LOCK = threading.Lock()  # the warm-up thread and the runner's own renders share the exporters


@functools.lru_cache(maxsize=2)
def _exporter(exclude_input: bool) -> Any:
    """One HTMLExporter per mode and process: building one loads and compiles its templates."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # The archive is read offline, from a copy: no require.js or MathJax from a CDN (a browser's console
    # shows each as a failed load, and MathJax would typeset a "$HOME ... $PREFIX" as maths).
    offline = DictLoader({"ccops_offline.html.j2": "{%- extends 'index.html.j2' -%}"
                          "{%- block html_head_js_requirejs -%}{%- endblock -%}"
                          "{%- block html_head_js_mathjax -%}{%- endblock -%}"})
    return HTMLExporter(exclude_input=exclude_input, exclude_input_prompt=exclude_input,
                        exclude_output_prompt=exclude_input, extra_loaders=[offline],
                        template_file="ccops_offline.html.j2")


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
            if (name.endswith(".json") and not name.startswith(".") and not name.endswith(SIDECARS)
                    and not (at_root and name == INDEX_JSON)):
                yield Path(dirpath) / name, siblings


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
        record = _read_record(path)
        if record is not None:
            item = summary(record)
            stem = path.name.removesuffix(".json")
            item["acks"] = read_acks(path) if stem + ACK_SUFFIX in siblings else []
            item["recheck"] = latest_for(path) if stem + RECHECK_SUFFIX in siblings else None
            statuses[id(item)] = check_statuses(record.get("findings"))
            found.append(item)
    found.sort(key=lambda r: (str(r.get("start") or ""), str(r.get("run_id") or "")), reverse=True)
    _add_changes(found, statuses)
    return found


# ---- what changed since the previous run --------------------------------------------------

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


def _add_changes(summaries: list[dict[str, Any]], statuses: dict[int, dict[str, str]]) -> None:
    """`changes` on each completed run: compared with the previous completed run of its runbook."""
    previous: dict[str, dict[str, Any]] = {}
    for item in reversed(summaries):  # oldest first
        if item.get("outcome") not in COMPLETED:
            item["changes"] = None
            continue
        name = str(item.get("runbook"))
        before = previous.get(name)
        if before is None:
            item["changes"] = None
        else:
            item["changes"] = {"since": before.get("start"), "since_run": before.get("run_id"),
                               **compare_statuses(statuses[id(before)], statuses[id(item)])}
        previous[name] = item


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


def _run_keys(summary: dict[str, Any]) -> set[str]:
    stem = Path(str((summary.get("paths") or {}).get("json") or "")).name.removesuffix(".json")
    return {stem, stem.split("-")[0], str(summary.get("start")), str(summary.get("run_id"))}


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


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if isinstance(record, dict) and "runbook" in record and "start" in record:
        return record
    return None


def list_records(archive_dir: Path, runbook: str | None = None, outcome: str | None = None) -> list[dict[str, Any]]:
    """Archived runs (summaries), newest first, optionally of one runbook and/or one outcome."""
    records = load_summaries(archive_dir)
    if runbook:
        records = [r for r in records if r.get("runbook") == runbook.removesuffix(".ipynb")]
    if outcome:
        records = [r for r in records if r.get("outcome") == outcome]
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

def rebuild_index(archive_dir: Path, perms: Permissions | None = None) -> list[dict[str, Any]]:
    """Write index.json and index.html from the run records alone; returns the summaries (newest first).

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
        records = load_summaries(root)
        write_files([(root / INDEX_JSON, index_json(records)), (root / INDEX_HTML, index_html(records))], perms)
    return records


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
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def index_html(records: list[dict[str, Any]], generated: datetime | None = None) -> str:
    """The reviewers' page (archive_html) from summaries, newest first."""
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
