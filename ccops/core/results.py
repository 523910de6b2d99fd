"""What one step of a run leaves for a later one: one typed, named field per result.

A runbook's cells depend on each other: the corruption runbook rebuilds the
indexes amcheck named two cells earlier, the disk runbook adds up what its
freeing steps freed. These hand-overs used to travel in a bag of string keys,
where a reordered cell or a misspelt key read as "nothing there" without a
word. Each hand-over is now a field of `StepResults` that says its type, which
step writes it and which reads it; a reader that finds its field unset says so
in a finding (`not_run_yet`) instead of carrying on with a default.

The results of steps above the foundation (an emergency dump, a clean-up plan,
a rate-limit pause plan) are typed here by what their readers use of them:
small Protocols that the step modules' own classes satisfy, so this layer
names no module above it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ccops.core.findings import Finding, Status

if TYPE_CHECKING:
    import pandas as pd

    from ccops.core.amcheck import IntegrityReport


@dataclass
class ActionRecord:
    """One guarded action of the run (ccops.actions.guarded): the timeline an incident review starts from."""

    step: str
    description: str
    executed: bool
    ok: bool | None
    detail: str
    at: datetime
    duration_s: float

    def row(self) -> dict[str, Any]:
        state = "done" if self.executed and self.ok else "FAILED" if self.executed else "not run (dry run)"
        return {"time": self.at.strftime("%H:%M:%S"), "step": self.step, "action": self.description,
                "result": state, "detail": self.detail, "seconds": round(self.duration_s, 2)}


class SavedDump(Protocol):
    """Where the emergency dump went (ccops.actions.emergency.corruption.EmergencyDump)."""

    @property
    def directory(self) -> Path: ...


class FreedSpace(Protocol):
    """One planned deletion or compression, after the plan ran (ccops.deploy.diskspace.CleanupAction)."""

    @property
    def done(self) -> bool: ...

    @property
    def freed(self) -> int: ...


class PlannedCleanup(Protocol):
    """A clean-up plan shown or applied by a freeing step (ccops.deploy.diskspace.CleanupPlan)."""

    @property
    def bytes(self) -> int: ...

    @property
    def actions(self) -> Sequence[FreedSpace]: ...


class PausePlan(Protocol):
    """What a rate-limit pause would do (ccops.actions.emergency.rate_limit.Plan)."""

    @property
    def resume_at(self) -> datetime | None: ...

    @property
    def basis(self) -> str: ...

    @property
    def refusal(self) -> str: ...


@dataclass
class StepResults:
    """The hand-overs between the steps of one run; every field names its writer and its readers.

    `None` means "the writing step has not run in this run": a reader says so
    rather than reading it as an empty or a clean result.
    """

    # every guarded action, in order. Written by ccops.actions.guarded (every changing step);
    # read by actions.timeline, system_down.verdict and corruption.verify (which repairs ran).
    # Empty is a true answer: no step acted.
    actions: list[ActionRecord] = field(default_factory=list)

    # amcheck's report of the database before any repair. Written by integrity.indexes
    # (checks.integrity.integrity_check in the maintenance runbooks, corruption.detect in the
    # corruption runbook); read by corruption.repair_indexes and corruption.restore_if_needed.
    integrity: IntegrityReport | None = None

    # what each REINDEX did ({"index", "ok", "error", "seconds"}, checks.integrity.reindex).
    # Written by corruption.repair_indexes when it runs; read by corruption.restore_if_needed.
    # Empty is a true answer: nothing was rebuilt (a dry run, or nothing damaged).
    reindexed: list[dict[str, Any]] = field(default_factory=list)

    # the dump taken before any repair. Written by corruption.backup_current_state when it runs;
    # read by corruption.verify to say where it is (a dry run takes none).
    emergency_dump: SavedDump | None = None

    # the plans the freeing steps showed or applied. Written by actions.cleanup.apply_reviewed
    # (the disk.plan.* steps and the maintenance clean-ups; a disk.plan step that is not
    # configured leaves an empty list); read by disk.freed.
    cleanup_plans: list[PlannedCleanup] | None = None

    # the pause decided by rate_limit's pause step (step 2); read by rate_limit.wait (step 3).
    rate_limit_plan: PausePlan | None = None

    # the pause record the resume step undid (rate_limit.resume, step 4); read by rate_limit.after (step 5).
    resumed_pause: dict[str, Any] | None = None

    # each step of a restore and its duration. Written by checks.backup.restore when the
    # restore runs; read by backup.restore_steps.
    restore_steps: pd.DataFrame | None = None


def not_run_yet(check_id: str, writer: str, what: str) -> Finding:
    """The finding of a reader whose writer has not run: UNKNOWN, naming the step to run first.

    Never OK or INFO: a reader that cannot see what an earlier step found does not
    know, and a cell moved above its writer must show up in the run's status.
    """
    return Finding(check_id, Status.UNKNOWN, f"cannot {what}: run {writer} first; it has not run before this step")
