"""`ccops reports recheck RUN`: would this archived report still say the same, for the same moment?

Every runbook measures its windows back from `as_of`, so a past report can be
produced again. A recheck re-executes the archived run's runbook with the
run's recorded parameters and `as_of`, against the same deployment, in a temp
dir, and compares two ways:

- cell by cell, with nbval's own output comparison and its sanitiser format
  (`nbval_sanitize.cfg` beside this module: the run's clock, durations, run
  ids, temp paths are not the report);
- the findings of the run record: a finding whose status, value, threshold or
  table rows changed, one that appeared or disappeared; and the index's figures.

Nothing is written to the archive except the recheck record,
`<stem>.recheck.json` beside the run's record (every recheck of that run, the
newest last); the index links it from the run (`latest_for`, `note`). A run
that changed something (dry_run False) is not re-executed: a recheck must not
take a second backup or restore a database again.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccops import archive
from ccops.archive.rechecks import RECHECK_KIND, read_rechecks, recheck_path
from ccops.core import runbooks
from ccops.core.errors import UsageError
from ccops.core.settings import Settings, is_secret_name

SANITIZE_FILE = Path(__file__).with_name("nbval_sanitize.cfg")
EXIT_REPRODUCES = 0
EXIT_DIFFERS = 1
DIFF_CHARS = 4000  # one cell's comparison text kept in the recheck record
FINDING_FIELDS = ("status", "value", "threshold", "rows")
REL_TOLERANCE = 1e-9  # the record keeps floats at 12 significant digits
# the host and the services as they are now: a recheck cannot go back in time for them, so their
# findings are compared by status only (and nbval_sanitize.cfg masks their figures in the cells)
LIVE_PREFIXES = ("host.", "services.")
STATUS_CELL_TAG = "ccops-run-status"  # runner.STATUS_CELL_TAG: the note a failed run's archive adds at the top


# ---- finding the run ------------------------------------------------------------------------

def resolve_run(archive_dir: Path, spec: str) -> Path:
    """The run record named by `spec`, as `reports ack` names runs (archive.resolve_record): a path to any of
    the run's files, or `runbook/STAMP` as `reports list` shows (STAMP: the file stamp, the ISO start or the run id)."""
    return archive.resolve_record(Path(archive_dir), spec)


def load_record(path: Path) -> dict[str, Any]:
    """The run record; UsageError when the file is not one."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the run record ({exc})") from None
    if not isinstance(record, dict) or "runbook" not in record or not record.get("paths"):
        raise UsageError(f"{path}: not a run record")
    return record


def archive_root_of(record_path: Path, record: dict[str, Any]) -> Path:
    """The archive folder: the record's own archive-relative path, taken off its location."""
    depth = len(Path(record["paths"]["json"]).parts)
    return Path(record_path).resolve().parents[depth - 1]


def rerun_parameters(record: dict[str, Any]) -> dict[str, Any]:
    """The recorded parameters to run again; refuses a run that changed something (it would change it again)."""
    params = dict(record.get("parameters") or {})
    if params.get("dry_run") is False:
        raise UsageError(f"{record['runbook']}: this run had dry_run=False; a recheck re-executes only runs that "
                         "changed nothing (it would act again)")
    done = [a.get("check") for a in record.get("actions") or [] if isinstance(a, dict) and a.get("done")]
    if done:
        raise UsageError(f"{record['runbook']}: this run acted ({', '.join(map(str, done))}); not re-executed")
    secret = [k for k, v in params.items() if is_secret_name(k) or v == "***"]
    if secret:
        raise UsageError(f"{record['runbook']}: parameter(s) {', '.join(secret)} were masked in the record")
    return params


# ---- re-executing --------------------------------------------------------------------------

@dataclass
class Rerun:
    """The re-execution: its notebook (None when papermill saved none), findings as recorded, and any error."""

    notebook: Any
    findings: list[dict[str, Any]]
    error: str | None
    seconds: float


