"""Opening and closing a run from inside its notebook: the runbook layer's side of the run context.

`start` is the first call of every runbook; the context it returns carries
`finish` as its finisher, so the last cell (`ctx.finish()`) archives a run
worked in JupyterLab through the runner's own archive step. The context
itself (ccops.core.context) is the foundation every step receives and knows
nothing of runners or archives.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccops.core import findings as findings_mod
from ccops.core import runbooks
from ccops.core.context import RUN_ID_ENV, RunContext, RunSummary, operator_name, parse_as_of
from ccops.core.settings import load_settings


def start(runbook: str, as_of: str | datetime | None = None, config: str | None = None, **params: Any) -> RunContext:
    """Open a run: the first call of every runbook, right after its parameters cell."""
    settings = load_settings(config or None)
    from ccops.core.db import set_application_name

    set_application_name(f"ccops/{runbook}")  # every session of this run names it (pg_stat_activity, logs)
    _preload_charts()
    return RunContext(runbook=runbook, settings=settings, as_of=parse_as_of(as_of), params=params, finisher=finish)


def _preload_charts() -> None:
    """Import what drawing a chart needs (matplotlib, 0.3-0.4 s) in a background thread of the kernel.

    Why: the first finding with a chart imports it in the middle of the run, on the
    kernel's one busy thread. The kernel is idle for a good part of a run (waiting on
    the database, on the log helper, on papermill between cells), and a thread
    importing meanwhile uses those gaps. The import is the one a chart would do
    (ccops.core.charts, garbage collector paused); a chart that comes first simply
    waits for the module being imported, as Python's import lock has any thread do.

    Only a runbook that will draw pays for it ahead: every figure is made through
    ccops.core.charts, and the modules whose charts are drawn in most runbooks that
    use them (logs, trends, content, the reports) import it at their top, which the
    runbook's import cell runs before this. The others (backup, recovery, monthly, the
    emergencies) spent 0.5 s of CPU on an import they never used. The health module
    imports it only when its hourly chart is drawn: system down and recovery use that
    module's other steps, and the health check runbook imports matplotlib (gc paused)
    on its main thread, at that chart.
    """
    import sys
    import threading

    if "ccops.core.charts" not in sys.modules or "matplotlib.backends.backend_agg" in sys.modules:
        return
    threading.Thread(target=_import_chart_modules, name="ccops-preload-charts", daemon=True).start()


def _import_chart_modules() -> None:
    try:
        from ccops.core.charts import _import_matplotlib

        _import_matplotlib()
    except Exception:  # noqa: BLE001 - a broken matplotlib shows where a chart is drawn, with its error
        pass


def finish(ctx: RunContext) -> RunSummary:
    """The last cell of every runbook: the run's summary; worked in JupyterLab, the run is also archived.

    Why: an operator's run is a run like cron's - the executed notebook, the
    report and the record go to the archive (mode "interactive", the operator's
    name), through the runner's own archive step with its scrubbing. Under
    `ccops run` the runner archives after the kernel ends, so here nothing is
    written (the runner sets CCOPS_RUN_ID for the kernel), and the archive's modules are
    not even imported (0.05-0.09 s in every kernel `ccops run` starts).
    """
    summary = ctx.summary()
    if os.environ.get(RUN_ID_ENV):
        return summary
    from ccops.runbook import runner

    try:
        result = archive_interactive(ctx, session_notebook(ctx.settings.home))
    except runner.RunNotArchived as exc:  # e.g. the archive's disk is full: say so, keep the summary on screen
        summary.archived = f"NOT ARCHIVED: {exc}"
        return summary
    summary.archived = (result.record.get("paths") or {}).get("report_html", "")
    return summary


def archive_interactive(ctx: RunContext, notebook: Path | None) -> Any:
    """Archive an operator's run with the runner's own archive step (runner._finish): same files, same scrubbing.

    `notebook` is the executed notebook as last saved (None: the stored runbook);
    the record's runbook hash is the stored runbook's, its mode "interactive"
    and its user the operator. Returns the runner's RunResult; RunNotArchived
    when the files could not be written.
    """
    import tempfile
    import uuid

    from ccops import archive
    from ccops.runbook import runner
    from ccops.runbook.indexes import refresh_indexes

    runner.skip_unused_format_checkers()  # as `ccops run` does: nbformat (the archive) imports in 1 s less CPU
    settings = ctx.settings
    name, stored = runbooks.locate(settings.effective_runbooks_dir, ctx.runbook)
    started = ctx.started
    ended = datetime.now(UTC).replace(microsecond=0)
    values = {**{k: v for k, v in ctx.params.items() if v is not None}, "as_of": ctx.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")}
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    perms = archive.Permissions.for_settings(settings)
    with tempfile.TemporaryDirectory(prefix="ccops-interactive-") as tmp:
        work = Path(tmp)
        findings_mod.record(ctx.findings, work / "findings.jsonl")
        execution = runner.Execution(0, False, 0, "", output=notebook or work / "unsaved.ipynb")
        operator = operator_name()
        with _environment({runner.RUN_MODE_ENV: "interactive", "LOGNAME": operator, "USER": operator}):
            result, failure = runner._finish(settings, perms, stored.parent, name, stored, values, run_id, started,
                                             ended, (ended - started).total_seconds(), execution, work)
    if failure is not None:
        raise runner.RunNotArchived(f"{name}: the interactive run was not archived: {failure}")
    refresh_indexes(settings, perms)
    return result


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the archive step only (the runner reads mode and user from there)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def session_notebook(home: Path | None = None) -> Path | None:
    """The notebook this kernel works, as last saved: Jupyter names it in JPY_SESSION_NAME (None outside Jupyter).

    Under `make lab` the save hook (ccops.runbook.lab) keeps the executed copy, outputs and all, in the home
    and saves the runbook itself clean: that copy is the one to archive.
    """
    named = os.environ.get("JPY_SESSION_NAME", "")
    if not named:
        return None
    path = Path(named)
    candidates = [path, Path.cwd() / path.name]
    if home is not None:
        from ccops.runbook.lab import working_copy

        candidates.insert(0, working_copy(home, named))
    for candidate in candidates:
        if candidate.suffix == ".ipynb" and candidate.is_file():
            return candidate
    return None
