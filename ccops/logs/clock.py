"""Time zones: the app's lines carry its host's local time with no zone; ccops works in UTC.

A `LocalClock` (the setting logs.timezone, for formats with local times) turns each local
minute into UTC as a file is read, in file order: in the autumn hour that happens twice, a
time that jumps back inside that hour is the second pass (fold=1); a time in the spring
gap (which no correct clock writes) is read at the offset before the change, counted, and
named in the problems. Every reader (records, lines, vector blocks) converts the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import overload

from ccops.logs.errors import LogSourceError

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Records within one file are written in time order, but threads can interleave them by a
# moment; a file is abandoned only once its records are this far past `until`.
STOP_SLACK = timedelta(minutes=1)
ZERO = timedelta(0)


def zone_named(name: str | None) -> tzinfo:
    """The tzinfo for an IANA name ("" or None: UTC); LogSourceError naming it when unknown."""
    if not name or name.upper() == "UTC":
        return UTC
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise LogSourceError(f"unknown time zone {name!r} (logs.timezone): expected an IANA name") from None


def zone_name(zone: tzinfo | None) -> str:
    """A zone's IANA name for reports ("UTC" for None)."""
    if zone is None or zone is UTC:
        return "UTC"
    return str(getattr(zone, "key", None) or zone)


def to_local(utc: datetime, zone: tzinfo | None) -> datetime:
    """Naive UTC -> the naive local time the app's log would show for that instant."""
    if zone is None or zone is UTC:
        return utc
    return utc.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def _constant_offset(zone: tzinfo) -> timedelta | None:
    """The offset of a zone that never changes it (UTC, Etc/*, datetime.timezone), else None."""
    key = str(getattr(zone, "key", "") or "")
    if zone is UTC or not key and zone.utcoffset(None) is not None or key.startswith("Etc/") or key in ("UTC", "GMT"):
        return zone.utcoffset(datetime(2000, 1, 1)) or ZERO
    return None


class LocalClock:
    """Turns the local minutes of one file's header lines into UTC offsets, in file order.

    Why per minute and in order: a log line carries its host's local time with no zone,
    so the offset of a line is the zone's offset at that local time, which is unique
    except twice a year. In the autumn hour that happens twice (Europe/Amsterdam:
    02:00-03:00 on 2026-10-25, first CEST then CET), the file's order decides: a time
    that goes back (by more than STOP_SLACK, the interleaving the reader tolerates) inside
    that hour is the second pass, fold=1, and stays so for the rest of the hour. In the
    spring gap (02:00-03:00 on 2026-03-29 does not exist) a line can still appear (a clock
    set by hand, a container without zone data): it is read at the offset before the
    change, as zoneinfo does for fold=0, and `gap` says so. Offsets are looked up once per
    minute of text; every reader asks the same question the same way.
    """

    def __init__(self, zone: tzinfo | None = None) -> None:
        self.zone = zone or UTC
        self.constant = _constant_offset(self.zone)  # UTC, Etc/GMT-1 ...: no DST, no lookups
        self.reset()

    def reset(self) -> None:
        """A new file: nothing seen before its first line."""
        self.prev: datetime | None = None
        self.offset = ZERO
        self.prev_ambiguous = False
        self.fold = 0
        self.gap = False

    def fixed(self, offset: timedelta) -> LocalClock:
        """A clock that reads every minute at `offset`: for a block `steady` found to hold no DST change.

        Why: the prefilter path builds records one at a time, each through a new
        iter_records; a zone lookup per record would cost more than building it.
        """
        clock = LocalClock(self.zone)
        clock.constant = offset
        return clock

    def offsets(self, local: datetime) -> tuple[timedelta, timedelta]:
        """The zone's offsets at a local time for fold=0 and fold=1 (equal except at a DST change)."""
        if self.constant is not None:
            return self.constant, self.constant
        return (local.replace(tzinfo=self.zone).utcoffset() or ZERO,
                local.replace(tzinfo=self.zone, fold=1).utcoffset() or ZERO)

    def enter(self, minute: str) -> timedelta | None:
        """The offset of the next header's local minute ("YYYY-MM-DD HH:MM"); None when it is no time."""
        try:
            local = datetime.fromisoformat(minute)
        except ValueError:
            return None
        if self.constant is not None:
            self.prev, self.offset = local, self.constant
            return self.constant
        first, second = self.offsets(local)
        ambiguous = first > second
        self.gap = first < second
        fold = self._fold(local) if ambiguous else 0
        self.prev, self.prev_ambiguous, self.fold = local, ambiguous, fold
        self.offset = second if fold else first
        return self.offset

    def last_utc(self) -> datetime | None:
        """The UTC start of the last minute entered (None before the first)."""
        return None if self.prev is None else self.prev - self.offset

    def _fold(self, local: datetime) -> int:
        """fold for an ambiguous local minute, from the minutes before it in the file."""
        prev = self.prev
        if prev is None:
            return 0  # a file that starts inside the repeated hour: read as the first pass
        if self.prev_ambiguous:
            return 1 if self.fold or local < prev - STOP_SLACK else 0
        return 1 if prev > local else 0  # the line before was after the repeated hour

    def steady(self, first: str, last: str) -> timedelta | None:
        """The one offset of a stretch from local time `first` to `last` (same day), None if it may change.

        A stretch of one local day whose ends have the same offset and lie in no DST
        change holds no change inside either: its times convert by one subtraction.
        """
        try:
            start, end = datetime.fromisoformat(first[:16]), datetime.fromisoformat(last[:16])
        except ValueError:
            return None
        if self.constant is not None:
            return self.constant
        if start.date() != end.date():
            return None
        a, b = self.offsets(start)
        c, d = self.offsets(end)
        return a if a == b == c == d else None

    def settle(self, minute: str) -> None:
        """The file was read up to a (steady) minute without looking at each line: remember it."""
        if self.constant is None:
            self.enter(minute[:16])




def gap_note(count: int, zone: tzinfo | None) -> str:
    """The problem line for records whose local time does not exist (the spring-forward gap)."""
    return (f"{count} record{'s' if count != 1 else ''} at a local time that does not exist in "
            f"{zone_name(zone)} (the spring-forward gap): read at the offset before the change")


def local_bounds(since: datetime | None, until: datetime | None, offset: timedelta) -> tuple[str, str, str]:
    """The UTC window's since, until and until+STOP_SLACK as local header text at `offset`.

    Within a stretch of one offset, comparing a header line with these strings is
    comparing its UTC time with the window (the line starts with its local time).
    """
    return (
        (since + offset).strftime(TIME_FORMAT) if since else "",
        (until + offset).strftime(TIME_FORMAT) if until else "9999",
        (until + STOP_SLACK + offset).strftime(TIME_FORMAT) if until else "9999",
    )


@overload
def naive(value: datetime) -> datetime: ...
@overload
def naive(value: None) -> None: ...
def naive(value: datetime | None) -> datetime | None:
    """Naive UTC, how the app writes times; aware values are converted."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
