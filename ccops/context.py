"""The run context a runbook opens in its first cell, and the decorator every check wears.

A runbook stays thin because everything a step needs travels in one object:
the settings, the `as_of` instant every window is measured back from, and the
findings collected so far. The `check` decorator is what keeps the DESIGN
promise that a check never raises into the notebook: whatever goes wrong
becomes an UNKNOWN finding with the reason, is recorded for the runner, and
the next cell still runs.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ccops import findings as findings_mod
from ccops.config import Settings, load_settings
from ccops.errors import UsageError
from ccops.findings import Finding, Findings, Status, findings_table_html


def parse_as_of(value: str | datetime | None) -> datetime:
    """An instant as naive UTC (how the app stores timestamps); empty or 'now' means now."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "now")):
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if isinstance(value, datetime):
        parsed = value
    else:
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(f"as_of: expected an ISO timestamp such as 2026-11-28T08:00:00Z, got {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


@dataclass
class ChecklistItem:
    text: str
    done: bool = False


@dataclass
class RunContext:
    """What one runbook run knows: settings, the instant it reports on, its findings."""

    runbook: str
    settings: Settings
    as_of: datetime
    params: dict[str, Any] = field(default_factory=dict)
    findings: Findings = field(default_factory=Findings)
    current_section: str = ""
    # what one step leaves for a later one (an integrity report, the actions taken so far)
    state: dict[str, Any] = field(default_factory=dict)

    def excerpt(self, text: str, limit: int) -> str:
        """`text` masked (known secrets and recognisable forms) and cut to `limit`, for a finding's summary."""
        from ccops.scrub import Scrubber, excerpt

        if "scrubber" not in self.state:
            self.state["scrubber"] = Scrubber(self.settings)
        return excerpt(text, limit, self.state["scrubber"])

    def section(self, name: str) -> SectionNote:
        """Enter a part of the runbook (e.g. "morning"); checks in a part not selected are skipped."""
        self.current_section = name
        return SectionNote(name, self.section_enabled(), str(self.params.get("part", "all")))

    def section_enabled(self) -> bool:
        part = str(self.params.get("part", "all") or "all")
        return part == "all" or not self.current_section or part == self.current_section

    def window(self, hours: float = 24) -> tuple[datetime, datetime]:
        """[as_of - hours, as_of): the window the guide means by 'last N hours'."""
        return self.as_of - timedelta(hours=hours), self.as_of

    @contextmanager
    def db(self, read_only: bool = True) -> Iterator[Any]:
        from ccops.db import get_db

        with get_db(self.settings, read_only=read_only) as conn:
            yield conn

    def record(self, found: Iterable[Finding]) -> Findings:
        batch = Findings(found)
        self.findings.extend(batch)
        findings_mod.record(batch)
        return batch

    def summary(self) -> RunSummary:
        """The last cell of every runbook: every finding of the run, worst first."""
        return RunSummary(self.runbook, self.as_of, Findings(self.findings))

    def checklist(self, check: str, items: list[str], done: list[bool] | None = None) -> Findings:
        """A human-only step: pending until an operator ticks every item."""
        states = list(done or []) + [False] * (len(items) - len(done or []))
        pending = [item for item, ok in zip(items, states, strict=False) if not ok]
        status = Status.OK if not pending else Status.INFO
        summary = (
            "all items ticked by the operator"
            if not pending
            else f"{len(pending)} of {len(items)} items pending an operator: " + "; ".join(pending)
        )
        import pandas as pd

        table = pd.DataFrame({"item": items, "done": states[: len(items)]})
        return self.record([Finding(check, status, summary, value=len(pending), data=table)])


@dataclass
class SectionNote:
    name: str
    enabled: bool
    part: str

    def _repr_html_(self) -> str:
        state = "runs" if self.enabled else f"skipped (part = {html.escape(self.part)})"
        return f"<p><b>{html.escape(self.name.title())} checks</b>: {state}</p>"

    def __str__(self) -> str:
        return f"{self.name} checks: {'runs' if self.enabled else 'skipped'}"


@dataclass
class RunSummary:
    runbook: str
    as_of: datetime
    findings: Findings

    @property
    def assessment(self) -> findings_mod.Assessment:
        return findings_mod.assess(self.findings)

    @property
    def status(self) -> Status:
        """The state after the run: an incident this run repaired and verified no longer counts."""
        return self.assessment.status

    def notes(self) -> list[str]:
        """The lines under the heading: the repaired incident, and the steps that did nothing."""
        found = self.assessment
        lines = []
        if found.incident:
            top = found.incident_record() or {}
            lines.append(f"incident found at the start, resolved by {', '.join(top.get('resolved_by', []))}: "
                         f"[{top.get('status')}] {top.get('check')}: {top.get('summary')}")
        if found.not_configured:
            lines.append(found.not_configured_line())
        if found.undecided:
            lines.append(f"could not decide ({len(found.undecided)}): "
                         + ", ".join(dict.fromkeys(f.check for f in found.undecided)))
        return lines

    def _repr_html_(self) -> str:
        ordered = sorted(self.findings, key=lambda f: -f.status.rank)
        counts = {s.value: sum(1 for f in self.findings if f.status == s) for s in Status}
        count_text = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        notes = "".join(f"<p><b>{html.escape(line)}</b></p>" for line in self.notes())
        return (
            f'<h3 style="background:{self.status.colour};padding:4px">{html.escape(self.runbook)}: '
            f"{self.status.value}</h3><p>as of {self.as_of.isoformat()}Z &middot; "
            f"{len(self.findings)} findings ({count_text or 'none'})</p>"
            + notes + findings_table_html(ordered)
        )

    def __str__(self) -> str:
        lines = [f"{self.runbook}: {self.status.value} as of {self.as_of.isoformat()}Z", *self.notes()]
        lines += [str(f) for f in sorted(self.findings, key=lambda f: -f.status.rank)]
        return "\n".join(lines)


def start(runbook: str, as_of: str | datetime | None = None, config: str | None = None, **params: Any) -> RunContext:
    """Open a run: the first call of every runbook, right after its parameters cell."""
    settings = load_settings(config or None)
    from ccops.db import set_application_name

    set_application_name(f"ccops/{runbook}")  # every session of this run names it (pg_stat_activity, logs)
    return RunContext(runbook=runbook, settings=settings, as_of=parse_as_of(as_of), params=params)


CheckFunction = Callable[..., "Iterable[Finding] | Finding"]


def check(check_id: str) -> Callable[[CheckFunction], Callable[..., Findings]]:
    """Wrap a check: record its findings, and turn any failure into an UNKNOWN finding."""

    def decorate(fn: CheckFunction) -> Callable[..., Findings]:
        @functools.wraps(fn)
        def wrapper(ctx: RunContext, *args: Any, **kwargs: Any) -> Findings:
            if not ctx.section_enabled():
                return Findings()
            try:
                result = fn(ctx, *args, **kwargs)
                found = [result] if isinstance(result, Finding) else list(result)
            except Exception as exc:  # noqa: BLE001 - the contract: never raise into the notebook
                setting = missing_setting(exc)
                found = [findings_mod.not_configured(check_id, setting, getattr(exc, "what", "")) if setting is not None
                         else Finding(check_id, Status.UNKNOWN, f"could not run: {describe(exc)}")]
                if setting is not None and getattr(exc, "optional", False):
                    found[0].status = Status.INFO  # a probe the app may not have (no /health): listed, no alarm
            return ctx.record(found)

        wrapper.check_id = check_id  # type: ignore[attr-defined]
        return wrapper

    return decorate


def not_configured_guard(check_id: str) -> Callable[[Callable[..., Findings]], Callable[..., Findings]]:
    """Wrap a step that records its own findings (clean-up, actions): a missing setting becomes its
    "not configured" finding instead of failing the run; any other error still stops it, because a
    step that changes things must not carry on past a failure it cannot describe."""

    def decorate(fn: Callable[..., Findings]) -> Callable[..., Findings]:
        @functools.wraps(fn)
        def wrapper(ctx: RunContext, *args: Any, **kwargs: Any) -> Findings:
            try:
                return fn(ctx, *args, **kwargs)
            except Exception as exc:
                setting = missing_setting(exc)
                if setting is None:
                    raise
                return ctx.record([findings_mod.not_configured(check_id, setting, getattr(exc, "what", ""))])

        wrapper.check_id = check_id  # type: ignore[attr-defined]
        return wrapper

    return decorate


def missing_setting(exc: BaseException) -> str | None:
    """The setting a NotConfigured error names ('' when it names none); None for any other error.

    Matched by class name along the MRO, so the error may live in ccops.errors
    or ccops.config; the setting is read from its `setting` or `key` attribute,
    else from a message of the form "... set <key>".
    """
    if not any(cls.__name__ == "NotConfigured" for cls in type(exc).__mro__):
        return None
    for attr in ("setting", "key"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    text = str(exc)
    return text.rsplit("set ", 1)[1].strip() if "set " in text else ""


def describe(exc: BaseException) -> str:
    """The one line an operator needs: driver errors lose their SQL, URLs lose passwords."""
    from ccops.db import describe_error

    try:
        from sqlalchemy.exc import OperationalError, SQLAlchemyError

        if isinstance(exc, OperationalError):
            return "database unreachable: " + describe_error(exc)
        if isinstance(exc, SQLAlchemyError):
            return describe_error(exc)
    except ImportError:  # pragma: no cover
        pass
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__
