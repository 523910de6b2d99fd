"""ccops.logs against hand-made loguru files: exact counts, rotated and damaged files, compose output.

Every file here is written byte for byte in loguru's format; compressed files are made
with zipfile/gzip the way loguru's rotation makes them, and damaged ones are cut with
truncate(). Counts are asserted exactly, and the three counting paths (records, lines,
vector blocks) must agree with each other and with GNU grep where grep is the reference.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import stat
import subprocess
import tracemalloc
import zipfile
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ccops import logs
from ccops.cli import main
from ccops.core.settings import load_settings
from ccops.logs import ratelimit, reader

WHERE = "src.agents.base_agent:run"
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/src/agents/base_agent.py", line 88, in run',
    "    result = await self.execute()",
    '  File "/app/src/agents/content_strategist.py", line 41, in execute',
    "    score = plan['confidence']",
    "KeyError: 'confidence'",
]


def rec(ts: str, level: str, message: str, where: str = WHERE, extra: list[str] | None = None) -> str:
    """One record exactly as loguru writes it, continuation lines included."""
    text = f"{ts} | {level:<8} | {where} - {message}\n"
    return text + "".join(line + "\n" for line in extra or [])


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def write_zip(path: Path, member: str, text: str) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, text.encode("utf-8"))
    return path


def write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wb") as handle:
        handle.write(text.encode("utf-8"))
    return path


def grep_ci_error(path: Path) -> int:
    """What the guide runs: GNU grep, counting lines that contain "error" in any case."""
    proc = subprocess.run(["grep", "-ci", "error", str(path)], capture_output=True, text=True)
    return int(proc.stdout.strip() or 0)


# A day with the cases that make `grep -i error | wc -l` wrong.
DAY = "".join([
    rec("2026-11-20 09:00:01", "INFO", "MarketScannerAgent completed scan_markets in 1.20s: no errors"),
    rec("2026-11-20 09:05:00", "ERROR", "ContentStrategistAgent failed: KeyError: 'confidence'", extra=TRACEBACK),
    rec("2026-11-20 09:10:00", "WARNING", "PublishingAgent retrying after error from X (attempt 2)"),
    rec("2026-11-20 09:20:00", "DEBUG", "EngagementAgent starting reply"),
    rec("2026-11-20 10:00:00", "ERROR", "AnalysisAgent failed: anthropic.APITimeoutError: Request timed out."),
    rec("2026-11-20 10:30:00", "CRITICAL", "Database unreachable: connection refused",
        extra=["details:", "  host=db port=5432"]),
    rec("2026-11-20 10:45:00", "SUCCESS", "Error budget report sent"),
])
DAY_BY_LEVEL = {"TRACE": 0, "DEBUG": 1, "INFO": 1, "SUCCESS": 1, "WARNING": 1, "ERROR": 2, "CRITICAL": 1}
# grep -ci error: INFO "no errors", ERROR header 1, the traceback's "KeyError" line,
# WARNING "after error", ERROR header 2, SUCCESS "Error budget"; not the CRITICAL record
DAY_GREP = 6


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def test_records_follow_continuation_lines_and_count_by_level(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(DAY)
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")

    records = list(logs.read_records(log_dir, since, until))
    assert [r.level for r in records] == ["INFO", "ERROR", "WARNING", "DEBUG", "ERROR", "CRITICAL", "SUCCESS"]
    failed = records[1]
    assert failed.time == dt("2026-11-20 09:05:00")
    assert (failed.name, failed.function, failed.source, failed.line_no) == (
        "src.agents.base_agent", "run", path.name, 2)
    assert failed.message.split("\n") == ["ContentStrategistAgent failed: KeyError: 'confidence'", *TRACEBACK]
    assert failed.has_traceback and failed.exception_line == "KeyError: 'confidence'"
    assert records[5].message == "Database unreachable: connection refused\ndetails:\n  host=db port=5432"
    assert not records[5].has_traceback

    fast = logs.summarize_dir(log_dir, since, until, grep_compare=True)
    assert fast.by_level == DAY_BY_LEVEL
    assert fast.total == 7 and fast.errors == 3  # ERROR + CRITICAL records, tracebacks counted once
    assert fast.grep_error_lines == DAY_GREP == grep_ci_error(path)  # the guide's number, honestly
    assert fast.files == [path.name] and fast.problems == []
    by_records = logs.summarize(records, since, until, grep_compare=True)
    by_lines = logs.count_levels(logs.open_text(path), since, until, grep_compare=True)
    for other in (by_records, by_lines):
        assert other.by_level == fast.by_level
        assert other.by_hour == fast.by_hour
        assert other.grep_error_lines == DAY_GREP
    assert fast.by_hour[dt("2026-11-20 09:00:00")] == {"INFO": 1, "ERROR": 1, "WARNING": 1, "DEBUG": 1}
    assert fast.by_hour[dt("2026-11-20 10:00:00")] == {"ERROR": 1, "CRITICAL": 1, "SUCCESS": 1}
    assert len(fast.by_hour) == 24 and fast.by_hour[dt("2026-11-20 23:00:00")] == {}

    frame = fast.errors_per_hour()
    assert list(frame.columns) == ["hour", "errors"] and len(frame) == 24
    assert frame.set_index("hour")["errors"][pd.Timestamp("2026-11-20 10:00")] == 2
    assert int(frame["errors"].sum()) == 3


def test_rotated_zip_and_gz_read_like_plain(tmp_path: Path) -> None:
    variants = {
        "plain": lambda d: (d / "content_creator_2026-11-20.log").write_text(DAY),
        "zip": lambda d: write_zip(d / "content_creator_2026-11-20.2026-11-21_00-00-00_123456.log.zip",
                                   "content_creator_2026-11-20.2026-11-21_00-00-00_123456.log", DAY),
        "zip1": lambda d: write_zip(d / "content_creator_2026-11-20.log.1.zip", "content_creator_2026-11-20.log", DAY),
        "gz": lambda d: write_gz(d / "content_creator_2026-11-20.log.gz", DAY),
    }
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    seen = {}
    for name, make in variants.items():
        folder = tmp_path / name
        folder.mkdir()
        make(folder)
        records = [(r.time, r.level, r.message) for r in logs.read_records(folder, since, until)]
        summary = logs.summarize_dir(folder, since, until, grep_compare=True)
        assert summary.problems == [], name
        seen[name] = (records, summary.by_level, summary.grep_error_lines)
    assert len(seen["plain"][0]) == 7
    assert all(value == seen["plain"] for value in seen.values())
    assert logs.file_day(Path("content_creator_2026-11-20.2026-11-21_00-00-00_123456.log.zip")).isoformat() == "2026-11-20"


def test_incomplete_last_line_is_kept_and_reported(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(DAY + "2026-11-20 11:00:00 | ERROR    | src.main:run - cut in the midd")
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    summary = logs.summarize_dir(log_dir, since, until)
    assert summary.by_level["ERROR"] == 3  # the unterminated record is a record
    assert summary.problems == [f"{path.name}: last line incomplete (truncated or still being written)"]
    problems: list[str] = []
    records = list(logs.read_records(log_dir, since, until, problems))
    assert records[-1].message == "cut in the midd" and records[-1].level == "ERROR"
    assert problems == summary.problems


def test_line_cut_mid_prefix_is_dropped_not_glued_to_the_record_above(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(DAY + "2026-11-20 11:0")
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    summary = logs.summarize_dir(log_dir, since, until, grep_compare=True)
    assert summary.by_level == DAY_BY_LEVEL
    assert summary.problems == [f"{path.name}: truncated last line dropped"]
    records = list(logs.read_records(log_dir, since, until))
    assert records[-1].message == "Error budget report sent"
    assert list(logs.open_text(path))[-1] == "2026-11-20 10:45:00 | SUCCESS  | src.agents.base_agent:run - Error budget report sent\n"


def _many_records(n: int, start: datetime, step_s: int = 7) -> str:
    levels = ["DEBUG", "INFO", "INFO", "WARNING", "ERROR", "SUCCESS"]
    parts = []
    for i in range(n):
        ts = (start + timedelta(seconds=i * step_s)).strftime("%Y-%m-%d %H:%M:%S")
        level = levels[i % len(levels)]
        parts.append(rec(ts, level, f"record {i} payload {random.Random(i).random():.12f}",
                         extra=TRACEBACK if level == "ERROR" and i % 4 == 0 else None))
    return "".join(parts)


def _headers(text: str) -> list[str]:
    """Header lines of text, a cut last line included when its prefix survived whole."""
    return [line for line in text.split("\n") if logs.default_format().level_of(line, len(line))]


def test_truncated_gz_reports_the_problem_and_keeps_earlier_records(log_dir: Path) -> None:
    text = _many_records(6000, datetime(2026, 11, 20, 0, 0, 0))
    path = write_gz(log_dir / "content_creator_2026-11-20.log.gz", text)
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * 0.6))
    # reference: what zlib itself can recover from the cut file
    recoverable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes()).decode()
    expected = _headers(recoverable)
    assert 1000 < len(expected) < 6000

    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    problems: list[str] = []
    records = list(logs.read_records(log_dir, since, until, problems))
    assert len(records) == len(expected)
    assert [r.message.split("\n")[0] for r in records[:3]] == [h.split(" - ", 1)[1] for h in expected[:3]]
    assert f"{path.name}: truncated" in problems
    summary = logs.summarize_dir(log_dir, since, until)
    assert summary.total == len(expected)
    assert f"{path.name}: truncated" in summary.problems


def test_zip_cut_before_its_directory_is_still_read(log_dir: Path) -> None:
    text = _many_records(6000, datetime(2026, 11, 20, 0, 0, 0))
    path = write_zip(log_dir / "content_creator_2026-11-20.log.zip", "content_creator_2026-11-20.log", text)
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * 0.5))
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)  # what a plain reader would do with it
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    summary = logs.summarize_dir(log_dir, since, until)
    assert 1000 < summary.total < 6000
    assert any("zip directory missing" in p for p in summary.problems)
    assert f"{path.name}: truncated" in summary.problems
    records = list(logs.read_records(log_dir, since, until))
    assert len(records) == summary.total
    assert [r.message.split(" payload")[0] for r in records[:2]] == ["record 0", "record 1"]


def test_window_across_midnight_two_files_one_zipped(log_dir: Path) -> None:
    before = "".join([
        rec("2026-11-27 22:10:00", "INFO", "before the window"),
        rec("2026-11-27 22:40:00", "INFO", "in"),
        rec("2026-11-27 22:50:00", "ERROR", "in", extra=TRACEBACK),
        rec("2026-11-27 23:05:00", "ERROR", "in"),
        rec("2026-11-27 23:30:00", "WARNING", "in"),
        rec("2026-11-27 23:59:59", "ERROR", "in, last second of the day"),
    ])
    after = "".join([
        rec("2026-11-28 00:00:00", "INFO", "in, first second"),
        rec("2026-11-28 00:10:00", "INFO", "in"),
        rec("2026-11-28 00:20:00", "INFO", "in"),
        rec("2026-11-28 00:59:59", "INFO", "in"),
        rec("2026-11-28 01:10:00", "ERROR", "in"),
        rec("2026-11-28 01:15:00", "ERROR", "at until: out"),
        rec("2026-11-28 01:20:00", "ERROR", "out"),
    ])
    write_zip(log_dir / "content_creator_2026-11-27.2026-11-28_00-00-00_123456.log.zip",
              "content_creator_2026-11-27.2026-11-28_00-00-00_123456.log", before)
    (log_dir / "content_creator_2026-11-28.log").write_text(after)
    since, until = dt("2026-11-27 22:30:00"), dt("2026-11-28 01:15:00")
    expected = {
        dt("2026-11-27 22:00:00"): {"INFO": 1, "ERROR": 1},
        dt("2026-11-27 23:00:00"): {"ERROR": 2, "WARNING": 1},
        dt("2026-11-28 00:00:00"): {"INFO": 4},
        dt("2026-11-28 01:00:00"): {"ERROR": 1},
    }
    for block_size in (logs.BLOCK_SIZE, 64):  # one block per file, and many tiny ones
        summary = logs.summarize_dir(log_dir, since, until, block_size=block_size)
        assert summary.by_hour == expected
        assert summary.errors == 4 and summary.total == 10
        assert summary.files == ["content_creator_2026-11-27.2026-11-28_00-00-00_123456.log.zip",
                                 "content_creator_2026-11-28.log"]
    records = list(logs.read_records(log_dir, since, until))
    assert logs.summarize(records, since, until).by_hour == expected
    assert [h["hour"] for h in summary.to_dict()["by_hour"]] == [
        "2026-11-27T22:00:00", "2026-11-27T23:00:00", "2026-11-28T00:00:00", "2026-11-28T01:00:00"]


def test_file_picking_by_date_skips_files_outside_the_window(log_dir: Path) -> None:
    garbage = b"PK\x03\x04 not really a zip, opening it would be a problem"
    for day in ("2026-11-17", "2026-11-18", "2026-11-22"):
        (log_dir / f"content_creator_{day}.log.zip").write_bytes(garbage)
    (log_dir / "content_creator_2026-11-19.log.gz").write_bytes(b"not gzip at all")
    write_zip(log_dir / "content_creator_2026-11-20.log.zip", "content_creator_2026-11-20.log", DAY)
    (log_dir / "content_creator_2026-11-21.log").write_text(rec("2026-11-21 00:30:00", "ERROR", "next day"))
    (log_dir / "content_creator.log").write_text(rec("2026-11-20 12:00:00", "INFO", "undated file"))
    (log_dir / "content_creator_2026-11-20.log.zip.tmp").write_bytes(garbage)  # half-written, not a log
    (log_dir / "server.json").write_text("{}")

    names = [p.name for p in logs.log_files(log_dir, dt("2026-11-20 06:00:00"), dt("2026-11-21 00:00:00"))]
    assert names == ["content_creator_2026-11-20.log.zip", "content_creator.log"]
    names = [p.name for p in logs.log_files(log_dir, dt("2026-11-20 06:00:00"), dt("2026-11-21 00:00:01"))]
    assert names == ["content_creator_2026-11-20.log.zip", "content_creator_2026-11-21.log", "content_creator.log"]
    assert [p.name for p in logs.log_files(log_dir, None, None)] == [
        "content_creator_2026-11-17.log.zip", "content_creator_2026-11-18.log.zip",
        "content_creator_2026-11-19.log.gz", "content_creator_2026-11-20.log.zip",
        "content_creator_2026-11-21.log", "content_creator_2026-11-22.log.zip", "content_creator.log"]

    summary = logs.summarize_dir(log_dir, dt("2026-11-20 06:00:00"), dt("2026-11-21 00:00:00"))
    assert summary.files == ["content_creator_2026-11-20.log.zip", "content_creator.log"]
    assert summary.problems == []  # the damaged out-of-window files were never opened
    assert summary.by_level["INFO"] == 2 and summary.errors == 3
    wide = logs.summarize_dir(log_dir, dt("2026-11-17 00:00:00"), dt("2026-11-23 00:00:00"))
    assert len(wide.problems) == 4 and all("content_creator_2026-11-" in p for p in wide.problems)


def test_blocks_lines_and_records_agree_on_a_large_mixed_file(log_dir: Path) -> None:
    """The vector path, the per-line path and records give identical counts at any block size."""
    rnd = random.Random(7)
    start = datetime(2026, 11, 20, 0, 0, 0)
    parts = []
    levels = ["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL", "AUDIT", "NOTIFICATION"]
    for i in range(20000):
        ts = (start + timedelta(seconds=i * 4 + rnd.randint(0, 2))).strftime("%Y-%m-%d %H:%M:%S")
        level = rnd.choices(levels, weights=[1, 20, 40, 5, 8, 6, 1, 1 if i > 15000 else 0, 1 if i > 15000 else 0])[0]
        message = rnd.choice(["ok", "no error here", "Error budget", "ünïcödé ✓", "x | y | z", ""])
        extra = rnd.choice([None, None, None, TRACEBACK, ["", "  error detail", "2026 was a year"]])
        parts.append(rec(ts, level, message, extra=extra))
    text = "".join(parts)
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(text)
    everything = (dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00"))
    windows = [everything, (dt("2026-11-20 03:17:09"), dt("2026-11-20 17:42:31")),
               (dt("2026-11-20 20:00:00"), dt("2026-11-20 23:30:00"))]
    for since, until in windows:
        reference = logs.summarize(logs.read_records(log_dir, since, until), since, until, grep_compare=True)
        by_lines = logs.count_levels(logs.open_text(path), since, until, grep_compare=True)
        assert (by_lines.by_hour, by_lines.grep_error_lines) == (reference.by_hour, reference.grep_error_lines)
        for block_size, workers in ((1 << 21, 1), (1 << 14, 2), (1000, 2)):
            fast = logs.summarize_dir(log_dir, since, until, grep_compare=True, block_size=block_size, workers=workers)
            assert fast.by_hour == reference.by_hour, (since, block_size)
            assert fast.by_level == reference.by_level
            assert fast.grep_error_lines == reference.grep_error_lines
    whole = logs.summarize_dir(log_dir, *everything, grep_compare=True)
    assert whole.total == 20000 and whole.by_level["NOTIFICATION"] > 0 and whole.by_level["AUDIT"] > 0
    assert whole.grep_error_lines == grep_ci_error(path)


def _as_tuples(records) -> list[tuple]:
    return [(r.time, r.level, r.name, r.function, r.message, r.source, r.line_no) for r in records]


def test_prefiltered_records_equal_the_line_by_line_records(log_dir: Path) -> None:
    """Selectors with needles build only candidate records; the records must be the same, field for field.

    The file holds what breaks a block scanner: lines before the first header,
    tracebacks that straddle block edges, a header-shaped line with an impossible
    date (a continuation line, not a record), "429" inside numbers and messages,
    rate-limit words in any case, and a truncated last line.
    """
    rnd = random.Random(11)
    start = datetime(2026, 11, 20, 0, 0, 0)
    parts = ["  File \"/app/tail_of_yesterday.py\", line 3\n", "ValueError: left over\n"]
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
    messages = ["ok", "posted 4291 bytes", "X API Rate Limit hit, remaining=0", "HTTP 429 Too Many Requests",
                "ratelimit window reset", "ünïcödé ✓", "no error here", "status=429"]
    for i in range(6000):
        ts = (start + timedelta(seconds=i * 14)).strftime("%Y-%m-%d %H:%M:%S")
        level = rnd.choices(levels, weights=[10, 60, 15, 10, 2])[0]
        extra = rnd.choice([None, None, None, TRACEBACK, ["2026-13-45 99:99:99 | ERROR    | not a header - really"],
                            ["  rate limit reached in a nested call"]])
        parts.append(rec(ts, level, rnd.choice(messages), extra=extra))
    parts.append("2026-11-20 23:59:59 | ERROR    | src.x:y - cut off mid-wri")
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text("".join(parts))
    write_gz(log_dir / "content_creator_2026-11-19.log.gz",
             rec("2026-11-19 23:59:00", "ERROR", "yesterday's error", extra=TRACEBACK))

    notable = logs.select_any(logs.select_levels(logs.ERROR_LEVELS, tracebacks=True), ratelimit.select_events())
    selectors = [notable, logs.select_levels({"CRITICAL"}), logs.select_levels({"WARNING"}, tracebacks=True),
                 ratelimit.select_events()]
    windows = [(dt("2026-11-19 00:00:00"), dt("2026-11-21 00:00:00")),
               (dt("2026-11-20 03:17:09"), dt("2026-11-20 17:42:31")), (None, None)]
    for selector in selectors:
        assert selector.prefilter is not None
        for since, until in windows:
            slow_problems: list[str] = []
            slow = _as_tuples(logs.read_records(log_dir, since, until, slow_problems, select=selector.test))
            assert slow, "a window without records proves nothing"
            fast_problems: list[str] = []
            fast = _as_tuples(logs.read_records(log_dir, since, until, fast_problems, select=selector))
            assert fast == slow, (since, until)
            assert fast_problems == slow_problems
            for block_size in (1 << 12, 777):
                small = reader._scan_file(path, since, until, [], selector, selector.prefilter, block_size=block_size)
                assert _as_tuples(small) == [r for r in slow if r[5] == path.name], block_size
    errors = _as_tuples(logs.read_records(log_dir, None, None, select=notable))
    assert errors[0][4] == "yesterday's error" + "\n" + "\n".join(TRACEBACK)
    assert any("not a header" in r[4] for r in errors)  # the bogus header stayed a continuation line
    assert errors[-1][4] == "cut off mid-wri" and errors[-1][6] == path.read_text().count("\n") + 1


def test_selectors_without_needles_read_line_by_line(log_dir: Path) -> None:
    plain = logs.select_matching(ratelimit.EVENT_RE)
    assert plain.prefilter is None
    assert logs.select_any(plain, logs.select_levels({"ERROR"})).prefilter is None
    (log_dir / "content_creator_2026-11-20.log").write_text(DAY)
    found = list(logs.read_records(log_dir, None, None, select=logs.select_any(plain, logs.select_levels({"ERROR"}))))
    assert [r.level for r in found] == ["ERROR", "ERROR"]


def test_parse_compose_lines_strips_prefix_and_colours() -> None:
    raw = [
        "app-1  | 2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy\n",
        "app-1  | Traceback (most recent call last):\n",
        'app-1  |   File "/app/main.py", line 3, in <module>\n',
        "content_creator_app  | \x1b[32m2025-11-23 15:23:44\x1b[0m | \x1b[1mINFO    \x1b[0m | "
        "\x1b[36msrc.main\x1b[0m:\x1b[36mrun\x1b[0m - \x1b[1mstarted | ready\x1b[0m\n",
        "\x1b[36mapp_1   |\x1b[0m 2025-11-23 15:23:45 | WARNING  | x:y - compose v1 prefix\n",
        "2025-11-23 15:23:46 | DEBUG    | x:y - no prefix | kept as is\n",
        "app-1  | \n",
    ]
    assert list(logs.parse_compose_lines(raw)) == [
        "2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy",
        "Traceback (most recent call last):",
        '  File "/app/main.py", line 3, in <module>',
        "2025-11-23 15:23:44 | INFO     | src.main:run - started | ready",
        "2025-11-23 15:23:45 | WARNING  | x:y - compose v1 prefix",
        "2025-11-23 15:23:46 | DEBUG    | x:y - no prefix | kept as is",
        "",
    ]
    records = list(logs.iter_records(logs.parse_compose_lines(raw)))
    assert [r.level for r in records] == ["ERROR", "INFO", "WARNING", "DEBUG"]
    assert records[0].has_traceback and records[1].message == "started | ready"
    summary = logs.count_levels(logs.parse_compose_lines(raw), dt("2025-11-23 15:00:00"), dt("2025-11-23 16:00:00"))
    assert summary.by_hour == {dt("2025-11-23 15:00:00"): {"ERROR": 1, "INFO": 1, "WARNING": 1, "DEBUG": 1}}


# ---- docker compose: a stand-in `docker` that prints what docker prints -----------------

COMPOSE_OUTPUT = (
    "app-1  | 2026-11-20 10:00:00 | INFO     | src.main:run - scheduler started\n"
    "app-1  | 2026-11-20 10:05:00 | ERROR    | src.agents.base_agent:run - AnalysisAgent failed: boom\n"
    "app-1  | Traceback (most recent call last):\n"
    "app-1  | ValueError: boom\n"
    "app-1  | 2026-11-20 11:00:00 | CRITICAL | src.main:run - giving up\n"
)


def fake_docker(bin_dir: Path, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "docker"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def compose_env(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    monkeypatch.setenv("CCOPS_LOG_DIR", str(ccops_env / "no-such-logs"))
    monkeypatch.setenv("CCOPS_COMPOSE_FILE", "docker-compose.prod.yml")
    monkeypatch.setenv("CCOPS_COMPOSE_PROJECT_DIR", str(ccops_env / "deploy"))
    monkeypatch.setenv("PATH", str(ccops_env / "bin"))  # only our stand-in, if any
    return ccops_env


def test_compose_logs_command_and_lines(compose_env: Path) -> None:
    argv = compose_env / "argv.txt"
    (compose_env / "out.txt").write_text(COMPOSE_OUTPUT)
    fake_docker(compose_env / "bin", f'echo "$@" > {argv}\nPATH=/usr/bin:/bin exec cat {compose_env}/out.txt\n')
    settings = load_settings()
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    lines = list(logs.compose_log_lines(settings, since, until))
    assert argv.read_text().split() == [
        "compose", "-f", "docker-compose.prod.yml", "--project-directory", str(compose_env / "deploy"),
        "logs", "--no-color", "--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z", "app"]
    assert lines[1] == "2026-11-20 10:05:00 | ERROR    | src.agents.base_agent:run - AnalysisAgent failed: boom"
    summary = logs.summary_for_settings(settings, since, until)  # no log dir + compose backend
    assert summary.by_level["ERROR"] == 1 and summary.by_level["CRITICAL"] == 1 and summary.total == 3
    assert summary.source == "docker compose logs app"


def test_compose_without_docker_or_engine_is_one_clear_line(compose_env: Path) -> None:
    settings = load_settings()
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    with pytest.raises(logs.LogSourceError, match="docker not found"):
        logs.summary_for_settings(settings, since, until)
    fake_docker(compose_env / "bin", 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. '
                                     'Is the docker daemon running?" >&2\nexit 1\n')
    with pytest.raises(logs.LogSourceError, match=r"failed: Cannot connect to the Docker daemon") as raised:
        logs.summary_for_settings(settings, since, until)
    assert "\n" not in str(raised.value)
    fake_docker(compose_env / "bin", "PATH=/usr/bin:/bin exec sleep 30\n")
    with pytest.raises(logs.LogSourceError, match="timed out after 0.5 s"):
        list(logs.compose_log_lines(settings, since, until, timeout=0.5))


# ---- summary output and the command line -----------------------------------------------------

def test_summary_dict_and_text(log_dir: Path) -> None:
    (log_dir / "content_creator_2026-11-20.log").write_text(DAY)
    summary = logs.summarize_dir(log_dir, dt("2026-11-20 08:00:00"), dt("2026-11-20 12:00:00"), grep_compare=True)
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["total"] == 7 and data["errors"] == 3 and data["grep_error_lines"] == DAY_GREP
    assert [h["hour"] for h in data["by_hour"]] == [f"2026-11-20T{h:02d}:00:00" for h in range(8, 12)]
    assert data["by_hour"][2] == {"hour": "2026-11-20T10:00:00", "hour_local": "2026-11-20T10:00:00+00:00", "TRACE": 0, "DEBUG": 0, "INFO": 0, "SUCCESS": 1,
                                  "WARNING": 0, "ERROR": 1, "CRITICAL": 1, "total": 3}
    text = summary.format_text()
    assert "7 records, 3 errors" in text
    assert any(line.startswith("2026-11-20 10:00") and line.split()[-1] == "3" for line in text.splitlines())


def test_cli_logs_summary_json_matches_the_library(ccops_env: Path, log_dir: Path, monkeypatch, capsys) -> None:
    (log_dir / "content_creator_2026-11-20.log").write_text(DAY)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")  # DAY is written in UTC
    code = main(["logs", "summary", "--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    expected = logs.summarize_dir(log_dir, dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00"))
    assert data["by_level"] == expected.by_level == DAY_BY_LEVEL
    assert data["errors"] == 3 and len(data["by_hour"]) == 24
    # --since omitted: the 24 h before --until
    assert main(["logs", "summary", "--until", "2026-11-20T10:00:00Z", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["since"] == "2026-11-19T10:00:00" and data["total"] == 4
    assert main(["logs", "summary", "--until", "2026-11-20T12:00:00Z"]) == 0
    assert "7 records, 3 errors" in capsys.readouterr().out

    shutil.rmtree(log_dir)
    assert main(["logs", "summary", "--json"]) == 3  # UNKNOWN: nothing to count
    assert capsys.readouterr().err.strip() == f"ccops: log dir {log_dir} does not exist"


def test_missing_log_dir_raises_one_line(tmp_path: Path) -> None:
    with pytest.raises(logs.LogSourceError, match=r"^log dir .*nowhere does not exist$"):
        list(logs.read_records(tmp_path / "nowhere", None, None))
    with pytest.raises(logs.LogSourceError):
        logs.summarize_dir(tmp_path / "nowhere", None, None)


# ---- memory ------------------------------------------------------------------------------------

STAMPS = [f"2026-11-20 {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)]


def _endless_lines(n: int):
    """n lines made one at a time: a record every line but every tenth, a traceback line."""
    for i in range(n):
        if i % 10 == 9:
            yield "    a traceback line with an error in it\n"
        else:
            day, second = divmod(i // 3, 86400)
            ts = STAMPS[second] if not day else STAMPS[second].replace("-20 ", f"-{20 + day} ")
            yield f"{ts} | {'ERROR' if i % 7 == 0 else 'INFO':<8} | src.main:run - message number {i}\n"


def test_counting_200k_lines_uses_constant_memory() -> None:
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    tracemalloc.start()
    try:
        summary = logs.count_levels(_endless_lines(200_000), since, until, grep_compare=True)
        _, peak_lines = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        by_records = logs.summarize(logs.iter_records(_endless_lines(60_000)), since, until)
        _, peak_records = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.total == 180_000 and by_records.total == 54_000
    assert by_records.by_level["ERROR"] == sum(1 for i in range(60_000) if i % 7 == 0 and i % 10 != 9)
    assert summary.grep_error_lines == 20_000 + summary.by_level["ERROR"]
    assert peak_lines < 2_000_000, peak_lines
    assert peak_records < 2_000_000, peak_records


def test_reading_a_file_uses_bounded_memory(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    with open(path, "w") as handle:
        handle.writelines(_endless_lines(700_000))
    size = path.stat().st_size
    assert size > 45_000_000
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-23 00:00:00")  # 700k lines run past midnight
    tracemalloc.start()
    try:
        summary = logs.summarize_dir(log_dir, since, until, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.total == 630_000
    # a few blocks in flight (one per worker, one being read) and their numpy scratch, never the file
    assert peak < 10 * logs.BLOCK_SIZE < size / 2, peak


def test_open_text_replaces_undecodable_bytes(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_bytes(b"2026-11-20 10:00:00 | INFO     | x:y - caf\xe9 \xff\n" + rec("2026-11-20 10:00:01", "ERROR", "z").encode())
    lines = list(logs.open_text(path))
    assert lines[0] == "2026-11-20 10:00:00 | INFO     | x:y - caf\ufffd \ufffd\n"
    assert logs.summarize_dir(log_dir, dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")).total == 2


def test_io_stream_helpers_close_their_files(log_dir: Path) -> None:
    path = write_zip(log_dir / "content_creator_2026-11-20.log.zip", "content_creator_2026-11-20.log", DAY)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        lines = logs.open_text(path)
        next(lines)
        lines.close()  # an abandoned reader must not leak the archive
    assert len(os.listdir("/proc/self/fd")) <= before


# ---- loguru's default format (milliseconds, line number) ----------------------------------------

def rec_ms(ts: str, level: str, message: str, where: str = "src.agents.base_agent:run:88") -> str:
    """A record in loguru's default format: `{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - `."""
    return f"{ts} | {level:<8} | {where} - {message}\n"


