"""The app's loguru logs: find the files, read them, count records by level.

The maintenance guide counts errors with `grep -i error | wc -l`. That counts
lines of text, not error records: every INFO line that mentions an error and
every traceback line adds one. ccops counts *records* by their level field,
with a record's continuation lines (tracebacks, lists) belonging to it.

Line format (loguru, level padded to 8): the app's own, and loguru's default (what
an app gets when it sets none: milliseconds, and the line number)::

    2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy
    2025-11-23 15:23:43.123 | ERROR    | __main__:_error:42 - Missing package: Tweepy

A line is a record header when it has that fixed-width prefix; checking a few
character positions is far cheaper than a regular expression per line and is
what lets `ccops logs summary` keep up with `grep -c` on a gigabyte of logs.
Two paths share one definition of a header:

- records (`iter_records`, `read_records`): LogRecord objects with the full
  message, for the checks that show messages;
- counting (`count_levels`, `summarize_dir`): counters only, never a record.
  Files are read in 2 MB blocks aligned to line ends; a block lying wholly
  inside the window is classified with numpy in a few vector operations
  (worker threads overlap them with reading), and any block the vector path
  cannot classify exactly (window boundaries, midnight, a custom level) goes
  through the per-line path. Both give the same counts by construction.

Files. loguru writes `content_creator_YYYY-MM-DD.log`, rotates at midnight and
compresses the old file to `.log.zip` (a rotation suffix may precede `.log`,
and `.log.N` / `.gz` / ccops' `.log.<time>.gz` archives are accepted too;
`output.log` and `error.log` never are: see LOG_NAME_RE, the one rule the disk
clean-up and the demo use as well). The date in the name is the day the
file was opened, and rotation at 00:00 means a file dated D holds records of
day D only. `log_files` therefore picks exactly the files whose day intersects
the window; files without a date are read too.

Time zones. loguru writes names and line times in the host's LOCAL time with no
zone (production ran at UTC+1); the database and every window ccops asks about
are UTC. A `LocalClock` (the setting logs.timezone) turns each local minute into
UTC as the file is read, in file order: in the autumn hour that happens twice, a
time that jumps back inside that hour is the second pass (fold=1); a time in the
spring gap (which no correct clock writes) is read at the offset before the
change, counted, and named in the problems. All three paths (records, lines,
vector blocks) convert the same way: the vector path takes only blocks of one
local day whose ends share one offset and lie outside any DST change, and sends
every other block through the per-line path. Hours are UTC everywhere.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import subprocess
import tempfile
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccops.core.errors import CcopsError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ccops.core.settings import Settings

LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BLOCK_SIZE = 1 << 21  # 2 MB: large enough for numpy to pay off, small enough to stay in cache
HEADER_MIN = 33  # "YYYY-MM-DD HH:MM:SS | LEVEL    | " is 33 characters
MS = 4  # loguru's default format adds ".SSS" to the time: everything after it moves 4 characters
HEADER_MIN_MS = HEADER_MIN + MS
# Records within one file are written in time order, but threads can interleave them by a
# moment; a file is abandoned only once its records are this far past `until`.
STOP_SLACK = timedelta(minutes=1)
DEFAULT_WINDOW = timedelta(hours=24)
COMPOSE_TIMEOUT_SECONDS = 300
TRACEBACK = "Traceback (most recent call last)"


class LogSourceError(CcopsError):
    """The logs cannot be read at all (no log dir, no docker); the message is one line."""


# ---- records -------------------------------------------------------------------------

@dataclass(slots=True)
class LogRecord:
    """One loguru record; `message` holds its continuation lines joined with newlines."""

    time: datetime  # naive UTC (converted from the line's local time)
    level: str
    name: str
    function: str
    message: str
    source: str = ""
    line_no: int = 0
    local_time: datetime | None = None  # the time as the line says it (the app's local time); None: same as time
    gap: bool = False  # the line's local time does not exist (spring-forward gap): read at the earlier offset

    @property
    def where(self) -> str:
        return f"{self.name}:{self.function}"

    @property
    def first_line(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def has_traceback(self) -> bool:
        """True for records logged with an exception (logger.exception / opt(exception=...))."""
        return TRACEBACK in self.message

    @property
    def exception_line(self) -> str:
        """The traceback's last line ("KeyError: 'confidence'"), or "" without a traceback."""
        if not self.has_traceback:
            return ""
        for line in reversed(self.message.split("\n")):
            if line.strip() and not line.startswith((" ", "\t")):
                return line.strip()
        return ""

    @property
    def written(self) -> datetime:
        """The time as the line says it: the app's local time."""
        return self.local_time or self.time

    def text(self) -> str:
        """The record as loguru wrote it (the lines `grep` sees)."""
        return f"{self.written.strftime(TIME_FORMAT)} | {self.level:<8} | {self.where} - {self.message}"


_DIGITS = frozenset("0123456789")
_PADDED_LEVELS = {level.ljust(8): level for level in LEVELS}


def _level_start(line: str, length: int) -> int:
    """Where the level field of a header line starts: 22, 26 with milliseconds, 0 for no header."""
    if (
        length < HEADER_MIN
        or line[4] != "-"
        or line[7] != "-"
        or line[10] != " "
        or line[13] != ":"
        or line[16] != ":"
        or line[11] not in _DIGITS
        or line[12] not in _DIGITS
    ):
        return 0
    if line.startswith(" | ", 19):
        return 22
    if (
        length >= HEADER_MIN_MS
        and line[19] == "."
        and line[20] in _DIGITS
        and line[21] in _DIGITS
        and line[22] in _DIGITS
        and line.startswith(" | ", 23)
    ):
        return 22 + MS
    return 0


def _level_of(line: str, length: int) -> str | None:
    """The level of a header line (None when `line` is not a header).

    `length` is the line's length without its newline. This is the one definition of a
    header; `_header_at` and the vector path in `_Counts.inside_block` mirror it position
    for position. Written to allocate as little as possible: it runs once per line.
    """
    if (
        length < HEADER_MIN
        or line[4] != "-"
        or line[7] != "-"
        or line[10] != " "
        or line[13] != ":"
        or line[16] != ":"
        or line[11] not in _DIGITS
        or line[12] not in _DIGITS
    ):
        return None
    if line.startswith(" | ", 19):  # the app's format, checked inline: this runs once per line
        start = 22
    else:
        start = _level_start(line, length)
        if not start:
            return None
    if line.startswith(" | ", start + 8):
        field = line[start:start + 8]
        return _PADDED_LEVELS.get(field) or field.rstrip() or None
    end = line.find(" | ", start)  # a custom level longer than the padding
    if end < 0:
        return None
    return line[start:end].strip() or None


def _header_time(line: str) -> datetime:
    """The time of a header line (ValueError when it is no time); milliseconds kept."""
    return datetime.fromisoformat(line[:23] if line[19] == "." else line[:19])


def _split_rest(rest: str) -> tuple[str, str, str]:
    """`name:function - message` (or loguru's default `name:function:line - message`)
    -> (name, function, message)."""
    cut = rest.find(" - ")
    if cut < 0:
        return "", "", rest
    name, _, function = rest[:cut].partition(":")
    where, colon, line = function.rpartition(":")
    if colon and line.isdigit():
        function = where
    return name, function, rest[cut + 3:]


