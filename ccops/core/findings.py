"""Findings: what every check returns, how it looks in a notebook, how the runner learns of it.

A finding is the unit a reviewer reads and the runner aggregates into the run's
outcome, so it must survive three journeys: rendering in a live notebook, a JSON
line the runner picks up (even when the notebook later dies), and the archive's
run record. Everything here is plain data so those journeys stay lossless.
"""

from __future__ import annotations

import enum
import html
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

FINDINGS_FILE_ENV = "CCOPS_FINDINGS_FILE"


class Status(enum.StrEnum):
    OK = "OK"
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"

    @property
    def rank(self) -> int:
        """Severity order used to pick a run's worst status.

        UNKNOWN ranks between INFO and WARNING: a check that could not run is
        worse than a clean one but must not hide a real WARNING or CRITICAL,
        the way Nagios aggregators order states.
        """
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        return _EXIT[self]

    @property
    def colour(self) -> str:
        return _COLOUR[self]


_RANK = {Status.OK: 0, Status.INFO: 1, Status.UNKNOWN: 2, Status.WARNING: 3, Status.CRITICAL: 4}
_EXIT = {Status.OK: 0, Status.INFO: 0, Status.WARNING: 1, Status.CRITICAL: 2, Status.UNKNOWN: 3}
_COLOUR = {
    Status.OK: "#d4edda",
    Status.INFO: "#d1ecf1",
    Status.WARNING: "#fff3cd",
    Status.CRITICAL: "#f8d7da",
    Status.UNKNOWN: "#e2e3e5",
}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status, OK when there is none."""
    result = Status.OK
    for status in statuses:
        if status.rank > result.rank:
            result = status
    return result


_RANK_OF_NAME = {spelling: status.rank for status in Status for spelling in (status.value, status.value.lower())}


def status_named(name: object) -> Status | None:
    """The Status a name stands for, in any case (alerts say "critical", findings "CRITICAL"); None for other names."""
    try:
        return Status(str(name).upper())
    except ValueError:
        return None


def severity_rank(name: object, missing: int = 0) -> int:
    """Status.rank of a status or alert-severity name; `missing` for a name that is neither.

    The one severity order: alerts, their messages, the archive's pages and
    figures all rank through this, so they can never disagree with a run's
    worst status (UNKNOWN between INFO and WARNING).
    """
    rank = _RANK_OF_NAME.get(name) if isinstance(name, str) else None  # the hot path: index rebuilds rank 100,000s
    if rank is not None:
        return rank
    status = status_named(name)
    return missing if status is None else status.rank


NOT_CONFIGURED = "not_configured"
RECOVERED = "recovered"


@dataclass
class Finding:
    """One observation of one check: a status, a sentence, and the evidence."""

    check: str
    status: Status
    summary: str
    value: float | int | str | None = None
    threshold: float | int | str | None = None
    data: Any = None  # a pandas DataFrame shown as a table, or None
    figure: Any = None  # a matplotlib Figure shown as a plot, or None
    # what kind of finding: "" an observation; NOT_CONFIGURED a step that could not do its job
    # because a setting is missing (`setting` names it); RECOVERED a verified repair, which
    # marks the earlier findings of the checks in `resolves` as the incident it resolved
    kind: str = ""
    setting: str = ""
    resolves: tuple[str, ...] = ()
    # a ccops.core.charts.Chart: what to plot of `data`, drawn only when the finding is displayed
    # (one picture per finding: a chart with something to plot replaces `figure`)
    chart: Any = field(default=None, repr=False)  # kept out of the repr: recheck patterns end at resolves

    def __post_init__(self) -> None:
        self.status = Status(self.status)
        self.resolves = tuple(self.resolves or ())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the run record (tables, plots and charts stay in the notebook)."""
        record: dict[str, Any] = {
            "check": self.check,
            "status": self.status.value,
            "summary": self.summary,
            "value": _jsonable(self.value),
            "threshold": _jsonable(self.threshold),
        }
        if self.data is not None and hasattr(self.data, "shape"):
            record["rows"] = int(self.data.shape[0])
        if self.kind:
            record["kind"] = self.kind
        if self.setting:
            record["setting"] = self.setting
        if self.resolves:
            record["resolves"] = list(self.resolves)
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Finding:
        return cls(
            check=record["check"],
            status=Status(record["status"]),
            summary=record["summary"],
            value=record.get("value"),
            threshold=record.get("threshold"),
            kind=str(record.get("kind") or ""),
            setting=str(record.get("setting") or ""),
            resolves=tuple(str(c) for c in record.get("resolves") or ()),
        )

    @property
    def has_picture(self) -> bool:
        """True when the finding shows a picture: a chart with something to plot, or a figure."""
        return (self.chart is not None and self.chart.plottable(self.data)) or self.figure is not None

    @property
    def not_configured(self) -> bool:
        return self.kind == NOT_CONFIGURED

    def row_html(self) -> str:
        value = "" if self.value is None else html.escape(_fmt(self.value))
        threshold = "" if self.threshold is None else html.escape(_fmt(self.threshold))
        return (
            f'<tr data-check="{html.escape(self.check)}" style="background:{self.status.colour}">'
            f"<td><b>{self.status.value}</b></td><td><code>{html.escape(self.check)}</code></td>"
            f'<td style="text-align:left;min-width:30em">{html.escape(self.summary)}</td>'
            f'<td style="text-align:right">{value}</td><td style="text-align:right">{threshold}</td></tr>'
        )

    def __str__(self) -> str:
        return f"[{self.status.value}] {self.check}: {self.summary}"


