"""Disk clean-up plans: the dry run touches nothing, applying touches exactly the plan, archives before truncating."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import tempfile
from datetime import datetime

import pytest

from ccops.deploy import diskspace
from tests.helpers import tmpfs

NOW = datetime(2026, 11, 28, 3, 0, 0)


def write_logs(log_dir, days: list[str], size: int = 50_000) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    for day in days:
        line = f"{day} 10:00:00 | INFO     | src.main:run - tick\n".encode()
        (log_dir / f"content_creator_{day}.log").write_bytes(line * (size // len(line)))


def snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_plan_lists_old_and_rotated_logs_and_dry_run_changes_nothing(tmp_path):
    logs = tmp_path / "logs"
    write_logs(logs, ["2026-07-01", "2026-08-30", "2026-11-27", "2026-11-28"])
    (logs / "notes.txt").write_text("not a log")
    before = snapshot(logs)
    plan = diskspace.plan_log_cleanup(logs, NOW, keep_days=90)
    assert [(a.kind, a.path.name) for a in plan.actions] == [
        ("delete", "content_creator_2026-07-01.log"),
        ("compress", "content_creator_2026-08-30.log"),
        ("compress", "content_creator_2026-11-27.log"),
    ]
    assert snapshot(logs) == before, "planning is a dry run"
    applied = diskspace.apply_plan(plan, now=NOW)
    assert all(a.done for a in applied.actions)
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["content_creator_2026-08-30.log.gz", "content_creator_2026-11-27.log.gz",
                     "content_creator_2026-11-28.log", "notes.txt"]
    with gzip.open(logs / "content_creator_2026-11-27.log.gz", "rb") as handle:
        assert handle.read() == before["content_creator_2026-11-27.log"]
    assert sum(a.freed for a in applied.actions) > 50_000


def test_a_file_changed_after_planning_is_skipped(tmp_path):
    logs = tmp_path / "logs"
    write_logs(logs, ["2026-07-01", "2026-11-28"])
    plan = diskspace.plan_log_cleanup(logs, NOW, keep_days=90)
    target = plan.actions[0].path
    os.utime(target, (1, 1))
    diskspace.apply_plan(plan, now=NOW)
    assert target.exists() and "changed since" in plan.actions[0].error


def test_live_log_is_archived_then_truncated(tmp_path):
    logs = tmp_path / "logs"
    write_logs(logs, ["2026-11-28"])
    live = logs / "content_creator_2026-11-28.log"
    content = live.read_bytes()
    plan = diskspace.apply_plan(diskspace.plan_live_log_truncation(logs, NOW), now=NOW)
    assert plan.actions[0].done
    assert live.exists() and live.stat().st_size == 0, "truncated in place: the app keeps its handle"
    archived = logs / "content_creator_2026-11-28.log.20261128T030000Z.gz"
    with gzip.open(archived, "rb") as handle:
        assert handle.read() == content


def test_protected_paths_are_never_planned(tmp_path):
    data = tmp_path / "pgdata"
    write_logs(data, ["2026-01-01"])
    plan = diskspace.plan_log_cleanup(data, NOW, keep_days=90, protected=[data])
    assert plan.actions == []


@pytest.fixture
def tiny_fs(tmp_path):
    with tmpfs(tmp_path / "fs", "2m") as mount:
        yield mount


def fill(directory) -> None:
    """Fill the filesystem of `directory` to 100 %."""
    with open(directory / "filler", "ab") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def test_archiving_on_a_full_disk_goes_through_the_temp_dir(tiny_fs):
    logs = tiny_fs / "logs"
    write_logs(logs, ["2026-11-28"], size=600_000)
    live = logs / "content_creator_2026-11-28.log"
    before = live.read_bytes()
    fill(tiny_fs)
    assert diskspace.filesystem_usage(tiny_fs)["free"] == 0
    plan = diskspace.apply_plan(diskspace.plan_live_log_truncation(logs, NOW), now=NOW)
    assert plan.actions[0].done and not plan.actions[0].error, plan.actions[0].error
    assert live.stat().st_size == 0 and plan.actions[0].freed > 500_000
    with gzip.open(logs / "content_creator_2026-11-28.log.20261128T030000Z.gz", "rb") as handle:
        assert handle.read() == before
    assert not [p for p in logs.iterdir() if p.name.endswith(".partial")]


def test_archiving_with_no_room_anywhere_fails_cleanly_and_keeps_the_log(tiny_fs, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_fs))  # TMPDIR on the same full disk
    monkeypatch.setattr(diskspace, "STAGING_DIRS", (None,))
    logs = tiny_fs / "logs"
    write_logs(logs, ["2026-11-28"], size=600_000)
    live = logs / "content_creator_2026-11-28.log"
    live.write_bytes(os.urandom(600_000))  # does not compress: no room for an archive beside it
    before = live.read_bytes()
    fill(tiny_fs)
    plan = diskspace.apply_plan(diskspace.plan_live_log_truncation(logs, NOW), now=NOW)
    assert not plan.actions[0].done and "no room" in plan.actions[0].error
    assert live.read_bytes() == before, "nothing lost"
    assert not [p for p in tiny_fs.rglob("*") if p.name.endswith((".gz", ".partial"))], "no half-written archive"


def test_rotated_logs_compress_on_a_full_disk_oldest_first(tiny_fs):
    logs = tiny_fs / "logs"
    write_logs(logs, ["2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28"], size=500_000)
    before = snapshot(logs)
    fill(tiny_fs)
    plan = diskspace.plan_log_cleanup(logs, NOW, keep_days=90)
    assert [a.path.name for a in plan.actions] == [f"content_creator_2026-11-{d}.log" for d in (25, 26, 27)]
    diskspace.apply_plan(plan, now=NOW)
    assert all(a.done and not a.error for a in plan.actions), [a.error for a in plan.actions]
    assert sorted(p.name for p in logs.iterdir()) == [
        "content_creator_2026-11-25.log.gz", "content_creator_2026-11-26.log.gz",
        "content_creator_2026-11-27.log.gz", "content_creator_2026-11-28.log"]
    for day in (25, 26, 27):
        with gzip.open(logs / f"content_creator_2026-11-{day}.log.gz", "rb") as handle:
            assert handle.read() == before[f"content_creator_2026-11-{day}.log"]
    assert diskspace.filesystem_usage(tiny_fs)["free"] > 1_000_000


# ---- the log the app is writing is never deleted ------------------------------------------------

@pytest.fixture
def writer():
    """A real process holding a file open for appending, as loguru does."""
    procs = []

    def start(path):
        proc = subprocess.Popen(["sh", "-c", f'exec 3>>"{path}"; echo ready; exec sleep 60'], stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("keep_days", [0, -1])
def test_live_logs_survive_any_keep_days(tmp_path, writer, keep_days):
    logs = tmp_path / "logs"
    # the app runs behind UTC: its newest file is dated the day before as_of
    write_logs(logs, ["2026-11-20", "2026-11-24", "2026-11-27"], size=5_000)
    (logs / "content_creator_2026-11-19.log.zip").write_bytes(b"PK")
    writer(logs / "content_creator_2026-11-20.log")  # an old file some process still writes
    plan = diskspace.plan_log_cleanup(logs, NOW, keep_days=keep_days, compress_rotated=False)
    assert sorted(a.path.name for a in plan.actions) == ["content_creator_2026-11-19.log.zip",
                                                         "content_creator_2026-11-24.log"]
    diskspace.apply_plan(plan, now=NOW)
    assert sorted(p.name for p in logs.iterdir()) == ["content_creator_2026-11-20.log", "content_creator_2026-11-27.log"]


def test_a_log_opened_for_writing_after_planning_is_skipped(tmp_path, writer):
    logs = tmp_path / "logs"
    write_logs(logs, ["2026-11-20", "2026-11-27"], size=5_000)
    plan = diskspace.plan_log_cleanup(logs, NOW, keep_days=1)
    assert [a.path.name for a in plan.actions] == ["content_creator_2026-11-20.log"]
    writer(logs / "content_creator_2026-11-20.log")
    diskspace.apply_plan(plan, now=NOW)
    assert (logs / "content_creator_2026-11-20.log").exists() and "writing" in plan.actions[0].error
    assert diskspace.open_for_writing(logs) == {((logs / "content_creator_2026-11-20.log").stat().st_dev,
                                                 (logs / "content_creator_2026-11-20.log").stat().st_ino)}


def test_monthly_clean_up_with_keep_days_zero_keeps_the_live_log(ccops_env, monkeypatch):
    from ccops.actions import cleanup
    from ccops.runbook.session import start

    logs = ccops_env / "logs"
    # the app runs at UTC-5: at 03:00 UTC on the 28th it still writes the file of the 27th
    write_logs(logs, ["2026-11-01", "2026-11-26", "2026-11-27"], size=5_000)
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    ctx = start("monthly", as_of="2026-11-28T03:00:00Z")
    cleanup.old_logs(ctx, keep_days=0)
    found = cleanup.old_logs(ctx, keep_days=0, dry_run=False, confirm=True)
    assert any(f.check == "action.old_logs" and f.status.value == "OK" for f in found), [str(f) for f in found]
    assert sorted(p.name for p in logs.iterdir()) == ["content_creator_2026-11-27.log"]


# ---- one file-name rule: what the clean-up compresses, the log checks still read ------------------

def loguru_record(ts: str, level: str, message: str) -> str:
    """A record in the app's loguru format (FACTS.md)."""
    return f"{ts} | {level:<8} | src.api_integrations.twitter_api:post_tweet - {message}\n"