# ---- time zones ----------------------------------------------------------------------------

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


def zone_for(settings: Settings) -> tzinfo:
    """The zone the app writes its log times in (the setting logs.timezone)."""
    return zone_named(getattr(settings, "logs_timezone", "") or "")


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


Select = Callable[[str, list[str]], bool]


def iter_records(lines: Iterable[str], source: str = "", select: Select | None = None,
                 clock: LocalClock | None = None) -> Iterator[LogRecord]:
    """Records from log lines; lines without the timestamp prefix belong to the record above.

    `select(level, lines)` (the record's header and continuation lines) picks the records
    worth building; the others cost a level test and a list append, which matters when a
    check wants the few ERROR records among millions. Lines before the first header (the
    tail of a record from an earlier file) are dropped. `clock` converts the lines' local
    times to UTC in the order read (None: the lines are UTC already).
    """
    clock = clock or LocalClock()
    header: tuple[str, int, str, datetime, timedelta, bool] | None = None
    raw_lines: list[str] = []
    minute, offset, gap = "\0", ZERO, False
    for line_no, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        level = _level_of(line, len(line))
        if level is not None:
            try:
                time = _header_time(line)
            except ValueError:
                level = None
        if level is None:
            if header is not None:
                raw_lines.append(line)
            continue
        if not line.startswith(minute):
            minute = line[:16]
            offset = clock.enter(minute) or ZERO
            gap = clock.gap
        if header is not None and (select is None or select(header[2], raw_lines)):
            yield _build(header, raw_lines, source)
        header = (line, line_no, level, time, offset, gap)
        raw_lines = [line]
    if header is not None and (select is None or select(header[2], raw_lines)):
        yield _build(header, raw_lines, source)


def _build(header: tuple[str, int, str, datetime, timedelta, bool], lines: list[str], source: str) -> LogRecord:
    line, line_no, level, local, offset, gap = header
    time = local - offset if offset else local
    start = _level_start(line, len(line))
    header_end = start + 11 if line[start + 8:start + 11] == " | " else line.find(" | ", start) + 3
    name, function, message = _split_rest(line[header_end:])
    extra = lines[1:]
    while extra and not extra[-1].strip():
        extra.pop()  # loguru ends a traceback with an empty line
    if extra:
        message = message + "\n" + "\n".join(extra)
    return LogRecord(time, level, name, function, message, source, line_no, local if offset else None, gap)


class Selector:
    """A `Select` that also names the bytes every record it wants must contain.

    `needles` are searched in the raw file bytes, `folded_needles` in the bytes
    lower-cased. When a selector has them, `read_records` finds the few blocks'
    worth of candidate records with C-speed `bytes.find` and builds only those,
    instead of testing every line in Python: the daily runbook wants a few
    thousand ERROR records among millions of lines. Needles may match more than
    the selector wants (the selector still decides); they must never match less.
    """

    def __init__(self, test: Select, needles: Iterable[bytes] | None = None,
                 folded_needles: Iterable[bytes] = ()) -> None:
        self.test = test
        self.prefilter: tuple[tuple[bytes, ...], tuple[bytes, ...]] | None = (
            None if needles is None else (tuple(needles), tuple(n.lower() for n in folded_needles))
        )

    def __call__(self, level: str, lines: list[str]) -> bool:
        return self.test(level, lines)


def _header_needle(level: str) -> bytes:
    """The bytes around a level in a loguru header line: " | ERROR    | "."""
    return f" | {level.ljust(8)} | ".encode()


def select_levels(levels: Iterable[str], tracebacks: bool = False) -> Selector:
    """A `select` for records of these levels (and, with tracebacks, any record with one)."""
    wanted = frozenset(levels)

    def select(level: str, lines: list[str]) -> bool:
        return level in wanted or (tracebacks and any(TRACEBACK in line for line in lines[1:]))

    needles = [_header_needle(level) for level in sorted(wanted)] + ([TRACEBACK.encode()] if tracebacks else [])
    return Selector(select, needles)


def select_matching(pattern: re.Pattern[str], folded_needles: Iterable[bytes] | None = None) -> Selector:
    """A `select` for records any of whose lines match the pattern.

    `folded_needles`: lower-case byte strings one of which every match of the
    pattern contains (a prefilter, see Selector); without them every line is tested.
    """

    def select(level: str, lines: list[str]) -> bool:
        return any(pattern.search(line) for line in lines)

    if folded_needles is None:
        return Selector(select, None)
    return Selector(select, (), folded_needles)


def select_any(*selects: Select) -> Selector:
    """Records any of the selects wants; prefiltered when every one of them is."""

    def select(level: str, lines: list[str]) -> bool:
        return any(s(level, lines) for s in selects)

    filters = [getattr(s, "prefilter", None) for s in selects]
    if any(f is None for f in filters):
        return Selector(select, None)
    return Selector(select, [n for f in filters for n in f[0]], [n for f in filters for n in f[1]])


# ---- files -----------------------------------------------------------------------------

# The one rule for the app's log file names. The reader below, the disk clean-up
# (ccops.deploy.diskspace) and the demo (ccops.demo.applog) all go through it, so a file the
# clean-up writes is a file every log check reads. It takes
#   content_creator_2026-12-02.log                                      the app's (loguru) file
#   content_creator_2026-12-02.2026-12-02_09-20-33_298768.log.zip      loguru's rotation, zipped
#   content_creator_2026-12-02.log.1, .log.gz, .log.1.zip              logrotate, gzip
#   content_creator_2026-12-02.log.20261202T092033Z.gz                 ccops' archive of a live log
# and never output.log / error.log: the plain-process deployment's stdout (every record
# again, in colour) and stderr (crashes that never went through loguru).
APP_LOG_STEM = "content_creator"
LOG_NAME_RE = re.compile(
    r"^(?P<stem>[^.].*?)"
    r"(?:\.(?P<rotated>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+))?"  # loguru: {time:YYYY-MM-DD_HH-mm-ss_SSSSSS}
    r"\.log"
    r"(?:\.(?P<n>\d+)|\.(?P<archived>\d{8}T\d{6}Z))?"  # logrotate's .N | ccops' archive of a live log
    r"(?:\.(?P<compression>zip|gz))?$"
)
NOT_RECORD_STEMS = frozenset({"output", "error"})
DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class LogName:
    """What an app log file's name says."""

    stem: str
    day: date | None  # the first YYYY-MM-DD of the stem: the day loguru opened the file
    rotated: str  # loguru's rotation time, ccops' archive time or logrotate's number ("" for the current file)
    compression: str  # "", "zip" or "gz"

    @property
    def current(self) -> bool:
        """A plain file as the app opened it (the one it may still be writing)."""
        return not self.rotated and not self.compression

    def order(self) -> tuple[int, str]:
        """Within a day: earlier parts (rotated, archived) before the current file."""
        return (1, "") if self.current else (0, re.sub(r"\D", "", self.rotated)[:14])


