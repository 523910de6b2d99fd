"""The archive index kept up to date one folder at a time, so adding a run costs the same at 100 or 100,000 runs.

Why: the index follows every run (the runner, `reports ack`, a recheck and
retention all call rebuild_index), and reading every record again took 2.6 s
at 100,000 runs before a byte of the page was written (issue 17.4). What
changes after a run is one folder of the archive (`<runbook>/<YYYY>/<MM>`),
so the index keeps, per folder, the summaries of its runs, and re-reads only
folders whose contents changed.

The state, all files inside the archive (written atomically; a mirror of the
archive copies them like any other file):

    .index/manifest.json                  every folder's mtime; per folder holding runs, its shard and
                                          the figures the front page needs (counts, latest runs, chart points)
    .index/shards/f-<folder>.<sha>.json   the summaries of one folder's runs, named by their content
    index.html  index.json                the front page: the latest run of each runbook, key figures, the
                                          newest RECENT_RUNS runs, and a link to every month
    index-<YYYY>-<MM>.html                every run of one month

What changed is found without listing unchanged folders: a folder's mtime
changes whenever a file in it is created, renamed over or deleted, which is
how the archive writes everything (a run's files, an ack, a recheck, a
retention delete). A folder whose mtime is within RACY_NS of the scan is
scanned again next time (two changes within one clock tick leave one mtime:
git's "racily clean" problem). In a changed folder, a record or sidecar is
re-read only when its inode, mtime or size differ from the shard's.

Reading: archive.list_records (`ccops reports list`, the dead man's switch,
`reports ack RUNBOOK/STAMP`) takes the summaries from the shards too
(select_runs): what changed since the last update is found and read as an
update would, in memory, so a run whose index update failed is listed all the
same, and one runbook's newest runs cost a shard or two, not every record.

Writing: a full rebuild writes a shard per folder and a page per month (70
files at 10,000 runs); store.write_files fsyncs them together, then renames,
then fsyncs their folders, and the manifest goes in a later set than the shards
it names, so after a crash it names only shards that are on disk.

Trust: the manifest is checked (kind, version, shape) on every update, every
shard file it names must exist with its recorded size, and a shard read is
checked against the manifest's sha256. Anything wrong raises StateError; the
caller then rebuilds the whole state from the run records and says so on
stderr and on the page. A shard is never rewritten in place: a new one is
written under its new name before the manifest names it, so a crash between
the two leaves the old, consistent state.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote

from ccops.archive.figures import FIGURE_CHECKS, run_day
from ccops.archive.html import STRIP_RUNS, is_unreviewed_critical, render_index
from ccops.archive.rechecks import RECHECK_SUFFIX, latest_for
from ccops.archive.records import (
    ACK_SUFFIX,
    COMPLETED,
    INDEX_HTML,
    INDEX_JSON,
    Previous,
    add_changes,
    is_record_name,
    load_summaries,
    read_acks,
    read_run,
    run_order,
)
from ccops.archive.store import Permissions, make_dirs, write_files
from ccops.core.paths import display_path

STATE_DIR = ".index"
MANIFEST = "manifest.json"
SHARDS = "shards"
KIND = "ccops-index-state"
SHARD_KIND = "ccops-index-shard"
VERSION = 1
RACY_NS = 3_000_000_000  # a folder or file changed this recently is looked at again next time
RECENT_RUNS = 500  # rows of the front page's runs table (and of index.json); older runs are on their month's page
MONTH_PAGE = "index-{}.html"
UNDATED = "undated"
_MONTH = re.compile(r"\d{4}-\d{2}")


class StateError(Exception):
    """The index state on disk cannot be trusted (unreadable, altered, or from another version)."""


# ---- one folder's runs ------------------------------------------------------------------------

@dataclass
class Run:
    """One run as a shard keeps it: its record's name and signature, its sidecars' signatures, what the index shows."""

    file: str
    summary: dict[str, Any]
    statuses: dict[str, str]
    sig: list[int] | None  # [inode, mtime_ns, size] of the record; None: read it again next time
    sidecars: dict[str, list[int] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sig": self.sig, "sidecars": self.sidecars, "statuses": self.statuses,
                "summary": self.summary}


def _signature(st: os.stat_result, now_ns: int) -> list[int] | None:
    if now_ns - st.st_mtime_ns < RACY_NS:
        return None
    return [st.st_ino, st.st_mtime_ns, st.st_size]


def _sidecar_names(record_name: str) -> tuple[str, str]:
    stem = record_name.removesuffix(".json")
    return stem + ACK_SUFFIX, stem + RECHECK_SUFFIX


def read_folder(root: Path, rel: str, names: list[str], old: dict[str, Run], now_ns: int) -> list[Run]:
    """The runs of one folder, newest first: unchanged records taken from `old`, the rest read again.

    A run whose record is unchanged but whose ack or recheck file changed gets
    those re-read (an ack after the run updates its entry).
    """
    folder = root / rel if rel else root
    present = set(names)
    runs: list[Run] = []
    for name in names:
        if not is_record_name(name, at_root=not rel):
            continue
        path = folder / name
        try:
            st = os.stat(path)
        except OSError:
            continue
        sig = _signature(st, now_ns)
        sidecars: dict[str, list[int] | None] = {}
        for side in _sidecar_names(name):
            if side in present:
                try:
                    sidecars[side] = _signature(os.stat(folder / side), now_ns)
                except OSError:
                    continue
        held = old.get(name)
        if held is not None and held.sig is not None and held.sig == sig:
            if held.sidecars != sidecars or None in sidecars.values():
                ack, recheck = _sidecar_names(name)
                held.summary["acks"] = read_acks(path) if ack in sidecars else []
                held.summary["recheck"] = latest_for(path) if recheck in sidecars else None
                held.sidecars = sidecars
            runs.append(held)
            continue
        read = read_run(path, present)
        if read is not None:
            runs.append(Run(name, read[0], read[1], sig, sidecars))
    runs.sort(key=lambda r: run_order(r.summary), reverse=True)
    return runs


def month_of(summary: dict[str, Any]) -> str:
    """`YYYY-MM` of a run's start (the month page it is listed on), `undated` without one."""
    start = str(summary.get("start") or "")[:7]
    return start if _MONTH.fullmatch(start) else UNDATED


