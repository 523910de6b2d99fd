"""A step that reads what an earlier step found says so when that step has not run.

The hand-overs between cells are typed fields (ccops.core.results.StepResults);
a reader moved above its writer must give an UNKNOWN finding naming the step to
run first, never a KeyError and never an answer read from an empty default.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from ccops import actions
from ccops.actions.emergency import corruption, disk, rate_limit
from ccops.checks import backup as backup_checks
from ccops.core.context import RunContext
from ccops.core.findings import Status
from ccops.core.settings import load_settings
from tests.helpers import one

AS_OF = datetime(2026, 11, 20, 18)


@pytest.fixture
def ctx(ccops_env, monkeypatch: pytest.MonkeyPatch) -> RunContext:
    """A deployment known only by a database URL: no log or backup dir configured, nothing reached."""
    monkeypatch.setenv("CCOPS_DATABASE_URL", "postgresql://ccops@127.0.0.1:9/never_reached")
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


def test_disk_freed_before_any_freeing_step_says_which_step_to_run_first(ctx: RunContext) -> None:
    found = one(disk.bytes_freed(ctx), "disk.freed")
    assert found.status == Status.UNKNOWN
    assert found.summary.startswith("cannot add up what was freed: run a disk.plan step")
    assert "first" in found.summary


def test_disk_freed_after_freeing_steps_that_were_not_configured_is_not_unknown(ctx: RunContext) -> None:
    """The freeing steps ran (and said what is not configured): nothing was freed, which is an answer."""
    plan_findings = [*disk.free_old_backups(ctx), *disk.compress_rotated_logs(ctx), *disk.truncate_live_log(ctx)]
    assert plan_findings and all(f.check.startswith("disk.plan.") for f in plan_findings)
    assert ctx.results.cleanup_plans == []
    found = one(disk.bytes_freed(ctx), "disk.freed")
    assert (found.status, found.summary) == (Status.INFO, "nothing freed; the plans would free about 0 B")


def test_the_repair_steps_before_the_integrity_check_do_not_decide(ctx: RunContext) -> None:
    """Step 4 and 5 of the corruption runbook read step 3's report: without it, neither rebuilds nor restores."""
    reindex = one(corruption.repair_indexes(ctx, dry_run=False, confirm=True), "action.reindex")
    restore = one(corruption.restore_if_needed(ctx, dry_run=False, confirm=True), "action.restore")
    for found in (reindex, restore):
        assert found.status == Status.UNKNOWN
        assert "the integrity check did not run" in found.summary and "integrity.indexes" in found.summary
    assert actions.timeline_of(ctx) == [], "nothing was attempted"


def test_readers_whose_writer_is_optional_keep_their_explicit_answer(ctx: RunContext) -> None:
    """A restore, a pause and a resume are often not part of a run: their readers say so, as before."""
    assert one(backup_checks.restore_steps(ctx), "backup.restore_steps").summary == "no restore was run"
    after = one(rate_limit.agent_error_rate(ctx), "rate_limit.after")
    assert (after.status, after.summary) == (Status.INFO, "no agent resumed in this run")


def test_a_shared_answer_is_computed_once_whichever_step_asks_first(ctx: RunContext) -> None:
    calls: list[tuple[float, str]] = []

    def count(run: RunContext, hours: float, label: str = "") -> int:
        calls.append((hours, label))
        return len(calls)

    assert ctx.cached(count, 6) == ctx.cached(count, 6) == 1
    assert ctx.cached(count, 6, label="x") == 2 and ctx.cached(count, 24) == 3
    assert calls == [(6, ""), (6, "x"), (24, "")]
    other = RunContext(runbook="t", settings=ctx.settings, as_of=AS_OF)
    assert other.cached(count, 6) == 4, "per run: a new run asks again"
