"""The table of contents of a pg_dump custom-format archive, and its data offsets.

Why ccops reads it: pg_dump writes a custom archive's table of contents
first, and rewrites it with each table's data offset at the end, but only
when it can seek back. A backup piped into zstd cannot seek, so every
entry says "offset not set". pg_restore -j then has two costs. Each worker
scans the data from the start to find its table. Worse, it has no size for
any entry, so it schedules in dump order: on the bench database the largest
table (agent_logs, 57 % of the data) started fourth. With its indexes, that
table is the restore's critical path.

`fill_data_offsets` gives a decompressed copy of such an archive what
pg_dump would have written with a seekable file. For each data entry, it
finds the entry's block in the data section and rewrites the entry's offset
field in place. The field has a fixed width, so nothing else moves. The
result is byte for byte what `pg_dump -Fc -f` writes (tests/test_backup_toc.py
compares the two).

Finding the blocks is a pass over the whole archive (about 1 s for the 2.5 GB
bench archive, the whole of it on the restore's critical path). So `ccops
backup` finds them on the way instead: its relay hands pg_dump's output to a
StreamScanner, chunk by chunk, before zstd gets it, and the manifest keeps the
offsets. A restore then only checks each one where it points (the block's
header, after the end of the block before) and writes them in; one that does
not check out sends it back to the scan.

How a block is found without walking 21 M row chunks: in an archive without
compression whose data is COPY text (no large objects), a zero byte occurs
only in block headers and chunk length fields, and at least one text byte
separates two length fields. A run of 1 + intSize zero bytes followed by a
block header (type 1, a zero sign byte, the expected dump id) is therefore
the length-0 chunk that ends the block before. The next block's
header (type byte 1, then the entry's dump id) follows it directly. bytes.find
over the mapped file runs at memory speed. Anything this module cannot prove
(another format or archive version, compression, large objects, a block
missing or out of order) leaves the file untouched, and the restore still
works without offsets. A wrong offset could not go unnoticed either:
pg_restore checks the dump id in every block header it seeks to.

The layout follows PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c
(WriteHead, WriteToc) and pg_backup_custom.c (_WriteExtraToc, _StartData).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"PGDMP"
FORMAT_CUSTOM = 1
BLK_DATA = 1
OFFSET_NOT_SET, OFFSET_SET, OFFSET_NO_DATA = 1, 2, 3
# archive versions as (major, minor, revision): 1.12 is PostgreSQL 9.0's, 1.16 PostgreSQL 17's
OLDEST, NEWEST = (1, 12, 0), (1, 16, 0)


class TocError(ValueError):
    """The file is not a custom archive this module can read."""


class TocIncomplete(TocError):
    """The bytes so far end inside the table of contents (a stream: more may come)."""


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    desc: str
    tag: str
    had_dumper: bool
    offset_state: int
    offset: int
    field_at: int  # where the entry's offset field (flag byte + offset) starts in the file


@dataclass(frozen=True)
class Toc:
    version: tuple[int, int, int]
    int_size: int
    off_size: int
    compressed: bool
    entries: list[TocEntry]
    start: int  # the first byte after the header (whose creation time differs between two dumps)
    end: int  # the first byte after the table of contents: where the data section starts

    def data_entries(self) -> list[TocEntry]:
        """Entries whose data pg_dump wrote, in the order it wrote them (TOC order)."""
        return [entry for entry in self.entries if entry.offset_state in (OFFSET_NOT_SET, OFFSET_SET)]


class _Reader:
    """ReadByte/ReadInt/ReadStr of pg_backup_archiver.c over a buffer."""

    def __init__(self, data: bytes | bytearray | mmap.mmap) -> None:
        self.data = data
        self.at = 0
        self.int_size = 4

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise TocIncomplete("the table of contents ends early")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return bytes(chunk)

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:
        negative = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if negative else value

    def str(self) -> str | None:
        length = self.int()
        if length < 0:
            return None
        return self.take(length).decode("utf-8", "replace")


def _read_head(reader: _Reader) -> tuple[tuple[int, int, int], int, bool]:
    """(version, offset size, compressed) from the header; TocError for anything but a custom archive."""
    if reader.take(5) != MAGIC:
        raise TocError("not a pg_dump custom archive (no PGDMP magic)")
    version = (reader.byte(), reader.byte(), reader.byte())
    if not OLDEST <= version < (NEWEST[0], NEWEST[1] + 1, 0):
        raise TocError(f"archive version {'.'.join(map(str, version))} is not one this reader knows")
    reader.int_size = reader.byte()
    if not 1 <= reader.int_size <= 8:
        raise TocError(f"integer size {reader.int_size} out of range")
    off_size = reader.byte()
    if reader.byte() != FORMAT_CUSTOM:
        raise TocError("not the custom format (-Fc)")
    if version >= (1, 15, 0):
        compressed = reader.byte() != 0  # the compression algorithm: 0 is none
    else:
        compressed = reader.int() != 0  # the zlib level: 0 is none, -1 the default
    for _ in range(7):  # the creation time, field by field
        reader.int()
    for _ in range(3):  # database name, server version, pg_dump version
        reader.str()
    return version, off_size, compressed


def read_toc(data: bytes | bytearray | mmap.mmap) -> Toc:
    """The header and every table-of-contents entry of a custom archive held in `data`."""
    reader = _Reader(data)
    version, off_size, compressed = _read_head(reader)
    start = reader.at
    entries = []
    for _ in range(reader.int()):
        dump_id = reader.int()
        had_dumper = reader.int() != 0
        reader.str()  # catalog table oid
        reader.str()  # oid
        tag = reader.str() or ""
        desc = reader.str() or ""
        reader.int()  # section
        for _field in ("defn", "dropStmt", "copyStmt", "namespace", "tablespace"):
            reader.str()
        if version >= (1, 14, 0):
            reader.str()  # table access method
        if version >= (1, 16, 0):
            reader.int()  # relkind
        reader.str()  # owner
        reader.str()  # "false": WITH OIDS
        while reader.str() is not None:  # dependencies, ended by a null string
            pass
        field_at = reader.at
        state = reader.byte()
        if state not in (OFFSET_NOT_SET, OFFSET_SET, OFFSET_NO_DATA):
            raise TocError(f"entry {dump_id} has an unknown data offset flag {state}")
        offset = int.from_bytes(reader.take(off_size), "little")
        entries.append(TocEntry(dump_id, desc, tag, had_dumper, state, offset, field_at))
    return Toc(version, reader.int_size, off_size, compressed, entries, start, reader.at)


def _header(toc: Toc, entry: TocEntry) -> bytes:
    """A data block's header as _StartData writes it: the block type, then the entry's dump id."""
    return bytes([BLK_DATA, 0]) + entry.dump_id.to_bytes(toc.int_size, "little")


def _not_in_order(entry: TocEntry) -> str:
    return f"the data block of entry {entry.dump_id} ({entry.desc} {entry.tag}) was not found in dump order"


class BlockFinder:
    """Each data entry's block start, in dump order, over the archive in one piece or window by window.

    The first block starts where the table of contents ends; each next one right
    after the length-0 chunk that ends the block before (the module's docstring
    says why that run of bytes cannot occur anywhere else).
    """

    def __init__(self, toc: Toc) -> None:
        self.toc = toc
        self.entries = toc.data_entries()
        self.end_of_block = bytes(1 + toc.int_size)  # WriteInt(0): the length-0 chunk that ends a block
        self.found: dict[int, int] = {}
        self.at = toc.end  # the archive position the next search starts from
        self.failure = ""

    @property
    def done(self) -> bool:
        return bool(self.failure) or len(self.found) == len(self.entries)

    def search(self, window: bytes | bytearray | mmap.mmap, base: int, end: int) -> None:
        """Find the blocks that start in window[:end], whose first byte is the archive's byte `base`.

        A block header that straddles two windows is found in the second: consecutive
        windows overlap by (needle length - 1) bytes (StreamScanner keeps that tail).
        """
        while not self.done:
            entry = self.entries[len(self.found)]
            header = _header(self.toc, entry)
            if not self.found:
                start = self.at - base
                if start + len(header) > end:
                    return
                if window[start:start + len(header)] != header:
                    self.failure = _not_in_order(entry)
                    return
                position = self.at
            else:
                hit = window.find(self.end_of_block + header, max(self.at - base, 0), end)
                if hit < 0:
                    return
                position = base + hit + len(self.end_of_block)
            self.found[entry.dump_id] = position
            self.at = position + len(header)

    def result(self, last_bytes: bytes | bytearray | mmap.mmap) -> dict[int, int] | str:
        """The offsets by dump id once the whole archive went through, else why they are not proven."""
        if self.failure:
            return self.failure
        if len(self.found) < len(self.entries):
            return _not_in_order(self.entries[len(self.found)])
        if self.entries and last_bytes[len(last_bytes) - len(self.end_of_block):] != self.end_of_block:
            return "the archive does not end with the end of a data block"
        return dict(self.found)


ALREADY_SET = "data offsets already set by pg_dump"


def _unprovable(toc: Toc) -> str:
    """Why this archive's offsets are not for this module to find ('' when they are)."""
    entries = toc.data_entries()
    if not any(entry.offset_state == OFFSET_NOT_SET for entry in entries):
        return ALREADY_SET
    if toc.compressed:
        return "the archive's data is compressed"
    if any(entry.desc != "TABLE DATA" for entry in entries):
        return "the archive holds data other than COPY text (large objects)"
    return ""