def chart_points(summaries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The few runs of a folder that can be a point of a chart (figures.chart_series), in brief.

    A day's point of a series is the value of its most preferred check, from the
    latest run that has it; the latest run with a given check on a given day is
    therefore the only one of that check and day that can win, and the longest run
    of a runbook's day its only duration point. Keeping those runs per folder
    keeps the charts exact without reading every folder's runs again.
    """
    kept: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}
    longest: dict[tuple[str, Any], tuple[float, dict[str, Any]]] = {}
    for s in summaries:
        day = run_day(s)
        if day is None:
            continue
        when = str(s.get("as_of") or s.get("start") or "")
        for check in s.get("figures") or {}:
            if check in FIGURE_CHECKS:
                held = kept.get((check, day))
                if held is None or when >= held[0]:
                    kept[(check, day)] = (when, s)
        seconds = s.get("duration_s")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            key = (str(s.get("runbook")), day)
            if key not in longest or float(seconds) > longest[key][0]:
                longest[key] = (float(seconds), s)
    chosen = {id(s): s for _, s in kept.values()} | {id(s): s for _, s in longest.values()}
    return [{k: s.get(k) for k in ("runbook", "as_of", "start", "duration_s", "figures")} for s in chosen.values()]


def _latest_brief(s: dict[str, Any]) -> dict[str, Any]:
    """What the fleet overview shows of a runbook's latest run."""
    paths = s.get("paths") or {}
    acks = s.get("acks") or []
    return {"run_id": s.get("run_id"), "start": s.get("start"), "outcome": s.get("outcome"),
            "acked": bool(acks), "acked_by": str(acks[-1].get("by") or "") if acks and isinstance(acks[-1], dict) else "",
            "report": paths.get("report_html") or paths.get("html") if isinstance(paths, dict) else None,
            "counts": s.get("counts"), "error": str(s.get("error") or "")[:300] or None,
            "worst": s.get("worst") or []}


def runbook_books(runs: list[Run], before: dict[str, str | None]) -> dict[str, dict[str, Any]]:
    """Per runbook in a folder (runs newest first): its count, first and last run, latest completed run
    (what the next folder's first completed run is compared with) and the brief of its latest run."""
    books: dict[str, dict[str, Any]] = {}
    latest: dict[str, dict[str, Any]] = {}
    for run in reversed(runs):  # oldest first: the last seen of each runbook is its latest
        s = run.summary
        name = str(s.get("runbook"))
        book = books.get(name)
        if book is None:
            book = books[name] = {"runs": 0, "first": list(run_order(s)), "completed": None,
                                  "before": before.get(name)}
        book["runs"] += 1
        latest[name] = s
        if s.get("outcome") in COMPLETED:
            book["completed"] = [s.get("start"), s.get("run_id"), run.statuses]
    for name, s in latest.items():
        books[name]["last"] = list(run_order(s))
        books[name]["latest"] = _latest_brief(s)
    return books


def folder_entry(shard: str, digest: str, size: int, runs: list[Run], before: dict[str, str | None],
                 books: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The manifest's entry of a folder: enough for the front page and the fleet without opening the shard.

    `books`: the folder's runbook_books when the caller has them already (their
    `before` is set here), so a full rebuild reads each folder's runs once for them.
    """
    outcomes: dict[str, int] = {}
    months: dict[str, int] = {}
    unreviewed = 0
    for run in runs:
        s = run.summary
        outcome = str(s.get("outcome") or "")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        month = month_of(s)
        months[month] = months.get(month, 0) + 1
        unreviewed += is_unreviewed_critical(s)
    if books is None:
        books = runbook_books(runs, before)
    else:
        for name, book in books.items():
            book["before"] = before.get(name)
    return {"shard": shard, "sha256": digest, "bytes": size, "runs": len(runs),
            "first": list(run_order(runs[-1].summary)), "last": list(run_order(runs[0].summary)),
            "outcomes": outcomes, "months": months, "unreviewed": unreviewed, "runbooks": books,
            "chart": chart_points(r.summary for r in runs)}


# ---- the state on disk -----------------------------------------------------------------------

def state_dir(root: Path) -> Path:
    return Path(root) / STATE_DIR


def load_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest, checked; None when there is none (a new archive, or one indexed by an older ccops)."""
    path = state_dir(root) / MANIFEST
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"{display_path(path)}: unreadable ({type(exc).__name__}: {exc})") from None
    try:
        if data["kind"] != KIND or data["version"] != VERSION:
            raise StateError(f"{display_path(path)}: not an index state of this version "
                             f"({data.get('kind')!r} version {data.get('version')!r})")
        dirs, folders = data["dirs"], data["folders"]
        if not isinstance(dirs, dict) or not isinstance(folders, dict):
            raise TypeError("dirs and folders must be objects")
        for rel, entry in folders.items():
            if rel not in dirs:
                raise ValueError(f"folder {rel!r} is not among the scanned folders")
            for key in ("shard", "sha256", "bytes", "runs", "first", "last", "outcomes", "months", "unreviewed",
                        "runbooks", "chart"):
                entry[key]  # noqa: B018 - a missing key is a KeyError, reported below
            if not isinstance(entry["runbooks"], dict) or not entry["runs"]:
                raise ValueError(f"folder {rel!r}: no runs")
    except StateError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{display_path(path)}: malformed ({type(exc).__name__}: {exc})") from None
    return data


