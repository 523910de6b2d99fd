"""core.fs on real filesystems: a full tmpfs, a second process holding a lock, modes and groups on disk."""

from __future__ import annotations

import errno
import grp
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccops.core import fs
from ccops.core.errors import AlreadyRunning
from tests.helpers import tmpfs

OLD = "the old version, whole\n"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs holding `state.json` (the old version), then filled to the last byte."""
    with tmpfs(tmp_path / "disk", "64k") as mount:
        (mount / "state.json").write_text(OLD)
        with open(mount / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 1024)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        assert os.statvfs(mount).f_bavail == 0
        yield mount


def _write_whole(path: Path, data: bytes) -> None:
    fs.write_atomic(path, data)


def _write_streamed(path: Path, data: bytes) -> None:
    with fs.atomic_writer(path) as handle:
        for start in range(0, len(data), 4096):
            handle.write(data[start:start + 4096])


@pytest.mark.parametrize("write", [_write_whole, _write_streamed], ids=["write_atomic", "atomic_writer"])
def test_a_full_disk_leaves_the_old_file_whole_and_no_temporary_file(full_disk: Path, write) -> None:
    target = full_disk / "state.json"
    with pytest.raises(OSError) as raised:
        write(target, b"new " * 50_000)
    assert raised.value.errno == errno.ENOSPC
    assert target.read_text() == OLD
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "state.json"], "no temporary file is left"

    (full_disk / "filler").unlink()  # once there is room, the same call replaces the file whole
    write(target, b"new " * 5_000)
    assert target.read_bytes() == b"new " * 5_000
    assert sorted(p.name for p in full_disk.iterdir()) == ["state.json"]


def test_an_exception_in_the_writer_block_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "dump"
    target.write_text(OLD)
    with pytest.raises(RuntimeError), fs.atomic_writer(target, text=True) as handle:
        handle.write("half of the new version")
        raise RuntimeError("the producer failed")
    assert target.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["dump"]


def test_modes_are_exact_whatever_the_umask_and_none_follows_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        fs.write_atomic(tmp_path / "shared", "x", 0o640)
        fs.write_atomic(tmp_path / "private", b"x")
        os.umask(0o022)
        fs.write_atomic(tmp_path / "plain", "x", None)
    finally:
        os.umask(previous)
    assert (tmp_path / "shared").stat().st_mode & 0o7777 == 0o640
    assert (tmp_path / "private").stat().st_mode & 0o7777 == 0o600
    assert (tmp_path / "plain").stat().st_mode & 0o7777 == 0o644

    (tmp_path / "private").chmod(0o644)  # a replacement has the mode asked for, not the old file's
    fs.write_atomic(tmp_path / "private", "y")
    assert (tmp_path / "private").stat().st_mode & 0o7777 == 0o600


def test_the_group_is_given_before_the_rename(tmp_path: Path) -> None:
    own = os.getegid()
    others = [g.gr_gid for g in grp.getgrall() if g.gr_gid != own] if os.geteuid() == 0 else \
        [g for g in os.getgroups() if g != own]
    if not others:
        pytest.skip("this user can give files to no group but its own")
    gid = others[0]
    fs.write_atomic(tmp_path / "index.json", "[]\n", 0o640, gid=gid)
    with fs.atomic_writer(tmp_path / "index.html", 0o640, gid=gid, text=True) as handle:
        handle.write("<html></html>\n")
    for name in ("index.json", "index.html"):
        st = (tmp_path / name).stat()
        assert (st.st_gid, st.st_mode & 0o7777) == (gid, 0o640), name


HOLDER = textwrap.dedent("""
    import sys
    from ccops.core import fs
    with fs.exclusive_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.read()
""")


def test_the_lock_refuses_a_second_holder_until_the_first_one_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(AlreadyRunning) as raised, fs.exclusive_lock(path, busy="daily is already running"):
            pass
        assert str(raised.value) == "daily is already running" and raised.value.exit_code == 75
        with pytest.raises(AlreadyRunning, match="locked by another ccops process"), \
                fs.exclusive_lock(path, blocking=True, timeout=0.2):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder leaves its block and exits: the kernel drops the lock
        assert holder.wait(timeout=30) == 0
    with fs.exclusive_lock(path) as fd:
        assert fd >= 0
    assert path.stat().st_mode & 0o7777 == 0o600 and path.stat().st_size == 0


def test_a_second_process_is_refused_while_this_one_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.lock"
    probe = textwrap.dedent("""
        import sys
        from ccops.core import fs
        from ccops.core.errors import AlreadyRunning
        try:
            with fs.exclusive_lock(sys.argv[1]):
                print("got it")
        except AlreadyRunning as exc:
            print(exc)
            sys.exit(exc.exit_code)
    """)
    with fs.exclusive_lock(path):
        refused = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert (refused.returncode, refused.stdout) == (75, f"{path} is locked by another ccops process\n")
    allowed = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=60)
    assert (allowed.returncode, allowed.stdout) == (0, "got it\n")