def parse_log_name(name: str) -> LogName | None:
    """The app log file `name` is, or None for any other file (output.log and error.log included)."""
    match = LOG_NAME_RE.match(name)
    if not match or match.group("stem").lower() in NOT_RECORD_STEMS:
        return None
    day = None
    found = DATE_RE.search(match.group("stem"))
    if found:
        try:
            day = date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        except ValueError:
            day = None
    rotated = match.group("rotated") or match.group("archived") or match.group("n") or ""
    return LogName(match.group("stem"), day, rotated, match.group("compression") or "")


def app_log_name(day: date) -> str:
    """The name loguru gives the app's file of `day`."""
    return f"{APP_LOG_STEM}_{day:%Y-%m-%d}.log"


def archived_log_name(name: str, when: datetime) -> str:
    """ccops' name for an archive of the live log `name` taken at `when` (read like the rest)."""
    return f"{name}.{when:%Y%m%dT%H%M%SZ}.gz"


def compressed_log_name(name: str) -> str:
    """ccops' name for a rotated plain log it compressed."""
    return f"{name}.gz"


def file_day(path: Path) -> date | None:
    """The day a log file's name carries (the first YYYY-MM-DD in it), or None."""
    parsed = parse_log_name(Path(path).name)
    return parsed.day if parsed else None


def app_log_files(log_dir: Path) -> list[tuple[Path, LogName]]:
    """Every app log file in log_dir, in reading order: by day, a day's parts in the order written,
    undated ones last."""
    found = []
    try:
        entries = list(os.scandir(log_dir))
    except OSError:
        return []
    for entry in entries:
        parsed = parse_log_name(entry.name)
        if parsed is None or not entry.is_file():
            continue
        found.append(((parsed.day is None, parsed.day or date.min, *parsed.order(), entry.name), Path(entry.path), parsed))
    found.sort(key=lambda item: item[0])
    return [(path, parsed) for _, path, parsed in found]


def log_files(log_dir: Path, since: datetime | None, until: datetime | None,
              zone: tzinfo | None = None) -> list[Path]:
    """The log files that can hold records of the UTC window [since, until), oldest first, undated last.

    A file dated D holds records of local [D 00:00, D+1 00:00) only (rotation at local
    midnight; the name's date is local too), so the window's ends are turned into the
    app's local time first: a UTC window crossing local midnight reads both days' files.
    A file is picked iff first <= D and D 00:00 < last, first and last being the earlier
    and later local end (in the repeated autumn hour the later UTC end can read earlier).
    A day's parts come in the order they were written (rotated parts before the current file).
    """
    ends = [to_local(_naive(t), zone) for t in (since, until) if t is not None]
    first_day = min(ends).date() if since else None
    last = max(ends) if until else None
    picked = []
    for path, parsed in app_log_files(Path(log_dir)):
        day = parsed.day
        if day is not None:
            if first_day and day < first_day:
                continue
            if last and datetime.combine(day, datetime.min.time()) >= last:
                continue
        picked.append(path)
    return picked


class _BareZipMember(io.RawIOBase):
    """The first member of a zip whose central directory is missing (the file was cut short).

    zipfile needs the directory at the end of the file; a rotated log cut by a full disk
    lost it, but its data still follows the first local header and can be inflated.
    """

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        header = self._file.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            self._file.close()
            raise zipfile.BadZipFile("not a zip file")
        (method,) = struct.unpack("<H", header[8:10])
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            self._file.close()
            raise zipfile.BadZipFile(f"unsupported compression method {method}")
        self._file.seek(name_len + extra_len, io.SEEK_CUR)
        self._inflate = zlib.decompressobj(-15) if method == zipfile.ZIP_DEFLATED else None
        self._done = False
        self._cut = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        data = self._take(len(target))
        target[:len(data)] = data
        return len(data)

    readinto1 = readinto  # each call inflates one chunk already

    def _take(self, limit: int) -> bytes:
        while True:
            if self._cut:
                self._cut = False
                raise EOFError("compressed stream ended early")
            if self._done:
                return b""
            if self._inflate is None:  # stored: the bytes are the text
                raw = self._file.read(limit)
                self._done = not raw
                return raw
            raw = self._inflate.unconsumed_tail or self._file.read(1 << 18)
            if not raw:
                self._done = True
                self._cut = not self._inflate.eof
                tail = self._inflate.flush()
                if tail:
                    return tail
                continue
            data = self._inflate.decompress(raw, limit)
            self._done = self._inflate.eof
            if data:
                return data

    def close(self) -> None:
        self._file.close()
        super().close()


class _ZipMember:
    """A zip's first member as a stream; closing it closes the archive too."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
        self.archive = archive
        self.stream = archive.open(info)

    def readinto1(self, target: Any) -> int:
        return self.stream.readinto1(target)

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self.archive.close()


def _open_binary(path: Path, problems: list[str]) -> Any:
    """A binary stream (read/close) of a log file's text, whatever its compression."""
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zip"):
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            stream = _BareZipMember(path)  # raises BadZipFile when there is no zip data at all
            problems.append(f"{name}: truncated (zip directory missing), read what its data holds")
            return stream
        members = [info for info in archive.infolist() if not info.is_dir()]
        if not members:
            archive.close()
            problems.append(f"{name}: empty zip")
            return io.BytesIO(b"")
        return _ZipMember(archive, members[0])
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def _describe_read_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated"
    if isinstance(exc, zlib.error):
        return f"corrupt compressed data ({exc})"
    if isinstance(exc, zipfile.BadZipFile):
        return f"corrupt zip ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read: {exc.strerror}"
    return f"cannot read: {exc}"


READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile)


class _Buffers:
    """Block buffers recycled between reads.

    A fresh multi-megabyte allocation per block costs more in page faults than reading
    the block; reusing a few buffers keeps the reader near memcpy speed and its memory
    constant. Only the reading thread takes and gives buffers.
    """

    def __init__(self, size: int = BLOCK_SIZE) -> None:
        self.size = size
        self.free: list[bytearray] = []

    def take(self, carry: int) -> bytearray:
        if 2 * carry > self.size:  # a line longer than half a block: a one-off buffer
            return bytearray(2 * carry + self.size)
        return self.free.pop() if self.free else bytearray(self.size)

    def give(self, buf: bytearray) -> None:
        if len(buf) == self.size and len(self.free) < 8:
            self.free.append(buf)


def _fill(stream: Any, view: memoryview) -> tuple[int, BaseException | None]:
    """Fill `view` from the stream; a read error ends it but keeps what came before.

    Compressed streams are read a chunk at a time (readinto1): a single large read
    of a truncated .gz would raise and lose everything it had inflated.
    """
    if isinstance(stream, io.BufferedReader):  # a plain file: one copy straight from the page cache
        try:
            return stream.readinto(view) or 0, None
        except OSError as exc:
            return 0, exc
    got = 0
    try:
        while got < len(view):
            n = stream.readinto1(view[got:])
            if not n:
                break
            got += n
    except READ_ERRORS as exc:
        return got, exc
    return got, None


