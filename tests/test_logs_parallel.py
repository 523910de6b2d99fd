"""Counting files in worker processes gives what counting them in one process gives: counts, problems, grep lines.

The dir holds what a year of production leaves behind: loguru's rotated zips, a gzip,
a zip cut before its directory, a truncated gzip, a file with records in the spring-
forward gap, custom levels, and the current plain file. Each file's problems must come
back in file order, and the gap note must count the gap records of every worker.
"""

from __future__ import annotations

import gzip
import random
import threading
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ccops import logs
from ccops.logs import parallel

ZONE = "Europe/Amsterdam"


def _day(day: str, rnd: random.Random, n: int = 3000) -> str:
    start = datetime.fromisoformat(f"{day} 00:00:00")
    lines = []
    for i in range(n):
        ts = (start + timedelta(seconds=i * 86400 // n)).strftime("%Y-%m-%d %H:%M:%S")
        level = rnd.choices(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "AUDIT"], [20, 40, 8, 5, 1, 1])[0]
        lines.append(f"{ts} | {level:<8} | src.agents.base_agent:run - record {i}, error budget {rnd.random():.3f}\n")
        if level == "ERROR":
            lines.append("Traceback (most recent call last):\n  ValueError: error in a continuation line\n")
    return "".join(lines)


def _zip(path: Path, text: str) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(path.name.removesuffix(".zip"), text)


def _cut(path: Path, fraction: float) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * fraction))


@pytest.fixture()
def damaged_dir(tmp_path: Path) -> Path:
    rnd = random.Random(4)
    _zip(tmp_path / "content_creator_2026-03-27.2026-03-28_00-00-00_000001.log.zip", _day("2026-03-27", rnd))
    (tmp_path / "content_creator_2026-03-28.log.gz").write_bytes(gzip.compress(_day("2026-03-28", rnd).encode()))
    _cut(tmp_path / "content_creator_2026-03-28.log.gz", 0.6)
    # 2026-03-29: local 02:00-03:00 does not exist; a hand-set clock wrote some records there anyway
    _zip(tmp_path / "content_creator_2026-03-29.2026-03-30_00-00-00_000001.log.zip", _day("2026-03-29", rnd))
    _zip(tmp_path / "content_creator_2026-03-30.2026-03-31_00-00-00_000001.log.zip", _day("2026-03-30", rnd))
    _cut(tmp_path / "content_creator_2026-03-30.2026-03-31_00-00-00_000001.log.zip", 0.5)  # directory lost
    (tmp_path / "content_creator_2026-03-31.log").write_text(_day("2026-03-31", rnd) + "2026-03-31 23:59:59 | ERR")
    return tmp_path


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process seen as single-threaded, as cron's `ccops logs summary` is.

    Earlier tests on the same worker may leave idle threads behind (servers,
    pools), which would make can_fork() refuse, rightly, in a real run; the
    refusal itself is tested below with a thread of the test's own.
    """
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def test_worker_processes_count_what_one_process_counts(damaged_dir: Path, one_thread: None) -> None:
    since, until = datetime(2026, 3, 27, 5, 0, 0), datetime(2026, 3, 31, 17, 30, 0)
    zone = logs.zone_named(ZONE)
    assert parallel.can_fork()
    one = logs.summarize_dir(damaged_dir, since, until, zone=zone, workers=1, grep_compare=True)
    many = logs.summarize_dir(damaged_dir, since, until, zone=zone, workers=2, grep_compare=True,
                              parallel_min_bytes=0)
    assert many.by_hour == one.by_hour
    assert many.by_level == one.by_level and many.by_level["AUDIT"] > 0
    assert many.grep_error_lines == one.grep_error_lines
    assert many.problems == one.problems
    names = [p.split(":")[0] for p in many.problems if p.startswith("content_creator_")]
    assert len(names) >= 3 and names == sorted(names)  # file order: oldest first, as the files were read
    # the gap records of 2026-03-29 (local 02:00-03:00, an hour of the 3000 a day), counted in a worker
    assert many.problems[-1].startswith("125 records at a local time that does not exist in Europe/Amsterdam")
    assert any("zip directory missing" in p for p in many.problems)
    assert "content_creator_2026-03-28.log.gz: truncated" in many.problems
    assert one.total > 10_000


def test_small_dirs_stay_in_one_process(damaged_dir: Path, one_thread: None) -> None:
    """Forking pays only with enough bytes; a single file never forks."""
    files = sorted(damaged_dir.iterdir())
    assert not parallel.worth_it(files, 2)  # well under a megabyte on disk
    assert parallel.worth_it(files, 2, min_bytes=0)
    assert not parallel.worth_it(files[:1], 2, min_bytes=0)
    assert not parallel.worth_it(files, 1, min_bytes=0)


def test_a_process_with_other_threads_counts_in_process(damaged_dir: Path) -> None:
    """A Jupyter kernel has several threads: forking there could copy a held lock into a worker that then hangs."""
    before = threading.active_count()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not parallel.can_fork()
        files = sorted(p for p in damaged_dir.iterdir() if p.is_file())
        assert not parallel.worth_it(files, 2, min_bytes=0)
    finally:
        stop.set()
        other.join()
    assert threading.active_count() == before
    assert parallel.can_fork() == (before == 1), "one thread again: the fork is allowed again"
