"""FACTS.md "Logs", pinned: the app's loguru lines, names and local times as the real app writes them.

Every input here is written by hand from FACTS.md (the line format and its example, loguru's
default format, the rotated .log.zip name, output.log / error.log of the plain-process
deployment, local time at UTC+1 and across Europe/Amsterdam's two DST changes of 2026), never
taken from ccops' demo. Expected figures are written by hand too, or counted by grep/awk.
"""

from __future__ import annotations

import subprocess
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from ccops import logs

FACTS_LINE = "2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy"
FACTS_LINE_MS = "2025-11-23 15:23:43.123 | ERROR    | __main__:_error:42 - Missing package: Tweepy"
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/src/agents/content_strategist.py", line 41, in execute',
    "    score = plan['confidence']",
    "KeyError: 'confidence'",
]


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def line(ts: str, level: str, message: str, where: str = "src.agents.base_agent:run") -> str:
    """`{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {name}:{function} - {message}` (FACTS.md)."""
    return f"{ts} | {level:<8} | {where} - {message}\n"


def every_path(log_dir: Path, since: datetime, until: datetime, zone: str) -> list[dict]:
    """by_hour from the vector blocks, the per-line path and the records: they must agree."""
    tz = logs.zone_named(zone)
    found = [logs.summarize_dir(log_dir, since, until, zone=tz, block_size=size).by_hour for size in (64, logs.BLOCK_SIZE)]
    found.append(logs.summarize(logs.read_records(log_dir, since, until, zone=tz), since, until).by_hour)
    return found


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def test_the_facts_example_line_at_utc_plus_one(log_dir: Path) -> None:
    (log_dir / "content_creator_2025-11-23.log").write_text(FACTS_LINE + "\n")
    record, = logs.read_records(log_dir, None, None, zone=logs.zone_named("Etc/GMT-1"))
    assert (record.level, record.name, record.function, record.message) == (
        "ERROR", "__main__", "_error", "Missing package: Tweepy")
    assert (record.written, record.time) == (dt("2025-11-23 15:23:43"), dt("2025-11-23 14:23:43"))
    assert record.text() == FACTS_LINE


def test_loguru_default_format_with_milliseconds_and_line_number(log_dir: Path) -> None:
    (log_dir / "content_creator_2025-11-23.log").write_text(FACTS_LINE_MS + "\n")
    record, = logs.read_records(log_dir, None, None)
    assert (record.time, record.level, record.where, record.message) == (
        dt("2025-11-23 15:23:43.123"), "ERROR", "__main__:_error", "Missing package: Tweepy")
    summary = logs.summarize_dir(log_dir, dt("2025-11-23 15:00:00"), dt("2025-11-23 16:00:00"))
    assert summary.by_level["ERROR"] == 1 and summary.total == 1


