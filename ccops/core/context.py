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
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

from ccops.core import findings as findings_mod
from ccops.core.errors import UsageError
from ccops.core.findings import Finding, Findings, Status, findings_table_html
from ccops.core.results import StepResults
from ccops.core.settings import Settings

if TYPE_CHECKING:
    from ccops.core.scrub import Scrubber

P = ParamSpec("P")
T = TypeVar("T")


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
    # when the run began (the archive's start time for an interactive run, ccops.runbook.session)
    started: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    # what one step leaves for a later one, one typed field each (ccops.core.results)
    results: StepResults = field(default_factory=StepResults)
    # answers computed once per run and shared by the steps that ask (see cached())
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    # what ctx.finish() does after the summary: set by ccops.runbook.session.start (archives interactive runs)
    finisher: Callable[[RunContext], RunSummary] | None = field(default=None, repr=False, compare=False)

    def cached(self, fn: Callable[Concatenate[RunContext, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(self, *args, **kwargs)`, computed once per run for the same function and arguments.

        For questions several steps ask of the same data (the guide's health queries,
        one pass over the day's log): whichever step runs first computes the answer and
        the others share it, so unlike a hand-over (`results`) no order between them matters.
        """
        key = (fn, args, tuple(sorted(kwargs.items())))
        if key not in self._cache:
            self._cache[key] = fn(self, *args, **kwargs)
        return cast(T, self._cache[key])

    def excerpt(self, text: str, limit: int) -> str:
        """`text` masked (known secrets and recognisable forms) and cut to `limit`, for a finding's summary."""
        from ccops.core.scrub import excerpt

        return excerpt(text, limit, self.cached(_scrubber))

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
        from ccops.core.db import get_db

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

    def finish(self) -> RunSummary:
        """The last cell: the summary, and (worked in JupyterLab) the run archived.

        The archiving belongs to the runbook layer (ccops.runbook.session), which
        sets `finisher` when it opens the run; a context made without it (a test,
        a library call) just returns the summary.
        """
        return self.finisher(self) if self.finisher is not None else self.summary()

    def checklist(self, check: str, items: list[str], done: list[bool] | None = None) -> Findings:
        """A human-only step: pending until an operator ticks every item.

        Items are ticked without editing code: the runbook's `checked` parameter
        lists their ids (`<check>.<n>`, n from 1, or the whole check id), and each
        tick is recorded with who ticked it and when, so the report can say
        "k of n items ticked by <who> at <when>".
        """
        if not self.section_enabled():
            return Findings()
        ticked = checked_ids(self.params.get("checked"))
        states = list(done or []) + [False] * (len(items) - len(done or []))
        ids = [f"{check}.{n}" for n in range(1, len(items) + 1)]
        states = [bool(ok) or item_ticked(check, n, ticked) for n, ok in enumerate(states[: len(items)], start=1)]
        who, when = operator_name(), datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        import pandas as pd

        table = pd.DataFrame({"id": ids, "item": items, "done": states,
                              "ticked by": [who if ok else "" for ok in states],
                              "at": [when if ok else "" for ok in states]})
        pending = [item for item, ok in zip(items, states, strict=True) if not ok]
        status = Status.OK if not pending else Status.INFO
        return self.record([Finding(check, status, checklist_summary(len(items), pending, who, when),
                                    value=len(pending), data=table)])


def _scrubber(ctx: RunContext) -> Scrubber:
    """One scrubber per run: it collects the secrets of the settings once."""
    from ccops.core.scrub import Scrubber

    return Scrubber(ctx.settings)


def checked_ids(value: Any) -> set[str]:
    """The checklist item ids an operator ticked: a list, or one string separated by commas or spaces."""
    if not value:
        return set()
    parts = value.replace(",", " ").split() if isinstance(value, str) else [str(v) for v in value]
    return {p.strip() for p in parts if p.strip()}


def item_ticked(check: str, number: int, ticked: set[str]) -> bool:
    """Is item `number` of `check` ticked: by its id, by its id without the runbook's prefix, or by the whole check?"""
    short = check.split(".", 1)[-1]
    return bool({f"{check}.{number}", f"{short}.{number}", check, short} & ticked)


def checklist_summary(total: int, pending: list[str], who: str, when: str) -> str:
    """The sentence a report shows: who ticked how many items and when, and what is still pending."""
    done = total - len(pending)
    if done == 0:
        return f"{total} of {total} items pending an operator: " + "; ".join(pending)
    text = f"{done} of {total} items ticked by {who} at {when}"
    return text if not pending else f"{text}; pending: " + "; ".join(pending)


OPERATOR_ENV = "CCOPS_OPERATOR"
RUN_ID_ENV = "CCOPS_RUN_ID"  # set by `ccops run` for its papermill and kernel: this run is the runner's to archive


def operator_name() -> str:
    """Who is working the runbook: CCOPS_OPERATOR (a shared login such as root), else the login name ($USER)."""
    import getpass

    named = os.environ.get(OPERATOR_ENV, "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


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
    archived: str = ""  # where an interactive run was archived (ctx.finish())

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
        if self.archived:
            lines.append(self.archived if self.archived.startswith("NOT ARCHIVED") else f"archived as {self.archived}")
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

    Matched by class name along the MRO, so the error may live in ccops.core.errors
    or ccops.core.settings; the setting is read from its `setting` or `key` attribute,
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
    from ccops.core.db import describe_error

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
