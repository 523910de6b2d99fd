"""Counting records by level and UTC hour, without building records.

Three paths share one definition of a header (the format's): the per-line path
(`feed_lines`, for lines from anywhere), records (`add_record`), and blocks of a file:
a block lying wholly inside the window on one local day at one offset is classified by
the numpy path (ccops.logs.fastcount) in worker threads that overlap it with reading;
every other block (window bounds, midnight, a DST change, a custom level) goes through
the per-line path. All give the same counts by construction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from ccops.logs import fastcount, parallel, reader
from ccops.logs.clock import ZERO, LocalClock, gap_note, local_bounds, naive
from ccops.logs.files import log_files, no_log_files_warning, require_dir
from ccops.logs.format import LEVELS, PADDED_LEVELS, LogFormat, default_format, level_in
from ccops.logs.reader import BLOCK_SIZE, Pool, _blocks, _Buffers, first_header, last_header
from ccops.logs.records import LogRecord
from ccops.logs.summary import LogSummary, hours

_ERROR_LINE = re.compile(rb"error()[^\n]*")  # one (empty, shared) match per matching line
_ERROR_WORD = re.compile("error", re.IGNORECASE)


def _grep_lines(lowered: bytes | bytearray, start: int, end: int) -> int:
    """Lines of lowered[start:end] containing "error", as `grep -ci error` counts them.

    `lowered` is the block already lower-cased (one copy, then a C-speed scan).
    """
    return len(_ERROR_LINE.findall(lowered, start, end)) if end > start else 0


class _Counts:
    """Counters for one UTC window: (UTC hour, level) -> records, and the grep comparison.

    Keys are UTC hours (naive datetimes); a header whose time is no time is kept under
    its text and reported as unreadable by `summary()`. `clock` turns the lines' local
    minutes into UTC offsets in file order (reset per file by the caller).
    """

    def __init__(self, since: datetime | None, until: datetime | None, grep: bool = False,
                 zone: tzinfo | None = None, fmt: LogFormat | None = None) -> None:
        self.fmt = fmt or default_format()
        self.since, self.until = naive(since), naive(until)
        self.clock = LocalClock(zone)
        self._bound_cache: dict[timedelta, tuple[str, str, str]] = {}
        self.counts: dict[Any, dict[str, int]] = {}  # hour -> level -> records
        self.grep = grep
        self.grep_lines = 0
        self.gaps = 0  # records in the window at a local time of the spring-forward gap
        self.in_window = False  # does the line being read belong to a record inside the window?

    def _bounds(self, offset: timedelta) -> tuple[str, str, str]:
        """since, until and until+STOP_SLACK as local header text at `offset` (see clock.local_bounds)."""
        found = self._bound_cache.get(offset)
        if found is None:
            found = self._bound_cache[offset] = local_bounds(self.since, self.until, offset)
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
        match_header, header_min = self.fmt.header_re.match, self.fmt.header_min
        quick_at, quick = self.fmt.quick
        padded = PADDED_LEVELS  # the seven levels padded to 8: one lookup for nearly every header
        in_window = self.in_window
        matched = gaps = 0
        slot: dict[str, int] = {}
        minute, since_s, until_s, stop_s, gap = "\0", "", "9999", "9999", False
        try:
            for line in lines:
                length = len(line)
                if length and line[-1] == "\n":
                    length -= 1
                match = match_header(line) if length >= header_min and line[quick_at] == quick else None
                level = None if match is None else padded.get(match[match.lastindex or 0]) or level_in(match)
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
    def route(self, buf: bytearray, end: int) -> bool | tuple[int, str, bool, timedelta]:
        """Deal with one block of a file, or hand it back for the vector path.

        Returns True (done, read on), False (the file is past `until`: stop reading it), or
        a job (first header offset, day, in_window before the block) for `inside_block`:
        the block's records all lie inside the window on one day.
        """
        if buf[end - 1] != 10:  # the unterminated last line of a file
            return self._slow(buf, end)
        first = first_header(buf, end, self.fmt)
        if first < 0:  # continuation lines only: they belong to the record above
            if self.in_window and self.grep:
                self.grep_lines += _grep_lines(buf[:end].lower(), 0, end)
            return True
        last = last_header(buf, end, self.fmt)
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

        The header lines are classified by ccops.logs.fastcount; a block it cannot classify
        exactly is counted by the per-line path instead, so both paths always agree. Local
        hours become UTC hours by subtracting `offset`; an offset of a fraction of an hour
        (+05:30) counts by minute first, since a local hour then straddles two UTC hours.
        """
        found = fastcount.classify(self.fmt, buf, end)
        if found is None:
            part = _Counts(self.since, self.until, self.grep, self.clock.zone, self.fmt)
            part.in_window = in_window
            part._slow(buf, end)
            return part.counts, part.grep_lines
        np = fastcount.plan_for(self.fmt).np
        tens, ones, minute_tens, minute_ones, code = found
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

    def merge_file(self, result: FileResult, problems: list[str]) -> None:
        """Add one file's counts, counted on their own (see _FileJob)."""
        counts, grep, gaps, file_problems = result
        self.merge((counts, grep))
        self.gaps += gaps
        problems.extend(file_problems)

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
            for hour in hours(self.since, self.until):
                by_hour.setdefault(hour, {})
        elif by_hour:
            for hour in hours(min(by_hour), max(by_hour) + timedelta(hours=1)):
                by_hour.setdefault(hour, {})
        return LogSummary(
            since=self.since, until=self.until, by_level=by_level, by_hour=dict(sorted(by_hour.items())),
            total=sum(by_level.values()), files=list(files or []), problems=problems, source=source,
            grep_error_lines=self.grep_lines if self.grep else None, zone=self.clock.zone,
        )


