"""Opening a log file's text whatever its compression, and surviving damage.

loguru zips a rotated file; ccops' clean-up gzips; a full disk cuts either short. A zip
whose central directory is missing is still read through its first local header with a
hand-written inflater, because a rotated log cut by a full disk is the evidence of the
incident. Nothing here raises past `open_binary` for damaged data: readers note it.
"""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any


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
        return self.stream.readinto1(target)  # type: ignore[attr-defined]  # a ZipExtFile, typed as IO[bytes]

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            self.archive.close()


def open_binary(path: Path, problems: list[str]) -> Any:
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


def describe_read_error(exc: BaseException) -> str:
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