def _blocks(path: Path, problems: list[str], buffers: _Buffers) -> Iterator[tuple[bytearray, int]]:
    """(buffer, end) pairs: buffer[:end] is the next run of whole lines of the file.

    The last pair may lack a final newline (a truncated or half-written last line). The
    consumer gives each buffer back to `buffers` when done with it. A file that cannot be
    read to its end (truncated .gz or .zip, corrupt data) yields what came before the
    damage and notes the problem; it never raises.
    """
    name = path.name
    try:
        stream = _open_binary(path, problems)
    except READ_ERRORS as exc:
        problems.append(f"{name}: {_describe_read_error(exc)}")
        return
    carry = b""
    with closing(stream):
        while True:
            buf = buffers.take(len(carry))
            buf[:len(carry)] = carry
            got, error = _fill(stream, memoryview(buf)[len(carry):])
            end = len(carry) + got
            if got:
                cut = buf.rfind(b"\n", 0, end) + 1
                carry = bytes(buf[cut:end])
                if cut:
                    yield buf, cut  # the consumer gives buf back; it is not touched again here
                else:
                    buffers.give(buf)
            else:
                buffers.give(buf)
            if error is not None:
                problems.append(f"{name}: {_describe_read_error(error)}")
                break
            if not got:
                break
    if carry:
        if carry[:4].isdigit() and _level_of(carry.decode("utf-8", "replace"), len(carry)) is None:
            problems.append(f"{name}: truncated last line dropped")  # a header cut mid-prefix
        else:
            problems.append(f"{name}: last line incomplete (truncated or still being written)")
            yield bytearray(carry), len(carry)


def open_text(path: Path, problems: list[str] | None = None) -> Iterator[str]:
    """The lines of a plain, .zip (first member) or .gz log file, each ending with a newline
    except perhaps the last; undecodable bytes become U+FFFD. Streams in constant memory.

    Reading binary blocks that end at line ends (rather than through a TextIOWrapper)
    keeps every complete line before a truncation, where the wrapper would drop the text
    it had buffered; blocks end at newlines, so no UTF-8 sequence is ever split. Problems
    (truncation, corrupt data) are appended to `problems` instead of raised.
    """
    problems = problems if problems is not None else []
    buffers = _Buffers()
    with closing(_blocks(Path(path), problems, buffers)) as blocks:
        for buf, end in blocks:
            text = str(memoryview(buf)[:end], "utf-8", "replace")
            buffers.give(buf)
            yield from io.StringIO(text, newline="\n")


def read_records(
    log_dir: Path, since: datetime | None, until: datetime | None, problems: list[str] | None = None,
    select: Select | None = None, zone: tzinfo | None = None,
) -> Iterator[LogRecord]:
    """Records of the UTC window [since, until) from the log dir, oldest file first.

    `zone` is the zone the app writes its line times in (None: UTC); record.time is UTC.
    A file is abandoned once its records pass `until` (plus STOP_SLACK): files hold
    records in time order. Problems (truncated files, times in the spring gap) go to
    `problems` when given. A `select` with a prefilter (Selector) reads each file by
    blocks and builds only the candidate records; the result is the same, record for record.
    """
    log_dir = Path(log_dir)
    _require_dir(log_dir)
    since, until = _naive(since), _naive(until)
    problems = problems if problems is not None else []
    prefilter = getattr(select, "prefilter", None)
    gaps = 0
    for path in log_files(log_dir, since, until, zone):
        clock = LocalClock(zone)
        if prefilter is not None and select is not None:
            found: Iterable[LogRecord] = _scan_file(path, since, until, problems, select, prefilter, clock)
        else:
            found = _in_window(iter_records(open_text(path, problems), path.name, select, clock), since, until)
        with closing(iter(found)) as records:  # type: ignore[type-var]
            for record in records:
                gaps += record.gap
                yield record
    if gaps:
        problems.append(gap_note(gaps, zone))


def gap_note(count: int, zone: tzinfo | None) -> str:
    """The problem line for records whose local time does not exist (the spring-forward gap)."""
    return (f"{count} record{'s' if count != 1 else ''} at a local time that does not exist in "
            f"{zone_name(zone)} (the spring-forward gap): read at the offset before the change")


def _in_window(records: Iterator[LogRecord], since: datetime | None, until: datetime | None) -> Iterator[LogRecord]:
    """The records of [since, until) (UTC), stopping once one is STOP_SLACK past `until`."""
    stop = until + STOP_SLACK if until else None
    with closing(records):  # type: ignore[type-var]
        for record in records:
            if since and record.time < since:
                continue
            if until and record.time >= until:
                if stop and record.time >= stop and not record.gap:  # a gap time is out of order: read on
                    break
                continue
            yield record


def _candidates(data: bytes, end: int, prefilter: tuple[tuple[bytes, ...], tuple[bytes, ...]]) -> list[int]:
    """Offsets in data[:end] where a needle starts, ascending (duplicates possible)."""
    exact, folded = prefilter
    found: list[int] = []
    for haystack, needles in ((data, exact), (data.lower() if folded else b"", folded)):
        for needle in needles:
            at = haystack.find(needle, 0, end)
            while at >= 0:
                found.append(at)
                at = haystack.find(needle, at + len(needle), end)
    found.sort()
    return found


def _is_header(data: bytes, start: int, stop: int) -> bool:
    """Whether data[start:stop] is a header line exactly as iter_records decides it."""
    if not _header_at(data, start, stop):  # type: ignore[arg-type]
        return False
    line = str(data[start:stop], "utf-8", "replace").rstrip("\r")
    if _level_of(line, len(line)) is None:
        return False
    try:
        _header_time(line)
    except ValueError:
        return False
    return True


def _record_start(data: bytes, at: int) -> int:
    """Start of the header line of the record holding offset `at`, -1 when it began before data."""
    stop = data.find(b"\n", at)
    stop = len(data) if stop < 0 else stop
    while True:
        start = data.rfind(b"\n", 0, stop) + 1
        if _is_header(data, start, stop):
            return start
        if start == 0:
            return -1
        stop = start - 1


def _record_end(data: bytes, start: int, end: int) -> int:
    """Offset just past the record holding `start` (the next header line, or `end`)."""
    line = data.find(b"\n", start, end)
    while 0 <= line < end - 1:
        begin = line + 1
        stop = data.find(b"\n", begin, end)
        stop = end if stop < 0 else stop
        if _is_header(data, begin, stop):
            return begin
        line = stop
    return end


def _local_bounds(since: datetime | None, until: datetime | None, offset: timedelta) -> tuple[str, str, str]:
    """The UTC window's since, until and until+STOP_SLACK as local header text at `offset`.

    Within a stretch of one offset, comparing a header line with these strings is
    comparing its UTC time with the window (the line starts with its local time).
    """
    return (
        (since + offset).strftime(TIME_FORMAT) if since else "",
        (until + offset).strftime(TIME_FORMAT) if until else "9999",
        (until + STOP_SLACK + offset).strftime(TIME_FORMAT) if until else "9999",
    )


