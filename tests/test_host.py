"""Host checks on a real filling filesystem (a 2 MiB tmpfs), recorded /proc/meminfo, and this machine."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from ccops.checks import host
from ccops.core.context import RunContext
from ccops.core.findings import Status
from ccops.core.settings import load_settings
from ccops.core.thresholds import Thresholds
from tests.helpers import tmpfs

DATA = Path(__file__).parent / "data"
AS_OF = datetime(2026, 11, 28, 8, 0)


def make_ctx() -> RunContext:
    return RunContext(runbook="t", settings=load_settings(), as_of=AS_OF)


@pytest.mark.parametrize(("free", "expected"), [
    (100, Status.OK), (20, Status.OK), (19.99, Status.WARNING), (10, Status.WARNING), (9.99, Status.CRITICAL), (0, Status.CRITICAL),
])
def test_classify_disk_at_the_guides_thresholds(free, expected):
    assert host.classify_disk(free, Thresholds()) == expected


def test_classify_disk_follows_configured_thresholds():
    assert host.classify_disk(25, Thresholds().with_values({"disk": {"free_pct": {"warning": 30, "critical": 15}}})) == Status.WARNING
    assert host.classify_disk(25, Thresholds().with_values({"disk_free_warning_pct": 30})) == Status.WARNING, "the flat key of before"


@pytest.fixture
def small_fs(tmp_path):
    """A real 2 MiB tmpfs: a filesystem the test can fill."""
    with tmpfs(tmp_path / "fs", "2m") as mount:
        yield mount


def fill_to(mount: Path, used_share: float) -> None:
    """Write one file so that `used_share` of the filesystem's blocks are in use."""
    stat = os.statvfs(mount)
    target = int(stat.f_blocks * used_share) * stat.f_frsize
    with open(mount / "filler", "wb") as handle:
        handle.write(b"\0" * target)


def test_disk_usage_of_a_real_filesystem(small_fs):
    usage = host.disk_usage(small_fs)
    assert usage["total_bytes"] == 2 * 2**20 and usage["free_pct"] == 100.0
    assert usage["mount"] == str(small_fs)
    fill_to(small_fs, 0.5)
    assert host.disk_usage(small_fs)["free_pct"] == pytest.approx(50, abs=1)


def test_filling_filesystem_goes_ok_warning_critical(ccops_env, small_fs):
    check_id = f"host.disk:{small_fs}"
    (finding,) = host.disk_space(make_ctx(), paths=[str(small_fs)])
    assert (finding.check, finding.status) == (check_id, Status.OK)

    fill_to(small_fs, 0.85)
    (finding,) = host.disk_space(make_ctx(), paths=[str(small_fs)])
    assert finding.status == Status.WARNING and finding.threshold == 20
    assert 14 <= finding.value <= 16

    fill_to(small_fs, 0.95)
    (finding,) = host.disk_space(make_ctx(), paths=[str(small_fs)])
    assert finding.status == Status.CRITICAL and finding.value < 10 and finding.threshold == 10
    assert "below 10%" in finding.summary and "of 2.0 MiB" in finding.summary


def test_one_finding_per_filesystem_naming_every_path_on_it(ccops_env, small_fs):
    (small_fs / "logs").mkdir()
    fill_to(small_fs, 0.95)
    found = host.disk_space(make_ctx(), paths=[str(small_fs), str(ccops_env), str(small_fs / "logs")])
    by_id = {f.check: f for f in found}
    assert set(by_id) == {f"host.disk:{small_fs}", f"host.disk:{ccops_env}"}
    full = by_id[f"host.disk:{small_fs}"]
    assert full.status == Status.CRITICAL
    assert list(full.data["path"]) == [str(small_fs), str(small_fs / "logs")]
    assert f"also holds {small_fs / 'logs'}" in full.summary


def test_missing_path_is_unknown_and_names_it(ccops_env):
    missing = ccops_env / "no-such-mount"
    found = host.disk_space(make_ctx(), paths=[str(missing), str(ccops_env)])
    by_id = {f.check: f for f in found}
    assert by_id[f"host.disk:{missing}"].status == Status.UNKNOWN
    assert str(missing) in by_id[f"host.disk:{missing}"].summary
    assert by_id[f"host.disk:{ccops_env}"].status in (Status.OK, Status.WARNING, Status.CRITICAL)


