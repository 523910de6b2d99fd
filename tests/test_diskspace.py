"""Disk clean-up plans: the dry run touches nothing, applying touches exactly the plan, archives before truncating."""

from __future__ import annotations

import gzip
import os
import subprocess
from datetime import datetime

import pytest

from ccops import diskspace

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
    write_logs(logs, ["2026-07-01"])
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
    mount = tmp_path / "fs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_archiving_on_a_full_disk_fails_cleanly_and_keeps_the_log(tiny_fs):
    logs = tiny_fs / "logs"
    write_logs(logs, ["2026-11-28"], size=600_000)
    filler = tiny_fs / "filler"
    with open(filler, "wb") as handle:
        try:
            handle.write(os.urandom(2 * 1024 * 1024))
        except OSError:
            pass
    live = logs / "content_creator_2026-11-28.log"
    before = live.read_bytes()
    # random data does not compress: the archive cannot fit, so the log must not be truncated
    live.write_bytes(os.urandom(len(before)))
    before = live.read_bytes()
    plan = diskspace.apply_plan(diskspace.plan_live_log_truncation(logs, NOW), now=NOW)
    assert not plan.actions[0].done and plan.actions[0].error
    assert live.read_bytes() == before, "nothing lost"
    assert not [p for p in logs.iterdir() if p.name.endswith((".gz", ".partial"))], "no half-written archive"
    assert diskspace.filesystem_usage(tiny_fs)["free_pct"] < 10
