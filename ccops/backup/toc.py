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

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self.data = data
        self.at = 0
        self.int_size = 4

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise TocError("the table of contents ends early")
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


def read_toc(data: bytes | mmap.mmap) -> Toc:
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


def _block_offsets(data: mmap.mmap, toc: Toc) -> dict[int, int] | str:
    """Each data entry's block start, found in dump order; a reason string when not every one is proven."""
    entries = toc.data_entries()
    end_of_block = bytes(1 + toc.int_size)  # WriteInt(0): the length-0 chunk that ends a block
    found: dict[int, int] = {}
    at = toc.end
    for number, entry in enumerate(entries):
        header = bytes([BLK_DATA, 0]) + entry.dump_id.to_bytes(toc.int_size, "little")
        if number == 0:
            position = at if data[at:at + len(header)] == header else -1
        else:
            hit = data.find(end_of_block + header, at)
            position = -1 if hit < 0 else hit + len(end_of_block)
        if position < 0:
            return f"the data block of entry {entry.dump_id} ({entry.desc} {entry.tag}) was not found in dump order"
        found[entry.dump_id] = position
        at = position + len(header)
    if entries and data[len(data) - len(end_of_block):] != end_of_block:
        return "the archive does not end with the end of a data block"
    return found


def fill_data_offsets(path: Path) -> str:
    """Write each data entry's offset into the archive at `path` (uncompressed, custom format).

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
            missing = [entry for entry in entries if entry.offset_state == OFFSET_NOT_SET]
            if not missing:
                return "data offsets already set by pg_dump"
            if toc.compressed:
                return "data offsets not filled: the archive's data is compressed"
            if any(entry.desc != "TABLE DATA" for entry in entries):
                return "data offsets not filled: the archive holds data other than COPY text (large objects)"
            offsets = _block_offsets(data, toc)
            if isinstance(offsets, str):
                return f"data offsets not filled: {offsets}"
            for entry in entries:
                field = bytes([OFFSET_SET]) + offsets[entry.dump_id].to_bytes(toc.off_size, "little")
                data[entry.field_at:entry.field_at + len(field)] = field
            data.flush()
    return f"data offsets of {len(entries)} tables written into the table of contents, as pg_dump does into a file"
