"""Reading a log file: whole-line blocks, the lines, and the records of a window.

Files are read in 2 MB blocks aligned to line ends (recycled buffers: a fresh multi-
megabyte allocation per block costs more in page faults than the read). Records come
either line by line (iter_records) or, for a Selector with needles, by finding the
candidate records' bytes first and building only those. The worker pool overlaps the
numpy counting of one block with reading (and inflating) the next.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from ccops.logs.clock import STOP_SLACK, LocalClock, gap_note, local_bounds, naive
from ccops.logs.decompress import READ_ERRORS, describe_read_error, open_binary
from ccops.logs.files import log_files, require_dir
from ccops.logs.format import LogFormat, default_format, level_in, time_in
from ccops.logs.records import LogRecord, Prefilter, Select, Selector, iter_records

BLOCK_SIZE = 1 << 21  # 2 MB: large enough for numpy to pay off, small enough to stay in cache


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


def _blocks(path: Path, problems: list[str], buffers: _Buffers,
            fmt: LogFormat | None = None) -> Generator[tuple[bytearray, int], None, None]:
    """(buffer, end) pairs: buffer[:end] is the next run of whole lines of the file.

    The last pair may lack a final newline (a truncated or half-written last line). The
    consumer gives each buffer back to `buffers` when done with it. A file that cannot be
    read to its end (truncated .gz or .zip, corrupt data) yields what came before the
    damage and notes the problem; it never raises.
    """
    name = path.name
    try:
        stream = open_binary(path, problems)
    except READ_ERRORS as exc:
        problems.append(f"{name}: {describe_read_error(exc)}")
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
                problems.append(f"{name}: {describe_read_error(error)}")
                break
            if not got:
                break
    if carry:
        text = carry.decode("utf-8", "replace")
        if carry[:4].isdigit() and (fmt or default_format()).level_of(text, len(text)) is None:
            problems.append(f"{name}: truncated last line dropped")  # a header cut mid-prefix
        else:
            problems.append(f"{name}: last line incomplete (truncated or still being written)")
            yield bytearray(carry), len(carry)


def open_text(path: Path, problems: list[str] | None = None, fmt: LogFormat | None = None) -> Iterator[str]:
    """The lines of a plain, .zip (first member) or .gz log file, each ending with a newline
    except perhaps the last; undecodable bytes become U+FFFD. Streams in constant memory.

    Reading binary blocks that end at line ends (rather than through a TextIOWrapper)
    keeps every complete line before a truncation, where the wrapper would drop the text
    it had buffered; blocks end at newlines, so no UTF-8 sequence is ever split. Problems
    (truncation, corrupt data) are appended to `problems` instead of raised.
    """
    problems = problems if problems is not None else []
    buffers = _Buffers()
    with closing(_blocks(Path(path), problems, buffers, fmt)) as blocks:
        for buf, end in blocks:
            text = str(memoryview(buf)[:end], "utf-8", "replace")
            buffers.give(buf)
            yield from io.StringIO(text, newline="\n")


def read_records(
    log_dir: Path, since: datetime | None, until: datetime | None, problems: list[str] | None = None,
    select: Select | None = None, zone: tzinfo | None = None, fmt: LogFormat | None = None,
) -> Iterator[LogRecord]:
    """Records of the UTC window [since, until) from the log dir, oldest file first.

    `zone` is the zone the app writes its line times in (None: UTC); record.time is UTC.
    A file is abandoned once its records pass `until` (plus STOP_SLACK): files hold
    records in time order. Problems (truncated files, times in the spring gap) go to
    `problems` when given. A `select` with a prefilter (Selector) reads each file by
    blocks and builds only the candidate records; the result is the same, record for record.
    `fmt` is the format of the lines and names (None: the app's).
    """
    fmt = fmt or default_format()
    log_dir = Path(log_dir)
    require_dir(log_dir)
    since, until = naive(since), naive(until)
    problems = problems if problems is not None else []
    prefilter = select.prefilter_for(fmt) if isinstance(select, Selector) else None
    gaps = 0
    for path in log_files(log_dir, since, until, zone, fmt.files):
        clock = LocalClock(zone)
        if prefilter is not None and select is not None:
            found: Iterable[LogRecord] = _scan_file(path, since, until, problems, select, prefilter, clock,
                                                      fmt=fmt)
        else:
            found = _in_window(iter_records(open_text(path, problems, fmt), path.name, select, clock, fmt), since, until)
        with closing(iter(found)) as records:  # type: ignore[type-var]
            for record in records:
                gaps += record.gap
                yield record
    if gaps:
        problems.append(gap_note(gaps, zone))


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


def _candidates(data: bytes, end: int, prefilter: Prefilter) -> list[int]:
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


def _is_header(data: bytes, start: int, stop: int, fmt: LogFormat) -> bool:
    """Whether data[start:stop] is a header line exactly as iter_records decides it."""
    if not fmt.header_at(data, start, stop):
        return False
    line = str(data[start:stop], "utf-8", "replace").rstrip("\r")
    match = fmt.match(line) if len(line) >= fmt.header_min else None
    if match is None or level_in(match) is None:
        return False
    try:
        datetime.fromisoformat(time_in(match))
    except ValueError:
        return False
    return True


def _record_start(data: bytes, at: int, fmt: LogFormat) -> int:
    """Start of the header line of the record holding offset `at`, -1 when it began before data."""
    stop = data.find(b"\n", at)
    stop = len(data) if stop < 0 else stop
    while True:
        start = data.rfind(b"\n", 0, stop) + 1
        if _is_header(data, start, stop, fmt):
            return start
        if start == 0:
            return -1
        stop = start - 1


def _record_end(data: bytes, start: int, end: int, fmt: LogFormat) -> int:
    """Offset just past the record holding `start` (the next header line, or `end`)."""
    line = data.find(b"\n", start, end)
    while 0 <= line < end - 1:
        begin = line + 1
        stop = data.find(b"\n", begin, end)
        stop = end if stop < 0 else stop
        if _is_header(data, begin, stop, fmt):
            return begin
        line = stop
    return end


def _scan_file(path: Path, since: datetime | None, until: datetime | None, problems: list[str],
               select: Select, prefilter: Prefilter,
               clock: LocalClock | None = None, block_size: int = BLOCK_SIZE,
               fmt: LogFormat | None = None) -> Iterator[LogRecord]:
    """The selected records of one file, building only the records a needle points into.

    Each block is scanned together with the last record of the block before (which
    may go on in this one); the last record of a block waits for the next, so every
    record is seen whole. Line numbers are counted as iter_records counts them. A block
    whose local times may cross a DST change is read record by record through `clock`
    (the fold of the repeated hour needs every line in order); the others compare bytes.
    """
    fmt = fmt or default_format()
    clock = clock or LocalClock()
    buffers = _Buffers(block_size)
    carry = b""  # the unfinished last record of the previous block (or lines before any header)
    carry_line = 1  # file line number of carry's first line
    finished = False
    with closing(_blocks(path, problems, buffers, fmt)) as blocks:
        for buf, end in blocks:
            data = carry + bytes(memoryview(buf)[:end])
            buffers.give(buf)
            if not data.endswith(b"\n"):
                data += b"\n"  # a truncated last line: terminated so it reads like the rest
            last = _record_start(data, len(data) - 1, fmt)  # the last record, which may go on in the next block
            if last <= 0:  # no record ends in this block: all of it waits for the next
                if last < 0 and not carry:  # lines before the file's first header: dropped, counted
                    carry_line += data.count(b"\n")
                    continue
                carry = data
                continue
            first = first_header(data, last, fmt)
            first_stamp = data[first:first + 19].decode("ascii", "replace")
            last_stamp = data[last:last + 19].decode("ascii", "replace")  # records are in time order
            offset = clock.steady(first_stamp, last_stamp)
            if offset is None:  # the block may hold a DST change: every record, in order, through the clock
                lines = str(data[:last], "utf-8", "replace").split("\n")[:-1]
                for record in iter_records(lines, source=path.name, select=select, clock=clock, fmt=fmt):
                    record.line_no += carry_line - 1
                    if (since is None or record.time >= since) and (until is None or record.time < until):
                        yield record
                newest = clock.last_utc()
                done = until is not None and newest is not None and newest >= until + STOP_SLACK and not clock.gap
            else:
                since_b, until_b, stop_b = (b.encode() for b in local_bounds(since, until, offset))
                if last_stamp.encode() >= since_b:  # else every record before `last` is older than the window
                    yield from _selected(data, last, carry_line, path.name, since_b, until_b, select, prefilter,
                                         clock.fixed(offset), fmt)
                clock.settle(last_stamp)
                done = last_stamp.encode() >= stop_b
            carry_line += data.count(b"\n", 0, last)
            carry = data[last:]
            if done:
                finished = True
                break
    if carry and not finished:
        lines = str(carry, "utf-8", "replace").split("\n")[:-1]
        for record in iter_records(lines, source=path.name, select=select, clock=clock, fmt=fmt):
            record.line_no += carry_line - 1
            if (since is None or record.time >= since) and (until is None or record.time < until):
                yield record


def _selected(data: bytes, end: int, first_line: int, source: str, since_b: bytes, until_b: bytes,
              select: Select, prefilter: Prefilter,
              clock: LocalClock | None = None, fmt: LogFormat | None = None) -> Iterator[LogRecord]:
    """The records of data[:end] (whole records, header first) that a needle points into and select wants."""
    fmt = fmt or default_format()
    done = 0  # data[:done] is behind us: records already built or skipped
    counted_at, line_no = 0, first_line
    for at in _candidates(data, end, prefilter):
        if at < done:
            continue
        start = _record_start(data, at, fmt)
        if start < 0:  # lines before the first header: no record of their own
            done = _record_end(data, at, end, fmt)
            continue
        stop = _record_end(data, start, end, fmt)
        done = stop
        stamp = data[start:start + 19]
        if stamp < since_b or stamp >= until_b:
            continue
        line_no += data.count(b"\n", counted_at, start)
        counted_at = start
        lines = str(data[start:stop], "utf-8", "replace").split("\n")[:-1]
        for record in iter_records(lines, source=source, select=select, clock=clock, fmt=fmt):
            record.line_no += line_no - 1
            yield record


def first_header(buf: bytes | bytearray, end: int, fmt: LogFormat) -> int:
    """Offset of the first header line in buf[:end], -1 when there is none."""
    start = 0
    while start < end:
        stop = buf.find(b"\n", start, end)
        stop = end if stop < 0 else stop
        if fmt.header_at(buf, start, stop):
            return start
        start = stop + 1
    return -1


def last_header(buf: bytes | bytearray, end: int, fmt: LogFormat) -> int:
    """Offset of the last header line in buf[:end] (which ends with a newline), or -1."""
    stop = end - 1
    while stop > 0:
        start = buf.rfind(b"\n", 0, stop) + 1
        if fmt.header_at(buf, start, stop):
            return start
        stop = start - 1
    return -1


class Pool:
    """Worker threads for the vector path: numpy releases the GIL while it scans, so one
    block is counted while the next is read (and inflated)."""

    def __init__(self, workers: int, buffers: _Buffers) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ccops-logs")
        self.buffers = buffers
        self.pending: deque[tuple[Callable[[Any], None], bytearray, Future]] = deque()
        self.limit = workers  # bounds memory: a block per worker in flight, one being read

    def submit(self, merge: Callable[[Any], None], buf: bytearray, work: Callable[..., Any], *args: Any) -> None:
        """Run work(*args) (which reads `buf`) in a worker; merge its result in submission order."""
        self.pending.append((merge, buf, self.executor.submit(work, *args)))
        while len(self.pending) > self.limit:
            self._collect_one()

    def _collect_one(self) -> None:
        merge, buf, future = self.pending.popleft()
        try:
            merge(future.result())
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


WORKERS_ENV = "CCOPS_LOGS_WORKERS"  # at most this many workers (the run's log helper: 1, the kernel has the other core)


def workers() -> int:
    limit = os.environ.get(WORKERS_ENV, "")
    if limit.isdigit() and int(limit) >= 1:
        return min(int(limit), _cpus())
    return _cpus()


def _cpus() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(4, os.cpu_count() or 1))