def _scan_file(path: Path, since: datetime | None, until: datetime | None, problems: list[str],
               select: Select, prefilter: tuple[tuple[bytes, ...], tuple[bytes, ...]],
               clock: LocalClock | None = None, block_size: int = BLOCK_SIZE) -> Iterator[LogRecord]:
    """The selected records of one file, building only the records a needle points into.

    Each block is scanned together with the last record of the block before (which
    may go on in this one); the last record of a block waits for the next, so every
    record is seen whole. Line numbers are counted as iter_records counts them. A block
    whose local times may cross a DST change is read record by record through `clock`
    (the fold of the repeated hour needs every line in order); the others compare bytes.
    """
    clock = clock or LocalClock()
    buffers = _Buffers(block_size)
    carry = b""  # the unfinished last record of the previous block (or lines before any header)
    carry_line = 1  # file line number of carry's first line
    finished = False
    with closing(_blocks(path, problems, buffers)) as blocks:
        for buf, end in blocks:
            data = carry + bytes(memoryview(buf)[:end])
            buffers.give(buf)
            if not data.endswith(b"\n"):
                data += b"\n"  # a truncated last line: terminated so it reads like the rest
            last = _record_start(data, len(data) - 1)  # the last record, which may go on in the next block
            if last <= 0:  # no record ends in this block: all of it waits for the next
                if last < 0 and not carry:  # lines before the file's first header: dropped, counted
                    carry_line += data.count(b"\n")
                    continue
                carry = data
                continue
            first = _first_header(data, last)  # type: ignore[arg-type]
            first_stamp = data[first:first + 19].decode("ascii", "replace")
            last_stamp = data[last:last + 19].decode("ascii", "replace")  # records are in time order
            offset = clock.steady(first_stamp, last_stamp)
            if offset is None:  # the block may hold a DST change: every record, in order, through the clock
                lines = str(data[:last], "utf-8", "replace").split("\n")[:-1]
                for record in iter_records(lines, source=path.name, select=select, clock=clock):
                    record.line_no += carry_line - 1
                    if (since is None or record.time >= since) and (until is None or record.time < until):
                        yield record
                newest = clock.last_utc()
                done = until is not None and newest is not None and newest >= until + STOP_SLACK and not clock.gap
            else:
                since_b, until_b, stop_b = (b.encode() for b in _local_bounds(since, until, offset))
                if last_stamp.encode() >= since_b:  # else every record before `last` is older than the window
                    yield from _selected(data, last, carry_line, path.name, since_b, until_b, select, prefilter,
                                         clock.fixed(offset))
                clock.settle(last_stamp)
                done = last_stamp.encode() >= stop_b
            carry_line += data.count(b"\n", 0, last)
            carry = data[last:]
            if done:
                finished = True
                break
    if carry and not finished:
        lines = str(carry, "utf-8", "replace").split("\n")[:-1]
        for record in iter_records(lines, source=path.name, select=select, clock=clock):
            record.line_no += carry_line - 1
            if (since is None or record.time >= since) and (until is None or record.time < until):
                yield record


def _selected(data: bytes, end: int, first_line: int, source: str, since_b: bytes, until_b: bytes,
              select: Select, prefilter: tuple[tuple[bytes, ...], tuple[bytes, ...]],
              clock: LocalClock | None = None) -> Iterator[LogRecord]:
    """The records of data[:end] (whole records, header first) that a needle points into and select wants."""
    done = 0  # data[:done] is behind us: records already built or skipped
    counted_at, line_no = 0, first_line
    for at in _candidates(data, end, prefilter):
        if at < done:
            continue
        start = _record_start(data, at)
        if start < 0:  # lines before the first header: no record of their own
            done = _record_end(data, at, end)
            continue
        stop = _record_end(data, start, end)
        done = stop
        stamp = data[start:start + 19]
        if stamp < since_b or stamp >= until_b:
            continue
        line_no += data.count(b"\n", counted_at, start)
        counted_at = start
        lines = str(data[start:stop], "utf-8", "replace").split("\n")[:-1]
        for record in iter_records(lines, source=source, select=select, clock=clock):
            record.line_no += line_no - 1
            yield record


def _require_dir(log_dir: Path) -> None:
    if not log_dir.exists():
        raise LogSourceError(f"log dir {log_dir} does not exist")
    if not log_dir.is_dir():
        raise LogSourceError(f"log dir {log_dir} is not a directory")


# ---- docker compose --------------------------------------------------------------------

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
COMPOSE_PREFIX_RE = re.compile(r"^[A-Za-z0-9][\w.-]*\s*\| ?")


def parse_compose_lines(lines: Iterable[str]) -> Iterator[str]:
    """`docker compose logs` lines as the app wrote them: container prefix and colours removed.

    Compose prints `app-1  | <line>` (the name padded to the longest container name);
    loguru may colour its own output. A line that already starts with a timestamp is
    left alone, so unprefixed output (`--no-log-prefix`) passes through.
    """
    for raw in lines:
        line = raw.rstrip("\r\n")
        if "\x1b" in line:
            line = ANSI_RE.sub("", line)
        if _level_of(line, len(line)) is None:
            match = COMPOSE_PREFIX_RE.match(line)
            if match:
                line = line[match.end():]
        yield line


def compose_command(settings: Settings, since: datetime, until: datetime) -> list[str]:
    compose = settings.compose
    command = ["docker", "compose"]
    if compose.file:
        command += ["-f", compose.file]
    command += [
        "--project-directory", compose.project_dir or ".",
        "logs", "--no-color",
        "--since", _naive(since).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--until", _naive(until).strftime("%Y-%m-%dT%H:%M:%SZ"),
        compose.app_service,
    ]
    return command