def rerun(settings: Settings, runbook: str, path: Path, values: dict[str, Any], timeout: int | None = None) -> Rerun:
    """Run the notebook under papermill as `ccops run` does, in a temp dir that is removed after; no archive, no alerts."""
    import nbformat

    from ccops.core.findings import assess, read_recorded
    from ccops.runbook import runner

    limit = int(timeout or settings.run_timeout_seconds)
    root = path.parent.resolve()
    run_id = f"recheck-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="ccops-recheck-"))
    t0 = time.monotonic()
    try:
        with runner.runbook_lock(runner.ensure_home(settings.home), runbook):
            execution = runner._execute(settings, root, path, values, run_id, work, limit)
        found = read_recorded(work / "findings.jsonl")
        verdict = assess(found)
        findings = runner._finding_dicts(found, verdict)
        notebook = nbformat.read(str(execution.output), as_version=4) if execution.output.is_file() else None
        error = _execution_error(execution, notebook)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Rerun(notebook, findings, error, time.monotonic() - t0)


def _execution_error(execution: Any, notebook: Any) -> str | None:
    from ccops.runbook import runner

    if execution.timed_out:
        return runner._timeout_message(notebook, execution.seconds_limit)
    if execution.returncode != 0:
        return runner._failure_message(notebook, execution)
    return None


# ---- comparing cells (nbval) -----------------------------------------------------------------

def sanitize_patterns(path: Path = SANITIZE_FILE) -> dict[str, str]:
    """regex -> replacement, read with nbval's own parser of its --nbval-sanitize-with format."""
    from nbval.plugin import get_sanitize_patterns

    return dict(get_sanitize_patterns(path.read_text(encoding="utf-8")))


class _Comparer:
    """Just enough of an nbval cell item to call nbval's own `compare_outputs` and `sanitize` outside pytest.

    nbval compares inside its pytest item; the two methods need only the
    sanitiser patterns, the keys it skips, colours and a place for the
    comparison text, so they are borrowed rather than copied.
    """

    def __init__(self, patterns: dict[str, str]) -> None:
        from nbval.plugin import IPyNbCell, nocolors

        class _Parent:  # IPyNbFile's attributes compare_outputs reads; skip_compare as nbval sets it without nbdime
            sanitize_patterns = patterns
            skip_compare = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                            "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")

        self.parent = _Parent
        self.colors = nocolors
        self.comparison_traceback: list[str] = []
        self._compare = IPyNbCell.compare_outputs
        self._sanitize = IPyNbCell.sanitize

    def sanitize(self, s: Any) -> Any:
        return self._sanitize(self, s)

    def format_output_compare(self, key: str, left: Any, right: Any) -> None:
        """nbval's report of one mismatch, without pytest's assertion hook: the two values, sanitised."""
        from nbval.plugin import _indent, _trim_base64

        left = _trim_base64(left) if isinstance(left, str) else left
        right = _trim_base64(right) if isinstance(right, str) else right
        self.comparison_traceback += [f" mismatch '{key}'", "  <<<<<<<<<<<< archived output:", _indent(str(left)),
                                      "  ============ disagrees with the recheck's output:", _indent(str(right)),
                                      "  >>>>>>>>>>>>"]

    def differs(self, archived: list[Any], fresh: list[Any]) -> str | None:
        """None when nbval finds the outputs equal, else its comparison text."""
        from nbval.plugin import coalesce_streams

        self.comparison_traceback = []
        if self._compare(self, coalesce_streams(list(fresh)), coalesce_streams(list(archived))):
            return None
        return "\n".join(self.comparison_traceback)


@dataclass
class CellDiff:
    """One code cell whose outputs differ (index among the code cells, its first line, nbval's text)."""

    cell: int
    source: str
    diff: str

    def to_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "source": self.source, "diff": self.diff[:DIFF_CHARS]}


def code_cells(notebook: Any) -> list[Any]:
    """The code cells nbval would test (the archive's status note is markdown and left out anyway)."""
    if notebook is None:
        return []
    return [c for c in notebook.cells if c.cell_type == "code" and STATUS_CELL_TAG not in c.metadata.get("tags", [])]


def compare_cells(archived: Any, fresh: Any, patterns: dict[str, str]) -> list[CellDiff]:
    """nbval's comparison of every code cell's outputs, in order; a different number of cells is one diff."""
    import nbformat

    old, new = code_cells(archived), code_cells(fresh)
    comparer = _Comparer(patterns)
    diffs = []
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        text = comparer.differs([nbformat.from_dict(o) for o in a.get("outputs", [])],
                                [nbformat.from_dict(o) for o in b.get("outputs", [])])
        if text is not None:
            diffs.append(CellDiff(i, _first_line(a.source), text))
    if len(old) != len(new):
        diffs.append(CellDiff(min(len(old), len(new)), "", f"{len(old)} code cells archived, {len(new)} now"))
    return diffs


