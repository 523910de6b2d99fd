"""Issue 18, target 4: `ccops logs summary` over a month of logs (1 GB) at >= 2x `grep -ci error`, exact, flat in memory.

The figure is `ccops logs summary --json` over every file of the bench log dir (30 local
days, 29 of them rotated `.log.zip`), as an operator runs it, with the time-zone
conversion on: the files are read as the app writes them, local time of a host in
Europe/Amsterdam (logs.timezone), and the month crosses the autumn DST change
(2026-10-25), so every line's local time becomes UTC and the window is given in UTC.
The baseline is what the guide does, `grep -i error` counting lines, on the same files
(`unzip -p FILE | grep -ci error` for the rotated ones), with LC_ALL=C so grep is at its
fastest. Both are run in turns (ours, grep, ours, grep ...) after a warm-up turn, so a
machine that slows down moves both. Throughput is uncompressed bytes per second of wall
time; each row shows min / median / max of the runs.

Correctness: the analyser's counts by level must equal the generator's exactly, and the
records of each local day (the UTC hours the summary reports, turned back into local
time) must equal that day's count: a wrong offset or a lost DST hour moves records
between days. grep's line count is shown for what it is.

Memory: peak RSS (the command and the workers it forks, as /usr/bin/time reports it) of
the same command over the last 10 of 100 daily files and over all 100 (a separate
100-day set, built in a temporary dir and deleted after): it must not grow with the
number of files.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks.harness import BenchEnv, Measured, Result, ccops_command, run_measured, shell_text

ZONE = "Europe/Amsterdam"  # the bench host's zone: CEST until 2026-10-25 03:00, CET after
GREP_SCRIPT = r"""
total=0
for f in "$@"; do
  case "$f" in
    *.zip) n=$(unzip -p "$f" | grep -ci error) ;;
    *) n=$(grep -ci error "$f") ;;
  esac
  total=$((total + n))
done
echo "$total"
"""
MAX_RSS_GROWTH = 1.15  # 10x the files may use at most this much more memory
MIN_THROUGHPUT_RATIO = 2.0  # our MB/s over grep's
MEMORY_DAYS = (10, 100)
MEMORY_BYTES = 4e8  # the 100-day set: 4 MB of text a day


def _utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time of the app's host as an aware UTC instant."""
    return local.replace(tzinfo=zone).astimezone(UTC)


