"""The LogFormat seam: formats are modules of ccops/logs/formats, each read from its one description.

The loguru-default file below is written by hand exactly as loguru's default format prints
(`{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}`,
a traceback after the record that raised, ending with an empty line), and every figure
ccops gives for it is checked against what awk and grep count on the same file.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from ccops import logs
from ccops.cli import main
from ccops.core.settings import load_settings
from ccops.logs import fastcount, ratelimit

TRACEBACK = [
    "Traceback (most recent call last):",
    "",
    '  File "/app/main.py", line 88, in <module>',
    "    asyncio.run(main())",
    '  File "/app/src/api_integrations/twitter_api.py", line 57, in post_tweet',
    "    response = self.client.create_tweet(text=text)",
    "",
    "tweepy.errors.TooManyRequests: 429 Too Many Requests",
    "",
]
# loguru's default format, as it prints, in the host's local time (UTC here)
LOGURU_DEFAULT = "\n".join([
    "2026-11-20 09:00:01.204 | INFO     | __main__:main:41 - Scheduler started, no errors at start",
    "2026-11-20 09:00:02.918 | DEBUG    | src.api_integrations.twitter_api:_request:112 - 200 OK x-rate-limit-remaining=12",
    "2026-11-20 09:14:59.001 | ERROR    | src.api_integrations.twitter_api:post_tweet:57 - Failed to post tweet: 429 Too Many Requests",
    *TRACEBACK,
    "2026-11-20 09:15:00.000 | WARNING  | src.agents.publishing_agent:execute:73 - PublishingAgent retrying after error",
    "2026-11-20 09:59:59.999 | CRITICAL | src.database.connection:get_db:30 - Database connection pool exhausted",
    "2026-11-20 10:00:00.000 | SUCCESS  | src.agents.publishing_agent:publish:90 - Published post 1861 to X",
    "2026-11-20 10:20:31.552 | ERROR    | src.api_integrations.exchange_api:get_ticker_24h:44 - Binance error: Too many requests",
    "2026-11-20 10:20:32.010 | INFO     | src.agents.market_scanner:execute:120 - Top movers:",
    "  - BTC: +1.20%",
    "  - error budget: 3%",
    "2026-11-20 11:45:00.250 | TRACE    | src.agents.base_agent:run:12 - tick",
    "2026-11-20 11:59:59.500 | ERROR    | src.agents.analysis_agent:execute:201 - AnalysisAgent failed: timeout",
    "",
])
# the records' levels by position in the file (what awk reads from the level field)
D = "[0-9]"
AWK_LEVELS = ('BEGIN { FS = " [|] " } '  # no {n} intervals: mawk has none
              f'/^{D * 4}-{D * 2}-{D * 2} {D * 2}:{D * 2}:{D * 2}[.]{D * 3} [|] / '
              '{ gsub(/ /, "", $2); print substr($1, 1, 13), $2 }')


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def awk_records(path: Path) -> list[tuple[str, str]]:
    """(YYYY-MM-DD HH, level) of every header line, as awk reads them."""
    out = subprocess.run(["awk", AWK_LEVELS, str(path)], capture_output=True, text=True, check=True).stdout
    return [(line[:13], line[14:]) for line in out.splitlines()]


def grep_count(pattern: str, path: Path, *flags: str) -> int:
    proc = subprocess.run(["grep", "-c", *flags, pattern, str(path)], capture_output=True, text=True)
    return int(proc.stdout.strip() or 0)


def test_both_formats_are_found_in_the_formats_package() -> None:
    found = logs.all_formats()
    assert {"contentcreator", "loguru_default"} <= set(found)
    assert logs.default_format() is found["contentcreator"] is logs.format_named("")
    assert found["loguru_default"].layouts == (
        "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}",)
    with pytest.raises(logs.LogSourceError, match=r"unknown log format 'syslog' \(logs.format\): expected one of "
                                                  r"contentcreator, loguru_default"):
        logs.format_named("syslog")


def test_loguru_default_lines_count_like_awk_and_grep(log_dir: Path) -> None:
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(LOGURU_DEFAULT)
    fmt = logs.format_named("loguru_default")
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    by_awk = awk_records(path)
    assert len(by_awk) == 10  # header lines only: the traceback and the list are no records
    awk_levels = {level: sum(1 for _, lv in by_awk if lv == level) for level in logs.LEVELS}
    awk_errors_per_hour = {}
    for hour, level in by_awk:
        if level in logs.ERROR_LEVELS:
            awk_errors_per_hour[dt(hour + ":00:00")] = awk_errors_per_hour.get(dt(hour + ":00:00"), 0) + 1

    for block_size, workers in ((logs.BLOCK_SIZE, 1), (logs.BLOCK_SIZE, 2), (256, 2)):
        summary = logs.summarize_dir(log_dir, since, until, grep_compare=True, fmt=fmt, block_size=block_size,
                                     workers=workers)
        assert summary.by_level == awk_levels
        frame = summary.errors_per_hour()
        assert {h.to_pydatetime(): n for h, n in zip(frame["hour"], frame["errors"], strict=True) if n} \
            == awk_errors_per_hour == {dt("2026-11-20 09:00:00"): 2, dt("2026-11-20 10:00:00"): 1,
                                       dt("2026-11-20 11:00:00"): 1}
        assert summary.grep_error_lines == grep_count("error", path, "-i") == 7
    lines = logs.count_levels(logs.open_text(path), since, until, fmt=fmt)
    records = list(logs.read_records(log_dir, since, until, fmt=fmt))
    assert lines.by_level == awk_levels == logs.summarize(records, since, until).by_level

    failed = records[2]
    assert (failed.time, failed.level, failed.name, failed.function) == (
        dt("2026-11-20 09:14:59.001"), "ERROR", "src.api_integrations.twitter_api", "post_tweet")
    assert failed.message.split("\n") == ["Failed to post tweet: 429 Too Many Requests", *TRACEBACK[:-1]]
    assert failed.exception_line == "tweepy.errors.TooManyRequests: 429 Too Many Requests"

    # 429 events: the ERROR header lines grep finds by "429 | too many requests", never the DEBUG quota line
    events = ratelimit.rate_limit_events(logs.read_records(log_dir, since, until, fmt=fmt,
                                                           select=ratelimit.select_events(fmt.ratelimit)),
                                         fmt.ratelimit)
    grep_events = subprocess.run(["grep", "-Eic", r"^[0-9-]+ [0-9:.]+ \| (WARNING|ERROR|CRITICAL) +\| .*"
                                  r"(429|too many requests)", str(path)], capture_output=True, text=True).stdout
    assert len(events) == int(grep_events) == 2
    assert list(events["client"]) == ["twitter_api", "exchange_api"]
    assert grep_count("x-rate-limit-remaining", path) == 1  # there, and not an event
    quota = ratelimit.quota_readings(logs.read_records(log_dir, since, until, fmt=fmt), fmt.ratelimit)
    assert list(quota["remaining"]) == [12]


def test_each_format_reads_only_its_own_headers(log_dir: Path) -> None:
    """Selected, loguru's default format reads the app's lines as continuation lines (and the app's format
    reads both: a sink without a format writes loguru's default into the same files)."""
    app_line = "2026-11-20 09:30:00 | ERROR    | __main__:_error - Missing package: Tweepy\n"
    (log_dir / "content_creator_2026-11-20.log").write_text(LOGURU_DEFAULT + app_line)
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00")
    strict = logs.summarize_dir(log_dir, since, until, fmt=logs.format_named("loguru_default"))
    both = logs.summarize_dir(log_dir, since, until)
    assert (strict.total, both.total) == (10, 11)
    last = list(logs.read_records(log_dir, since, until, fmt=logs.format_named("loguru_default")))[-1]
    assert last.message == "AnalysisAgent failed: timeout\n" + app_line.rstrip("\n")


def test_the_setting_logs_format_selects_the_format(ccops_env: Path, log_dir: Path, monkeypatch, capsys) -> None:
    (log_dir / "content_creator_2026-11-20.log").write_text(
        LOGURU_DEFAULT + "2026-11-20 09:30:00 | ERROR    | __main__:_error - Missing package: Tweepy\n")
    monkeypatch.setenv("CCOPS_LOG_DIR", str(log_dir))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")
    assert load_settings().logs_format == "contentcreator"
    argv = ["logs", "summary", "--since", "2026-11-20T00:00:00Z", "--until", "2026-11-21T00:00:00Z", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 11
    monkeypatch.setenv("CCOPS_LOGS_FORMAT", "loguru_default")
    settings = load_settings()
    assert logs.format_for(settings) is logs.format_named("loguru_default")
    assert ratelimit.rules_for(settings) is ratelimit.RULES
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 10
    records = list(logs.records_for_settings(settings, dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00"),
                                             select=logs.select_levels({"ERROR"})))
    assert len(records) == 3 and records[-1].message.endswith("Missing package: Tweepy")
    monkeypatch.setenv("CCOPS_LOGS_FORMAT", "syslog")
    with pytest.raises(logs.LogSourceError, match="unknown log format 'syslog'"):
        logs.summary_for_settings(load_settings(), dt("2026-11-20 00:00:00"), dt("2026-11-21 00:00:00"))


def test_a_new_format_is_its_description_only(log_dir: Path) -> None:
    """Another header (other separators, 6-digit fractions, no line): every path is derived from it, numpy's too."""
    fmt = logs.LogFormat(
        name="pipes", layouts=("{time:YYYY-MM-DD HH:mm:ss.SSSSSS} :: {level: <8} :: {name}:{function} >> {message}",),
        files=logs.APP_FILES, ratelimit=ratelimit.RULES)
    layout, = fmt.compiled
    lines = [layout.header(f"2026-11-20 {h:02d}:{m:02d}:00.{m:06d}", level, "src.x", "run", f"message {m}")
             for h in range(6) for m, level in enumerate(["INFO", "ERROR", "DEBUG", "ERROR", "CRITICAL"] * 3)]
    text = "\n".join(line + ("\n  continuation with an error" if i % 4 == 0 else "") for i, line in enumerate(lines))
    path = log_dir / "content_creator_2026-11-20.log"
    path.write_text(text + "\n")
    since, until = dt("2026-11-20 00:00:00"), dt("2026-11-20 06:00:00")
    reference = logs.count_levels(logs.open_text(path), since, until, fmt=fmt, grep_compare=True)
    assert reference.by_level["ERROR"] == 6 * 6 and reference.total == len(lines)
    for block_size in (logs.BLOCK_SIZE, 300):
        fast = logs.summarize_dir(log_dir, since, until, fmt=fmt, block_size=block_size, grep_compare=True)
        assert (fast.by_hour, fast.grep_error_lines) == (reference.by_hour, reference.grep_error_lines)
    assert fast.grep_error_lines == grep_count("error", path, "-i")
    record = next(iter(logs.read_records(log_dir, since, until, fmt=fmt, select=logs.select_levels({"CRITICAL"}))))
    assert (record.time, record.where, record.message) == (
        dt("2026-11-20 00:04:00.000004"), "src.x:run", "message 4\n  continuation with an error")
    data = bytearray(path.read_bytes())
    assert fastcount.classify(fmt, data, len(data)) is not None  # the vector path classified every header itself
    assert fmt.level_needles("ERROR") == (b" :: ERROR    :: ",)
    assert logs.default_format().level_of(lines[0], len(lines[0])) is None  # not the app's header


@pytest.mark.parametrize(("layouts", "problem"), [
    (("{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {name}:{function} - {message}",
      "{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {name}:{function}:{line} - {message}"), "can match the same line"),
    (("{time:DD.MM.YYYY HH:mm} | {level: <8} | {name}:{function} - {message}",), "the time must be"),
    (("{time:YYYY-MM-DD HH:mm:ss} {level} {message}",), "padded"),
    (("{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {module} - {message}",), "before the message"),
])
def test_descriptions_the_fast_paths_cannot_derive_are_refused(layouts: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        logs.LogFormat(name="bad", layouts=layouts, files=logs.APP_FILES, ratelimit=ratelimit.RULES)
