"""ccops' log counts against an independent count: awk over the same files, zone rules from the system's tzdata.

The set is what a production log dir holds over an autumn DST change (FACTS.md, Logs):
four local days of the app's loguru lines in Europe/Amsterdam, rotated at local midnight
into `.log.zip` (loguru's names), the current day plain, and output.log / error.log beside
them. The records carry multi-line tracebacks, INFO lines that mention errors, and
continuation lines that look almost like headers. On 2026-10-25 the local hour 02:00-03:00
is written twice (CEST, then CET).

The reference is awk (mawk or gawk) reading `unzip -p` / the plain file, one file at a
time: a line is a header when it starts with the app's time and a level field; its local
time becomes UTC through awk's mktime with the system's tzdata (TZ=Europe/Amsterdam),
the repeated hour told apart by the order of the lines. Nothing of ccops' code is used
for the reference, so both would have to be wrong the same way to agree.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ccops import logs

ZONE = "Europe/Amsterdam"
LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/app/src/agents/base_agent.py", line 88, in run',
    "    result = await self.execute()",
    '  File "/app/src/api_integrations/twitter_api.py", line 141, in post_tweet',
    "    raise TwitterError(response.text)",
    "src.api_integrations.twitter_api.TwitterError: 429 Too Many Requests (ERROR: rate limited)",
]
TRICKY = [  # continuation lines: not records, whatever they look like
    "2026 was a year | ERROR    | not a header",
    "  | CRITICAL | indented, not a header",
    "2026-10-25 02:15:00 |ERROR | no space before the level: not a header",
]
# the lines of each record after the first, and awk's reference: a header starts with the
# time, " | ", a level of capitals padded to at least 8, " | "
AWK = r"""
BEGIN { FS = " [|] " }
/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9] [|] [A-Z][A-Z ]+ [|] / {
    level = $2
    if (length(level) < 8) next
    gsub(/ +$/, "", level)
    split($1, f, /[-: ]/)
    spec = f[1] " " f[2] " " f[3] " " f[4] " " f[5] " " f[6]
    local = (f[1] f[2] f[3] f[4] f[5] f[6]) + 0
    summer = mktime(spec " 1"); winter = mktime(spec " 0")
    if (winter - summer == 3600 && strftime("%Y%m%d%H%M%S", summer) + 0 == local \
        && strftime("%Y%m%d%H%M%S", winter) + 0 == local) {
        # the repeated hour: the second pass once the file's time went back
        if (prev_repeated) second = second || local < prev - 100
        else second = (prev != "" && prev > local)
        t = second ? winter : summer
        prev_repeated = 1
    } else {
        t = mktime(spec " -1")
        prev_repeated = 0; second = 0
    }
    prev = local
    if (t >= since && t < until) n[(t - t % 3600) " " level]++
}
END { for (k in n) print k, n[k] }
"""


def _local_text(utc: datetime, zone: ZoneInfo) -> str:
    return utc.replace(tzinfo=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def write_dst_set(log_dir: Path, seed: int = 18) -> list[Path]:
    """Four local days around the autumn change, as the app writes them; returns the app's files, oldest first."""
    zone = ZoneInfo(ZONE)
    rnd = random.Random(seed)
    days: dict[str, list[str]] = {}
    moment = datetime(2026, 10, 22, 22, 0, 0)  # 2026-10-23 00:00 local (CEST)
    end = datetime(2026, 10, 26, 23, 0, 0)  # 2026-10-27 00:00 local (CET)
    while moment < end:
        moment += timedelta(seconds=rnd.randint(1, 40))
        local = _local_text(moment, zone)
        level = rnd.choices(LEVELS, weights=[1, 30, 40, 4, 8, 5, 1])[0]
        where = rnd.choice(["src.agents.base_agent:run", "src.api_integrations.twitter_api:post_tweet", "__main__:main"])
        message = rnd.choice(["ok", "Recovered from earlier error, prices fresh again", "0 errors in 40 posts",
                              "Failed to post tweet: 429 Too Many Requests", "x | ERROR    | y", "Error budget 3%"])
        lines = [f"{local} | {level:<8} | {where} - {message}"]
        if level in ("ERROR", "CRITICAL") and rnd.random() < 0.6:
            lines += TRACEBACK + [""]
        elif rnd.random() < 0.05:
            lines += [rnd.choice(TRICKY)]
        days.setdefault(local[:10], []).extend(lines)
    names = sorted(days)
    files = []
    for day in names:
        text = "\n".join(days[day]) + "\n"
        if day == names[-1]:
            path = log_dir / f"content_creator_{day}.log"
            path.write_text(text)
        else:
            following = (datetime.fromisoformat(day) + timedelta(days=1)).date()
            member = f"content_creator_{day}.{following}_00-00-00_417223.log"
            path = log_dir / f"{member}.zip"
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(member, text)
        files.append(path)
    # the plain-process deployment's stdout (every record again) and stderr: never counted
    (log_dir / "output.log").write_text("".join(f"\x1b[32m{line}\x1b[0m\n" for day in names for line in days[day]))
    (log_dir / "error.log").write_text("Traceback (most recent call last):\nModuleNotFoundError: No module named 'tweepy'\n")
    return files