# the table of contents of a schema with thousands of objects takes a few MB; past this it is not one
HEAD_LIMIT = 64 << 20


class StreamScanner:
    """The data offsets of a custom archive that goes by once, front to back, in chunks of any size.

    `ccops backup` feeds it pg_dump's output on its way into zstd. It holds the
    table of contents while that arrives, then only a window of one chunk plus
    the few bytes a block header can straddle.
    """

    def __init__(self) -> None:
        self.head = bytearray()
        self.finder: BlockFinder | None = None
        self.reason = ""
        self.tail = b""
        self.seen = 0
        self.keep = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self.reason:
            return
        if self.finder is None:
            self._feed_head(chunk)
            return
        if self.finder.done:
            self.tail = b"".join((self.tail, chunk[-self.keep:]))[-self.keep:]
        else:
            window = b"".join((self.tail, chunk))
            self.finder.search(window, self.seen - len(self.tail), len(window))
            self.tail = window[-self.keep:]
        self.seen += len(chunk)

    def _feed_head(self, chunk: bytes | bytearray | memoryview) -> None:
        self.head += chunk
        self.seen += len(chunk)
        try:
            toc = read_toc(self.head)
        except TocIncomplete as exc:
            if len(self.head) > HEAD_LIMIT:
                self.reason = str(exc)
            return
        except TocError as exc:
            self.reason = str(exc)
            return
        self.reason = _unprovable(toc)
        if self.reason:
            return
        self.finder = BlockFinder(toc)
        self.keep = 2 * len(self.finder.end_of_block) + 1  # needle length - 1: end of block + header - 1
        self.finder.search(self.head, 0, len(self.head))
        self.tail = bytes(self.head[-self.keep:])
        self.head = bytearray()

    def offsets(self) -> dict[int, int] | str:
        """Each data entry's offset by dump id, or why they are not proven (the stream is over)."""
        if self.reason:
            return self.reason
        if self.finder is None:
            return "the archive is empty" if not self.head else "the table of contents ends early"
        return self.finder.result(self.tail)


