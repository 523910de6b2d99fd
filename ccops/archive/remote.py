"""The archive's mirror in object storage: every run, once archived locally, copied to the bucket too.

With `paths.archive_dir = "s3://bucket/prefix"` (settings.archive_remote), each
run is archived first exactly as without a bucket, in the local copy under the
home (settings.archive_dir), and then mirrored here, under the same relative
keys:

1. the run's files - notebook, HTML, reviewers' HTML, sidecars - then its
   record LAST: a record in the bucket means its files are complete there, the
   rule the local archive keeps;
2. then the index files the local archive holds (index.json, index.html and
   whatever index state sits beside them, found by listing, not by name), each
   only when it changed since it was last uploaded; index files this mirror
   uploaded and the local index has since removed (replaced shards) go.

Every object is checked after its upload: its size, and its MD5 through the
ETag of a single PUT (read back where there is no such ETag).

A bucket that cannot be reached never fails a run: the run stays archived
locally, its record gains a `mirror` field saying the mirror failed and why,
the runner warns on stderr, and the run joins a pending list under the home
(`archive-mirror.json`), uploaded first by the next run's mirror or by
`ccops reports sync`, which also compares the whole local archive with the
bucket and uploads whatever is missing (acknowledgements and rechecks added
later, runs archived while the bucket was away).

Retention: when local retention deletes runs (`ccops reports prune`), `prune`
deletes the same runs from the bucket, each record first, and uploads the
rebuilt index; deletions that cannot be made now stay pending like uploads.
Nothing is ever deleted from the bucket because it is missing locally: after a
lost host the bucket is the only copy.

Credentials and endpoint: only the standard AWS environment and config files
(ccops.core.objectstore); what this module writes is scrubbed of them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccops import archive
from ccops.core import fs as core_fs
from ccops.core.errors import CcopsError

STATE_FILE = "archive-mirror.json"  # under the home: what is pending, and the index files as last uploaded
LOCK_FILE = ".archive-mirror.lock"  # under the home: one mirror at a time (two runbooks may finish together)
LOCK_WAIT_S = 300
RUN_FILE_SUFFIXES = (".ipynb", ".html", ".report.html")  # and the sidecars; the record (.json) goes last
TRANSIENT_SUFFIXES = (core_fs.TEMP_SUFFIX, ".lock")  # a write in progress, a lock: never index state


@dataclass
class MirrorResult:
    """What one mirror did: uploaded and deleted keys (relative to the remote root), what is still pending."""

    remote: str
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    pending_runs: list[str] = field(default_factory=list)
    pending_deletes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def line(self) -> str:
        done = f"{len(self.uploaded)} files uploaded" + (f", {len(self.deleted)} deleted" if self.deleted else "")
        if self.ok:
            return f"{self.remote}: {done}, verified; nothing pending"
        pending = len(self.pending_runs) + len(self.pending_deletes)
        return (f"{self.remote}: mirror FAILED ({self.error}); {done}; {pending} pending for the next run "
                "or `ccops reports sync`")

    def to_dict(self) -> dict[str, Any]:
        return {"remote": self.remote, "ok": self.ok, "error": self.error or None, "uploaded": self.uploaded,
                "deleted": self.deleted, "pending_runs": self.pending_runs, "pending_deletes": self.pending_deletes}


# ---- the runner's hook, retention, sync --------------------------------------------------------------

def mirror_after_run(settings: Any, record: dict[str, Any], record_path: Path,
                     perms: archive.Permissions | None = None) -> MirrorResult:
    """Mirror a run the runner has just archived (and whose index it has rebuilt); never raises for the bucket.

    When the run itself could not be uploaded, its record (the local file and
    `record`, which `ccops run --json` prints) gains `mirror: {status: failed,
    ...}` and one WARNING line goes to stderr (cron mails it); the run's exit
    code is the run's own.
    """
    root = Path(settings.archive_dir)
    relative = Path(record_path).relative_to(root).as_posix()
    try:
        result = sync(settings, runs=[relative])
    except (CcopsError, OSError) as exc:  # the lock held past its wait, the home unwritable: the run stands
        result = MirrorResult(settings.archive_remote, pending_runs=[relative], error=str(exc))
    if relative in result.pending_runs:
        note = {"remote": settings.archive_remote, "status": "failed", "error": result.error,
                "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "retry": "uploaded by the next run's mirror or `ccops reports sync`"}
        record["mirror"] = note
        _note_in_record(Path(record_path), note, perms)
    if not result.ok:
        print(f"WARNING: {record.get('runbook')}: archived locally, not in the bucket: {result.line()}",
              file=sys.stderr)
    return result


def prune(settings: Any, plan: archive.RetentionPlan) -> MirrorResult:
    """Local retention's deletions made in the bucket too (each record first), then the rebuilt index uploaded."""
    root = Path(plan.archive_dir)
    stems = [run.stem.relative_to(root).as_posix() for run in plan.delete]
    return sync(settings, deletes=stems)