def compose_log_lines(
    settings: Settings, since: datetime, until: datetime, timeout: float = COMPOSE_TIMEOUT_SECONDS
) -> Iterator[str]:
    """The app service's lines from `docker compose logs`, stripped, streamed.

    Raises LogSourceError (one line) when docker is missing, the engine is down, or the
    command outlives `timeout`; the message is what docker said.
    """
    command = compose_command(settings, since, until)
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
                text=True, encoding="utf-8", errors="replace",
            )
        except FileNotFoundError:
            raise LogSourceError(
                "docker not found: cannot run `docker compose logs` (set CCOPS_LOG_DIR to the app's log dir)"
            ) from None
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            yield from parse_compose_lines(proc.stdout)
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if timed_out.is_set():
            raise LogSourceError(f"`docker compose logs` timed out after {timeout:g} s")
        if proc.returncode != 0:
            errors.seek(0)
            said = [ln.strip() for ln in errors.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            reason = said[-1] if said else f"exit status {proc.returncode}"
            raise LogSourceError(f"`docker compose logs` failed: {reason}")


# ---- counting ------------------------------------------------------------------------------

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


def _naive(value: datetime | None) -> datetime | None:
    """Naive UTC, how the app writes times; aware values are converted."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = _naive(until) or datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    since = _naive(since) or until - DEFAULT_WINDOW
    return since, until


def _hours(since: datetime, until: datetime) -> list[datetime]:
    hour = since.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < until:
        out.append(hour)
        hour += timedelta(hours=1)
    return out


# The vector path: a line is a header iff these bytes sit at these offsets (as in _level_of).
def _le(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


_PADDED = [level.ljust(8).encode() for level in LEVELS]
# (offset of an 8-byte word, mask, expected): the punctuation of the prefix
_DATE = (4, _le(b"\xff\0\0\xff\0\0\xff\0"), _le(b"-\0\0-\0\0 \0"))  # 4 '-', 7 '-', 10 ' '
_SECONDS = (14, _le(b"\0\0\xff\0\0\xff\xff\xff"), _le(b"\0\0:\0\0 | "))  # 16 ':', 19..21 ' | '
_SECONDS_MS = (14, _le(b"\0\0\xff\0\0\xff\0\0"), _le(b"\0\0:\0\0.\0\0"))  # 16 ':', 19 '.'
_AFTER_MS = (18, _le(b"\0\0\0\0\0\xff\xff\xff"), _le(b"\0\0\0\0\0 | "))  # 23..25 ' | '
_AFTER_LEVEL = (25, _le(b"\0\0\0\0\0\xff\xff\xff"), _le(b"\0\0\0\0\0 | "))  # 30..32 ' | '


class _Vector:
    """numpy constants, built on first use so `import ccops.logs` stays light."""

    np: Any = None

    @classmethod
    def load(cls) -> Any:
        if cls.np is None:
            import numpy as np

            cls.lut = np.full(256, len(LEVELS), dtype=np.intp)
            for code, level in enumerate(LEVELS):
                cls.lut[ord(level[0])] = code  # first letters are unique among the seven
            cls.codes = np.array([_le(p) for p in _PADDED] + [0], dtype=np.uint64)

            def word(check: tuple[int, int, int]) -> tuple[int, Any, Any]:
                off, mask, want = check
                return off, np.uint64(mask), np.uint64(want)

            cls.date, cls.seconds, cls.seconds_ms = word(_DATE), word(_SECONDS), word(_SECONDS_MS)
            cls.after_ms, cls.after = word(_AFTER_MS), word(_AFTER_LEVEL)
            cls.np = np
        return cls.np


_ERROR_LINE = re.compile(rb"error()[^\n]*")  # one (empty, shared) match per matching line
_ERROR_WORD = re.compile("error", re.IGNORECASE)


def _grep_lines(lowered: bytes, start: int, end: int) -> int:
    """Lines of lowered[start:end] containing "error", as `grep -ci error` counts them.

    `lowered` is the block already lower-cased (one copy, then a C-speed scan).
    """
    return len(_ERROR_LINE.findall(lowered, start, end)) if end > start else 0


def _header_at(buf: bytearray, start: int, end: int) -> bool:
    """`_level_start`'s prefix test for the bytes line buf[start:end] (without its newline)."""
    return (
        end - start >= HEADER_MIN
        and buf[start + 4] == 45 and buf[start + 7] == 45 and buf[start + 10] == 32
        and buf[start + 13] == 58 and buf[start + 16] == 58
        and 48 <= buf[start + 11] <= 57 and 48 <= buf[start + 12] <= 57
        and (
            buf[start + 19:start + 22] == b" | "
            or (end - start >= HEADER_MIN_MS and buf[start + 19] == 46 and buf[start + 23:start + 26] == b" | "
                and 48 <= buf[start + 20] <= 57 and 48 <= buf[start + 21] <= 57 and 48 <= buf[start + 22] <= 57)
        )
    )


def _first_header(buf: bytearray, end: int) -> int:
    """Offset of the first header line in buf[:end], -1 when there is none."""
    start = 0
    while start < end:
        stop = buf.find(b"\n", start, end)
        stop = end if stop < 0 else stop
        if _header_at(buf, start, stop):
            return start
        start = stop + 1
    return -1


def _last_header(buf: bytearray, end: int) -> int:
    """Offset of the last header line in buf[:end] (which ends with a newline), or -1."""
    stop = end - 1
    while stop > 0:
        start = buf.rfind(b"\n", 0, stop) + 1
        if _header_at(buf, start, stop):
            return start
        stop = start - 1
    return -1


class _Counts:
    """Counters for one UTC window: (UTC hour, level) -> records, and the grep comparison.

    Keys are UTC hours (naive datetimes); a header whose time is no time is kept under
    its text and reported as unreadable by `summary()`. `clock` turns the lines' local
    minutes into UTC offsets in file order (reset per file by the caller).
    """

    def __init__(self, since: datetime | None, until: datetime | None, grep: bool = False,
                 zone: tzinfo | None = None) -> None:
        self.since, self.until = _naive(since), _naive(until)
        self.clock = LocalClock(zone)
        self._bound_cache: dict[timedelta, tuple[str, str, str]] = {}
        self.counts: dict[Any, dict[str, int]] = {}  # hour -> level -> records
        self.grep = grep
        self.grep_lines = 0
        self.gaps = 0  # records in the window at a local time of the spring-forward gap
        self.in_window = False  # does the line being read belong to a record inside the window?

    def _bounds(self, offset: timedelta) -> tuple[str, str, str]:
        """since, until and until+STOP_SLACK as local header text at `offset` (see _local_bounds)."""
        found = self._bound_cache.get(offset)
        if found is None:
            found = self._bound_cache[offset] = _local_bounds(self.since, self.until, offset)
        return found

    def _minute(self, minute: str) -> tuple[str, str, str, dict[str, int], bool]:
        """For the next local minute of a file: its window bounds as text, its UTC hour's counters, gap.

        A minute wholly outside the window gets a scratch dict (its lines fail the bounds
        anyway), so no empty hour outside the window is ever created.
        """
        offset = self.clock.enter(minute)
        if offset is None:  # not a time: judged by the last offset, counted as unreadable
            return (*self._bounds(self.clock.offset), self.counts.setdefault(minute, {}), False)
        start = datetime.fromisoformat(minute) - offset
        if (self.until and start >= self.until) or (self.since and start + timedelta(minutes=1) <= self.since):
            slot: dict[str, int] = {}
        else:
            slot = self.counts.setdefault(start.replace(minute=0), {})
        return (*self._bounds(offset), slot, self.clock.gap)

    # -- the per-line path: the definition every other path agrees with
    def feed_lines(self, lines: Iterable[str], stop: bool = False) -> bool:
        """Count header lines in the window; False when a record passed until+slack (if `stop`).

        Comparing whole lines with the window's bounds is comparing their timestamps (the
        line starts with one), and the hour's counters are reused while the hour lasts:
        no slicing or allocation for most lines.
        """
        grep = self.grep
        error_word = _ERROR_WORD.search
        in_window = self.in_window
        matched = gaps = 0
        minute, since_s, until_s, stop_s, slot, gap = "\0", "", "9999", "9999", {}, False
        try:
            for line in lines:
                length = len(line)
                if length and line[-1] == "\n":
                    length -= 1
                level = _level_of(line, length) if length >= HEADER_MIN and line[4] == "-" else None
                if level is not None:
                    if not line.startswith(minute):  # a new local minute: its offset, once
                        minute = line[:16]
                        since_s, until_s, stop_s, slot, gap = self._minute(minute)
                    if line < since_s or line >= until_s:
                        in_window = False
                        if stop and line >= stop_s and not gap:  # a gap time is out of order: read on
                            return False
                        continue
                    slot[level] = slot.get(level, 0) + 1
                    in_window = True
                    if gap:
                        gaps += 1
                    if grep and error_word(line):
                        matched += 1
                elif in_window and grep and error_word(line):
                    matched += 1
        finally:
            self.in_window = in_window
            self.grep_lines += matched
            self.gaps += gaps
        return True

    def add_record(self, record: LogRecord) -> None:
        if (self.since and record.time < self.since) or (self.until and record.time >= self.until):
            return
        slot = self.counts.setdefault(record.time.replace(minute=0, second=0, microsecond=0), {})
        slot[record.level] = slot.get(record.level, 0) + 1
        self.gaps += record.gap
        if self.grep:
            self.grep_lines += sum(1 for line in record.text().split("\n") if _ERROR_WORD.search(line))

    # -- the block path (files)
    def route(self, buf: bytearray, end: int) -> bool | tuple[int, str, bool]:
        """Deal with one block of a file, or hand it back for the vector path.

        Returns True (done, read on), False (the file is past `until`: stop reading it), or
        a job (first header offset, day, in_window before the block) for `inside_block`:
        the block's records all lie inside the window on one day.
        """
        if buf[end - 1] != 10:  # the unterminated last line of a file
            return self._slow(buf, end)
        first = _first_header(buf, end)
        if first < 0:  # continuation lines only: they belong to the record above
            if self.in_window and self.grep:
                self.grep_lines += _grep_lines(buf[:end].lower(), 0, end)
            return True
        last = _last_header(buf, end)
        first_ts = buf[first:first + 19].decode("ascii", "replace")
        last_ts = buf[last:last + 19].decode("ascii", "replace")
        offset = self.clock.steady(first_ts, last_ts)
        if offset is None:  # the block may hold a DST change: line by line, in order, through the clock
            return self._slow(buf, end)
        since_s, until_s, stop_s = self._bounds(offset)
        if last_ts < since_s:
            self.in_window = False
            self.clock.settle(last_ts)
            return True
        if first_ts >= stop_s:
            return False
        if first_ts >= since_s and last_ts < until_s and first_ts[:10] == last_ts[:10]:
            job = (first, first_ts[:10], self.in_window, offset)
            self.in_window = True  # the block's last record is inside the window
            self.clock.settle(last_ts)
            return job
        return self._slow(buf, end)

    def _slow(self, buf: bytearray, end: int) -> bool:
        text = str(memoryview(buf)[:end], "utf-8", "replace")
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        return self.feed_lines(lines, stop=True)

    def inside_block(self, buf: bytearray, end: int, first: int, day: str, in_window: bool,
                     offset: timedelta = ZERO) -> tuple[dict, int]:
        """Counts of a block whose records all lie in the window on one local day at one offset; thread-safe.

        The vector form of `_level_of`, over every line at once. A block holding any line
        it cannot classify exactly (a custom level, odd hour or minute digits) is counted
        by the per-line path instead, so both paths always agree. Local hours become UTC
        hours by subtracting `offset`; an offset of a fraction of an hour (+05:30) counts
        by minute first, since a local hour then straddles two UTC hours.
        """
        np = _Vector.load()
        from numpy.lib.stride_tricks import as_strided

        a = np.frombuffer(buf, dtype=np.uint8, count=end)
        ends = np.flatnonzero(a == 10)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        long_enough = (ends - starts) >= HEADER_MIN
        s = starts[long_enough]
        lengths = (ends - starts)[long_enough]
        # every 8-byte word of the block, unaligned, without a copy: words[i] = buf[i:i+8]
        words = as_strided(np.frombuffer(buf, dtype="<u8", count=1), shape=(end - 7,), strides=(1,),
                           writeable=False)

        def matches(at: Any, check: tuple[int, Any, Any]) -> Any:
            offset, mask, want = check
            return (words[at + offset] & mask) == want

        def digit(values: Any) -> Any:
            return (values >= 48) & (values <= 57)

        ok = (a[s + 13] == 58) & matches(s, _Vector.date)
        s, lengths = s[ok], lengths[ok]
        h = s[matches(s, _Vector.seconds)]  # the app's format: level at 22
        ms = s[matches(s, _Vector.seconds_ms) & (lengths >= HEADER_MIN_MS)]
        ms = ms[matches(ms, _Vector.after_ms)]  # loguru's default: ".SSS", level at 26
        tens = np.concatenate((a[h + 11], a[ms + 11])).astype(np.intp) - 48
        ones = np.concatenate((a[h + 12], a[ms + 12])).astype(np.intp) - 48
        code = np.concatenate((_Vector.lut[a[h + 22]], _Vector.lut[a[ms + 26]]))
        exact = np.concatenate((
            (_Vector.codes[code[:len(h)]] == words[h + 22]) & matches(h, _Vector.after),
            (_Vector.codes[code[len(h):]] == words[ms + 26]) & matches(ms + MS, _Vector.after)
            & digit(a[ms + 20]) & digit(a[ms + 21]) & digit(a[ms + 22]),
        ))
        minute_tens = np.concatenate((a[h + 14], a[ms + 14])).astype(np.intp) - 48
        minute_ones = np.concatenate((a[h + 15], a[ms + 15])).astype(np.intp) - 48
        exact &= (tens >= 0) & (ones >= 0) & (ones <= 9) & (tens * 10 + ones < 24)
        exact &= (minute_tens >= 0) & (minute_tens <= 5) & (minute_ones >= 0) & (minute_ones <= 9)
        if not bool(exact.all()):
            part = _Counts(self.since, self.until, self.grep, self.clock.zone)
            part.in_window = in_window
            part._slow(buf, end)
            return part.counts, part.grep_lines
        whole_hours = offset % timedelta(hours=1) == ZERO
        slots = tens * 10 + ones if whole_hours else (tens * 10 + ones) * 60 + minute_tens * 10 + minute_ones
        step = timedelta(hours=1) if whole_hours else timedelta(minutes=1)
        table = np.bincount(slots * len(LEVELS) + code, minlength=(24 if whole_hours else 1440) * len(LEVELS))
        base = datetime.fromisoformat(day) - offset  # the local day's midnight, in UTC
        counts: dict[Any, dict[str, int]] = {}
        for index in np.flatnonzero(table):
            slot, level = divmod(int(index), len(LEVELS))
            levels = counts.setdefault((base + slot * step).replace(minute=0), {})
            levels[LEVELS[level]] = levels.get(LEVELS[level], 0) + int(table[index])
        grep = 0
        if self.grep:
            lowered = buf[:end].lower()
            grep = _grep_lines(lowered, first, end) + (_grep_lines(lowered, 0, first) if in_window else 0)
        return counts, grep

    def merge(self, result: tuple[dict, int]) -> None:
        counts, grep = result
        for hour, levels in counts.items():
            slot = self.counts.setdefault(hour, {})
            for level, n in levels.items():
                slot[level] = slot.get(level, 0) + n
        self.grep_lines += grep

    def summary(self, files: list[str] | None = None, problems: list[str] | None = None,
                source: str = "") -> LogSummary:
        problems = list(problems or [])
        by_hour: dict[datetime, dict[str, int]] = {}
        by_level: dict[str, int] = dict.fromkeys(LEVELS, 0)
        unreadable = 0
        for hour, levels in self.counts.items():
            if isinstance(hour, str):  # a header whose time is no time
                unreadable += sum(levels.values())
                continue
            slot = by_hour.setdefault(hour, {})
            for level, n in levels.items():
                slot[level] = slot.get(level, 0) + n
                by_level[level] = by_level.get(level, 0) + n
        if unreadable:
            problems.append(f"{unreadable} records with an unreadable timestamp skipped")
        if self.gaps:
            problems.append(gap_note(self.gaps, self.clock.zone))
        if self.since and self.until:
            for hour in _hours(self.since, self.until):
                by_hour.setdefault(hour, {})
        elif by_hour:
            for hour in _hours(min(by_hour), max(by_hour) + timedelta(hours=1)):
                by_hour.setdefault(hour, {})
        return LogSummary(
            since=self.since, until=self.until, by_level=by_level, by_hour=dict(sorted(by_hour.items())),
            total=sum(by_level.values()), files=list(files or []), problems=problems, source=source,
            grep_error_lines=self.grep_lines if self.grep else None, zone=self.clock.zone,
        )


class _Pool:
    """Worker threads for the vector path: numpy releases the GIL while it scans, so one
    block is counted while the next is read (and inflated)."""

    def __init__(self, workers: int, buffers: _Buffers) -> None:
        _Vector.load()  # once, before threads race to build the constants
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ccops-logs")
        self.buffers = buffers
        self.pending: deque[tuple[_Counts, bytearray, Future]] = deque()
        self.limit = workers  # bounds memory: a block per worker in flight, one being read

    def submit(self, counts: _Counts, buf: bytearray, end: int, job: tuple[int, str, bool]) -> None:
        self.pending.append((counts, buf, self.executor.submit(counts.inside_block, buf, end, *job)))
        while len(self.pending) > self.limit:
            self._collect_one()

    def _collect_one(self) -> None:
        counts, buf, future = self.pending.popleft()
        try:
            counts.merge(future.result())
        finally:
            self.buffers.give(buf)

    def drain(self) -> None:
        while self.pending:
            self._collect_one()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _workers() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(4, os.cpu_count() or 1))