def _checked(data: mmap.mmap, toc: Toc, known: dict[int, int]) -> bool:
    """Whether BlockFinder, searching only the few bytes at each offset in `known`, finds exactly `known`.

    The first block is looked for where the table of contents ends; each next one
    in the end-of-block run and header at its given offset, so the rule is
    BlockFinder's own and an offset out of order or off by a byte is not found.
    """
    finder = BlockFinder(toc)
    reach = len(finder.end_of_block)
    for number, entry in enumerate(finder.entries):
        position = toc.end if number == 0 else known.get(entry.dump_id, -1)
        start = position if number == 0 else position - reach
        if start < 0:
            return False
        window = data[start:position + len(_header(toc, entry))]
        finder.search(window, start, len(window))
        if len(finder.found) != number + 1:
            return False
    return finder.result(data) == known


def fill_data_offsets(path: Path, known: dict[int, int] | None = None) -> str:
    """Write each data entry's offset into the archive at `path` (uncompressed, custom format).

    `known`: the offsets the backup's relay found (its manifest's), checked where
    they point and written without a scan; a scan when they do not check out.
    Returns what was done, in words, for the restore's report. Either every
    data entry gets its offset or the file stays exactly as it was.
    """
    with open(path, "r+b") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return "data offsets not filled: the archive is empty"
        with mmap.mmap(handle.fileno(), 0) as data:
            try:
                toc = read_toc(data)
            except TocError as exc:
                return f"data offsets not filled: {exc}"
            entries = toc.data_entries()
            unprovable = _unprovable(toc)
            if unprovable:
                return unprovable if unprovable == ALREADY_SET else f"data offsets not filled: {unprovable}"
            how = "found by a scan of the archive"
            if known and _checked(data, toc, known):
                offsets: dict[int, int] | str = known
                how = "as the backup found them, each checked where it points"
            else:
                if known:
                    how = "found by a scan: the manifest's did not check out"
                finder = BlockFinder(toc)
                finder.search(data, 0, len(data))
                offsets = finder.result(data)
            if isinstance(offsets, str):
                return f"data offsets not filled: {offsets}"
            for entry in entries:
                field = bytes([OFFSET_SET]) + offsets[entry.dump_id].to_bytes(toc.off_size, "little")
                data[entry.field_at:entry.field_at + len(field)] = field
            data.flush()
    return (f"data offsets of {len(entries)} tables written into the table of contents, as pg_dump does into a "
            f"file ({how})")