def test_default_paths_include_log_backup_and_demo_data_dirs(ccops_env, monkeypatch, small_fs):
    """Configured paths first; the log and backup dirs (not created yet) count on the disk that will hold them."""
    monkeypatch.setenv("CCOPS_DISK_PATHS", str(small_fs))
    monkeypatch.setenv("CCOPS_LOG_DIR", str(small_fs / "logs"))
    monkeypatch.setenv("CCOPS_BACKUP_DIR", str(small_fs / "backups"))
    monkeypatch.setenv("CCOPS_DATA_DIR", str(ccops_env / "pgdata"))  # what the demo's deployment file names
    fill_to(small_fs, 0.85)
    ctx = make_ctx()
    labels = [label for label, _ in host.watched_paths(ctx)]
    assert labels[:3] == [str(small_fs), f"{small_fs / 'logs'} (not created yet)", f"{small_fs / 'backups'} (not created yet)"]
    assert len(labels) == 4 and labels[3] == f"{ccops_env / 'pgdata'} (not created yet)", "the data dir is watched too"
    found = {f.check: f for f in host.disk_space(ctx)}
    small = found[f"host.disk:{small_fs}"]
    assert small.status == Status.WARNING
    assert list(small.data["path"]) == labels[:3]
    assert not [f for f in found.values() if f.status == Status.UNKNOWN], "missing derived dirs are not UNKNOWN"



def test_guide_data_path_is_watched_when_it_exists(ccops_env, monkeypatch, small_fs, tmp_path):
    """The guide's df line names /data. It is watched when it exists and silently absent when not; a stand-in
    directory plays /data here, so the test never creates a top-level folder on a shared machine."""
    assert host.GUIDE_OPTIONAL_PATHS == ("/data",)
    monkeypatch.setenv("CCOPS_DISK_PATHS", str(tmp_path))
    absent = tmp_path / "no-data"
    monkeypatch.setattr(host, "GUIDE_OPTIONAL_PATHS", (str(absent),))
    labels = [label for label, _ in host.watched_paths(make_ctx())]
    assert str(absent) not in labels
    monkeypatch.setattr(host, "GUIDE_OPTIONAL_PATHS", (str(small_fs),))
    fill_to(small_fs, 0.95)
    ctx = make_ctx()
    labels = [label for label, _ in host.watched_paths(ctx)]
    assert labels[:2] == [str(tmp_path), str(small_fs)]
    found = {f.check: f for f in host.disk_space(ctx)}
    assert found[f"host.disk:{small_fs}"].status == Status.CRITICAL

def test_parse_meminfo_recorded_sample():
    info = host.parse_meminfo((DATA / "meminfo_busy.txt").read_text())
    assert info["MemTotal"] == 4025000 * 1024 and info["MemAvailable"] == 563500 * 1024
    assert info["HugePages_Total"] == 0, "counts without a unit stay counts"
    assert host.memory_used_pct(info) == 86.0


def test_memory_used_without_memavailable_uses_free_buffers_cached():
    info = host.parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 150 kB\n")
    assert host.memory_used_pct(info) == 70.0


def test_memory_thresholds_on_recorded_meminfo(ccops_env, tmp_path):
    (finding,) = host.memory(make_ctx(), meminfo_path=str(DATA / "meminfo_busy.txt"))
    assert (finding.check, finding.status, finding.value, finding.threshold) == ("host.memory", Status.WARNING, 86.0, 80)
    assert "86.0% of 3.8 GiB memory in use" in finding.summary and "swap in use 512.0 MiB" in finding.summary
    critical = tmp_path / "meminfo"
    critical.write_text((DATA / "meminfo_busy.txt").read_text().replace("563500 kB", "201250 kB"))
    (finding,) = host.memory(make_ctx(), meminfo_path=str(critical))
    assert (finding.status, finding.value, finding.threshold) == (Status.CRITICAL, 95.0, 90)
    calm = tmp_path / "calm"
    calm.write_text("MemTotal: 1000 kB\nMemAvailable: 800 kB\n")
    assert host.memory(make_ctx(), meminfo_path=str(calm))[0].status == Status.OK


def test_memory_of_this_machine_and_a_missing_meminfo(ccops_env, tmp_path):
    (finding,) = host.memory(make_ctx())
    assert 0 < finding.value < 100 and finding.data is not None
    (finding,) = host.memory(make_ctx(), meminfo_path=str(tmp_path / "absent"))
    assert finding.status == Status.UNKNOWN and "absent" in finding.summary


def test_uptime_and_load_of_this_machine(ccops_env):
    (finding,) = host.uptime_load(make_ctx())
    assert finding.check == "host.uptime" and finding.status == Status.INFO
    assert f"on {os.cpu_count()} CPUs" in finding.summary
    assert int(finding.data["cpus"][0]) == os.cpu_count() and finding.data["uptime_s"][0] > 0
    assert host.parse_uptime("350735.47 1332068.64\n") == 350735.47
