"""Guarded actions: what an emergency runbook may change, and the record of what it did.

At 3 a.m. the difference between a runbook and a script is that the runbook
shows what it is about to do, does it only when told, and then shows what
happened. Every changing step goes through `guarded()`: with the defaults
(dry_run True, confirm False) it only describes the command; with dry_run
False and confirm True it runs it, times it and records the outcome. Each call
lands in the run's timeline, which the last cell of an emergency runbook shows
and the run record keeps as findings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import pandas as pd

from ccops.core.context import RunContext, describe
from ccops.core.findings import Finding, Findings, Status
from ccops.core.results import ActionRecord  # in the foundation: the run context holds the timeline

__all__ = ["ActionRecord", "guarded", "may_act", "timeline", "timeline_of"]


def timeline_of(ctx: RunContext) -> list[ActionRecord]:
    """The run's actions so far (ctx.results.actions): written by guarded(), read by the verdict steps."""
    return ctx.results.actions


def may_act(dry_run: bool, confirm: bool) -> bool:
    """DESIGN's rule for destructive steps: dry_run False AND confirm True."""
    return (not dry_run) and bool(confirm)


def guarded(ctx: RunContext, step: str, description: str, action: Callable[[], str],
            dry_run: bool = True, confirm: bool = False, severity_on_failure: Status = Status.CRITICAL) -> Findings:
    """Describe, then (only when allowed) run `action`, record it in the timeline, return the finding."""
    started = time.monotonic()
    at = datetime.now(timezone.utc)
    if not ctx.section_enabled():
        return Findings()
    if not may_act(dry_run, confirm):
        why = "dry_run is True" if dry_run else "confirm is False"
        record = ActionRecord(step, description, False, None, f"not run: {why}", at, 0.0)
        timeline_of(ctx).append(record)
        return ctx.record([Finding(f"action.{step}", Status.INFO,
                                   f"would {description} (not run: {why}; set dry_run = False and confirm = True)")])
    try:
        detail = action() or "done"
        ok, status = True, Status.OK
        summary = f"{description}: {detail}"
    except Exception as exc:  # noqa: BLE001 - a failed action is reported, the runbook goes on
        detail = describe(exc)
        ok, status = False, severity_on_failure
        summary = f"{description} FAILED: {detail}"
    record = ActionRecord(step, description, True, ok, detail, at, time.monotonic() - started)
    timeline_of(ctx).append(record)
    return ctx.record([Finding(f"action.{step}", status, summary, value=round(record.duration_s, 2))])


def timeline(ctx: RunContext) -> Findings:
    """The actions of this run, in order: the record an incident review starts from."""
    records = timeline_of(ctx)
    table = pd.DataFrame([r.row() for r in records], columns=["time", "step", "action", "result", "detail", "seconds"])
    executed = [r for r in records if r.executed]
    failed = [r for r in executed if not r.ok]
    if not records:
        summary, status = "no actions in this run", Status.INFO
    elif not executed:
        summary, status = f"{len(records)} actions described, none run (dry run)", Status.INFO
    else:
        summary = f"{len(executed)} of {len(records)} actions run, {len(failed)} failed"
        status = Status.CRITICAL if failed else Status.OK
    return ctx.record([Finding("action.timeline", status, summary, len(executed), data=table)])