def check_shard_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every shard the manifest names exists with its size (cheap; their content is checked when read)."""
    folder = state_dir(root) / SHARDS
    for rel, entry in manifest["folders"].items():
        path = folder / entry["shard"]
        try:
            size = path.stat().st_size
        except OSError:
            raise StateError(f"{display_path(path)}: missing (the shard of {rel or '.'})") from None
        if size != entry["bytes"]:
            raise StateError(f"{display_path(path)}: {size} bytes, the manifest says {entry['bytes']}")
        if path.stat().st_mtime_ns != entry.get("mtime_ns"):
            raise StateError(f"{display_path(path)}: changed since the index wrote it")


def load_shard(root: Path, rel: str, entry: dict[str, Any]) -> list[Run]:
    """A folder's runs from its shard, after checking the shard against the manifest's sha256."""
    path = state_dir(root) / SHARDS / entry["shard"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StateError(f"{display_path(path)}: unreadable ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise StateError(f"{display_path(path)}: its content does not match the manifest's sha256")
    try:
        shard = json.loads(data)
        if shard["kind"] != SHARD_KIND or shard["version"] != VERSION or shard["folder"] != rel:
            raise ValueError(f"a shard of {shard.get('folder')!r}, kind {shard.get('kind')!r}")
        return [Run(r["file"], r["summary"], r["statuses"], r["sig"], r["sidecars"]) for r in shard["runs"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(f"{display_path(path)}: malformed ({type(exc).__name__}: {exc})") from None


def shard_text(rel: str, runs: list[Run]) -> str:
    """One run per line, like index.json: diffable, and written by the C encoder."""
    lines = ",\n".join(json.dumps(r.to_json(), ensure_ascii=False) for r in runs)
    return (f'{{"kind": "{SHARD_KIND}", "version": {VERSION}, "folder": {json.dumps(rel, ensure_ascii=False)},'
            f' "runs": [\n{lines}\n]}}\n')


def shard_name(rel: str, digest: str) -> str:
    return f"f-{quote(rel, safe='')}.{digest[:16]}.json"


# ---- finding what changed --------------------------------------------------------------------

def scan(root: Path, previous: dict[str, int | None], now_ns: int) -> tuple[dict[str, int | None], dict[str, list[str]]]:
    """(every folder's mtime, the file names of each folder that changed) - listing only folders that changed.

    A folder's mtime is read before it is listed, so a file arriving during the
    listing makes the folder look changed next time; hidden entries (the state,
    temporary files of writes in progress) are skipped, as load_summaries does.
    """
    children: dict[str, list[str]] = {}
    for rel in previous:
        if rel:
            children.setdefault(rel.rpartition("/")[0], []).append(rel)
    dirs: dict[str, int | None] = {}
    changed: dict[str, list[str]] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        path = root / rel if rel else root
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            continue  # gone since its parent was listed: its runs leave the index
        held = previous.get(rel)
        if held is not None and held == mtime:
            dirs[rel] = mtime
            stack.extend(children.get(rel, ()))
            continue
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        names = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                stack.append(f"{rel}/{entry.name}" if rel else entry.name)
            else:
                names.append(entry.name)
        dirs[rel] = None if now_ns - mtime < RACY_NS else mtime
        changed[rel] = names
    return dirs, changed


# ---- the update ------------------------------------------------------------------------------

@dataclass
class Update:
    """What one update did: the runs indexed, whether it started from scratch, and why."""

    total: int
    full: bool
    reason: str  # why the state was rebuilt ("" when updated, or built for the first time)
    folders_read: int
    runs_read: int


class _Loaded:
    """Shards read during one update, read at most once each."""

    def __init__(self, root: Path, folders: dict[str, dict[str, Any]]) -> None:
        self.root = root
        self.folders = folders
        self.runs: dict[str, list[Run]] = {}

    def get(self, rel: str) -> list[Run]:
        if rel not in self.runs:
            self.runs[rel] = load_shard(self.root, rel, self.folders[rel])
        return self.runs[rel]


def update(root: Path, perms: Permissions, full: bool = False, generated: datetime | None = None) -> Update:
    """Bring the index state and pages up to date with the archive (the caller holds the index lock).

    Incremental unless `full`, or the state is missing or cannot be trusted: then
    everything is rebuilt from the run records, and a distrusted state is named on
    stderr (and on the page) with what was wrong with it.
    """
    reason = ""
    manifest = None
    with _no_cyclic_gc():
        if not full:
            try:
                manifest = load_manifest(root)
                if manifest is not None:
                    check_shard_files(root, manifest)
                    return _update(root, perms, manifest, "", generated)
            except StateError as exc:
                reason = str(exc)
        try:
            return _update(root, perms, None, reason or ("full rebuild requested" if full else ""), generated)
        finally:
            if reason:
                print(f"ccops: warning: archive index state not trusted: {reason}; rebuilt it from the run records",
                      file=sys.stderr)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector off while the index is built, back on (if it was) afterwards.

    Why: a full rebuild makes a few million dicts, lists and strings that all
    stay alive until it ends, so each collection the allocations trigger walks
    them all again for nothing: 13% of a rebuild's CPU at 10,000 runs. They hold
    no reference cycles; whatever is garbage is freed by reference counting.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _Changes:
    """The archive as it is now, against the state's manifest: worked out in memory, nothing written.

    An update writes it (shards, manifest, pages); a reader (select_runs) takes its
    runs from it, so `ccops reports list` sees a run whose index update failed or
    has not happened yet, as reading every record would.
    """

    dirs: dict[str, int | None]  # every folder's mtime (None: look again next time)
    folders: dict[str, dict[str, Any]]  # the manifest's entries of folders still holding runs
    loaded: _Loaded
    dirty: dict[str, list[Run]]  # folders whose shard must be written again, their `changes` recomputed
    befores: dict[str, dict[str, Previous]]  # per dirty folder, each runbook's completed run before it
    books: dict[str, dict[str, dict[str, Any]]]  # runbook_books of the folders read again
    months: set[str]  # months whose runs changed (before the update)
    folders_read: int
    runs_read: int

    def runs_of(self, rel: str) -> list[Run]:
        return self.dirty[rel] if rel in self.dirty else self.loaded.get(rel)

    def books_of(self, rel: str) -> dict[str, dict[str, Any]]:
        return self.books[rel] if rel in self.books else self.folders[rel]["runbooks"]

    def holders(self) -> set[str]:
        """Every folder holding runs now."""
        return set(self.folders) | set(self.dirty)


def _changes(root: Path, manifest: dict[str, Any] | None, now_ns: int) -> _Changes:
    """What changed since the manifest (everything when there is none): folders listed, records read, the
    runbook chains followed, and the `changes` of every folder that needs writing again recomputed."""
    previous_dirs: dict[str, int | None] = manifest["dirs"] if manifest else {}
    folders: dict[str, dict[str, Any]] = dict(manifest["folders"]) if manifest else {}
    loaded = _Loaded(root, dict(folders))
    dirs, changed = scan(root, previous_dirs, now_ns)

    dirty: dict[str, list[Run]] = {}  # folders whose runs (or their changes) must be written again
    months_touched: set[str] = set()
    runs_read = 0
    for rel in [r for r in folders if r not in dirs]:  # folders gone (retention emptied them)
        months_touched |= set(folders.pop(rel)["months"])
    for rel, names in changed.items():
        old = {r.file: r for r in loaded.get(rel)} if rel in folders else {}
        runs = read_folder(root, rel, names, old, now_ns)
        runs_read += sum(1 for r in runs if old.get(r.file) is not r)
        if rel in folders:
            months_touched |= set(folders[rel]["months"])
        if runs:
            dirty[rel] = runs
        elif rel in folders:
            del folders[rel]

    # the runbook chains: a folder's first completed run is compared with the previous folder's last
    infos: dict[str, dict[str, dict[str, Any]]] = {rel: e["runbooks"] for rel, e in folders.items() if rel not in dirty}
    fresh = {rel: runbook_books(runs, {}) for rel, runs in dirty.items()}  # chain-made dirty ones keep their books
    infos.update(fresh)
    chains: dict[str, list[tuple[list[str], str]]] = {}
    for rel, books in infos.items():
        for name, book in books.items():
            chains.setdefault(name, []).append((list(book["first"]), rel))
    befores: dict[str, dict[str, Previous]] = {}
    for name, chain in chains.items():
        held: Previous | None = None
        for _, rel in sorted(chain):
            book = infos[rel][name]
            if held is not None:
                befores.setdefault(rel, {})[name] = held
            expected = held[1] if held is not None else None
            if rel not in dirty and book["completed"] is not None and book.get("before") != expected:
                dirty[rel] = loaded.get(rel)
                months_touched |= set(folders[rel]["months"])
            if book["completed"] is not None:
                held = (book["completed"][0], book["completed"][1], book["completed"][2])
    for rel, runs in dirty.items():
        add_changes([r.summary for r in runs], {id(r.summary): r.statuses for r in runs}, befores.get(rel, {}))
    return _Changes(dirs, folders, loaded, dirty, befores, fresh, months_touched, len(changed), runs_read)


def _update(root: Path, perms: Permissions, manifest: dict[str, Any] | None, reason: str,
            generated: datetime | None) -> Update:
    generated = generated or datetime.now(UTC)
    found = _changes(root, manifest, time.time_ns())
    dirs, folders, loaded, dirty, months_touched = found.dirs, found.folders, found.loaded, found.dirty, found.months

    shard_files: list[tuple[Path, str]] = []
    shards = state_dir(root) / SHARDS
    for rel, runs in dirty.items():
        text = shard_text(rel, runs)
        data = text.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        name = shard_name(rel, digest)
        before = {book: held[1] for book, held in found.befores.get(rel, {}).items()}
        folders[rel] = folder_entry(name, digest, len(data), runs, before, found.books.get(rel))
        months_touched |= set(folders[rel]["months"])
        loaded.runs[rel] = runs
        loaded.folders[rel] = folders[rel]
        shard_files.append((shards / name, text))  # even when one of that name exists: it may be the damaged one
    make_dirs(shards, perms, top=root)
    if shard_files:
        write_files(shard_files, perms)
    for rel in dirty:  # a shard is never written again under its name: an mtime that moves means someone else did
        folders[rel]["mtime_ns"] = (shards / folders[rel]["shard"]).stat().st_mtime_ns

    total = sum(e["runs"] for e in folders.values())
    full: dict[str, Any] | None = (manifest.get("full") if manifest else
                                   {"at": f"{generated:%Y-%m-%dT%H:%M:%SZ}", "reason": reason, "runs": total})
    new_manifest = {"kind": KIND, "version": VERSION, "dirs": dirs, "folders": folders, "full": full}
    pages = _month_pages(root, folders, loaded, months_touched, generated)
    recent = _recent_runs(folders, loaded)
    front = _front_page(folders, loaded, recent, total, full, generated)
    items = [(root / name, text) for name, text in pages if text is not None]
    items += [(state_dir(root) / MANIFEST, json.dumps(new_manifest, ensure_ascii=False, separators=(",", ":")) + "\n"),
              (root / INDEX_JSON, index_json([r.summary for r in recent])), (root / INDEX_HTML, front)]
    write_files(items, perms)
    gone = [name for name, text in pages if text is None]
    if manifest is None:  # built from scratch: pages of months no run is in any more are stale too
        current = {MONTH_PAGE.format(m) for e in folders.values() for m in e["months"]}
        gone += [p.name for p in root.glob(MONTH_PAGE.format("*")) if p.name not in current]
    for name in gone:
        (root / name).unlink(missing_ok=True)
    keep = {e["shard"] for e in folders.values()}
    for path in shards.iterdir():
        if path.name not in keep:
            path.unlink(missing_ok=True)  # replaced shards, and temporary files of a crashed update
    return Update(total, manifest is None, reason, found.folders_read, found.runs_read)


def index_json(records: list[dict[str, Any]]) -> str:
    """A JSON list, one run per line: diffable and greppable, and written by the C encoder (indent is 5x slower)."""
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


# ---- the pages -------------------------------------------------------------------------------

def _month_pages(root: Path, folders: dict[str, dict[str, Any]], loaded: _Loaded, months: set[str],
                 generated: datetime) -> list[tuple[str, str | None]]:
    """(file name, page) of each month whose runs changed; page None when the month has no run left."""
    pages: list[tuple[str, str | None]] = []
    for month in sorted(months):
        runs = [r.summary for rel, e in folders.items() if month in e["months"]
                for r in loaded.get(rel) if month_of(r.summary) == month]
        runs.sort(key=run_order, reverse=True)
        name = MONTH_PAGE.format(month)
        pages.append((name, render_index(runs, generated, month=month) if runs else None))
    return pages


def _recent_runs(folders: dict[str, dict[str, Any]], loaded: _Loaded, limit: int | None = None) -> list[Run]:
    """The newest `limit` (RECENT_RUNS) runs of the archive, reading only the newest folders' shards."""
    limit = RECENT_RUNS if limit is None else limit
    found: list[Run] = []
    for rel in sorted(folders, key=lambda r: folders[r]["last"], reverse=True):
        if len(found) >= limit:
            found.sort(key=lambda r: run_order(r.summary), reverse=True)
            del found[limit:]
            if list(folders[rel]["last"]) < list(run_order(found[-1].summary)):
                break
        found.extend(loaded.get(rel))
    found.sort(key=lambda r: run_order(r.summary), reverse=True)
    return found[:limit]


def _latest_inputs(folders: dict[str, dict[str, Any]], loaded: _Loaded) -> list[dict[str, Any]]:
    """Per runbook, its newest STRIP_RUNS runs and its newest completed run: what the latest panel shows."""
    per_book: dict[str, list[str]] = {}
    for rel, entry in folders.items():
        for name in entry["runbooks"]:
            per_book.setdefault(name, []).append(rel)
    chosen: dict[int, dict[str, Any]] = {}
    for name, rels in per_book.items():
        rels.sort(key=lambda r: folders[r]["runbooks"][name]["last"], reverse=True)
        count, completed = 0, False
        for rel in rels:
            book = folders[rel]["runbooks"][name]
            if count >= STRIP_RUNS and (completed or book["completed"] is None):
                continue
            for run in loaded.get(rel):
                if run.summary.get("runbook") == name:
                    chosen[id(run.summary)] = run.summary
            count += book["runs"]
            completed = completed or book["completed"] is not None
            if count >= STRIP_RUNS and completed:
                break
    summaries = list(chosen.values())
    summaries.sort(key=run_order, reverse=True)
    return summaries


def _front_page(folders: dict[str, dict[str, Any]], loaded: _Loaded, recent: list[Run], total: int,
                full: dict[str, Any] | None, generated: datetime) -> str:
    outcomes: dict[str, int] = {}
    months: dict[str, int] = {}
    for entry in folders.values():
        for outcome, n in entry["outcomes"].items():
            outcomes[outcome] = outcomes.get(outcome, 0) + n
        for month, n in entry["months"].items():
            months[month] = months.get(month, 0) + n
    note = ""
    if full and full.get("reason"):
        note = f"The index was rebuilt from the run records at {full.get('at')}: {full.get('reason')}."
    return render_index(
        [r.summary for r in recent], generated, latest_from=_latest_inputs(folders, loaded),
        chart_summaries=[p for e in folders.values() for p in e["chart"]], outcomes=outcomes,
        unreviewed=sum(e["unreviewed"] for e in folders.values()), total=total,
        runbooks=sorted({name for e in folders.values() for name in e["runbooks"]}),
        months=[(m, MONTH_PAGE.format(m), months[m]) for m in sorted(months, reverse=True)], note=note)


# ---- reading the index -----------------------------------------------------------------------

def all_runs(root: Path) -> list[dict[str, Any]]:
    """Every run's summary, newest first, as load_summaries reads them (select_runs)."""
    return select_runs(root)


def select_runs(root: Path, runbook: str | None = None, newest: int | None = None) -> list[dict[str, Any]]:
    """The summaries load_summaries gives (every run, newest first), of one runbook and/or only the newest few,
    from the index state: what changed since its last update is read as an update would, without writing.

    Why: `ccops reports list`, the dead man's switch and `reports ack RUNBOOK/STAMP`
    read the archive's runs; reading every record took seconds at 100,000 runs,
    where the shards hold the summaries ready (and one runbook's runs are in its
    own folders' shards). A missing or distrusted state (StateError) falls back to
    the records themselves, as does a state replaced twice while being read.
    """
    if newest is not None and newest <= 0:
        return []
    for _ in range(2):  # an update may replace a shard between reading the manifest and the shard
        try:
            manifest = load_manifest(root)
            if manifest is None:
                break
            check_shard_files(root, manifest)
            with _no_cyclic_gc():
                return _select(_changes(root, manifest, time.time_ns()), runbook, newest)
        except StateError:
            continue
    found = load_summaries(root)
    if runbook is not None:
        found = [r for r in found if r.get("runbook") == runbook]
    return found if newest is None else found[:newest]


def _select(found: _Changes, runbook: str | None, newest: int | None) -> list[dict[str, Any]]:
    """The runs wanted, reading only the shards of folders that hold them (only the newest ones for `newest`)."""
    def last(rel: str) -> list[str]:
        books = found.books_of(rel)
        return list(books[runbook]["last"]) if runbook is not None else max(list(b["last"]) for b in books.values())

    rels = [rel for rel in found.holders() if runbook is None or runbook in found.books_of(rel)]
    rels.sort(key=last, reverse=True)
    runs: list[dict[str, Any]] = []
    for rel in rels:
        if newest is not None and len(runs) >= newest:
            runs.sort(key=run_order, reverse=True)
            del runs[newest:]
            if last(rel) < list(run_order(runs[-1])):
                break  # this folder's newest run, and so every run of the folders after it, is older
        runs.extend(r.summary for r in found.runs_of(rel) if runbook is None or r.summary.get("runbook") == runbook)
    runs.sort(key=run_order, reverse=True)
    return runs if newest is None else runs[:newest]


class IndexedRuns(Sequence[dict[str, Any]]):
    """The runs an update indexed, newest first: counted at once, read from the shards only when looked at.

    Why lazy: rebuild_index has always returned the summaries, but the runner,
    which calls it after every run, never looks at them, and reading 100,000 of
    them back would cost what the incremental update saved.
    """

    def __init__(self, root: Path, result: Update) -> None:
        self.root = Path(root)
        self.update = result
        self._items: list[dict[str, Any]] | None = None

    def _all(self) -> list[dict[str, Any]]:
        if self._items is None:
            self._items = all_runs(self.root)
        return self._items

    def __len__(self) -> int:
        return self.update.total if self._items is None else len(self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        return self._all()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._all())
