"""Presentation: records counted by level and UTC hour, as tables, JSON and a terminal table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from ccops.logs.clock import TIME_FORMAT, naive, to_local, zone_name
from ccops.logs.format import ERROR_LEVELS, LEVELS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DEFAULT_WINDOW = timedelta(hours=24)


@dataclass
class LogSummary:
    """Records counted by level and by hour over [since, until)."""

    since: datetime | None
    until: datetime | None
    by_level: dict[str, int]
    by_hour: dict[datetime, dict[str, int]]
    total: int
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: str = ""
    # lines of the same window that `grep -i error` matches (None when not computed)
    grep_error_lines: int | None = None
    zone: tzinfo | None = None  # the zone of the app's log times; hours and bounds here are UTC
    warning: str = ""  # set when the source holds no app log file at all (see no_log_files_warning)

    @property
    def timezone(self) -> str:
        return zone_name(self.zone)

    def local(self, utc: datetime | None) -> datetime | None:
        """A UTC time of this summary as the app's log would write it."""
        return None if utc is None else to_local(utc, self.zone)

    @property
    def errors(self) -> int:
        """ERROR and CRITICAL records: what the guide means by errors."""
        return sum(self.by_level.get(level, 0) for level in ERROR_LEVELS)

    def levels(self) -> list[str]:
        extra = sorted(level for level in self.by_level if level not in LEVELS)
        return list(LEVELS) + extra

    def errors_per_hour(self) -> pd.DataFrame:
        import pandas as pd

        hours = sorted(self.by_hour)
        errors = [sum(self.by_hour[h].get(level, 0) for level in ERROR_LEVELS) for h in hours]
        return pd.DataFrame({"hour": pd.to_datetime(pd.Series(hours, dtype="datetime64[ns]")),
                             "errors": pd.Series(errors, dtype="int64")})

    def level_table(self) -> pd.DataFrame:
        import pandas as pd

        levels = self.levels()
        return pd.DataFrame({"level": levels, "records": [self.by_level.get(lv, 0) for lv in levels]})

    def hour_table(self) -> pd.DataFrame:
        import pandas as pd

        levels = self.levels()
        rows = [{"hour": h, **{lv: counts.get(lv, 0) for lv in levels}} for h, counts in sorted(self.by_hour.items())]
        return pd.DataFrame(rows, columns=["hour", *levels])

    def to_dict(self) -> dict[str, Any]:
        levels = self.levels()
        return {
            "source": self.source,
            "timezone": self.timezone,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "since_local": self._local_iso(self.since),
            "until_local": self._local_iso(self.until),
            "total": self.total,
            "errors": self.errors,
            "by_level": {lv: self.by_level.get(lv, 0) for lv in levels},
            "by_hour": [
                {"hour": h.isoformat(), "hour_local": self._local_iso(h),
                 **{lv: counts.get(lv, 0) for lv in levels}, "total": sum(counts.values())}
                for h, counts in sorted(self.by_hour.items())
            ],
            "files": list(self.files),
            "problems": list(self.problems),
            "warning": self.warning,
            "grep_error_lines": self.grep_error_lines,
        }

    def _local_iso(self, utc: datetime | None) -> str | None:
        """A UTC time in the app's zone with its offset (2026-10-25T02:30:00+01:00): unambiguous."""
        if utc is None:
            return None
        return utc.replace(tzinfo=UTC).astimezone(self.zone or UTC).isoformat()

    def format_text(self) -> str:
        """A compact table for a terminal: one row per hour, one column per level in use."""
        shown = [lv for lv in self.levels() if self.by_level.get(lv, 0) or lv in ERROR_LEVELS]
        span = f"{_fmt_time(self.since)} .. {_fmt_time(self.until)} UTC"
        if self.timezone != "UTC":
            span += f" ({_fmt_time(self.local(self.since))} .. {_fmt_time(self.local(self.until))} {self.timezone})"
        files = f", {len(self.files)} files" if self.files else ""
        lines = [f"logs {span} from {self.source or '?'}{files}",
                 f"{self.total} records, {self.errors} errors (ERROR+CRITICAL): "
                 + ", ".join(f"{lv} {self.by_level.get(lv, 0)}" for lv in shown)]
        if self.grep_error_lines is not None:
            lines.append(f"`grep -i error | wc -l` over the same lines would say {self.grep_error_lines}")
        rows = sorted(self.by_hour.items())
        widths = [max([len(lv)] + [len(str(c.get(lv, 0))) for _, c in rows]) for lv in shown]
        total_width = max([5] + [len(str(sum(c.values()))) for _, c in rows])
        local = self.timezone != "UTC"
        lines.append("hour (UTC)        " + ("local   " if local else "")
                     + " ".join(lv.rjust(w) for lv, w in zip(shown, widths, strict=True))
                     + "  " + "total".rjust(total_width))
        for hour, counts in rows:
            cells = " ".join(str(counts.get(lv, 0)).rjust(w) for lv, w in zip(shown, widths, strict=True))
            shown_local = f"{self.local(hour):%H:%M}   " if local else ""
            lines.append(f"{hour:%Y-%m-%d %H:00}  {shown_local}{cells}  {sum(counts.values()):>{total_width}}")
        if self.problems:
            lines.append("problems:")
            lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def _fmt_time(value: datetime | None) -> str:
    return value.strftime(TIME_FORMAT) if value else "-"


def window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = naive(until) or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    since = naive(since) or until - DEFAULT_WINDOW
    return since, until


def hours(since: datetime, until: datetime) -> list[datetime]:
    hour = since.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < until:
        out.append(hour)
        hour += timedelta(hours=1)
    return out