def count_levels(
    lines: Iterable[str], since: datetime | None, until: datetime | None, *,
    grep_compare: bool = False, source: str = "", zone: tzinfo | None = None, fmt: LogFormat | None = None,
) -> LogSummary:
    """Records by level and UTC hour in the UTC window [since, until) from log lines, without building records.

    One pass, counters only; `zone` is the zone of the lines' times (None: UTC). With
    grep_compare, also counts the lines `grep -i error` would match in the same window
    (header and continuation lines of in-window records). `fmt`: the lines' format (None: the app's).
    """
    counts = _Counts(since, until, grep_compare, zone, fmt)
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
                  block_size: int = BLOCK_SIZE, zone: tzinfo | None = None,
                  fmt: LogFormat | None = None, parallel_min_bytes: int = parallel.PARALLEL_MIN_BYTES) -> LogSummary:
    """The fast path for a log directory: the files of the UTC window, counted block by block.

    `zone` is the zone the app writes its times in (None: UTC). A directory holding no
    app log file at all gets `warning` set: 0 records there means "wrong directory",
    not "a quiet day". `fmt`: the format of the lines and file names (None: the app's).
    With `workers` > 1 and at least `parallel_min_bytes` in two files or more, the files
    are counted in that many forked processes (ccops.logs.parallel), else in this one
    with threads overlapping the numpy scan with reading; the counts are the same.
    """
    log_dir = Path(log_dir)
    require_dir(log_dir)
    counts = _Counts(since, until, grep_compare, zone, fmt)
    problems: list[str] = []
    files = log_files(log_dir, counts.since, counts.until, zone, counts.fmt.files)
    workers = reader.workers() if workers is None else workers
    if parallel.worth_it(files, workers, parallel_min_bytes):
        # numpy imported and the plan built once here, before the fork: the same wall time as each
        # worker importing it as it starts, and half the CPU (which a busy machine does not have)
        fastcount.plan_for(counts.fmt)
        job = _FileJob(counts.since, counts.until, grep_compare, counts.clock.zone, counts.fmt, block_size)
        for result in parallel.map_in_order(job, files, min(workers, len(files))):
            counts.merge_file(result, problems)
    else:
        _count_files(counts, files, problems, workers, block_size)
    summary = counts.summary(files=[p.name for p in files], problems=problems, source=str(log_dir))
    summary.warning = no_log_files_warning(log_dir, counts.fmt.files)
    return summary


FileResult = tuple[dict[Any, dict[str, int]], int, int, list[str]]  # counts, grep lines, gap records, problems


class _FileJob:
    """The counts of one file of a window, on its own: what a worker process is given to do."""

    def __init__(self, since: datetime | None, until: datetime | None, grep: bool, zone: tzinfo | None,
                 fmt: LogFormat, block_size: int) -> None:
        self.since, self.until, self.grep, self.zone, self.fmt = since, until, grep, zone, fmt
        self.block_size = block_size

    def __call__(self, path: Path) -> FileResult:
        counts = _Counts(self.since, self.until, self.grep, self.zone, self.fmt)
        problems: list[str] = []
        _count_files(counts, [path], problems, 1, self.block_size)  # the other core has a file of its own
        return counts.counts, counts.grep_lines, counts.gaps, problems


def _count_files(counts: _Counts, files: list[Path], problems: list[str], workers: int, block_size: int) -> None:
    """Count `files` in this process, in order; blocks scanned by `workers` threads (1: none)."""
    buffers = _Buffers(block_size)
    if workers > 1 and files:
        fastcount.plan_for(counts.fmt)  # once, before threads race to build it
    pool = Pool(workers, buffers) if workers > 1 and files else None
    try:
        for path in files:
            counts.in_window = False  # lines before a file's first header belong to no record here
            counts.clock.reset()
            with closing(_blocks(path, problems, buffers, counts.fmt)) as blocks:
                for buf, end in blocks:
                    verdict = counts.route(buf, end)
                    if isinstance(verdict, tuple):
                        if pool is not None:
                            pool.submit(counts.merge, buf, counts.inside_block, buf, end, *verdict)
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
