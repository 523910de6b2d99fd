"""The notebook-facing log checks on hand-made loguru files, windows measured back from as_of."""

from __future__ import annotations

import subprocess
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from ccops.checks import logs as log_checks
from ccops.core.context import RunContext
from ccops.core.findings import Status
from ccops.core.settings import load_settings

AS_OF = datetime(2026, 11, 20, 18, 0, 0)
WHERE = "src.agents.base_agent:run"
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/src/agents/base_agent.py", line 88, in run',
    "    result = await self.execute()",
    "KeyError: 'confidence'",
]


def rec(ts: datetime, level: str, message: str, where: str = WHERE, extra: list[str] | None = None) -> str:
    text = f"{ts:%Y-%m-%d %H:%M:%S} | {level:<8} | {where} - {message}\n"
    return text + "".join(line + "\n" for line in extra or [])


@pytest.fixture
def log_dir(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = ccops_env / "app-logs"
    path.mkdir()
    monkeypatch.setenv("CCOPS_LOG_DIR", str(path))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")  # the files below are written in UTC
    return path


def make_ctx(as_of: datetime = AS_OF) -> RunContext:
    return RunContext(runbook="t", settings=load_settings(), as_of=as_of)


def noise(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """An INFO record every 10 minutes, every third one mentioning an error that is not one."""
    out = []
    ts = start
    while ts < end:
        n = len(out)
        message = "MarketScannerAgent completed scan: no errors" if n % 3 == 0 else "PublishingAgent posted"
        out.append((ts, rec(ts, "INFO", message)))
        ts += timedelta(minutes=10)
    return out


def write_logs(log_dir: Path, records: list[tuple[datetime, str]]) -> None:
    """One file per day as loguru leaves them: earlier days zipped, as_of's day plain."""
    by_day: dict[str, list[tuple[datetime, str]]] = {}
    for ts, text in records:
        by_day.setdefault(f"{ts:%Y-%m-%d}", []).append((ts, text))
    for day, items in by_day.items():
        text = "".join(t for _, t in sorted(items, key=lambda item: item[0]))
        name = f"content_creator_{day}.log"
        if day == f"{AS_OF:%Y-%m-%d}":
            (log_dir / name).write_text(text)
        else:
            with zipfile.ZipFile(log_dir / (name + ".zip"), "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(name, text)


def burst(n: int) -> list[tuple[datetime, str]]:
    """n ERROR records between 10:00 and 10:59 on as_of's day, every other one with a traceback."""
    out = []
    for i in range(n):
        ts = datetime(2026, 11, 20, 10, 0, 0) + timedelta(minutes=i * 59 // max(n, 1), seconds=i)
        out.append((ts, rec(ts, "ERROR", f"AnalysisAgent failed: attempt {i}", extra=TRACEBACK if i % 2 else None)))
    return out


def a_day(errors_in_burst: int) -> list[tuple[datetime, str]]:
    records = noise(AS_OF - timedelta(hours=24), AS_OF)
    records += burst(errors_in_burst)
    records += [
        (datetime(2026, 11, 19, 23, 30), rec(datetime(2026, 11, 19, 23, 30), "ERROR", "PublishingAgent failed: 503")),
        (datetime(2026, 11, 20, 3, 15), rec(datetime(2026, 11, 20, 3, 15), "ERROR", "ConversionAgent failed: timeout")),
        # just outside the window on both sides: never counted
        (AS_OF - timedelta(hours=24, seconds=1), rec(AS_OF - timedelta(hours=24, seconds=1), "CRITICAL", "too early")),
        (AS_OF, rec(AS_OF, "CRITICAL", "at as_of: too late")),
    ]
    return records


@pytest.mark.parametrize(("burst_size", "status", "threshold"), [
    (11, Status.CRITICAL, 10.0), (6, Status.WARNING, 5.0), (5, Status.OK, 5.0),
])
def test_errors_per_hour_against_the_guides_thresholds(log_dir: Path, burst_size: int, status: Status,
                                                      threshold: float) -> None:
    write_logs(log_dir, a_day(burst_size))
    ctx = make_ctx()
    found = log_checks.error_review(ctx)
    per_hour = found.by_check("logs.errors_per_hour")[0]
    assert per_hour.status == status
    assert per_hour.value == burst_size and per_hour.threshold == threshold
    assert "2026-11-20 10:00-11:00 UTC" in per_hour.summary
    frame = per_hour.data
    assert len(frame) == 24 and int(frame["errors"].sum()) == burst_size + 2
    figure = per_hour.chart.figure(per_hour.data)
    assert isinstance(figure, Figure)
    axis = figure.axes[0]
    assert len(axis.patches) == 24  # one bar per hour
    assert sorted(line.get_ydata()[0] for line in axis.lines) == [5.0, 10.0]  # the two limits
    review = found.by_check("logs.error_review")[0]
    exceptions = burst_size // 2
    # tracebacks, no CRITICAL in window: evidence (the hour's error count above grades them)
    assert review.status == Status.INFO and review.value == exceptions
    assert f"0 CRITICAL records and {exceptions} exception{'s' if exceptions != 1 else ''} in" in review.summary
    assert f"KeyError: 'confidence' ({exceptions}x)" in review.summary
    assert list(review.data["exception"].unique()) == ["KeyError: 'confidence'"]
    assert [f.check for f in ctx.findings] == ["logs.error_review", "logs.errors_per_hour"]  # recorded for the run


def test_error_review_lists_critical_records_and_exceptions(log_dir: Path) -> None:
    records = a_day(2) + [
        (datetime(2026, 11, 20, 12, 0), rec(datetime(2026, 11, 20, 12, 0), "CRITICAL", "Database unreachable")),
        (datetime(2026, 11, 20, 13, 0), rec(datetime(2026, 11, 20, 13, 0), "WARNING", "retrying",
                                            extra=TRACEBACK[:3] + ["TimeoutError: slow"])),
    ]
    write_logs(log_dir, records)
    review = log_checks.error_review(make_ctx()).by_check("logs.error_review")[0]
    assert review.status == Status.CRITICAL
    table = review.data
    assert list(table["kind"]) == ["exception", "critical", "exception"]  # newest first
    assert list(table["level"]) == ["WARNING", "CRITICAL", "ERROR"]
    assert table["exception"].iloc[0] == "TimeoutError: slow"
    assert review.summary.startswith("1 CRITICAL record and 2 exceptions in the last 24 h")


def test_recent_errors_newest_first_with_limit(log_dir: Path) -> None:
    write_logs(log_dir, a_day(4))
    found = log_checks.recent_errors(make_ctx(), limit=3)
    finding = found[0]
    # 4 in the burst + 2 more, none of the INFO "no errors" lines; the worst hour has 4: within 5/h
    assert finding.check == "logs.recent_errors" and finding.status == Status.INFO
    assert (finding.value, finding.threshold) == (4, 5.0)
    assert list(finding.data.columns) == ["time", "local_time", "level", "where", "message"]
    assert list(finding.data["message"]) == ["AnalysisAgent failed: attempt 3", "AnalysisAgent failed: attempt 2",
                                             "AnalysisAgent failed: attempt 1"]
    assert "6 error records in the last 24 h (6 ERROR, 0 CRITICAL)" in finding.summary


def test_recent_errors_status_follows_the_worst_level(log_dir: Path) -> None:
    write_logs(log_dir, noise(AS_OF - timedelta(hours=24), AS_OF))
    assert log_checks.recent_errors(make_ctx())[0].status == Status.OK
    write_logs(log_dir, noise(AS_OF - timedelta(hours=24), AS_OF)
               + [(datetime(2026, 11, 20, 9, 0), rec(datetime(2026, 11, 20, 9, 0), "CRITICAL", "disk full"))])
    finding = log_checks.recent_errors(make_ctx())[0]
    # one record in its hour: evidence, not an alarm (error_review grades CRITICAL records)
    assert finding.status == Status.INFO and finding.value == 1
    assert "in src.agents.base_agent:run: disk full" in finding.summary


def test_rate_limit_events_per_api_and_agent(log_dir: Path) -> None:
    at = datetime(2026, 11, 20, 10, 0)
    records = noise(AS_OF - timedelta(hours=24), AS_OF) + [
        (at, rec(at, "WARNING", "Rate limit hit for X API in PublishingAgent: x-rate-limit-remaining=0 "
                               "reset at 2026-11-20 18:15:00")),
        (at + timedelta(minutes=5), rec(at + timedelta(minutes=5), "WARNING",
                                        "Rate limit hit for X API in PublishingAgent: x-rate-limit-remaining=0 "
                                        "reset at 2026-11-20 10:20:00")),
        (at + timedelta(minutes=7), rec(at + timedelta(minutes=7), "WARNING",
                                        "Rate limit hit for Anthropic API (HTTP 429) in AnalysisAgent: retry-after=30")),
    ]
    write_logs(log_dir, records)
    finding = log_checks.rate_limit_events_check(make_ctx())[0]
    assert finding.check == "apis.rate_limit_events" and finding.status == Status.WARNING
    assert finding.value == 3
    table = finding.data
    assert table[["api", "agent", "events"]].values.tolist() == [["x", "PublishingAgent", 2],
                                                                 ["anthropic", "AnalysisAgent", 1]]
    assert str(table["latest_reset_at"].iloc[0]) == "2026-11-20 18:15:00"
    assert "still limited: x until 18:15:00 UTC" in finding.summary

    write_logs(log_dir, noise(AS_OF - timedelta(hours=24), AS_OF))
    ok = log_checks.rate_limit_events_check(make_ctx())[0]
    assert ok.status == Status.OK and ok.value == 0


def test_log_summary_shows_what_grep_would_have_counted(log_dir: Path) -> None:
    start = datetime(2026, 11, 20, 0, 0)  # one plain file, every line inside the window
    records = noise(start, AS_OF) + burst(6) + [
        (datetime(2026, 11, 20, 12, 0), rec(datetime(2026, 11, 20, 12, 0), "CRITICAL", "Database unreachable"))]
    write_logs(log_dir, records)
    path = log_dir / "content_creator_2026-11-20.log"
    grep = int(subprocess.run(["grep", "-ci", "error", str(path)], capture_output=True, text=True).stdout)
    finding = log_checks.log_summary(make_ctx())[0]
    assert finding.check == "logs.summary" and finding.status == Status.INFO
    assert finding.value == 7  # 6 ERROR + 1 CRITICAL records
    assert grep == 6 + 3 + 36  # ERROR headers, KeyError traceback lines, INFO "no errors" lines
    assert f"would say {grep}" in finding.summary
    assert f"{grep - 6} lines that merely mention" in finding.summary
    levels = dict(finding.data[["level", "records"]].values.tolist())
    assert levels == {"TRACE": 0, "DEBUG": 0, "INFO": 108, "SUCCESS": 0, "WARNING": 0, "ERROR": 6, "CRITICAL": 1}


def test_empty_log_dir_gives_clean_findings(log_dir: Path) -> None:
    (log_dir / "content_creator_2026-11-10.log").write_text("")  # the app's file, long before the window
    ctx = make_ctx()
    assert log_checks.recent_errors(ctx)[0].status == Status.OK
    found = log_checks.error_review(ctx)
    assert [f.status for f in found] == [Status.OK, Status.OK]
    assert found[1].value == 0
    assert log_checks.log_summary(ctx)[0].value == 0
    assert log_checks.rate_limit_events_check(ctx)[0].status == Status.OK


def test_missing_log_dir_is_unknown_never_raised(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = ccops_env / "nowhere"
    monkeypatch.setenv("CCOPS_LOG_DIR", str(missing))
    ctx = make_ctx()
    found = [
        *log_checks.recent_errors(ctx), *log_checks.error_review(ctx),
        *log_checks.rate_limit_events_check(ctx), *log_checks.log_summary(ctx),
    ]
    assert [f.check for f in found] == ["logs.recent_errors", "logs.error_review", "logs.errors_per_hour",
                                        "apis.rate_limit_events", "logs.summary"]
    assert all(f.status == Status.UNKNOWN for f in found)
    assert all(f.summary == f"no logs to read: log dir {missing} does not exist" for f in found)
    assert len(ctx.findings) == 5


def test_compose_backend_without_docker_is_unknown(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCOPS_BACKEND", "compose")
    monkeypatch.setenv("CCOPS_LOG_DIR", str(ccops_env / "nowhere"))
    monkeypatch.setenv("PATH", str(ccops_env / "empty-bin"))
    finding = log_checks.recent_errors(make_ctx())[0]
    assert finding.status == Status.UNKNOWN and "docker not found" in finding.summary


def test_errors_by_day_for_the_weekly_review(log_dir: Path) -> None:
    records = a_day(6)  # 8 errors in the day before as_of (6 in one hour), 1 CRITICAL just before it
    for day in (15, 17):
        ts = datetime(2026, 11, day, 9, 30)
        records.append((ts, rec(ts, "ERROR", "PublishingAgent failed: 503", extra=TRACEBACK)))
    ts = datetime(2026, 11, 13, 17, 59)  # before the week: not counted
    records.append((ts, rec(ts, "ERROR", "too old")))
    write_logs(log_dir, records)
    (finding,) = log_checks.errors_by_day(make_ctx(), days=7)
    assert finding.check == "logs.errors_by_day"
    assert finding.value == 11 and finding.status == Status.WARNING  # one hour above 5/h
    table = finding.data
    assert [f"{d:%m-%d}" for d in table["day"]] == [f"11-{d}" for d in range(13, 21)]  # 18:00 .. 18:00 spans 8 days
    assert dict(zip([f"{d:%d}" for d in table["day"]], table["errors"], strict=True)) == {
        "13": 0, "14": 0, "15": 1, "16": 0, "17": 1, "18": 0, "19": 2, "20": 7}
    assert int(table["worst_hour_errors"].max()) == 6
    assert "most on 2026-11-20 (7)" in finding.summary and "1 hour above 5 errors/h" in finding.summary
    assert isinstance(finding.figure, Figure)


def test_loguru_default_format_records_are_counted_and_listed(log_dir: Path) -> None:
    """`{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}`: what an
    app gets from loguru when it sets no format."""
    records = noise(AS_OF - timedelta(hours=24), AS_OF)
    ms = [(datetime(2026, 11, 20, 8, 0, 0, 123000),
           "2026-11-20 08:00:00.123 | ERROR    | src.api_integrations.twitter_api:post_tweet:42 - "
           "Failed to post tweet: 429 Too Many Requests\n"),
          (datetime(2026, 11, 20, 9, 30, 0, 5000),
           "2026-11-20 09:30:00.005 | CRITICAL | src.database.connection:get_db:17 - Database unreachable\n"
           + "".join(line + "\n" for line in TRACEBACK))]
    write_logs(log_dir, records + ms)
    ctx = make_ctx()
    recent = log_checks.recent_errors(ctx)[0]
    assert recent.value == 1 and recent.status == Status.INFO  # one error in each of two hours
    assert "2 error records in the last 24 h (1 ERROR, 1 CRITICAL)" in recent.summary
    assert list(recent.data["message"]) == ["Database unreachable", "Failed to post tweet: 429 Too Many Requests"]
    assert list(recent.data["where"]) == ["src.database.connection:get_db", "src.api_integrations.twitter_api:post_tweet"]
    review = log_checks.error_review(ctx)
    assert review[0].value == 2 and "1 CRITICAL record and 1 exception" in review[0].summary
    assert review[1].value == 1  # one error record in the worst hour
    summary = log_checks.log_summary(ctx)[0]
    assert summary.value == 2 and "(1 ERROR, 1 CRITICAL)" in summary.summary
    events = log_checks.rate_limit_events_check(ctx)[0]
    assert events.value == 1 and "x 1" in events.summary


def test_recent_errors_quotes_a_line_masked_before_it_is_cut(log_dir: Path, ccops_env: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret known only from the app's .env, straddling the 120-character cut, leaves no prefix behind:
    the archive's scrubber sees the whole value only if the summary never cut it first."""
    secret = "Qm9vLk7tRw2xYz5aBcD"
    env_file = ccops_env / "app.env"
    env_file.write_text(f"BINANCE_API_SECRET={secret}\n")
    monkeypatch.setenv("CCOPS_APP_ENV_FILE", str(env_file))
    message = "Binance client failed to sign with " + "x" * 70 + " secret " + secret
    assert message.index(secret) < 120 < message.index(secret) + len(secret)
    at = datetime(2026, 11, 20, 9, 0)
    write_logs(log_dir, noise(AS_OF - timedelta(hours=24), AS_OF) + [(at, rec(at, "ERROR", message))])
    summary = log_checks.recent_errors(make_ctx())[0].summary
    assert "secret ***" in summary and secret[:6] not in summary


def errors_at(hour: datetime, n: int) -> list[tuple[datetime, str]]:
    """n ERROR records inside one hour, as the app's clients log failures (FACTS.md)."""
    out = []
    for i in range(n):
        ts = hour + timedelta(minutes=i * 50 // max(n, 1), seconds=i)
        out.append((ts, rec(ts, "ERROR", f"Failed to post tweet: 503 Service Unavailable ({i})",
                            where="src.api_integrations.twitter_api:post_tweet")))
    return out


def test_one_error_a_day_is_evidence_not_a_daily_warning(log_dir: Path) -> None:
    """Issue 14.4: a single ERROR in 24 h used to make recent_errors a WARNING (and a daily alert,
    every day). The guide's levels are errors per hour: over 5 warning, over 10 critical."""
    quiet = noise(AS_OF - timedelta(hours=24), AS_OF)
    write_logs(log_dir, quiet + errors_at(datetime(2026, 11, 20, 9, 0), 1))
    finding = log_checks.recent_errors(make_ctx())[0]
    assert finding.status == Status.INFO and (finding.value, finding.threshold) == (1, 5.0)
    assert "worst hour 2026-11-20 09:00 UTC had 1, within the warning limit of 5/h" in finding.summary
    spread = [e for h in range(6) for e in errors_at(datetime(2026, 11, 20, 2 + h, 0), 5)]  # 30 errors, 5 an hour
    write_logs(log_dir, quiet + spread)
    assert log_checks.recent_errors(make_ctx())[0].status == Status.INFO
    for n, status, threshold in ((6, Status.WARNING, 5.0), (11, Status.CRITICAL, 10.0)):
        write_logs(log_dir, quiet + errors_at(datetime(2026, 11, 20, 9, 0), n))
        finding = log_checks.recent_errors(make_ctx())[0]
        assert (finding.status, finding.value, finding.threshold) == (status, n, threshold)


def test_recent_errors_thresholds_come_from_the_settings(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCOPS_THRESHOLDS_ERRORS_PER_HOUR_WARNING", "2")
    monkeypatch.setenv("CCOPS_THRESHOLDS_ERRORS_PER_HOUR_CRITICAL", "3")
    write_logs(log_dir, noise(AS_OF - timedelta(hours=24), AS_OF) + errors_at(datetime(2026, 11, 20, 9, 0), 3))
    finding = log_checks.recent_errors(make_ctx())[0]
    assert (finding.status, finding.threshold) == (Status.WARNING, 2.0)


def test_a_log_dir_without_app_log_files_is_a_warning(log_dir: Path) -> None:
    """Issue 13.8: pointed at a dir with none of the app's files (the parent of the real one, or only
    the plain-process output.log / error.log), every log step said 0 records, OK."""
    (log_dir / "output.log").write_text("2026-11-20 09:00:00 | ERROR    | __main__:main - in colour, a copy\n")
    (log_dir / "error.log").write_text("SyntaxError: invalid syntax\n")
    (log_dir / "logs").mkdir()
    ctx = make_ctx()
    found = (log_checks.recent_errors(ctx) + log_checks.error_review(ctx) + log_checks.log_summary(ctx)
             + log_checks.errors_by_day(ctx))
    assert [f.check for f in found] == ["logs.recent_errors", "logs.error_review", "logs.errors_per_hour",
                                        "logs.summary", "logs.errors_by_day"]
    for finding in found:
        assert finding.status == Status.WARNING
        assert finding.summary.startswith(f"no app log file in {log_dir} (looked for content_creator_YYYY-MM-DD.log")


def test_errors_in_the_last_hour_at_utc_plus_one(log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production ran at UTC+1: 7 errors written 00:05-00:55 local on the 20th are 23:05-23:55 UTC on the
    19th, the last hour before as_of 2026-11-20T00:00Z. Read as UTC they fell outside that hour."""
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "Africa/Lagos")
    lines = "".join(rec(datetime(2026, 11, 20, 0, 5 + 8 * i), "ERROR", f"Failed to post tweet: 503 ({i})",
                        where="src.api_integrations.twitter_api:post_tweet") for i in range(7))
    (log_dir / "content_creator_2026-11-20.log").write_text(lines)  # the LOCAL date names the file
    (log_dir / "content_creator_2026-11-19.log").write_text(rec(datetime(2026, 11, 19, 23, 59), "INFO", "quiet"))
    ctx = make_ctx(datetime(2026, 11, 20, 0, 0))
    per_hour = log_checks.error_review(ctx, hours=1).by_check("logs.errors_per_hour")[0]
    assert (per_hour.status, per_hour.value) == (Status.WARNING, 7)
    assert "worst hour 2026-11-19 23:00-00:00 UTC (00:00-01:00 Africa/Lagos) had 7 error records" in per_hour.summary
    recent = log_checks.recent_errors(ctx)[0]
    assert recent.status == Status.WARNING and recent.value == 7
    assert "latest 2026-11-19 23:53 UTC (00:53 Africa/Lagos)" in recent.summary
    first = recent.data.iloc[0]
    assert (first["time"], first["local_time"]) == (datetime(2026, 11, 19, 23, 53), datetime(2026, 11, 20, 0, 53))