def not_configured(check: str, setting: str, what: str = "") -> Finding:
    """A step that could not do its job because `setting` is missing.

    UNKNOWN (it decided nothing), of kind NOT_CONFIGURED so the summary, the run
    record and the index can list it on its own: a report must never look clean
    while steps did nothing.
    """
    summary = f"not configured: set {setting}" + (f" ({what})" if what else "")
    return Finding(check, Status.UNKNOWN, summary, kind=NOT_CONFIGURED, setting=setting)


def optional_not_configured(check: str, setting: str, what: str = "") -> Finding:
    """A step the deployment may choose not to have (TLS endpoints, live API probes): listed among the
    not-configured steps like any other, but INFO, because not having it is not a failure to decide."""
    finding = not_configured(check, setting, what)
    finding.status = Status.INFO
    return finding


def recovered(check: str, summary: str, resolves: Iterable[str], status: Status = Status.OK) -> Finding:
    """A verified repair: the earlier findings of the checks in `resolves` become the run's incident.

    Only a step that has verified the recovery (a restart found UP, a rebuild
    found clean by amcheck) emits it; `status` is the state after the repair
    (OK, or WARNING when degraded). A check id in `resolves` also covers its
    per-item family (`x` resolves `x:db` and `x.indexes`).
    """
    return Finding(check, status, summary, kind=RECOVERED, resolves=tuple(resolves))


def covers(prefix: str, check: str) -> bool:
    """True when `check` is `prefix` or one of its items (`prefix:item`, `prefix.sub`)."""
    return check == prefix or check.startswith(prefix + ":") or check.startswith(prefix + ".")


@dataclass
class Assessment:
    """What a run's findings mean taken together: the state after the run, and what it found on the way."""

    status: Status  # the present: the worst finding not resolved by a later verified recovery
    incident: list[Finding]  # problems found, then resolved by a recovery in the same run
    resolved_by: dict[int, str]  # position in the findings -> the recovery that resolved it
    not_configured: list[Finding]
    undecided: list[Finding]  # UNKNOWN for another reason than a missing setting

    @property
    def incident_status(self) -> Status:
        return worst(f.status for f in self.incident)

    def incident_record(self) -> dict[str, Any] | None:
        """The incident as the run record keeps it: its worst finding and every check involved."""
        if not self.incident:
            return None
        top = max(self.incident, key=lambda f: f.status.rank)
        return {"status": top.status.value, "check": top.check, "summary": top.summary,
                "checks": [f.check for f in self.incident],
                "resolved_by": sorted(set(self.resolved_by.values()))}

    def not_configured_record(self) -> list[dict[str, str]]:
        return [{"check": f.check, "setting": f.setting, "summary": f.summary} for f in self.not_configured]

    def not_configured_line(self) -> str:
        """'not configured (2): audit.bandit, checks.tls - set security.app_source_dir, security.tls_hosts'."""
        if not self.not_configured:
            return ""
        checks = ", ".join(dict.fromkeys(f.check for f in self.not_configured))
        settings = ", ".join(dict.fromkeys(f.setting for f in self.not_configured if f.setting))
        return f"not configured ({len(self.not_configured)}): {checks}" + (f" - set {settings}" if settings else "")


