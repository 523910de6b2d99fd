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
from dataclasses import dataclass
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

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the run record (tables and plots stay in the notebook)."""
        record: dict[str, Any] = {
            "check": self.check,
            "status": self.status.value,
            "summary": self.summary,
            "value": _jsonable(self.value),
            "threshold": _jsonable(self.threshold),
        }
        if self.data is not None and hasattr(self.data, "shape"):
            record["rows"] = int(self.data.shape[0])
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Finding:
        return cls(
            check=record["check"],
            status=Status(record["status"]),
            summary=record["summary"],
            value=record.get("value"),
            threshold=record.get("threshold"),
        )

    def row_html(self) -> str:
        value = "" if self.value is None else html.escape(_fmt(self.value))
        threshold = "" if self.threshold is None else html.escape(_fmt(self.threshold))
        return (
            f'<tr style="background:{self.status.colour}">'
            f"<td><b>{self.status.value}</b></td><td><code>{html.escape(self.check)}</code></td>"
            f"<td>{html.escape(self.summary)}</td><td>{value}</td><td>{threshold}</td></tr>"
        )

    def __str__(self) -> str:
        return f"[{self.status.value}] {self.check}: {self.summary}"


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
        return worst(f.status for f in self)

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
        for finding in self:
            parts.append(evidence_html(finding))
        return "".join(parts)

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self)


MAX_TABLE_ROWS = 60


def evidence_html(finding: Finding) -> str:
    """The finding's table (first MAX_TABLE_ROWS rows) and plot as HTML."""
    import base64

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
    if finding.figure is not None:
        encoded = base64.b64encode(figure_png(finding.figure)).decode("ascii")
        parts.append(f'<img alt="{html.escape(finding.check)}" src="data:image/png;base64,{encoded}"/>')
    return "".join(parts)


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
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)