def awk_counts(files: list[Path], since: datetime, until: datetime) -> dict[datetime, dict[str, int]]:
    """(UTC hour -> level -> records) by awk, file by file."""
    awk = shutil.which("gawk") or shutil.which("mawk") or shutil.which("awk")
    if awk is None or shutil.which("unzip") is None:
        pytest.skip("awk and unzip are needed for the independent count")
    env = {**os.environ, "TZ": ZONE, "LC_ALL": "C"}
    epoch = datetime(1970, 1, 1)
    bounds = [f"since={int((since - epoch).total_seconds())}", f"until={int((until - epoch).total_seconds())}"]
    found: dict[datetime, dict[str, int]] = {}
    for path in files:
        text = subprocess.run(["unzip", "-p", str(path)] if path.suffix == ".zip" else ["cat", str(path)],
                              check=True, capture_output=True).stdout
        out = subprocess.run([awk, *[a for b in bounds for a in ("-v", b)], AWK], input=text, env=env,
                             check=True, capture_output=True).stdout.decode()
        for line in out.splitlines():
            hour, level, n = line.split()
            slot = found.setdefault(epoch + timedelta(seconds=int(hour)), {})
            slot[level] = slot.get(level, 0) + int(n)
    return found


def _nonzero(by_hour: dict) -> dict:
    return {hour: {lv: n for lv, n in levels.items() if n} for hour, levels in by_hour.items()
            if any(levels.values())}


@pytest.fixture(scope="module")
def dst_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    log_dir = tmp_path_factory.mktemp("dst-logs")
    return log_dir, write_dst_set(log_dir)


WINDOWS = [
    (datetime(2026, 10, 23, 9, 17, 0), datetime(2026, 10, 26, 14, 41, 0)),  # mid-day to mid-day, across the change
    (datetime(2026, 10, 24, 23, 30, 0), datetime(2026, 10, 25, 2, 10, 0)),  # the repeated local hour (00:00-02:00 UTC)
    (datetime(2026, 10, 22, 0, 0, 0), datetime(2026, 10, 28, 0, 0, 0)),  # everything
]


@pytest.mark.parametrize("since,until", WINDOWS)
def test_counts_equal_awks_over_zipped_and_plain_files_across_dst(dst_set, since, until) -> None:
    log_dir, files = dst_set
    reference = awk_counts(files, since, until)
    assert sum(sum(levels.values()) for levels in reference.values()) > 200  # the window holds records
    zone = logs.zone_named(ZONE)
    for workers, block_size, min_bytes in ((1, logs.BLOCK_SIZE, 0), (2, 1 << 14, 0), (2, logs.BLOCK_SIZE, 0),
                                           (2, logs.BLOCK_SIZE, 1 << 40)):
        summary = logs.summarize_dir(log_dir, since, until, zone=zone, workers=workers, block_size=block_size,
                                     parallel_min_bytes=min_bytes)
        assert _nonzero(summary.by_hour) == reference, (workers, block_size, min_bytes)
        totals = Counter()
        for levels in reference.values():
            totals.update(levels)
        assert {lv: n for lv, n in summary.by_level.items() if n} == dict(totals)
        assert summary.problems == []
        assert "output.log" not in summary.files and "error.log" not in summary.files


def test_the_repeated_hour_is_counted_twice_in_utc(dst_set) -> None:
    """Local 02:xx on 2026-10-25 is two UTC hours (00:xx CEST and 01:xx CET), both in awk and in ccops."""
    log_dir, files = dst_set
    since, until = datetime(2026, 10, 25, 0, 0, 0), datetime(2026, 10, 25, 2, 0, 0)
    reference = awk_counts(files, since, until)
    assert sorted(reference) == [since, since + timedelta(hours=1)]
    summary = logs.summarize_dir(log_dir, since, until, zone=logs.zone_named(ZONE), parallel_min_bytes=0)
    assert _nonzero(summary.by_hour) == reference


def test_cli_json_matches_awk_and_grep_overcounts(dst_set, ccops_env) -> None:
    """`ccops logs summary --json` as an operator runs it (logs.timezone set), against awk; grep counts text."""
    log_dir, files = dst_set
    since, until = WINDOWS[0]
    env = {**os.environ, "CCOPS_LOG_DIR": str(log_dir), "CCOPS_LOGS_TIMEZONE": ZONE, "CCOPS_BACKEND": "none"}
    out = subprocess.run([sys.executable, "-m", "ccops.cli", "logs", "summary", "--since", f"{since:%Y-%m-%dT%H:%M:%S}Z",
                          "--until", f"{until:%Y-%m-%dT%H:%M:%S}Z", "--json"], env=env, capture_output=True, check=True)
    summary = json.loads(out.stdout)
    reference = awk_counts(files, since, until)
    by_hour = {datetime.fromisoformat(row["hour"]): {lv: row[lv] for lv in LEVELS if row[lv]}
               for row in summary["by_hour"] if row["total"]}
    assert by_hour == reference
    errors = sum(levels.get("ERROR", 0) + levels.get("CRITICAL", 0) for levels in reference.values())
    assert summary["errors"] == errors and summary["timezone"] == ZONE
    # the guide's way over the whole of the same files counts lines of text: far more than the error records
    text = b"".join(subprocess.run(["unzip", "-p", str(p)] if p.suffix == ".zip" else ["cat", str(p)],
                                   check=True, capture_output=True).stdout for p in files)
    grep_lines = sum(1 for line in text.lower().split(b"\n") if b"error" in line)
    assert grep_lines > 2 * errors