def assess(findings: Iterable[Finding]) -> Assessment:
    """The run's status is the state after it: a verified recovery resolves the incident it repaired.

    A finding is resolved when a RECOVERED finding recorded after it names its
    check in `resolves`; resolved findings no longer count towards the status
    (they are kept, as the incident). Everything else counts as it is.
    """
    found = list(findings)
    resolved_by: dict[int, str] = {}
    for i, recovery in enumerate(found):
        if recovery.kind != RECOVERED:
            continue
        for j in range(i):
            earlier = found[j]
            if earlier.kind != RECOVERED and any(covers(p, earlier.check) for p in recovery.resolves):
                resolved_by.setdefault(j, recovery.check)
    present = [f for i, f in enumerate(found) if i not in resolved_by]
    incident = [found[j] for j in sorted(resolved_by) if found[j].status.rank > Status.INFO.rank]
    return Assessment(
        status=worst(f.status for f in present),
        incident=incident,
        resolved_by={j: c for j, c in resolved_by.items()},
        not_configured=[f for f in present if f.not_configured],
        undecided=[f for f in present if f.status == Status.UNKNOWN and not f.not_configured],
    )


TABLE_HEAD = (
    '<table class="ccops-findings" style="border-collapse:collapse;width:100%">'
    "<thead><tr><th>status</th><th>check</th><th>summary</th><th>value</th>"
    "<th>threshold</th></tr></thead><tbody>"
)


def findings_table_html(findings: Iterable[Finding]) -> str:
    rows = "".join(f.row_html() for f in findings)
    return f"{TABLE_HEAD}{rows}</tbody></table>"


class Findings(list):
    """A list of findings that shows itself in a notebook: coloured rows, then tables and plots."""

    @property
    def status(self) -> Status:
        """The state after the run (see assess): a repaired incident no longer counts."""
        return assess(self).status

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self if f.check == check]

    def _repr_html_(self) -> str:
        """One HTML block: the coloured rows, then each finding's table and plot.

        A single rich output (rather than several display() calls) renders the
        same in JupyterLab, in papermill's executed notebook and in the
        nbconvert HTML that reviewers read.
        """
        if not self:
            return "<p><i>skipped: not part of this run</i></p>"
        parts = [findings_table_html(self)]
        parts += [evidence_table_html(group) for group in evidence_groups(self)]
        parts += [picture_html(f) for f in self]
        return "".join(parts)

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self)


MAX_TABLE_ROWS = 60


def evidence_html(finding: Finding) -> str:
    """The finding's table (first MAX_TABLE_ROWS rows) and chart or plot as HTML."""
    parts: list[str] = []
    data = finding.data
    if data is not None and getattr(data, "shape", (0,))[0] > 0:
        shown = data.head(MAX_TABLE_ROWS)
        more = data.shape[0] - shown.shape[0]
        note = f"<p><i>{more} more rows not shown</i></p>" if more > 0 else ""
        parts.append(
            f'<details open><summary><b>{html.escape(finding.check)}</b> ({data.shape[0]} rows)</summary>'
            f"{shown.to_html(index=False, border=0, na_rep='')}{note}</details>"
        )
    parts.append(picture_html(finding))
    return "".join(parts)