def sync(settings: Any, runs: Iterable[str] = (), deletes: Iterable[str] = (), full: bool = False,
         dry_run: bool = False) -> MirrorResult:
    """Upload `runs` (record paths relative to the archive) and whatever is pending, delete `deletes` (run
    stems), then upload the index files that changed. `full`: also every local file the bucket lacks or holds
    at another size (`ccops reports sync`). `dry_run`: find what would be done, change nothing.

    Whatever fails stays pending in the home's state file; the error is one scrubbed line in the result.
    """
    remote = str(settings.archive_remote or "")
    if not remote:
        raise CcopsError("paths.archive_dir is not an object-storage URL (s3://bucket/prefix): nothing to mirror")
    local = Path(settings.archive_dir)
    home = Path(settings.home)
    result = MirrorResult(remote)
    with _mirror_lock(home):
        state = _load_state(home, remote)
        todo = list(dict.fromkeys([*state["pending_runs"], *runs]))
        drop = list(dict.fromkeys([*state["pending_deletes"], *deletes]))
        index_done: dict[str, list[int]] = dict(state["index"])
        try:
            from ccops.core.objectstore import open_store

            store, base = open_store(remote)
            listing = _remote_sizes(store, base) if full else None
            if listing is not None:
                todo = list(dict.fromkeys([*todo, *_runs_missing(local, listing)]))
            if dry_run:
                result.pending_runs, result.pending_deletes = todo, drop
                result.uploaded = [r for r in _index_files(local) if _index_changed(local, r, index_done, listing)]
                return result
            for stem in list(drop):
                result.deleted += _delete_run(store, base, stem)
                drop.remove(stem)
            for rel in sorted(todo):
                result.uploaded += _upload_run(store, base, local, rel)
                todo.remove(rel)
            current = _index_files(local)
            for rel in current:
                if _index_changed(local, rel, index_done, listing):
                    signature = _signature(local / rel)
                    _put(store, base, local, rel)
                    index_done[rel] = signature
                    result.uploaded.append(rel)
            # index state the local index has since replaced (a shard is named by its content): uploaded by
            # this mirror, derived from the records, so removing it deletes nothing that has no other copy
            for rel in sorted(set(index_done) - set(current)):
                try:
                    store.rm_file(f"{base}/{rel}")
                except FileNotFoundError:
                    pass
                del index_done[rel]
                result.deleted.append(rel)
        except Exception as exc:  # noqa: BLE001 - any failure of the store (botocore's are not OSErrors) waits
            result.error = _scrubbed(settings, _describe(exc))
        finally:
            if not dry_run:
                result.pending_runs, result.pending_deletes = sorted(todo), drop
                _save_state(home, remote, todo, drop, index_done)
    return result


# ---- one run, one index file ----------------------------------------------------------------------------

def run_files(local: Path, record_relative: str) -> list[str]:
    """A run's files present locally, relative to the archive, in upload order: the record last."""
    record = local / record_relative
    base = record.name.removesuffix(".json")
    names = [base + s for s in (*RUN_FILE_SUFFIXES, *archive.SIDECARS)]
    folder = Path(record_relative).parent
    present = [(folder / n).as_posix() for n in names if (record.parent / n).is_file()]
    return present + [record_relative] if record.is_file() else present


def _upload_run(store: Any, base: str, local: Path, record_relative: str) -> list[str]:
    files = run_files(local, record_relative)
    for rel in files:
        _put(store, base, local, rel)
    return files


def _put(store: Any, base: str, local: Path, rel: str) -> None:
    from ccops.core.objectstore import put_verified

    put_verified(store, f"{base}/{rel}", (local / rel).read_bytes())