def test_continuation_lines_belong_to_the_record_above_and_grep_overcounts(log_dir: Path) -> None:
    text = (line("2026-11-20 09:00:00", "INFO", "MarketScannerAgent completed: no errors")
            + line("2026-11-20 09:05:00", "ERROR", "ContentStrategistAgent failed") + "\n".join(TRACEBACK) + "\n"
            + line("2026-11-20 09:06:00", "INFO", "Content list:") + "  - thread about BTC\n  - error budget\n")
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(text)
    records = list(logs.read_records(log_dir, None, None))
    assert [r.level for r in records] == ["INFO", "ERROR", "INFO"]
    assert records[1].message.split("\n")[1:] == TRACEBACK and records[1].exception_line == "KeyError: 'confidence'"
    grep = int(subprocess.run(["grep", "-ci", "error", str(path)], capture_output=True, text=True).stdout)
    summary = logs.summarize_dir(log_dir, dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00"), grep_compare=True)
    assert (summary.errors, summary.grep_error_lines, grep) == (1, 4, 4)  # 1 record; grep counts 4 lines


def test_all_seven_levels_counted_by_the_level_field(log_dir: Path) -> None:
    levels = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text("".join(line(f"2026-11-20 10:{i:02d}:00", level, f"{level.lower()} record")
                            for i, level in enumerate(levels) for _ in range(i + 1)))
    awk = subprocess.run(["awk", "-F", " [|] ", "{gsub(/ /, \"\", $2); n[$2]++} END {for (k in n) print k, n[k]}",
                          str(path)], capture_output=True, text=True, check=True).stdout
    by_awk = {k: int(v) for k, v in (row.split() for row in awk.splitlines())}
    summary = logs.summarize_dir(log_dir, dt("2026-11-20 10:00:00"), dt("2026-11-20 11:00:00"))
    assert summary.by_level == by_awk == {level: i + 1 for i, level in enumerate(levels)}


def test_rotated_zip_under_loguru_name_is_read_and_output_and_error_logs_never_are(log_dir: Path) -> None:
    name = "content_creator_2026-12-02.2026-12-02_09-20-33_298768.log.zip"  # FACTS.md's example
    with zipfile.ZipFile(log_dir / name, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name[:-4], line("2026-12-02 09:00:00", "ERROR", "before the restart"))
    (log_dir / "content_creator_2026-12-02.log").write_text(line("2026-12-02 09:30:00", "INFO", "after it"))
    # the plain-process deployment: stdout again in colour, and stderr
    (log_dir / "output.log").write_text("\x1b[32m2026-12-02 09:30:00\x1b[0m | \x1b[1mINFO    \x1b[0m | "
                                        "src.agents.base_agent:run - after it\n"
                                        + line("2026-12-02 09:00:00", "ERROR", "before the restart"))
    (log_dir / "error.log").write_text("  File \"main.py\", line 3\nSyntaxError: invalid syntax\n")
    parsed = logs.parse_log_name(name)
    assert parsed is not None and parsed.day.isoformat() == "2026-12-02" and parsed.compression == "zip"
    assert logs.parse_log_name("output.log") is None and logs.parse_log_name("error.log") is None
    summary = logs.summarize_dir(log_dir, dt("2026-12-02 00:00:00"), dt("2026-12-03 00:00:00"))
    assert summary.files == [name, "content_creator_2026-12-02.log"]
    assert (summary.total, summary.errors, summary.warning) == (2, 1, "")


def test_a_dir_with_only_output_and_error_logs_is_named_in_a_warning(log_dir: Path) -> None:
    (log_dir / "output.log").write_text(line("2026-12-02 09:00:00", "ERROR", "a copy"))
    (log_dir / "error.log").write_text("SyntaxError: invalid syntax\n")
    summary = logs.summarize_dir(log_dir, dt("2026-12-02 00:00:00"), dt("2026-12-03 00:00:00"))
    assert summary.total == 0
    assert summary.warning.startswith(f"no app log file in {log_dir} (looked for content_creator_YYYY-MM-DD.log, "
                                      "content_creator_YYYY-MM-DD.<rotation time>.log.zip")


AUTUMN = [  # Europe/Amsterdam, 2026-10-25: 03:00 CEST (+2) -> 02:00 CET (+1); (line, its UTC time)
    (line("2026-10-25 01:59:30", "INFO", "CEST"), "2026-10-24 23:59:30"),
    (line("2026-10-25 02:10:00", "ERROR", "first 02:xx, CEST"), "2026-10-25 00:10:00"),
    (line("2026-10-25 02:59:50", "INFO", "first 02:xx, CEST"), "2026-10-25 00:59:50"),
    (line("2026-10-25 02:05:00", "ERROR", "second 02:xx, CET"), "2026-10-25 01:05:00"),
    (line("2026-10-25 02:40:00", "WARNING", "second 02:xx, CET"), "2026-10-25 01:40:00"),
    (line("2026-10-25 03:00:10", "INFO", "CET"), "2026-10-25 02:00:10"),
]
SPRING = [  # Europe/Amsterdam, 2026-03-29: 02:00 CET (+1) -> 03:00 CEST (+2); 02:xx does not exist
    (line("2026-03-29 01:59:59", "INFO", "CET"), "2026-03-29 00:59:59"),
    (line("2026-03-29 02:15:00", "ERROR", "no such local time: read at +1"), "2026-03-29 01:15:00"),
    (line("2026-03-29 03:00:00", "ERROR", "CEST"), "2026-03-29 01:00:00"),
    (line("2026-03-29 03:30:00", "INFO", "CEST"), "2026-03-29 01:30:00"),
]


@pytest.mark.parametrize(("day", "lines", "hours"), [
    ("2026-10-25", AUTUMN, {"2026-10-24 23:00:00": {"INFO": 1}, "2026-10-25 00:00:00": {"ERROR": 1, "INFO": 1},
                            "2026-10-25 01:00:00": {"ERROR": 1, "WARNING": 1}, "2026-10-25 02:00:00": {"INFO": 1}}),
    ("2026-03-29", SPRING, {"2026-03-29 00:00:00": {"INFO": 1}, "2026-03-29 01:00:00": {"ERROR": 2, "INFO": 1}}),
])
def test_local_time_across_both_dst_changes(log_dir: Path, day: str, lines: list, hours: dict) -> None:
    (log_dir / f"content_creator_{day}.log").write_text("".join(text for text, _ in lines))
    zone = logs.zone_named("Europe/Amsterdam")
    records = list(logs.read_records(log_dir, None, None, zone=zone))
    assert [r.time for r in records] == [dt(utc) for _, utc in lines]
    since, until = min(dt(h) for h in hours), max(dt(h) for h in hours).replace(minute=59, second=59)
    expected = {dt(h): c for h, c in hours.items()}
    for found in every_path(log_dir, since, until, "Europe/Amsterdam"):
        assert {h: c for h, c in found.items() if c} == expected
    gaps = [r.written for r in records if r.gap]
    assert gaps == ([dt("2026-03-29 02:15:00")] if day == "2026-03-29" else [])


def test_utc_plus_one_production_clock(log_dir: Path) -> None:
    """FACTS.md: the last record says 15:48:04, the file was written at 14:48:04 UTC."""
    (log_dir / "content_creator_2025-11-23.log").write_text(
        line("2025-11-23 15:48:04", "INFO", "Scheduler stopped", where="__main__:main"))
    for zone in ("Africa/Lagos", "Etc/GMT-1"):
        found = every_path(log_dir, dt("2025-11-23 14:00:00"), dt("2025-11-23 15:00:00"), zone)
        assert all(by_hour == {dt("2025-11-23 14:00:00"): {"INFO": 1}} for by_hour in found)
    assert logs.summarize_dir(log_dir, dt("2025-11-23 14:00:00"), dt("2025-11-23 15:00:00")).total == 0  # read as UTC


def test_a_spring_gap_line_never_stops_the_reader_early(log_dir: Path) -> None:
    """02:15 on 2026-03-29 reads as 01:15 UTC but stands before 03:00 (01:00 UTC) in the file."""
    (log_dir / "content_creator_2026-03-29.log").write_text("".join(text for text, _ in SPRING))
    zone = logs.zone_named("Europe/Amsterdam")
    since, until = dt("2026-03-29 00:30:00"), dt("2026-03-29 01:05:00")
    assert [r.time for r in logs.read_records(log_dir, since, until, zone=zone)] == [
        dt("2026-03-29 00:59:59"), dt("2026-03-29 01:00:00")]
    for found in every_path(log_dir, since, until, "Europe/Amsterdam"):
        assert found == {dt("2026-03-29 00:00:00"): {"INFO": 1}, dt("2026-03-29 01:00:00"): {"ERROR": 1}}