def _window(manifest: dict[str, Any], first_day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC window of the local days from `first_day` up to the manifest's as_of (local)."""
    return (_utc(datetime.combine(first_day, time(0)), zone),
            _utc(datetime.fromisoformat(manifest["until"]), zone))


def _summary_cmd(since: datetime, until: datetime) -> list[str]:
    return ccops_command() + ["logs", "summary", "--since", since.isoformat(), "--until", until.isoformat(), "--json"]


def _per_local_day(summary: dict[str, Any], zone: ZoneInfo) -> dict[str, int]:
    """Records per local day, from the summary's UTC hours."""
    days: dict[str, int] = {}
    for row in summary.get("by_hour") or []:
        hour = datetime.fromisoformat(row["hour"]).replace(tzinfo=UTC).astimezone(zone)
        days[hour.date().isoformat()] = days.get(hour.date().isoformat(), 0) + int(row["total"])
    return {d: n for d, n in days.items() if n}


def _turns(commands: list[list[str]], repeat: int, environment: dict[str, str]
           ) -> tuple[list[list[Measured]], list[list[float]]]:
    """Each command `repeat` times in turns after one warm-up turn (as harness.interleaved_runs),
    with the CPU seconds (user + system) of each run's whole process tree.

    Why CPU too: on a machine other jobs keep busy, wall time measures the scheduler as much as
    the command; the CPU a command needs for the same bytes does not depend on the others.
    """
    runs: list[list[Measured]] = [[] for _ in commands]
    cpu: list[list[float]] = [[] for _ in commands]
    for turn in range(1 + repeat):
        for index, cmd in enumerate(commands):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            measured = run_measured(cmd, environment)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if turn:
                runs[index].append(measured)
                cpu[index].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return runs, cpu


def _throughput(env: BenchEnv, zone: ZoneInfo) -> list[Result]:
    assert env.log_dir is not None
    manifest = env.log_manifest
    from benchmarks.scale import window_truth

    first_day = date.fromisoformat(manifest["days"][0]["date"])
    since, until = _window(manifest, first_day, zone)
    truth = window_truth(manifest, datetime.combine(first_day, time(0)))
    files = [str(env.log_dir / name) for name in truth["files"]]
    summary_cmd = _summary_cmd(since, until)
    grep_cmd = ["bash", "-c", GREP_SCRIPT, "grep-count", *files]
    environment = env.ccops_env(LC_ALL="C", CCOPS_LOGS_TIMEZONE=ZONE)

    (ours, grep), (ours_cpu, grep_cpu) = _turns([summary_cmd, grep_cmd], env.repeat, environment)
    ours_s, grep_s = statistics.median(r.seconds for r in ours), statistics.median(r.seconds for r in grep)
    mb = truth["bytes"] / 1e6
    try:
        summary = json.loads(ours[-1].stdout)
    except ValueError:
        summary = {}
    ours_levels = {k: v for k, v in (summary.get("by_level") or {}).items() if v}
    true_levels = {k: v for k, v in truth["by_level"].items() if v}
    true_errors = truth["by_level"].get("ERROR", 0) + truth["by_level"].get("CRITICAL", 0)
    true_days = {d["date"]: d["records"] for d in manifest["days"] if d["records"]}
    ours_days = _per_local_day(summary, zone)
    grep_count = int(grep[-1].stdout.strip() or -1)
    counts_ok = (ours_levels == true_levels and summary.get("errors") == true_errors and ours_days == true_days
                 and summary.get("timezone") == ZONE and all(r.returncode == 0 for r in ours))
    wrong_days = {d: (ours_days.get(d), n) for d, n in true_days.items() if ours_days.get(d) != n}

    ours_cpu_s, grep_cpu_s = statistics.median(ours_cpu), statistics.median(grep_cpu)
    load = os.getloadavg()[0]
    span = f"{since:%Y-%m-%d %H:%M}..{until:%Y-%m-%d %H:%M} UTC ({ZONE}, across the 2026-10-25 change)"
    ratio_runs = [g.seconds / o.seconds for o, g in zip(ours, grep, strict=True)]
    return [
        Result("18.4", f"logs summary throughput ({mb / 1000:.2f} GB, {len(files)} files, {ZONE})", mb / ours_s,
               "MB/s", baseline=mb / grep_s, baseline_label="grep -ci error (unzip -p | for .zip)",
               target_text=f"ratio ≥ {MIN_THROUGHPUT_RATIO:g}",
               met=mb / ours_s >= MIN_THROUGHPUT_RATIO * (mb / grep_s) and all(r.returncode == 0 for r in ours),
               command=shell_text(summary_cmd) + f"  (CCOPS_LOGS_TIMEZONE={ZONE})",
               runs=[mb / r.seconds for r in ours], baseline_runs=[mb / r.seconds for r in grep],
               notes=f"{ours_s:.2f} s vs grep {grep_s:.2f} s (medians) over {span}; per-turn ratios "
                     + ", ".join(f"{r:.2f}" for r in ratio_runs) + f"; 1-min load average {load:.1f} on "
                     f"{os.cpu_count()} cores",
               extra={"ours_runs": [r.seconds for r in ours], "grep_runs": [r.seconds for r in grep],
                      "ratio_runs": ratio_runs, "timezone": ZONE, "load_average_1min": load,
                      "grep_command": "bash -c '<for f: unzip -p f | grep -ci error>' FILES"}),
        Result("18.4", "logs summary CPU (user+sys, the command and its workers) for the same bytes",
               ours_cpu_s, "s", baseline=grep_cpu_s, baseline_label="grep -ci error and unzip -p",
               ratio=grep_cpu_s / ours_cpu_s if ours_cpu_s else None, target_text="(context: grep's CPU / ours)",
               met=None, command=shell_text(summary_cmd), runs=ours_cpu, baseline_runs=grep_cpu,
               notes=f"{mb / ours_cpu_s:.0f} MB per CPU-second vs grep's {mb / grep_cpu_s:.0f}: what the wall "
                     "ratio tends to when other jobs keep every core busy"),
        Result("18.4", "error records counted (ERROR+CRITICAL), per level and per local day", float(summary.get("errors", -1)),
               "count", baseline=float(grep_count), baseline_label="grep -ci error lines", ratio=None,
               target_text=f"= {true_errors:,} (true), every level and day exact", met=counts_ok,
               command=shell_text(summary_cmd),
               notes=("all levels and all local days match the generator's counts" if counts_ok else
                      f"MISMATCH: levels {ours_levels} vs true {true_levels}; days (ours, true) {wrong_days}"),
               extra={"true_by_level": truth["by_level"], "analyser_by_level": summary.get("by_level"),
                      "true_grep_error_lines": truth["grep_error_lines"], "grep_count": grep_count,
                      "wrong_days": wrong_days, "problems": summary.get("problems")}),
    ]


def _memory(env: BenchEnv, zone: ZoneInfo) -> Result:
    """Peak RSS over the last 10 of 100 daily files and over all 100 (a temporary 100-day set)."""
    from benchmarks.scale import build_logs, window_truth

    few, many = MEMORY_DAYS
    with tempfile.TemporaryDirectory(prefix="ccops-bench-logs-", dir=env.root) as tmp:
        log_dir = Path(tmp)
        manifest = build_logs(log_dir, int(MEMORY_BYTES), env.as_of, days=many, log=env.log)
        environment = {**env.ccops_env(LC_ALL="C", CCOPS_LOGS_TIMEZONE=ZONE), "CCOPS_LOG_DIR": str(log_dir)}
        runs: dict[int, list[Measured]] = {}
        totals: dict[int, tuple[int, int]] = {}
        for days in MEMORY_DAYS:
            first_day = date.fromisoformat(manifest["days"][-days]["date"])
            cmd = _summary_cmd(*_window(manifest, first_day, zone))
            run_measured(cmd, environment)  # warm the page cache
            runs[days] = [run_measured(cmd, environment) for _ in range(env.repeat)]
            truth = window_truth(manifest, datetime.combine(first_day, time(0)))
            try:
                got = json.loads(runs[days][-1].stdout)
            except ValueError:
                got = {}
            totals[days] = (int(got.get("total", -1)), sum(truth["by_level"].values()))
            assert len(got.get("files", [])) == days, f"{days} files expected, read {got.get('files')}"
        rss = {days: statistics.median(r.max_rss_kb for r in runs[days]) / 1024 for days in MEMORY_DAYS}
    exact = all(ours == true for ours, true in totals.values())
    return Result("18.4", f"analyser peak RSS, {many} daily files vs {few}", rss[many], "MiB",
                  baseline=rss[few], baseline_label=f"{few} files",
                  target_text=f"ratio ≤ {MAX_RSS_GROWTH}", met=rss[many] <= MAX_RSS_GROWTH * rss[few] and exact,
                  command=shell_text(_summary_cmd(*_window(manifest, date.fromisoformat(manifest["days"][0]["date"]),
                                                           zone))) + f" over a {many}-day set vs its last {few} days",
                  runs=[r.max_rss_kb / 1024 for r in runs[many]], baseline_runs=[r.max_rss_kb / 1024 for r in runs[few]],
                  notes=f"peak RSS of the command and its workers (ru_maxrss); {MEMORY_BYTES / 1e6 / many:.0f} MB "
                        f"of text a file; records counted (ours, true): {totals}",
                  extra={"totals": {str(k): v for k, v in totals.items()}})


def run(env: BenchEnv) -> list[Result]:
    zone = ZoneInfo(ZONE)
    return [*_throughput(env, zone), _memory(env, zone)]
