"""The log inflater (ISA-L) on real archives: what zipfile, gzip and the zip/gzip tools make, damage included.

ccops reads a zip member from its local header on instead of through zipfile's reader
(for speed), so it must still do what zipfile does: find the member through the central
directory, read members written with a data descriptor, check the CRC-32, and refuse
encrypted members; gzip files may hold several members one after the other.
"""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from ccops import logs
from ccops.logs import decompress

DAY = "".join(f"2026-11-20 {h:02d}:{m:02d}:00 | {'ERROR' if m % 7 == 0 else 'INFO':<8} | src.main:run - tick {h} {m}\n"
              for h in range(24) for m in range(60))


def _count(log_dir: Path) -> logs.LogSummary:
    from datetime import datetime

    return logs.summarize_dir(log_dir, datetime(2026, 11, 20), datetime(2026, 11, 21))


def _text(path: Path) -> tuple[bytes, list[str]]:
    problems: list[str] = []
    return b"".join(line.encode() for line in logs.open_text(path, problems)), problems


def test_isal_is_what_inflates() -> None:
    assert decompress._zlib.__name__.startswith("isal"), "isal is a dependency: logs summary relies on its speed"


def test_zip_member_with_a_data_descriptor_is_read_whole(tmp_path: Path) -> None:
    """zipfile writing to a pipe puts the sizes after the data (flag bit 3), as streaming zippers do."""
    raw = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[no-untyped-def]
            return raw.write(b)

    with zipfile.ZipFile(Unseekable(), "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("content_creator_2026-11-20.log", "w") as member:
            member.write(DAY.encode())
    path = tmp_path / "content_creator_2026-11-20.log.zip"
    path.write_bytes(raw.getvalue())
    assert zipfile.ZipFile(path).infolist()[0].flag_bits & 0x08
    assert _text(path) == (DAY.encode(), [])
    assert _count(tmp_path).total == 24 * 60


def test_zip_made_by_the_zip_tool_is_read(tmp_path: Path) -> None:
    if shutil.which("zip") is None:
        pytest.skip("the zip tool is not installed")
    plain = tmp_path / "src" / "content_creator_2026-11-20.log"
    plain.parent.mkdir()
    plain.write_text(DAY)
    target = tmp_path / "logs" / "content_creator_2026-11-20.log.zip"
    target.parent.mkdir()
    subprocess.run(["zip", "-j", "-q", str(target), str(plain)], check=True)
    assert _text(target) == (DAY.encode(), [])


def test_a_bit_flipped_in_a_stored_member_is_a_crc_error(tmp_path: Path) -> None:
    """Stored (uncompressed) data has no deflate structure to break: only the CRC-32 tells."""
    path = tmp_path / "content_creator_2026-11-20.log.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("content_creator_2026-11-20.log", DAY)
    data = bytearray(path.read_bytes())
    at = data.index(b"tick 12 30")
    data[at + 5] ^= 0x01  # "tick 02 30"... one bit, the text still looks fine
    path.write_bytes(bytes(data))
    text, problems = _text(path)
    assert len(text) == len(DAY)  # every line was handed out before the check at the end
    assert problems == [f"{path.name}: corrupt zip (Bad CRC-32 for file 'content_creator_2026-11-20.log')"]
    assert f"{path.name}: corrupt zip (Bad CRC-32 for file 'content_creator_2026-11-20.log')" in _count(tmp_path).problems


def test_concatenated_gzip_members_are_all_read(tmp_path: Path) -> None:
    """`cat a.gz b.gz > c.gz` is a valid gzip file (gzip -d reads both): so is it here."""
    half = len(DAY) // 2
    cut = DAY.rindex("\n", 0, half) + 1
    path = tmp_path / "content_creator_2026-11-20.log.gz"
    path.write_bytes(gzip.compress(DAY[:cut].encode()) + gzip.compress(DAY[cut:].encode()))
    assert gzip.decompress(path.read_bytes()) == DAY.encode()
    assert _text(path) == (DAY.encode(), [])
    assert _count(tmp_path).total == 24 * 60


def test_encrypted_member_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "content_creator_2026-11-20.log.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("content_creator_2026-11-20.log", DAY)
    data = bytearray(path.read_bytes())
    data[6] |= 0x01  # the local header's "encrypted" flag, as zip -e sets it
    path.write_bytes(bytes(data))
    text, problems = _text(path)
    assert text == b""
    assert problems == [f"{path.name}: corrupt zip (content_creator_2026-11-20.log is encrypted)"]
