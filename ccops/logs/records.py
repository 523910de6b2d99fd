"""Records: a header line and the continuation lines after it, and choosing which to build.

A line is a record header when it matches its format's header (ccops.logs.format); lines
without one (tracebacks, lists) belong to the record above. `select` lets a reader build
only the records a check wants; a `Selector` also names the bytes those records must
contain, so the block reader can find them with C-speed `bytes.find`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from ccops.logs.clock import TIME_FORMAT, ZERO, LocalClock
from ccops.logs.format import Layout, LogFormat, default_format, level_in, time_in

TRACEBACK = "Traceback (most recent call last)"


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
        """The record as loguru wrote it in the app's format (the lines `grep` sees)."""
        return f"{self.written.strftime(TIME_FORMAT)} | {self.level:<8} | {self.where} - {self.message}"


Select = Callable[[str, list[str]], bool]
_Header = tuple[str, int, str, datetime, timedelta, bool, Layout]


def iter_records(lines: Iterable[str], source: str = "", select: Select | None = None,
                 clock: LocalClock | None = None, fmt: LogFormat | None = None) -> Iterator[LogRecord]:
    """Records from log lines; lines without the header belong to the record above.

    `select(level, lines)` (the record's header and continuation lines) picks the records
    worth building; the others cost a level test and a list append, which matters when a
    check wants the few ERROR records among millions. Lines before the first header (the
    tail of a record from an earlier file) are dropped. `clock` converts the lines' local
    times to UTC in the order read (None: the lines are UTC already). `fmt`: the format of
    the lines (None: the app's).
    """
    fmt = fmt or default_format()
    clock = clock or LocalClock()
    match_header, header_min, layout_of = fmt.header_re.match, fmt.header_min, fmt.layout_of
    header: _Header | None = None
    raw_lines: list[str] = []
    minute, offset, gap = "\0", ZERO, False
    for line_no, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        match = match_header(line) if len(line) >= header_min else None
        level = None if match is None else level_in(match)
        if level is not None:
            try:
                time = datetime.fromisoformat(time_in(match))  # type: ignore[arg-type]
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
        header = (line, line_no, level, time, offset, gap, layout_of(match))  # type: ignore[arg-type]
        raw_lines = [line]
    if header is not None and (select is None or select(header[2], raw_lines)):
        yield _build(header, raw_lines, source)


def _build(header: _Header, lines: list[str], source: str) -> LogRecord:
    line, line_no, level, local, offset, gap, layout = header
    time = local - offset if offset else local
    start = layout.level_start
    after = layout.after_level
    if line.startswith(after, start + layout.level_width):
        header_end = start + layout.level_width + len(after)
    else:  # a level longer than its padding
        header_end = line.find(after, start) + len(after)
    name, function, message = layout.split(line[header_end:])
    extra = lines[1:]
    while extra and not extra[-1].strip():
        extra.pop()  # loguru ends a traceback with an empty line
    if extra:
        message = message + "\n" + "\n".join(extra)
    return LogRecord(time, level, name, function, message, source, line_no, local if offset else None, gap)


Prefilter = tuple[tuple[bytes, ...], tuple[bytes, ...]]


class Selector:
    """A `Select` that also names the bytes every record it wants must contain.

    `needles` are searched in the raw file bytes, `folded_needles` in the bytes
    lower-cased, and `levels` stand for the header bytes around those levels in the
    format being read (" | ERROR    | " in the app's). When a selector has them,
    `read_records` finds the few blocks' worth of candidate records with C-speed
    `bytes.find` and builds only those, instead of testing every line in Python: the
    daily runbook wants a few thousand ERROR records among millions of lines. Needles
    may match more than the selector wants (the selector still decides); they must
    never match less.
    """

    def __init__(self, test: Select, needles: Iterable[bytes] | None = None,
                 folded_needles: Iterable[bytes] = (), levels: Iterable[str] = (),
                 key: tuple[object, ...] | None = None) -> None:
        self.test = test
        # what the selection is, as plain data: two selectors with one key select the same records
        # (ccops.logs.snapshot matches recorded answers by it); None: not comparable
        self.key = key
        self.needles = None if needles is None else tuple(needles)
        self.folded = tuple(n.lower() for n in folded_needles)
        self.levels = tuple(sorted(set(levels)))

    def prefilter_for(self, fmt: LogFormat | None = None) -> Prefilter | None:
        """The needles in the bytes of `fmt` (None: the app's format); None without a prefilter."""
        if self.needles is None:
            return None
        fmt = fmt or default_format()
        headers = tuple(n for level in self.levels for n in fmt.level_needles(level))
        return headers + self.needles, self.folded

    @property
    def prefilter(self) -> Prefilter | None:
        return self.prefilter_for()

    def __call__(self, level: str, lines: list[str]) -> bool:
        return self.test(level, lines)


def select_levels(levels: Iterable[str], tracebacks: bool = False) -> Selector:
    """A `select` for records of these levels (and, with tracebacks, any record with one)."""
    wanted = frozenset(levels)

    def select(level: str, lines: list[str]) -> bool:
        return level in wanted or (tracebacks and any(TRACEBACK in line for line in lines[1:]))

    return Selector(select, [TRACEBACK.encode()] if tracebacks else [], levels=wanted,
                    key=("levels", tuple(sorted(wanted)), bool(tracebacks)))


def select_matching(pattern: re.Pattern[str], folded_needles: Iterable[bytes] | None = None) -> Selector:
    """A `select` for records any of whose lines match the pattern.

    `folded_needles`: lower-case byte strings one of which every match of the
    pattern contains (a prefilter, see Selector); without them every line is tested.
    """

    def select(level: str, lines: list[str]) -> bool:
        return any(pattern.search(line) for line in lines)

    key = ("matching", pattern.pattern, pattern.flags)
    if folded_needles is None:
        return Selector(select, None, key=key)
    return Selector(select, (), folded_needles, key=key)


def select_any(*selects: Select) -> Selector:
    """Records any of the selects wants; prefiltered when every one of them is."""

    def select(level: str, lines: list[str]) -> bool:
        return any(s(level, lines) for s in selects)

    keys = [getattr(s, "key", None) for s in selects]
    key = ("any", *keys) if all(k is not None for k in keys) else None
    if not all(isinstance(s, Selector) and s.needles is not None for s in selects):
        return Selector(select, None, key=key)
    parts = [s for s in selects if isinstance(s, Selector)]
    return Selector(select, [n for s in parts for n in s.needles or ()], [n for s in parts for n in s.folded],
                    [level for s in parts for level in s.levels], key=key)