def awk_levels(path: Path) -> dict[str, int]:
    """Header lines by level, counted by awk (either time format), as the reference."""
    program = (r"$1 ~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9](\.[0-9][0-9][0-9])?$/"
               r' && NF >= 3 { level = $2; sub(/ +$/, "", level); n[level]++ } END { for (l in n) print l, n[l] }')
    proc = subprocess.run(["awk", "-F", " [|] ", program, str(path)], capture_output=True, text=True, check=True)
    return {line.split()[0]: int(line.split()[1]) for line in proc.stdout.splitlines()}


def mixed_formats(path: Path, hours: int = 6, seed: int = 3) -> None:
    """The app's format and loguru's default, interleaved, with tracebacks and near-miss lines."""
    rng = random.Random(seed)
    levels = ["DEBUG", "INFO", "INFO", "WARNING", "ERROR", "CRITICAL", "SUCCESS", "TRACE"]
    out = []
    start = dt("2026-11-20 00:00:00")
    for i in range(hours * 900):
        when = start + timedelta(seconds=4 * i)
        level = rng.choice(levels)
        if i % 3 == 0:
            out.append(rec_ms(f"{when:%Y-%m-%d %H:%M:%S}.{rng.randrange(1000):03d}", level, f"default format {i}"))
        else:
            out.append(rec(f"{when:%Y-%m-%d %H:%M:%S}", level, f"app format {i}: an error?",
                           extra=TRACEBACK if level == "ERROR" and i % 7 == 0 else None))
        if i % 50 == 0:  # continuation lines that almost look like headers: never records
            out.append(f"{when:%Y-%m-%d %H:%M:%S}.12x | ERROR    | not a header\n")
            out.append(f"{when:%Y-%m-%d %H:%M:%S}.123 x ERROR    | not a header either\n")
    path.write_text("".join(out))


