"""Opening a log file's text whatever its compression, and surviving damage.

loguru zips a rotated file; ccops' clean-up gzips; a full disk cuts either short. A zip
member is inflated here rather than through zipfile's reader: with ISA-L (the `isal`
package) inflating runs at several GB/s where zlib manages about 0.5, and a month of
rotated logs is mostly inflating. The member's CRC-32 is still checked at its end, as
zipfile does. A zip whose central directory is missing is still read through its first
local header, because a rotated log cut by a full disk is the evidence of the incident.
Nothing here raises past `open_binary` for damaged data: readers note it.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any, cast

_zlib: ModuleType = zlib  # ISA-L below when installed: the same deflate format, 5-8x faster to inflate
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error,)
try:
    from isal import isal_zlib

    _zlib = isal_zlib
    _INFLATE_ERRORS = (zlib.error, cast(type[BaseException], isal_zlib.error))
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps it working without it
    pass

_CHUNK = 1 << 16  # compressed bytes inflated at a time: about 1 MB of log text


class _Inflated(io.RawIOBase):
    """A compressed file's text, inflated a chunk at a time from `offset` on.

    `wbits` -15 is a zip member's raw deflate (or None: stored), 31 a gzip file, whose
    members may follow one another (gzip checks each member's CRC itself). For a zip
    member, `size` and `crc` come from the central directory; both None when it is
    missing (a file cut short): the data is then read to the end of the file. A stream
    that stops before deflate's end marker is reported as truncated (EOFError) after
    everything before the cut was handed out; a zip member whose text does not match
    its CRC-32 raises BadZipFile at its end, as zipfile's reader does.
    """

    def __init__(self, handle: Any, wbits: int | None, size: int | None = None, crc: int | None = None,
                 name: str = "") -> None:
        self._file = handle
        self._wbits = wbits
        self._inflate = _zlib.decompressobj(wbits) if wbits is not None else None
        self._pending = b""  # compressed bytes of the next gzip member, already read
        self._left = size  # compressed bytes still to read (None: to the end of the file)
        self._crc_expected = crc
        self._crc = 0
        self._name = name
        self._out: bytes = b""  # inflated text not handed out yet, from _at on
        self._at = 0
        self._done = False
        self._cut = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while self._at >= len(self._out):
            if self._done:
                if self._cut:
                    self._cut = False
                    raise EOFError("compressed stream ended early")
                self._check_crc()
                return 0
            self._out, self._at = self._inflate_some(len(target)), 0
        n = min(len(target), len(self._out) - self._at)
        data = memoryview(self._out)[self._at:self._at + n]
        target[:n] = data
        self._at += n
        if self._crc_expected is not None:
            self._crc = _zlib.crc32(data, self._crc)
        return n

    readinto1 = readinto  # each call hands out what one chunk inflated to

    def _check_crc(self) -> None:
        if self._crc_expected is not None and self._crc != self._crc_expected:
            self._crc_expected = None  # said once
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self._name!r}")

    def _raw(self, limit: int) -> bytes:
        if self._pending:
            raw, self._pending = self._pending, b""
            return raw
        if self._left is not None:
            limit = min(limit, self._left)
        raw = self._file.read(limit) if limit > 0 else b""
        if self._left is not None:
            self._left -= len(raw)
        return raw

    def _inflate_some(self, limit: int) -> bytes:
        """The text of the next compressed chunk (b"" with _done set at the end).

        Whole chunks are inflated without an output limit: ISA-L keeps output beyond a
        limit inside itself instead of leaving the input unconsumed, so a limit would let
        it buffer without bound. A chunk of _CHUNK compressed bytes bounds the output.
        """
        if self._inflate is None:  # stored: the bytes are the text
            raw = self._raw(max(limit, _CHUNK))
            self._done = not raw
            self._cut = self._done and bool(self._left)
            return raw
        raw = self._raw(_CHUNK)
        if not raw:
            self._done = True
            self._cut = not self._inflate.eof
            return self._inflate.flush()
        data = self._inflate.decompress(raw)
        if self._inflate.eof:
            self._done = not self._next_member()
        return data

    def _next_member(self) -> bool:
        """Whether another gzip member follows the one that just ended (then inflating goes on into it)."""
        if self._wbits != 31 or self._inflate is None:
            return False
        rest = self._inflate.unused_data or self._raw(_CHUNK)
        if not rest.strip(b"\0"):  # trailing zero padding, as gzip itself ignores
            return False
        self._pending = rest
        self._inflate = _zlib.decompressobj(31)
        return True

    def close(self) -> None:
        self._file.close()
        super().close()


def _zip_member(path: Path, offset: int = 0, size: int | None = None, crc: int | None = None,
                name: str = "") -> _Inflated:
    """The member whose local header is at `offset` (size, crc: from the directory; None when it is lost)."""
    handle = open(path, "rb")  # noqa: SIM115 - closed by the stream
    try:
        handle.seek(offset)
        header = handle.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("not a zip file" if size is None else f"bad local header for {name}")
        flags, method = struct.unpack("<HH", header[6:10])
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        if flags & 0x1:
            raise zipfile.BadZipFile(f"{name or 'the member'} is encrypted")
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise zipfile.BadZipFile(f"unsupported compression method {method}")
        handle.seek(name_len + extra_len, io.SEEK_CUR)
    except BaseException:
        handle.close()
        raise
    return _Inflated(handle, -15 if method == zipfile.ZIP_DEFLATED else None, size, crc, name)


def open_binary(path: Path, problems: list[str]) -> Any:
    """A binary stream (read/close) of a log file's text, whatever its compression."""
    name = path.name
    if name.endswith(".gz"):
        return _Inflated(open(path, "rb"), 31)  # noqa: SIM115 - closed by the stream
    if name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:  # only its directory: where the first member is
                members = [info for info in archive.infolist() if not info.is_dir()]
        except zipfile.BadZipFile:
            stream = _zip_member(path)  # raises BadZipFile when there is no zip data at all
            problems.append(f"{name}: truncated (zip directory missing), read what its data holds")
            return stream
        if not members:
            problems.append(f"{name}: empty zip")
            return io.BytesIO(b"")
        first = members[0]
        return _zip_member(path, first.header_offset, first.compress_size, first.CRC, first.filename)
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def describe_read_error(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated"
    if isinstance(exc, _INFLATE_ERRORS):
        return f"corrupt compressed data ({exc})"
    if isinstance(exc, zipfile.BadZipFile):
        return f"corrupt zip ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read: {exc.strerror}"
    return f"cannot read: {exc}"


READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zipfile.BadZipFile, *_INFLATE_ERRORS)