def _first_line(source: str) -> str:
    return next((line.strip() for line in str(source).splitlines() if line.strip()), "")[:80]


# ---- comparing findings ----------------------------------------------------------------------

@dataclass
class FindingChange:
    """A finding that changed: `fields` maps status/value/threshold/rows to (archived, now); or one only on one side."""

    check: str
    change: str  # "changed", "gone" (archived only) or "new"
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    summary: tuple[str, str] = ("", "")

    def line(self) -> str:
        if self.change == "gone":
            return f"{self.check}: gone (was [{self.fields['status'][0]}] {self.summary[0]})"
        if self.change == "new":
            return f"{self.check}: new [{self.fields['status'][1]}] {self.summary[1]}"
        parts = ", ".join(f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in self.fields.items())
        return f"{self.check}: {parts} (was: {self.summary[0]}; now: {self.summary[1]})"

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "change": self.change,
                "fields": {k: {"archived": a, "now": b} for k, (a, b) in self.fields.items()},
                "summary": {"archived": self.summary[0], "now": self.summary[1]}}


def _show(value: Any) -> str:
    return "none" if value is None else str(value)


def _keyed(findings: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Findings by (check, occurrence): a check reporting twice is matched in order."""
    seen: dict[str, int] = {}
    out = {}
    for f in findings or []:
        if isinstance(f, dict) and f.get("check"):
            n = seen.get(f["check"], 0)
            seen[f["check"]] = n + 1
            out[(f["check"], n)] = f
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal, numbers within the record's float precision."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=REL_TOLERANCE, abs_tol=1e-12)
    return a == b


def compare_findings(archived: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[FindingChange]:
    """Every finding whose status, value, threshold or table rows changed, or that is gone or new.

    Live findings (LIVE_PREFIXES: the host and services now) count only when their status changed.
    """
    old, new = _keyed(archived), _keyed(fresh)
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            kind = "new" if a is None else "gone"
            status = (None, b["status"]) if a is None else (a["status"], None)  # type: ignore[index]  # one of them is set
            changes.append(FindingChange(key[0], kind, {"status": status},
                                         (str((a or {}).get("summary", "")), str((b or {}).get("summary", "")))))
            continue
        compared = ("status",) if key[0].startswith(LIVE_PREFIXES) else FINDING_FIELDS
        fields = {k: (a.get(k), b.get(k)) for k in compared if not same_value(a.get(k), b.get(k))}
        if fields:
            changes.append(FindingChange(key[0], "changed", fields, (str(a.get("summary")), str(b.get("summary")))))
    return changes


def compare_figures(archived: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """The index's figures (archive_figures) that differ: what the charts would plot for this run."""
    from ccops.archive.figures import figures

    old, new = figures(archived), figures(fresh)
    old, new = ({k: v for k, v in d.items() if not k.startswith(LIVE_PREFIXES)} for d in (old, new))
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if not same_value(old.get(k), new.get(k))}


# ---- the result and its record ---------------------------------------------------------------