def test_loguru_default_format_with_milliseconds_is_counted_and_listed(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(rec("2026-11-20 07:59:59", "INFO", "app format")
                    + rec_ms("2026-11-20 08:00:00.123", "ERROR", "Failed to post tweet: 429 Too Many Requests",
                             "src.api_integrations.twitter_api:post_tweet:42")
                    + "".join(line + "\n" for line in TRACEBACK)
                    + rec_ms("2026-11-20 08:59:59.999", "CRITICAL", "database gone"))
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    summary = logs.summarize_dir(log_dir, since, until)
    assert summary.by_level["ERROR"] == 1 and summary.by_level["CRITICAL"] == 1 and summary.total == 3
    assert summary.by_hour[dt("2026-11-20 08:00:00")] == {"ERROR": 1, "CRITICAL": 1}
    errors = list(logs.read_records(log_dir, since, until, select=logs.select_levels(logs.ERROR_LEVELS)))
    assert [(r.time, r.level, r.where, r.first_line) for r in errors] == [
        (dt("2026-11-20 08:00:00.123"), "ERROR", "src.api_integrations.twitter_api:post_tweet",
         "Failed to post tweet: 429 Too Many Requests"),
        (dt("2026-11-20 08:59:59.999"), "CRITICAL", "src.agents.base_agent:run", "database gone")]
    assert errors[0].exception_line == "KeyError: 'confidence'"
    # the window's bounds hold for milliseconds as for seconds
    assert logs.summarize_dir(log_dir, dt("2026-11-20 08:00:00"), dt("2026-11-20 08:59:59")).total == 1
    assert logs.summarize_dir(log_dir, dt("2026-11-20 08:00:01"), dt("2026-11-20 09:00:00")).total == 1


@pytest.mark.parametrize("block_size", [logs.BLOCK_SIZE, 4096])
def test_both_formats_mixed_count_exactly_on_every_path(log_dir: Path, block_size: int) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    mixed_formats(path)
    expected = awk_levels(path)
    assert expected["ERROR"] > 100 and sum(expected.values()) == 6 * 900
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    want = {level: expected.get(level, 0) for level in logs.LEVELS}
    vector = logs.summarize_dir(log_dir, since, until, block_size=block_size, grep_compare=True)
    single = logs.summarize_dir(log_dir, since, until, block_size=block_size, workers=1, grep_compare=True)
    lines = logs.count_levels(logs.open_text(path), since, until, grep_compare=True)
    records = logs.summarize(logs.read_records(log_dir, since, until), since, until, grep_compare=True)
    for found in (vector, single, lines, records):
        assert found.by_level == want
        assert found.by_hour == vector.by_hour
        assert found.grep_error_lines == vector.grep_error_lines
    # a window cutting through the file: the per-line and vector paths meet at its bounds
    since, until = dt("2026-11-20 01:30:00"), dt("2026-11-20 04:10:02")
    inside = logs.summarize_dir(log_dir, since, until, block_size=block_size)
    assert inside.by_level == logs.count_levels(logs.open_text(path), since, until).by_level
    picked = list(logs.read_records(log_dir, since, until, select=logs.select_levels({"ERROR"}, tracebacks=True)))
    assert len([r for r in picked if r.level == "ERROR"]) == inside.by_level["ERROR"]


# ---- time zones: the app writes its host's LOCAL time, with no zone (FACTS.md) ----------------

AMSTERDAM = "Europe/Amsterdam"
# awk reading the app's lines by hand: Europe/Amsterdam in 2026 is CET (+1) except CEST (+2) from
# 2026-03-29 02:00 local to 2026-10-25 03:00 local; 02:xx on 2026-10-25 comes twice (the second time
# after the clock went back) and 02:xx on 2026-03-29 does not exist (read as +1, before the change).
AWK_AMSTERDAM = r"""
BEGIN { FS = " [|] " }
/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] [|] / {
  if (FNR == 1) { back = 0; prev = "" }
  t = substr($0, 1, 19); lvl = $2; gsub(/ /, "", lvl); d = substr(t, 1, 10); h = substr(t, 12, 2) + 0
  if (d == "2026-10-25" && h == 2 && prev != "" && t < prev) back = 1
  if (d > "2026-03-29" && d < "2026-10-25") off = 2
  else if (d == "2026-03-29") off = (h >= 3) ? 2 : 1
  else if (d == "2026-10-25") off = (h < 2 || (h == 2 && !back)) ? 2 : 1
  else off = 1
  if (fixed != "") off = fixed
  prev = t
  u = mktime(substr(t,1,4) " " substr(t,6,2) " " substr(t,9,2) " " substr(t,12,2) " " substr(t,15,2) " " substr(t,18,2)) - off * 3600
  if (u >= since && u < until) n[strftime("%Y-%m-%dT%H:00:00", u) " " lvl]++
}
END { for (k in n) print k, n[k] }
"""


def awk_utc_hours(paths: list[Path], since: datetime, until: datetime, fixed_offset_hours: str = "") -> dict:
    """Records per (UTC hour, level) in [since, until), counted by awk converting each line by hand."""
    def epoch(t: datetime) -> str:
        return str(int(t.replace(tzinfo=UTC).timestamp()))

    proc = subprocess.run(["awk", "-v", f"since={epoch(since)}", "-v", f"until={epoch(until)}",
                           "-v", f"fixed={fixed_offset_hours}", AWK_AMSTERDAM, *map(str, paths)],
                          capture_output=True, text=True, check=True, env={**os.environ, "TZ": "UTC"})
    out: dict[datetime, dict[str, int]] = {}
    for line in proc.stdout.splitlines():
        hour, level, n = line.split()
        out.setdefault(datetime.fromisoformat(hour), {})[level] = int(n)
    return out


def local_log(log_dir: Path, zone: str, start: datetime, end: datetime, step: timedelta,
              seed: int = 5) -> list[tuple[datetime, str]]:
    """What loguru writes on a host in `zone`: a record every `step` of real (UTC) time, the line in
    local time, one file per LOCAL day. Returns the truth: (UTC time, level) of every record."""
    from zoneinfo import ZoneInfo

    rng = random.Random(seed)
    levels = ["DEBUG", "INFO", "INFO", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
    files: dict[str, list[str]] = {}
    truth: list[tuple[datetime, str]] = []
    t = start
    while t < end:
        local = t.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
        level = rng.choice(levels)
        extra = TRACEBACK if level == "ERROR" and rng.random() < 0.3 else None
        files.setdefault(f"{local:%Y-%m-%d}", []).append(
            rec(f"{local:%Y-%m-%d %H:%M:%S}", level, f"utc {t:%H:%M:%S} agent run", extra=extra))
        truth.append((t, level))
        t += step
    for day, lines in files.items():
        (log_dir / logs.app_log_name(date.fromisoformat(day))).write_text("".join(lines))
    return truth


def window_of(truth: list[tuple[datetime, str]], since: datetime, until: datetime) -> dict:
    """Records of [since, until) per UTC hour and level, with the empty hours a summary lists."""
    out: dict[datetime, dict[str, int]] = {}
    for t, level in truth:
        if since <= t < until:
            slot = out.setdefault(t.replace(minute=0, second=0), {})
            slot[level] = slot.get(level, 0) + 1
    hour = since.replace(minute=0, second=0)
    while hour < until:
        out.setdefault(hour, {})
        hour += timedelta(hours=1)
    return out


def every_path_counts(log_dir: Path, since: datetime, until: datetime, zone_name: str) -> list[dict]:
    """by_hour from the vector blocks (tiny and large, 1 and 2 workers), the lines and the records."""
    zone = logs.zone_named(zone_name)
    found = [logs.summarize_dir(log_dir, since, until, zone=zone, block_size=size, workers=workers).by_hour
             for size in (512, 4096, logs.BLOCK_SIZE) for workers in (1, 2)]
    lines = [line for path in logs.log_files(log_dir, since, until, zone) for line in logs.open_text(path)]
    found.append(logs.count_levels(lines, since, until, zone=zone).by_hour)
    found.append(logs.summarize(logs.read_records(log_dir, since, until, zone=zone), since, until).by_hour)
    return found


def test_amsterdam_autumn_repeated_hour_counts_by_utc_hour_on_every_path(log_dir: Path) -> None:
    """2026-10-25: 03:00 CEST -> 02:00 CET, so 02:xx is written twice; file order tells them apart."""
    truth = local_log(log_dir, AMSTERDAM, dt("2026-10-24 20:00:00"), dt("2026-10-25 05:00:00"), timedelta(seconds=13))
    text = (log_dir / "content_creator_2026-10-25.log").read_text()
    twice = sum(1 for t, _ in truth if dt("2026-10-25 00:00:00") <= t < dt("2026-10-25 02:00:00"))
    assert text.count("\n2026-10-25 02:") == twice  # both UTC hours are written as 02:xx
    for since, until in [(dt("2026-10-24 20:00:00"), dt("2026-10-25 05:00:00")),  # everything
                         (dt("2026-10-25 00:30:00"), dt("2026-10-25 01:30:00")),  # 02:30 CEST .. 02:30 CET
                         (dt("2026-10-25 01:00:00"), dt("2026-10-25 02:00:00")),  # only the second 02:xx
                         (dt("2026-10-24 21:45:00"), dt("2026-10-24 22:15:00"))]:  # across local midnight
        expected = window_of(truth, since, until)
        assert awk_utc_hours(sorted(log_dir.iterdir()), since, until) == {h: c for h, c in expected.items() if c}
        for found in every_path_counts(log_dir, since, until, AMSTERDAM):
            assert found == expected, (since, until)
    # "errors in the last hour" at 02:00 UTC (03:00 CET) is the second 02:xx, not the first
    last_hour = logs.summarize_dir(log_dir, dt("2026-10-25 01:00:00"), dt("2026-10-25 02:00:00"),
                                   zone=logs.zone_named(AMSTERDAM))
    assert last_hour.errors == sum(1 for t, level in truth if t.hour == 1 and t.day == 25 and level in logs.ERROR_LEVELS)
    assert last_hour.problems == []


def test_amsterdam_repeated_hour_records_and_prefiltered_records_agree(log_dir: Path) -> None:
    """The prefilter path builds only candidate records; the fold must still come from every line."""
    local_log(log_dir, AMSTERDAM, dt("2026-10-24 23:00:00"), dt("2026-10-25 03:00:00"), timedelta(seconds=11))
    zone = logs.zone_named(AMSTERDAM)
    since, until = dt("2026-10-25 00:40:00"), dt("2026-10-25 01:20:00")
    selector = logs.select_levels(logs.ERROR_LEVELS, tracebacks=True)
    slow = _as_tuples(logs.read_records(log_dir, since, until, select=selector.test, zone=zone))
    fast = _as_tuples(logs.read_records(log_dir, since, until, select=selector, zone=zone))
    assert slow == fast and len(slow) > 20
    records = list(logs.read_records(log_dir, since, until, select=selector, zone=zone))
    assert all(since <= r.time < until for r in records)
    # each record's message names its true UTC time: the conversion is exact, record by record
    assert all(r.message.startswith(f"utc {r.time:%H:%M:%S} ") for r in records)
    first_pass = [r for r in records if r.time < dt("2026-10-25 01:00:00")]
    second_pass = [r for r in records if r.time >= dt("2026-10-25 01:00:00")]
    assert first_pass and second_pass
    assert {f"{r.written:%H}" for r in first_pass} == {f"{r.written:%H}" for r in second_pass} == {"02"}


def test_amsterdam_spring_gap_is_counted_never_dropped(log_dir: Path) -> None:
    """2026-03-29: 02:00 CET -> 03:00 CEST; a line at 02:30 (no such local time) is read at +1 and named."""
    truth = local_log(log_dir, AMSTERDAM, dt("2026-03-28 22:00:00"), dt("2026-03-29 03:00:00"), timedelta(seconds=17))
    path = log_dir / "content_creator_2026-03-29.log"
    text = path.read_text()
    cut = text.index("2026-03-29 03:00:")  # the first line after the jump
    gap_line = rec("2026-03-29 02:30:00", "ERROR", "written by a clock that had not changed yet")
    path.write_text(text[:cut] + gap_line + text[cut:])
    truth.append((dt("2026-03-29 01:30:00"), "ERROR"))  # 02:30 at +1 is 01:30 UTC
    since, until = dt("2026-03-28 22:00:00"), dt("2026-03-29 03:00:00")
    expected = window_of(truth, since, until)
    assert awk_utc_hours([path, log_dir / "content_creator_2026-03-28.log"], since, until) == expected
    for found in every_path_counts(log_dir, since, until, AMSTERDAM):
        assert found == expected
    summary = logs.summarize_dir(log_dir, since, until, zone=logs.zone_named(AMSTERDAM))
    assert summary.problems == ["1 record at a local time that does not exist in Europe/Amsterdam "
                                "(the spring-forward gap): read at the offset before the change"]
    problems: list[str] = []
    gap = [r for r in logs.read_records(log_dir, since, until, problems, zone=logs.zone_named(AMSTERDAM)) if r.gap]
    assert [(r.time, r.written) for r in gap] == [(dt("2026-03-29 01:30:00"), dt("2026-03-29 02:30:00"))]
    assert problems == summary.problems


def test_utc_plus_one_window_across_local_midnight_reads_both_files(log_dir: Path) -> None:
    """Production ran at UTC+1 (FACTS.md): its last record says 15:48:04, written at 14:48:04 UTC."""
    truth = local_log(log_dir, "Africa/Lagos", dt("2026-11-19 20:00:00"), dt("2026-11-20 02:00:00"),
                      timedelta(seconds=29))
    since, until = dt("2026-11-19 22:30:00"), dt("2026-11-19 23:30:00")  # 23:30 .. 00:30 local
    zone = logs.zone_named("Africa/Lagos")
    assert [p.name for p in logs.log_files(log_dir, since, until, zone)] == [
        "content_creator_2026-11-19.log", "content_creator_2026-11-20.log"]
    expected = window_of(truth, since, until)
    assert awk_utc_hours(sorted(log_dir.iterdir()), since, until, fixed_offset_hours="1") == {
        h: c for h, c in expected.items() if c}
    for name in ("Africa/Lagos", "Etc/GMT-1"):  # Etc/GMT-1 is UTC+1 (POSIX signs)
        for found in every_path_counts(log_dir, since, until, name):
            assert found == expected
    # read as UTC (the old reading), the same window holds other records: an hour off
    assert logs.summarize_dir(log_dir, since, until).by_hour != expected


def test_facts_production_record_time_is_one_hour_ahead_of_utc(log_dir: Path) -> None:
    (log_dir / "content_creator_2025-11-23.log").write_text(
        rec("2025-11-23 15:48:04", "INFO", "Scheduler stopped", where="__main__:main"))
    record, = logs.read_records(log_dir, dt("2025-11-23 14:00:00"), dt("2025-11-23 15:00:00"),
                                zone=logs.zone_named("Etc/GMT-1"))
    assert (record.time, record.written) == (dt("2025-11-23 14:48:04"), dt("2025-11-23 15:48:04"))
    assert record.text().startswith("2025-11-23 15:48:04 | INFO ")  # the line as written


def test_cli_logs_summary_buckets_by_utc_hour_like_awk(ccops_env: Path, log_dir: Path, monkeypatch, capsys) -> None:
    truth = local_log(log_dir, AMSTERDAM, dt("2026-10-24 21:00:00"), dt("2026-10-25 04:00:00"), timedelta(seconds=23))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", AMSTERDAM)
    assert main(["logs", "summary", "--since", "2026-10-24T22:00:00Z", "--until", "2026-10-25T03:00:00Z",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    counted = {datetime.fromisoformat(h["hour"]): {lv: h[lv] for lv in logs.LEVELS if h[lv]} for h in data["by_hour"]}
    by_awk = awk_utc_hours(sorted(log_dir.iterdir()), dt("2026-10-24 22:00:00"), dt("2026-10-25 03:00:00"))
    assert {h: c for h, c in counted.items() if c} == by_awk
    assert counted == window_of(truth, dt("2026-10-24 22:00:00"), dt("2026-10-25 03:00:00"))
    assert data["timezone"] == AMSTERDAM
    assert [h["hour_local"] for h in data["by_hour"]][2:4] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    assert (data["since_local"], data["until_local"]) == ("2026-10-25T00:00:00+02:00", "2026-10-25T04:00:00+01:00")
    assert main(["logs", "summary", "--since", "2026-10-25T00:00:00Z", "--until", "2026-10-25T02:00:00Z"]) == 0
    text = capsys.readouterr().out
    assert "UTC (2026-10-25 02:00:00 .. 2026-10-25 03:00:00 Europe/Amsterdam)" in text
    assert "2026-10-25 00:00  02:00" in text and "2026-10-25 01:00  02:00" in text


def test_cli_logs_summary_warns_when_the_dir_holds_no_app_log(ccops_env: Path, log_dir: Path, monkeypatch,
                                                               capsys) -> None:
    """The parent of the real logs dir, or a dir with only the plain-process output.log / error.log."""
    (log_dir / "output.log").write_text("\x1b[32m2026-11-20 09:00:00\x1b[0m | INFO     | __main__:main - started\n")
    (log_dir / "error.log").write_text("Traceback (most recent call last):\nSyntaxError: invalid syntax\n")
    (log_dir / "logs").mkdir()
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    assert main(["logs", "summary", "--until", "2026-11-20T12:00:00Z", "--json"]) == 1
    out = capsys.readouterr()
    data = json.loads(out.out)
    assert data["total"] == 0 and data["warning"]
    warning, = out.err.strip().splitlines()
    assert warning.startswith(f"ccops: warning: no app log file in {log_dir} (looked for content_creator_YYYY-MM-DD.log")
    assert "output.log and error.log are not counted" in warning
    (log_dir / "content_creator_2026-11-01.log").write_text("")  # the app's dir after all: a quiet day is 0
    assert main(["logs", "summary", "--until", "2026-11-20T12:00:00Z", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_logs_timezone_setting_default_and_validation(tmp_path: Path, monkeypatch) -> None:
    from ccops.core.settings import ConfigError, machine_timezone

    assert machine_timezone({"TZ": AMSTERDAM}) == AMSTERDAM
    assert machine_timezone({"TZ": ":Africa/Lagos"}) == "Africa/Lagos"
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/Amsterdam")
    assert machine_timezone({}, localtime=link) == AMSTERDAM
    assert machine_timezone({"TZ": "CET-1CEST"}, localtime=tmp_path / "none") == "UTC"
    monkeypatch.delenv("CCOPS_LOGS_TIMEZONE", raising=False)
    monkeypatch.setenv("TZ", "Africa/Lagos")
    config = tmp_path / "ccops.toml"
    config.write_text('[database]\nurl = "postgresql://x@127.0.0.1/x"\n')
    assert load_settings(config).logs_timezone == "Africa/Lagos"  # a deployment: this machine's zone
    config.write_text('[database]\nurl = "postgresql://x@127.0.0.1/x"\n[logs]\ntimezone = "Europe/Amsterdam"\n')
    assert load_settings(config).logs_timezone == AMSTERDAM
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "Etc/GMT-1")
    assert load_settings(config).logs_timezone == "Etc/GMT-1"
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "Europe/Amsterdamm")
    with pytest.raises(ConfigError, match=r"^environment CCOPS_LOGS_TIMEZONE: expected an IANA time zone") as exc:
        load_settings(config)
    assert exc.value.exit_code == 64