def evidence_groups(findings: Iterable[Finding]) -> list[list[Finding]]:
    """Findings with a table, those whose tables have the same columns together (one table per step, not per item)."""
    groups: dict[tuple[str, ...], list[Finding]] = {}
    for f in findings:
        if f.data is not None and getattr(f.data, "shape", (0,))[0] > 0:
            groups.setdefault(tuple(map(str, f.data.columns)), []).append(f)
    return list(groups.values())


def evidence_table_html(group: list[Finding]) -> str:
    """One table for the group: a `check` column first when several findings share it."""
    import pandas as pd

    if len(group) == 1:
        data, title = group[0].data, group[0].check
    else:
        data = pd.concat([f.data.assign(**{"check": f.check})[["check", *map(str, f.data.columns)]]
                          if "check" not in f.data.columns else f.data for f in group], ignore_index=True)
        title = ", ".join(dict.fromkeys(f.check for f in group))
    shown = format_frame(data.head(MAX_TABLE_ROWS))
    more = data.shape[0] - shown.shape[0]
    note = f"<p><i>{more} more rows not shown</i></p>" if more > 0 else ""
    return (f'<details open><summary><b>{html.escape(title)}</b> ({data.shape[0]} rows)</summary>'
            f"{shown.to_html(index=False, border=0, na_rep='', escape=True)}{note}</details>")


def picture_html(finding: Finding) -> str:
    """The finding's one picture: its chart when it has something to plot, else its figure, else ''."""
    if finding.chart is not None and finding.chart.plottable(finding.data):
        return finding.chart.html(finding.data, finding.check)  # replaces the figure: one picture per finding
    if finding.figure is not None:
        return figure_html(finding)
    return ""


def figure_html(finding: Finding) -> str:
    import base64

    encoded = base64.b64encode(figure_png(finding.figure)).decode("ascii")
    return f'<img alt="{html.escape(finding.check)}" src="data:image/png;base64,{encoded}"/>'


def format_frame(data: Any) -> Any:
    """A copy for people: times to the second, floats without noise or padding, byte counts as kB/MB/GB."""
    frame = data.copy()
    for name in frame.columns:
        column = frame[name]
        kind = getattr(column.dtype, "kind", "O")
        if kind == "M":
            frame[name] = column.dt.strftime("%Y-%m-%d %H:%M:%S").where(column.notna(), "")
        elif kind == "m":
            frame[name] = column.map(lambda v: "" if v != v else str(v.floor("s")))
        elif kind in "iuf" and "bytes" in str(name).lower():
            frame[name] = column.map(lambda v: "" if v != v else human_bytes(v))
        elif kind == "f":
            frame[name] = column.map(lambda v: "" if v != v else format_number(v))
        elif kind == "O":
            frame[name] = column.map(_cell)
    return frame


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return format_number(value)
    return value


def format_number(value: float | int) -> str:
    """12,345 / 27.1 / 0.25 / 5: two decimals at most, none when whole, thousands separated."""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    text = f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
    return "0" if text in ("-0", "") else text


def human_bytes(value: float | int) -> str:
    """1.5 GB: byte counts in the unit a person reads (1000-based like df -H, kB to TB)."""
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{format_number(round(size, 1) if unit != 'B' else int(size))} {unit}"
        size /= 1000
    return f"{size} TB"


def figure_png(figure: Any) -> bytes:
    """PNG bytes of a matplotlib Figure: works without pyplot or an inline backend."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if figure.canvas is None or not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def record(findings: Iterable[Finding], path: str | os.PathLike[str] | None = None) -> None:
    """Append findings as JSON lines to the file the runner named, so a later crash loses none."""
    target = path or os.environ.get(FINDINGS_FILE_ENV)
    if not target:
        return
    lines = "".join(json.dumps(f.to_dict()) + "\n" for f in findings)
    if not lines:
        return
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())


def read_recorded(path: str | os.PathLike[str]) -> list[Finding]:
    """Findings a notebook recorded; a torn last line (killed kernel) is skipped."""
    file = Path(path)
    if not file.exists():
        return []
    found: list[Finding] = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            found.append(Finding.from_dict(json.loads(line)))
        except (ValueError, KeyError):
            continue
    return found


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (int, float)):
        return value
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return str(value)