def summary_json(since: str, until: str, capsys) -> dict:
    from ccops.cli import main

    assert main(["logs", "summary", "--since", since, "--until", until, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_logs_compressed_by_the_clean_up_are_still_counted(ccops_env, monkeypatch, capsys):
    logs = ccops_env / "logs"
    logs.mkdir()
    rotated = logs / "content_creator_2026-11-26.log"
    live = logs / "content_creator_2026-11-28.log"
    for path, day in ((rotated, "2026-11-26"), (live, "2026-11-28")):
        text = "".join(loguru_record(f"{day} 02:{minute:02d}:00", "ERROR", "Failed to post tweet: 429 Too Many Requests")
                       + loguru_record(f"{day} 02:{minute:02d}:30", "INFO", "retrying") for minute in range(20))
        path.write_text(text)
    (logs / "output.log").write_text(live.read_text())  # stdout: every record again, never counted
    (logs / "error.log").write_text(loguru_record("2026-11-28 02:00:00", "ERROR", "stderr, not a record"))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(logs))
    monkeypatch.setenv("CCOPS_LOGS_TIMEZONE", "UTC")  # the lines above are written in UTC
    hour = {"2026-11-26": ("2026-11-26T02:00:00Z", "2026-11-26T03:00:00Z"),
            "2026-11-28": ("2026-11-28T02:00:00Z", "2026-11-28T03:00:00Z")}
    for since, until in hour.values():
        assert summary_json(since, until, capsys)["by_level"]["ERROR"] == 20

    diskspace.apply_plan(diskspace.plan_log_cleanup(logs, NOW, keep_days=90), now=NOW)
    diskspace.apply_plan(diskspace.plan_live_log_truncation(logs, NOW), now=NOW)
    assert sorted(p.name for p in logs.iterdir()) == [
        "content_creator_2026-11-26.log.gz", "content_creator_2026-11-28.log",
        "content_creator_2026-11-28.log.20261128T030000Z.gz", "error.log", "output.log"]
    assert live.stat().st_size == 0
    for since, until in hour.values():
        data = summary_json(since, until, capsys)
        assert data["by_level"]["ERROR"] == 20 and data["by_level"]["INFO"] == 20, data
        assert "output.log" not in data["files"] and "error.log" not in data["files"]


def test_compressing_never_overwrites_an_earlier_archive(tmp_path):
    logs = tmp_path / "logs"
    write_logs(logs, ["2026-11-26", "2026-11-28"], size=5_000)
    earlier = logs / "content_creator_2026-11-26.log.gz"
    earlier.write_bytes(gzip.compress(b"2026-11-26 01:00:00 | ERROR    | x:y - the morning's part\n"))
    before = earlier.read_bytes()
    diskspace.apply_plan(diskspace.plan_log_cleanup(logs, NOW, keep_days=90), now=NOW)
    assert earlier.read_bytes() == before
    assert (logs / "content_creator_2026-11-26.log.20261128T030000Z.gz").exists()