def _delete_run(store: Any, base: str, stem: str) -> list[str]:
    """Delete one run's objects, its record first: a record in the bucket must never point at deleted files."""
    folder, name = stem.rpartition("/")[0], stem.rpartition("/")[2]
    try:
        keys = store.ls(f"{base}/{folder}", detail=False)
    except FileNotFoundError:
        return []
    mine = [str(k) for k in keys if str(k).rsplit("/", 1)[-1].startswith(name + ".")]
    mine.sort(key=lambda k: (not k.endswith(f"{name}.json"), k))
    for key in mine:
        store.rm_file(key)
    return [key[len(base) + 1:] for key in mine]


def _index_files(local: Path) -> list[str]:
    """Every file of the archive that is not a run's: the index and its state, wherever the index keeps them.

    Runs live under <runbook>/<YYYY>/<MM>/, so year folders are not entered (the
    walk stays short at 100,000 runs); files being written or locks are skipped.
    """
    found: list[str] = []
    if not local.is_dir():
        return found
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames[:] = sorted(d for d in dirnames if not (len(d) == 4 and d.isdigit()))
        for name in sorted(filenames):
            if not name.endswith(TRANSIENT_SUFFIXES):
                found.append((Path(dirpath) / name).relative_to(local).as_posix())
    return found


def _index_changed(local: Path, rel: str, done: dict[str, list[int]], listing: dict[str, int] | None) -> bool:
    signature = _signature(local / rel)
    if listing is not None and listing.get(rel) != signature[0]:
        return True
    return done.get(rel) != signature


def _signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _remote_sizes(store: Any, base: str) -> dict[str, int]:
    """Every object under the remote root, relative key -> size (an empty prefix: nothing yet)."""
    try:
        found = store.find(base, detail=True)
    except FileNotFoundError:
        return {}
    return {str(key)[len(base) + 1:]: int(info.get("size") or 0) for key, info in found.items()
            if info.get("type") != "directory"}


def _runs_missing(local: Path, listing: dict[str, int]) -> list[str]:
    """Local runs with any file the bucket lacks or holds at another size (record paths, oldest first)."""
    missing = []
    for run in archive.scan_runs(local):
        record = run.stem.with_name(run.stem.name + ".json")
        if not record.is_file():
            continue  # a run killed mid-archive: no record, never mirrored
        rel = record.relative_to(local).as_posix()
        if any(listing.get(f) != (local / f).stat().st_size for f in run_files(local, rel)):
            missing.append(rel)
    return missing


# ---- the record's note, the state file, the lock ---------------------------------------------------------

def _note_in_record(path: Path, note: dict[str, Any], perms: archive.Permissions | None) -> None:
    """The run's record gains its `mirror` field (rewritten whole and atomically, like every archive write)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    record["mirror"] = note
    archive.write_atomic(path, json.dumps(record, indent=1, ensure_ascii=False),
                         perms or archive.Permissions.of_archive(path.parent))


def _load_state(home: Path, remote: str) -> dict[str, Any]:
    empty: dict[str, Any] = {"pending_runs": [], "pending_deletes": [], "index": {}}
    try:
        data = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return empty
    if not isinstance(data, dict) or data.get("remote") != remote:
        return empty  # another bucket: its pending list means nothing here (`reports sync` compares afresh)
    return {key: data.get(key) or empty[key] for key in empty}


def _save_state(home: Path, remote: str, runs: list[str], deletes: list[str], index: dict[str, list[int]]) -> None:
    text = json.dumps({"remote": remote, "pending_runs": sorted(runs), "pending_deletes": deletes,
                       "index": index}, indent=1) + "\n"
    core_fs.write_atomic(home / STATE_FILE, text, 0o600)


@contextmanager
def _mirror_lock(home: Path) -> Iterator[None]:
    """One mirror at a time per home: two runbooks finishing together must not both rewrite the state file."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with core_fs.exclusive_lock(home / LOCK_FILE, blocking=True, timeout=LOCK_WAIT_S,
                                busy=f"another archive mirror holds {home / LOCK_FILE}"):
        yield


def _describe(exc: BaseException) -> str:
    from ccops.core.objectstore import describe

    return describe(exc)


def _scrubbed(settings: Any, text: str) -> str:
    """An error of the store as it may be archived: the settings' secrets and the AWS credentials masked."""
    from ccops.core.objectstore import credential_values
    from ccops.core.scrub import Scrubber

    return Scrubber(settings, extra=credential_values()).text(text)