def count_levels(
    lines: Iterable[str], since: datetime | None, until: datetime | None, *,
    grep_compare: bool = False, source: str = "", zone: tzinfo | None = None,
) -> LogSummary:
    """Records by level and UTC hour in the UTC window [since, until) from log lines, without building records.

    One pass, counters only; `zone` is the zone of the lines' times (None: UTC). With
    grep_compare, also counts the lines `grep -i error` would match in the same window
    (header and continuation lines of in-window records).
    """
    counts = _Counts(since, until, grep_compare, zone)
    counts.feed_lines(lines)
    return counts.summary(source=source)


def summarize(records: Iterable[LogRecord], since: datetime | None, until: datetime | None, *,
              grep_compare: bool = False, source: str = "", zone: tzinfo | None = None) -> LogSummary:
    """Records (times already UTC) by level and UTC hour in [since, until), in one pass with counters only."""
    counts = _Counts(since, until, grep_compare, zone)
    for record in records:
        counts.add_record(record)
    return counts.summary(source=source)


def summarize_dir(log_dir: Path, since: datetime | None, until: datetime | None, *,
                  grep_compare: bool = False, workers: int | None = None,
                  block_size: int = BLOCK_SIZE, zone: tzinfo | None = None) -> LogSummary:
    """The fast path for a log directory: the files of the UTC window, counted block by block.

    `zone` is the zone the app writes its times in (None: UTC). A directory holding no
    app log file at all gets `warning` set: 0 records there means "wrong directory",
    not "a quiet day".
    """
    log_dir = Path(log_dir)
    _require_dir(log_dir)
    counts = _Counts(since, until, grep_compare, zone)
    problems: list[str] = []
    files = log_files(log_dir, counts.since, counts.until, zone)
    buffers = _Buffers(block_size)
    workers = _workers() if workers is None else workers
    pool = _Pool(workers, buffers) if workers > 1 and files else None
    try:
        for path in files:
            counts.in_window = False  # lines before a file's first header belong to no record here
            counts.clock.reset()
            with closing(_blocks(path, problems, buffers)) as blocks:
                for buf, end in blocks:
                    verdict = counts.route(buf, end)
                    if isinstance(verdict, tuple):
                        if pool is not None:
                            pool.submit(counts, buf, end, verdict)
                        else:
                            counts.merge(counts.inside_block(buf, end, *verdict))
                            buffers.give(buf)
                        continue
                    buffers.give(buf)
                    if not verdict:
                        break
    finally:
        if pool is not None:
            pool.close()
    summary = counts.summary(files=[p.name for p in files], problems=problems, source=str(log_dir))
    summary.warning = no_log_files_warning(log_dir)
    return summary