@dataclass
class Recheck:
    """What a recheck found; `reproduces` when nothing differs."""

    record_path: Path
    record: dict[str, Any]
    rechecked_at: datetime
    runbook_path: Path
    runbook_changed: bool
    findings: list[FindingChange]
    figures: dict[str, tuple[Any, Any]]
    cells: list[CellDiff]
    error: str | None
    seconds: float
    saved_to: Path | None = None

    @property
    def reproduces(self) -> bool:
        same_failure = self.error is None or self.record.get("outcome") == "failed"
        return not self.findings and not self.figures and not self.cells and same_failure

    @property
    def exit_code(self) -> int:
        return EXIT_REPRODUCES if self.reproduces else EXIT_DIFFERS

    def verdict(self) -> str:
        """'reproduces' or 'differs: 2 findings, 3 cells'."""
        if self.reproduces:
            return "reproduces"
        parts = [f"{len(self.findings)} finding{'s' * (len(self.findings) != 1)}" if self.findings else "",
                 f"{len(self.cells)} cell{'s' * (len(self.cells) != 1)}" if self.cells else "",
                 "the run failed" if self.error and self.record.get("outcome") != "failed" else ""]
        return "differs: " + ", ".join(p for p in parts if p)

    def text(self) -> str:
        """What an operator reads: the verdict first, then each difference."""
        r = self.record
        lines = [f"{r['runbook']} {r.get('start')} (as_of {r.get('as_of')}): {self.verdict()} "
                 f"[rechecked in {self.seconds:.1f}s]"]
        if self.runbook_changed:
            lines.append(f"warning: {self.runbook_path} differs from the runbook that ran (sha256 changed)")
        if self.error:
            lines.append(f"the recheck's run: {self.error}")
        lines += [f"finding {c.line()}" for c in self.findings]
        lines += [f"figure {k}: {_show(a)} -> {_show(b)}" for k, (a, b) in self.figures.items()]
        for c in self.cells:
            lines.append(f"cell {c.cell} `{c.source}`:")
            lines += ["    " + line for line in c.diff.splitlines()[:40]]
        if self.saved_to:
            lines.append(f"recheck record: {self.saved_to}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rechecked_at": self.rechecked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reproduces": self.reproduces,
            "verdict": self.verdict(),
            "exit_code": self.exit_code,
            "duration_s": round(self.seconds, 3),
            "runbook_path": str(self.runbook_path),
            "runbook_changed": self.runbook_changed,
            "error": self.error,
            "findings": [c.to_dict() for c in self.findings],
            "figures": {k: {"archived": a, "now": b} for k, (a, b) in self.figures.items()},
            "cells": [c.to_dict() for c in self.cells],
        }


def save(result: Recheck, settings: Settings) -> Path:
    """Append this recheck to the run's recheck record (atomic, scrubbed, the archive's modes).

    The file has no top-level `runbook`/`start`, so the index never takes it for a run.
    """
    from ccops.core.scrub import Scrubber

    target = recheck_path(result.record_path)
    history = [*read_rechecks(result.record_path), result.to_dict()]
    data = {"kind": RECHECK_KIND, "run_record": result.record_path.name, "run_id": result.record.get("run_id"),
            "rechecks": history}
    root = archive_root_of(result.record_path, result.record)
    archive.write_atomic(target, Scrubber(settings).json_dumps(data, indent=1), archive.Permissions.of_archive(root))
    result.saved_to = target
    return target


# ---- the verb ----------------------------------------------------------------------------------

def recheck(settings: Settings, spec: str, timeout: int | None = None, write: bool = True) -> Recheck:
    """Re-execute the archived run named by `spec` and compare; the recheck record is written unless `write` is False."""
    import nbformat

    from ccops.core.scrub import Scrubber
    from ccops.runbook import runner

    if importlib.util.find_spec("nbval") is None:
        raise UsageError("reports recheck compares with nbval, which is not installed (pip install nbval)")
    record_path = resolve_run(Path(settings.archive_dir), spec).resolve()
    record = load_record(record_path)
    values = rerun_parameters(record)
    path = runbook_file(settings, record)
    changed = record.get("runbook_sha256") not in (None, runner.file_sha256(path))
    archived_nb = nbformat.read(str(record_path.with_name(record_path.name.removesuffix(".json") + ".ipynb")),
                                as_version=4)
    started = datetime.now(UTC).replace(microsecond=0)
    fresh = rerun(settings, record["runbook"], path, values, timeout)
    scrub = Scrubber(settings)
    fresh_nb = nbformat.from_dict(scrub.data(fresh.notebook)) if fresh.notebook is not None else None
    fresh_findings = scrub.data(fresh.findings)
    result = Recheck(record_path, record, started, path, changed,
                     compare_findings(record.get("findings") or [], fresh_findings),
                     compare_figures(record.get("findings") or [], fresh_findings),
                     compare_cells(archived_nb, fresh_nb, sanitize_patterns()), fresh.error, fresh.seconds)
    if write:
        save(result, settings)
        archive.rebuild_index(archive_root_of(record_path, record))  # the run's row links its newest recheck
    return result


def runbook_file(settings: Settings, record: dict[str, Any]) -> Path:
    """The runbook at its recorded path (`runbook_path` when the record has one), else where `ccops run` finds it."""

    recorded = record.get("runbook_path") or record.get("notebook")
    if recorded and Path(recorded).is_file():
        return Path(recorded).resolve()
    return runbooks.locate(Path(settings.effective_runbooks_dir), str(record["runbook"]))[1].resolve()
