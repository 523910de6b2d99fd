"""What every report module shares: windows back from as_of, "no data" findings, figures, formatting.

Every window is half-open on the left, (start, end], the way the daily
checks count ("in the last 7 days before as_of"), so a report produced again
for a past as_of gives the same numbers, and the week before is the equally
long window right before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ccops.core import charts
from ccops.core.findings import Finding, Status

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Periods:
    """The report window and the equally long one before it: previous = (start, mid], current = (mid, end]."""

    start: datetime
    mid: datetime
    end: datetime

    @classmethod
    def back_from(cls, as_of: datetime, days: float) -> Periods:
        span = timedelta(days=days)
        return cls(as_of - 2 * span, as_of - span, as_of)

    def params(self) -> dict[str, Any]:
        return {"start": self.start, "mid": self.mid, "end": self.end}


def no_data(check_id: str, what: str, data: Any = None) -> Finding:
    """The INFO every report gives for an empty window: a reason, never an exception."""
    return Finding(check_id, Status.INFO, f"no data: {what}", 0, data=data)


def day_floor(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def month_floor(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(moment: datetime, months: int) -> datetime:
    """The first of the month `months` away from a month's first day."""
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def figure(width: float = 9.0, height: float = 4.0) -> Figure:
    """A figure outside pyplot: no global state, no GUI, renders in notebooks and the archive alike."""
    return charts.new_figure(width, height, layout="constrained")


def pct(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage for a summary sentence ('n/a' for a rate that does not exist)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value) * 100:.{digits}f}%"


def signed(value: Any, digits: int = 1, suffix: str = "%") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):+.{digits}f}{suffix}"


def as_float(value: Any) -> float:
    """A database number (Decimal, None, numpy) as a float, missing as nan."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