LOG_PATTERNS = (f"{APP_LOG_STEM}_YYYY-MM-DD.log", f"{APP_LOG_STEM}_YYYY-MM-DD.<rotation time>.log.zip",
                "*.log[.N][.gz|.zip]")


def no_log_files_warning(log_dir: Path) -> str:
    """A warning when `log_dir` holds no app log file at all ("" when it holds one).

    Why: pointed at the wrong directory (the parent of the real one, say), a reader
    finds nothing and would report a clean day; output.log and error.log alone are not
    the app's records either.
    """
    if app_log_files(Path(log_dir)):
        return ""
    return (f"no app log file in {log_dir} (looked for {', '.join(LOG_PATTERNS)}; "
            "output.log and error.log are not counted): is the log dir the app's logs/ folder?")


def summary_for_settings(settings: Settings, since: datetime | None = None, until: datetime | None = None, *,
                         grep_compare: bool = False) -> LogSummary:
    """`ccops logs summary`: the log dir when it exists, else `docker compose logs` under compose.

    `until` None means now, `since` None means 24 h before `until`.
    """
    since, until = _window(since, until)
    zone = zone_for(settings)
    log_dir = settings.app_log_dir()  # no demo default on a deployment: "not configured: set paths.log_dir"
    if log_dir is not None and (log_dir.exists() or settings.effective_backend != "compose"):
        return summarize_dir(log_dir, since, until, grep_compare=grep_compare, zone=zone)
    lines = compose_log_lines(settings, since, until)
    return count_levels(lines, since, until, grep_compare=grep_compare,
                        source=f"docker compose logs {settings.compose.app_service}", zone=zone)


def records_for_settings(settings: Settings, since: datetime, until: datetime,
                         problems: list[str] | None = None, select: Select | None = None) -> Iterator[LogRecord]:
    """Records of the UTC window [since, until) from wherever the logs are (log dir, else compose).

    Line times are read in the zone of the setting logs.timezone; record.time is UTC.
    """
    since, until = _naive(since), _naive(until)
    zone = zone_for(settings)
    log_dir = settings.app_log_dir()  # no demo default on a deployment: "not configured: set paths.log_dir"
    if log_dir is not None and (log_dir.exists() or settings.effective_backend != "compose"):
        yield from read_records(log_dir, since, until, problems, select, zone=zone)
        return
    lines = compose_log_lines(settings, since, until)
    for record in iter_records(lines, source="docker compose logs", select=select, clock=LocalClock(zone)):
        if since <= record.time < until:
            yield record
