"""Peak memory of counting a log dir does not grow with the number of files (10 vs 100 days).

Measured as the operating system sees it: the peak RSS (ru_maxrss) of a fresh process
that counts the dir, and of the worker processes it forks, read by a small launcher
started with `python -I -S` (a child's ru_maxrss starts from the RSS of the process it
was forked from, so the launcher must be small). Not a timing test: only bytes.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

LAUNCHER = """
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""
COUNT = """
import sys
from datetime import datetime
from ccops import logs
since, until, workers = datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), int(sys.argv[4])
summary = logs.summarize_dir(sys.argv[1], since, until, zone=logs.zone_named("Europe/Amsterdam"),
                             workers=workers, parallel_min_bytes=0)
print(summary.total, summary.errors, len(summary.files))
"""
FIRST = date(2026, 7, 1)
DAYS = 100
PER_DAY = 6000  # records a day: about 0.7 MB of text a file, 70 MB in all


def _day_text(day: date) -> str:
    lines = []
    for i in range(PER_DAY):
        second = i * 86400 // PER_DAY
        stamp = f"{day} {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        if i % 50 == 0:
            lines.append(f"{stamp} | ERROR    | src.agents.base_agent:run - AnalysisAgent failed: timeout\n"
                         "Traceback (most recent call last):\n  File \"/app/src/agents/base_agent.py\", line 88\n"
                         "TimeoutError: upstream error\n")
        else:
            lines.append(f"{stamp} | INFO     | src.agents.base_agent:run - MarketScannerAgent completed execute "
                         f"in {i % 97 / 10:.2f}s, 0 errors\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def hundred_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 local days of the app's logs: rotated .log.zip, the last day plain."""
    log_dir = tmp_path_factory.mktemp("hundred-days")
    for k in range(DAYS):
        day = FIRST + timedelta(days=k)
        text = _day_text(day)
        if k == DAYS - 1:
            (log_dir / f"content_creator_{day}.log").write_text(text)
            continue
        member = f"content_creator_{day}.{day + timedelta(days=1)}_00-00-00_000001.log"
        with zipfile.ZipFile(log_dir / f"{member}.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, text)
    return log_dir


def _peak_kb(log_dir: Path, days: int, workers: int) -> tuple[int, str]:
    """Peak RSS (KiB) of counting the last `days` days, and what the count printed."""
    zone = ZoneInfo("Europe/Amsterdam")
    last = FIRST + timedelta(days=DAYS)
    # the UTC window of the local days [last - days, last): the app writes local time
    since, until = (datetime.combine(d, time(0), zone).astimezone(UTC).replace(tzinfo=None).isoformat()
                    for d in (last - timedelta(days=days), last))
    cmd = [sys.executable, "-c", COUNT, str(log_dir), since, until, str(workers)]
    out = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, *cmd], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    peak, rc = lines[-1].split()
    assert rc == "0", out.stderr
    return int(peak), lines[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_peak_memory_is_flat_from_10_to_100_files(hundred_days: Path, workers: int) -> None:
    ten_kb, ten = _peak_kb(hundred_days, 10, workers)
    hundred_kb, hundred = _peak_kb(hundred_days, DAYS, workers)
    # the counts are right (records, error records, files), so the whole input was read each time
    assert ten.split() == [str(10 * PER_DAY), str(10 * PER_DAY // 50), "10"]
    assert hundred.split() == [str(DAYS * PER_DAY), str(DAYS * PER_DAY // 50), str(DAYS)]
    # ten times the files, ten times the bytes: the peak stays where it was
    assert hundred_kb <= ten_kb * 1.15 + 4096, (ten_kb, hundred_kb)


def test_the_commands_peak_memory_is_flat_from_10_to_100_files(hundred_days: Path, tmp_path: Path) -> None:
    """`ccops logs summary --json` as an operator runs it: 100 days print ten times the rows, in the same memory."""
    import json
    import os

    zone = ZoneInfo("Europe/Amsterdam")
    last = FIRST + timedelta(days=DAYS)
    until = datetime.combine(last, time(0), zone).astimezone(UTC).isoformat()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_")}
    env.update(CCOPS_LOG_DIR=str(hundred_days), CCOPS_LOGS_TIMEZONE="Europe/Amsterdam", CCOPS_BACKEND="none",
               CCOPS_HOME=str(tmp_path / "home"))
    peaks, totals = {}, {}
    for days in (10, DAYS):
        since = datetime.combine(last - timedelta(days=days), time(0), zone).astimezone(UTC).isoformat()
        cmd = [sys.executable, "-m", "ccops.cli", "logs", "summary", "--since", since, "--until", until, "--json"]
        out = subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, *cmd], capture_output=True, text=True,
                             check=True, env=env)
        peak, rc = out.stdout.strip().splitlines()[-1].split()
        assert rc == "0", out.stderr
        summary = json.loads(out.stdout[:out.stdout.rindex("}") + 1])
        peaks[days], totals[days] = int(peak), (summary["total"], len(summary["by_hour"]))
    assert totals == {10: (10 * PER_DAY, 10 * 24), DAYS: (DAYS * PER_DAY, DAYS * 24)}
    # (10 days are under the fork threshold and read in this process, 100 in forked workers: either way)
    assert peaks[DAYS] <= peaks[10] * 1.10, peaks
