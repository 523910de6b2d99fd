"""Issue 18, target 4: the log analyser over a month of logs (1 GB), at least 2x `grep -ci error`.

The figure is `ccops logs summary --json` over every file of the bench log
dir (30 days, 29 of them rotated `.zip`), as an operator runs it; the
baseline is what the guide does, `grep -i error` counting lines, on the same
files (`unzip -p FILE | grep -ci error` for the rotated ones), with LC_ALL=C
so grep is at its fastest. Throughput is uncompressed bytes per second of
wall time. Correctness is against the counts the generator knows: the
analyser's ERROR+CRITICAL records must equal them exactly, grep's line count
is shown for what it is. Memory: the analyser's peak RSS over the last
quarter of the days and over all of them; it must not grow with the input.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime

from benchmarks.harness import BenchEnv, Measured, Result, ccops_command, run_measured, shell_text

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
MAX_RSS_GROWTH = 1.25  # full input may use at most this much more memory than a quarter of it
MIN_THROUGHPUT_RATIO = 2.0  # our MB/s over grep's


def _median(runs: list[Measured]) -> float:
    return statistics.median(r.seconds for r in runs)


def run(env: BenchEnv) -> list[Result]:
    assert env.log_dir is not None
    manifest = env.log_manifest
    from benchmarks.scale import window_truth

    since = datetime.fromisoformat(manifest["since"])
    until = datetime.fromisoformat(manifest["until"])
    truth = window_truth(manifest, since)
    files = [str(env.log_dir / name) for name in truth["files"]]
    summary_cmd = ccops_command() + ["logs", "summary", "--since", since.isoformat(), "--until", until.isoformat(),
                                     "--json"]
    grep_cmd = ["bash", "-c", GREP_SCRIPT, "grep-count", *files]
    # the generator writes UTC times: read them as such (the demo's default zone would shift the window)
    environment = env.ccops_env(LC_ALL="C", CCOPS_LOGS_TIMEZONE="UTC")

    run_measured(summary_cmd, environment)  # warm the page cache for both
    run_measured(grep_cmd, environment)
    ours = [run_measured(summary_cmd, environment) for _ in range(env.repeat)]
    grep = [run_measured(grep_cmd, environment) for _ in range(env.repeat)]
    ours_s, grep_s = _median(ours), _median(grep)
    mb = truth["bytes"] / 1e6
    try:
        summary = json.loads(ours[-1].stdout)
    except ValueError:
        summary = {}
    ours_levels = {k: v for k, v in (summary.get("by_level") or {}).items() if v}
    true_levels = {k: v for k, v in truth["by_level"].items() if v}
    true_errors = truth["by_level"].get("ERROR", 0) + truth["by_level"].get("CRITICAL", 0)
    grep_count = int(grep[-1].stdout.strip() or -1)
    counts_ok = ours_levels == true_levels and summary.get("errors") == true_errors

    quarter_days = max(1, len(manifest["days"]) // 4)
    quarter_since = datetime.fromisoformat(manifest["days"][-quarter_days]["date"])
    quarter_truth = window_truth(manifest, quarter_since)
    quarter_cmd = ccops_command() + ["logs", "summary", "--since", quarter_since.isoformat(), "--until",
                                     until.isoformat(), "--json"]
    quarter = [run_measured(quarter_cmd, environment) for _ in range(max(1, env.repeat))]
    rss_quarter = statistics.median(r.max_rss_kb for r in quarter) / 1024
    rss_full = statistics.median(r.max_rss_kb for r in ours) / 1024

    span = f"{since:%Y-%m-%d}..{until:%Y-%m-%d %H:%M}"
    return [
        Result("18.4", f"logs summary throughput ({mb / 1000:.2f} GB, {len(files)} files)", mb / ours_s, "MB/s",
               baseline=mb / grep_s, baseline_label="grep -ci error (unzip -p | for .zip)",
               target_text=f"ratio ≥ {MIN_THROUGHPUT_RATIO:g}",
               met=mb / ours_s >= MIN_THROUGHPUT_RATIO * (mb / grep_s) and ours[-1].returncode == 0,
               command=shell_text(summary_cmd),
               runs=[mb / r.seconds for r in ours], baseline_runs=[mb / r.seconds for r in grep],
               notes=f"{ours_s:.2f} s vs grep {grep_s:.2f} s over {span}",
               extra={"ours_runs": [r.seconds for r in ours], "grep_runs": [r.seconds for r in grep],
                      "grep_command": "bash -c '<for f: unzip -p f | grep -ci error>' FILES"}),
        Result("18.4", "error records counted (ERROR+CRITICAL)", float(summary.get("errors", -1)), "count",
               baseline=float(grep_count), baseline_label="grep -ci error lines", ratio=None,
               target_text=f"= {true_errors:,} (true)", met=counts_ok, command=shell_text(summary_cmd),
               notes=("all levels match the generator's counts" if counts_ok else
                      f"MISMATCH: analyser {ours_levels} vs true {true_levels}"),
               extra={"true_by_level": truth["by_level"], "analyser_by_level": summary.get("by_level"),
                      "true_grep_error_lines": truth["grep_error_lines"], "grep_count": grep_count,
                      "problems": summary.get("problems")}),
        Result("18.4", f"analyser peak RSS, all {len(files)} files vs last {quarter_days}", rss_full, "MiB",
               baseline=rss_quarter, baseline_label=f"{quarter_truth['bytes'] / 1e6:,.0f} MB input",
               target_text=f"ratio ≤ {MAX_RSS_GROWTH}", met=rss_full <= MAX_RSS_GROWTH * rss_quarter,
               command=shell_text(summary_cmd) + " vs --since " + quarter_since.isoformat(),
               notes=f"input {mb:,.0f} MB vs {quarter_truth['bytes'] / 1e6:,.0f} MB "
                     f"({mb / max(quarter_truth['bytes'] / 1e6, 1e-9):.1f}x)"),
    ]

