"""The run's log window read once by a helper process and answered from its snapshot in the kernel.

The findings from the snapshot must be the findings the kernel would have made reading the logs
itself; a question the helper did not ask, or files that changed under it, are read as always.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ccops import logs
from ccops.checks import logs as log_checks
from ccops.core.findings import Finding
from ccops.logs import ratelimit, snapshot
from ccops.logs import source as log_source
from ccops.runbook import prefetch
from tests.test_log_checks import AS_OF, TRACEBACK, make_ctx, noise, rec, write_logs

REPO = Path(__file__).resolve().parent.parent
DAILY = REPO / "runbooks" / "daily.ipynb"


@pytest.fixture
def log_dir(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = ccops_env / "app-logs"
    path.mkdir()
    monkeypatch.setenv("CCOPS_LOG_DIR", str(path))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")  # the files are written in UTC
    return path


def a_day() -> list[tuple[datetime, str]]:
    records = noise(AS_OF - timedelta(hours=30), AS_OF)
    for i in range(12):
        ts = AS_OF - timedelta(hours=20) + timedelta(minutes=37 * i, seconds=i)
        level = "CRITICAL" if i == 5 else "ERROR"
        records.append((ts, rec(ts, level, f"AnalysisAgent failed: attempt {i}", extra=TRACEBACK if i % 3 else None)))
    ts = AS_OF - timedelta(hours=2)
    records.append((ts, rec(ts, "ERROR", "Failed to post tweet: 429 Too Many Requests",
                            where="src.api_integrations.twitter_api:post_tweet")))
    return records


def daily_log_findings() -> list[tuple[Any, ...]]:
    """The daily runbook's three log steps, as plain data to compare (tables included)."""
    ctx = make_ctx()
    found: list[Finding] = []
    found += log_checks.recent_errors(ctx, limit=20)
    found += log_checks.rate_limit_events_check(ctx)
    found += log_checks.error_review(ctx)
    return [(f.check, str(f.status), f.summary, f.value, f.threshold,
             None if f.data is None else f.data.to_csv()) for f in found]


def take_snapshot(tmp_path: Path) -> Path:
    target = tmp_path / "logs.snapshot"
    prefetch.prefetch(DAILY, {"as_of": AS_OF.isoformat(), "part": "all", "error_limit": 20}, target)
    return target


def forbid_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("read the logs although the snapshot holds the answer")

    monkeypatch.setattr(log_source, "read_records", refuse)
    monkeypatch.setattr(log_source, "summarize_dir", refuse)


def test_the_daily_runbooks_log_steps_are_found_in_order() -> None:
    plan = prefetch.log_steps(DAILY)
    assert plan[0] == ("section", "morning")
    steps = [name for kind, name in plan if kind == "step"]
    assert steps == ["recent_errors", "rate_limit_events_check", "error_review"]
    assert ("section", "evening") in plan


def test_findings_from_the_snapshot_are_the_findings_read_directly(log_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_logs(log_dir, a_day())
    direct = daily_log_findings()
    target = take_snapshot(tmp_path)
    assert target.is_file()
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    forbid_reading(monkeypatch)  # every answer comes from the snapshot
    assert daily_log_findings() == direct
    assert any(f[0] == "logs.error_review" and f[1] == "CRITICAL" for f in direct)  # the day has something to find


def test_a_replaced_file_is_read_again(log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_logs(log_dir, a_day())
    target = take_snapshot(tmp_path)
    today = log_dir / f"content_creator_{AS_OF:%Y-%m-%d}.log"
    ts = AS_OF - timedelta(minutes=30)
    replaced = today.with_suffix(".new")
    replaced.write_text(today.read_text() + rec(ts, "CRITICAL", "database is gone"))
    os.replace(replaced, today)  # a new inode: what the snapshot knows is no longer this file
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    with_snapshot = daily_log_findings()
    monkeypatch.delenv(snapshot.SNAPSHOT_ENV)
    assert with_snapshot == daily_log_findings()
    assert any("database is gone" in str(f[5]) for f in with_snapshot)


def test_a_file_that_only_grew_keeps_the_window_as_read(log_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_logs(log_dir, a_day())
    direct = daily_log_findings()
    target = take_snapshot(tmp_path)
    today = log_dir / f"content_creator_{AS_OF:%Y-%m-%d}.log"
    with open(today, "a") as handle:  # the app appends after as_of: outside the window anyway
        handle.write(rec(AS_OF + timedelta(seconds=5), "ERROR", "after the run started"))
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    forbid_reading(monkeypatch)
    assert daily_log_findings() == direct


def test_other_questions_are_read_as_always(log_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_logs(log_dir, a_day())
    target = take_snapshot(tmp_path)
    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    settings = make_ctx().settings
    since, until = AS_OF - timedelta(hours=24), AS_OF
    other = logs.select_levels({"WARNING"})  # not asked by the helper
    assert list(logs.records_for_settings(settings, since, until, [], other)) == list(
        logs.read_records(log_dir, since, until, [], other, zone=logs.zone_for(settings)))
    wider = logs.summary_for_settings(settings, since - timedelta(hours=24), until)  # another window
    assert wider.total == logs.summarize_dir(log_dir, since - timedelta(hours=24), until).total
    assert wider.total > logs.summary_for_settings(settings, since, until).total


def test_a_missing_or_broken_snapshot_means_reading_the_logs(log_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write_logs(log_dir, a_day())
    direct = daily_log_findings()
    broken = tmp_path / "broken.snapshot"
    broken.write_bytes(b"not a pickle")
    for target in (tmp_path / "never-written.snapshot", broken):
        monkeypatch.setattr(snapshot, "_loaded", {})
        monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
        assert daily_log_findings() == direct


def test_selection_keys_name_what_is_selected() -> None:
    errors = logs.select_levels(logs.ERROR_LEVELS, tracebacks=True)
    events = ratelimit.select_events(ratelimit.RULES)
    assert errors.key == logs.select_levels(set(logs.ERROR_LEVELS), tracebacks=True).key
    assert errors.key != logs.select_levels(logs.ERROR_LEVELS).key
    assert logs.select_any(errors, events).key == logs.select_any(
        logs.select_levels(logs.ERROR_LEVELS, tracebacks=True), ratelimit.select_events(ratelimit.RULES)).key
    assert logs.select_any(errors, lambda level, lines: True).key is None  # a bare function: no key, never shared


def test_the_kernel_waits_for_the_helper_holding_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl
    import threading

    target = tmp_path / "logs.snapshot"
    fd = os.open(f"{target}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    key = snapshot.key_for("summary", tmp_path, AS_OF, AS_OF, None, "x")

    def helper() -> None:
        with snapshot.recording(target):
            snapshot.record(key, (), "answer")
        os.close(fd)

    monkeypatch.setenv(snapshot.SNAPSHOT_ENV, str(target))
    monkeypatch.setattr(snapshot, "_loaded", {})
    timer = threading.Timer(0.2, helper)
    timer.start()
    try:
        assert snapshot.lookup(key, []) == "answer"  # asked before the answer existed: waited for it
    finally:
        timer.join()


@pytest.fixture(autouse=True)
def _fresh_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "_loaded", {})
    monkeypatch.delenv(snapshot.SNAPSHOT_ENV, raising=False)
