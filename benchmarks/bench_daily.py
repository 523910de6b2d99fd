"""Issue 18, target 1: the daily runbook on a year of data, within 1.5x the papermill floor.

The floor is what any runbook costs before it does anything: papermill
starting a kernel for a notebook holding only a parameters cell. The figure
is `ccops run daily -p as_of ...` as cron runs it (papermill, the archive's
HTML and index included), against the bench database and the bench logs.
When a run is slower than the target, the per-cell durations papermill
records in the executed notebook say which step to look at; they are kept
in the result.

`ccops run` starts papermill through ccops.runbook.papermill_entry, which
drops two fixed costs of stock papermill (a 1 s grammar import, a graceful
kernel shutdown that waits for the interpreter to tear down). The target is
against stock papermill as issue 18 defines it; the same empty notebook through
ccops' entry is timed beside it and reported (`entry_floor`), so the share of
the ratio those fixed costs account for is visible.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    BenchEnv,
    Result,
    ccops_command,
    interleaved_runs,
    median_seconds,
    seconds_of,
    shell_text,
)

KERNEL = "python3"
MAX_RATIO = 1.5


def empty_notebook(path: Path, like: Path) -> Path:
    """A notebook with only a parameters cell, same kernel and parameter as `like`."""
    import nbformat

    source = nbformat.read(like, as_version=4)
    nb = nbformat.v4.new_notebook(metadata=source.metadata)
    cell = nbformat.v4.new_code_cell('as_of = ""  # ISO timestamp')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def runner_available() -> bool:
    try:
        from ccops.runbook import runner
    except ImportError:
        return False
    return hasattr(runner, "run_runbook")


def slowest_cells(notebook_path: Path, top: int = 6) -> list[dict[str, Any]]:
    """The cells that took longest, from papermill's per-cell metadata."""
    try:
        nb = json.loads(notebook_path.read_text())
    except (OSError, ValueError):
        return []
    cells: list[dict[str, Any]] = []
    for cell in nb.get("cells", []):
        duration = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        if cell.get("cell_type") == "code" and duration is not None:
            source = "".join(cell.get("source", "")).strip().splitlines()
            cells.append({"cell": source[0][:80] if source else "", "seconds": round(float(duration), 3)})
    return sorted(cells, key=lambda c: -c["seconds"])[:top]


def run(env: BenchEnv) -> list[Result]:
    daily = REPO / "runbooks" / "daily.ipynb"
    work = env.root / "daily"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    empty = empty_notebook(work / "empty.ipynb", daily)
    papermill = [sys.executable, "-m", "papermill", "-k", KERNEL, "--no-progress-bar"]
    floor_cmd = papermill + [str(empty), str(work / "empty.out.ipynb"), "-p", "as_of", env.as_of_text]
    entry_cmd = ([sys.executable, "-m", "ccops.runbook.papermill_entry", "-k", KERNEL, "--no-progress-bar"]
                 + [str(empty), str(work / "empty.entry.ipynb"), "-p", "as_of", env.as_of_text])
    if runner_available():
        daily_cmd = ccops_command() + ["run", "daily", "-p", "as_of", env.as_of_text, "--json"]
    else:
        daily_cmd = papermill + [str(daily), str(work / "daily.out.ipynb"), "-p", "as_of", env.as_of_text,
                                 "--cwd", str(daily.parent)]
    environment = env.ccops_env()
    floor_runs, daily_runs, entry_runs = interleaved_runs([floor_cmd, daily_cmd, entry_cmd], env.repeat, environment)
    entry_s = median_seconds(entry_runs)
    floor_s, daily_s = median_seconds(floor_runs), median_seconds(daily_runs)
    last = daily_runs[-1]
    outcome, notebook, error = _outcome(last.stdout, work / "daily.out.ipynb", env.root / "outputs")
    ok = last.returncode in (0, 1, 2)  # 3 is a failed run: its time says nothing
    ratio = daily_s / floor_s
    cells = slowest_cells(notebook) if notebook else []
    notes = f"outcome {outcome}, exit {last.returncode}"
    if error:
        notes += f"; run error: {error[:300]}"
    if not ok and last.stderr.strip():
        notes += f"; stderr: {last.stderr.strip()[-300:]}"
    notes += f"; against the empty notebook through ccops' papermill entry ({entry_s:.3f} s): {daily_s / entry_s:.2f}"
    if cells:
        notes += "; slowest cells: " + ", ".join(f"{c['cell']} {c['seconds']:.2f}s" for c in cells[:3])
    return [Result("18.1", "daily runbook, whole run", daily_s, "s", baseline=floor_s,
                   baseline_label="empty notebook via papermill", target_text=f"ratio ≤ {MAX_RATIO}",
                   met=ok and ratio <= MAX_RATIO, command=shell_text(daily_cmd), notes=notes,
                   runs=seconds_of(daily_runs), baseline_runs=seconds_of(floor_runs),
                   extra={"slowest_cells": cells, "floor_command": shell_text(floor_cmd),
                          "runs": [r.seconds for r in daily_runs], "floor_runs": [r.seconds for r in floor_runs],
                          "entry_floor": entry_s, "entry_floor_runs": seconds_of(entry_runs),
                          "entry_floor_command": shell_text(entry_cmd)})]


def _outcome(stdout: str, fallback: Path, archive_dir: Path) -> tuple[str, Path | None, str]:
    """(outcome, executed notebook, error) from `ccops run --json`, else from the papermill output."""
    try:
        record = json.loads(stdout)
    except ValueError:
        return ("executed" if fallback.exists() else "no output"), (fallback if fallback.exists() else None), ""
    paths = record.get("paths") or {}
    notebook = paths.get("ipynb") or paths.get("notebook")
    path = archive_dir / notebook if notebook else None  # record paths are relative to the archive
    return str(record.get("outcome")), (path if path and path.exists() else None), str(record.get("error") or "")
