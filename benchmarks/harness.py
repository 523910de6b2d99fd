"""What every benchmark shares: the environment, the result row, and honest timing.

Every figure is reported next to a baseline measured in the same run on the
same machine (the guide's way, or the floor of the tool underneath), and
both are the median of a few repeats; a ratio travels between machines, a
bare number of milliseconds does not. Commands that operators run (`ccops
health`, `ccops run daily`, `ccops logs summary`) are timed as the process
they are, started fresh, so interpreter start-up and imports count as they do
under cron.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """One row of the report: a figure, its baseline, and whether the issue's target is met.

    `runs` and `baseline_runs` are the timed repeats behind a median figure and
    its baseline: the report shows their min / median / max, so a noisy
    machine is visible next to the verdict instead of hidden in it.
    """

    target: str  # the issue and target number, e.g. "18.2" (issue 18, target 2)
    figure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target_text: str = ""
    met: bool | None = None
    command: str = ""
    ratio: float | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    runs: list[float] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.ratio is None and self.unit != "count" and self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchEnv:
    """Where the bench data lives and how to reach it; built lazily by __main__."""

    root: Path
    as_of: datetime
    scale: float
    repeat: int
    url: str = ""
    cluster: Any = None
    db_manifest: dict[str, Any] = field(default_factory=dict)
    log_dir: Path | None = None
    log_manifest: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = print

    @property
    def as_of_text(self) -> str:
        return self.as_of.strftime("%Y-%m-%dT%H:%M:%S")

    def ccops_env(self, **extra: str) -> dict[str, str]:
        """The environment a ccops command sees: the bench database and logs, scratch state dirs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_") and k != "DATABASE_URL"}
        env.update({
            "CCOPS_HOME": str(self.root / "home"),
            "CCOPS_ARCHIVE_DIR": str(self.root / "outputs"),
            "CCOPS_BACKUP_DIR": str(self.root / "backups"),
            "CCOPS_BACKEND": "none",
            "CCOPS_RUNBOOKS_DIR": str(REPO / "runbooks"),
        })
        if self.url:
            env["CCOPS_DATABASE_URL"] = self.url
        if self.log_dir:
            env["CCOPS_LOG_DIR"] = str(self.log_dir)
        env.update(extra)
        return env


def ccops_command() -> list[str]:
    """The installed console script (what cron runs), else the module."""
    script = Path(sys.executable).parent / "ccops"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ccops.cli"]


@dataclass
class Measured:
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    max_rss_kb: int


# A small launcher between us and the measured command. A child's ru_maxrss starts from the RSS
# of the process it was forked from (the pages it shared before exec), so a command forked straight
# from this benchmark process would report our few hundred MB as its own. Forked from this launcher
# (`python -I -S`, a few MB), it reports its real peak, like /usr/bin/time does.
_LAUNCHER = """
import resource, subprocess, sys, time
started = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{seconds!r} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
sys.exit(rc)
"""


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 1800) -> Measured:
    """Run a command; its wall time and the peak RSS of it and its waited-for children."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rusage") as usage:
        launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, usage.name, *cmd]
        try:
            proc = subprocess.run(launcher, stdout=out, stderr=err, env=env, cwd=cwd or REPO, timeout=timeout)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = -9
        fields = usage.read().split()
        seconds, max_rss = (float(fields[0]), int(fields[1])) if len(fields) == 2 else (float(timeout), 0)
        out.seek(0)
        err.seek(0)
        return Measured(seconds, returncode, out.read().decode("utf-8", "replace"),
                        err.read().decode("utf-8", "replace"), max_rss)


def interleaved_runs(commands: list[list[str]], repeat: int, env: dict[str, str] | None = None, warmup: int = 1,
                     before: Callable[[], Any] | None = None, timeout: float = 1800) -> list[list[Measured]]:
    """Each command `repeat` times, taking turns (a, b, a, b, ...), after `warmup` untimed turns.

    Taking turns lets a machine that speeds up or slows down during a benchmark
    move a figure and its baseline alike, and no command inherits a page cache
    only it warmed. `before` runs ahead of every run (dropping a restore target).
    Returns the timed runs per command, in the order of `commands`.
    """
    runs: list[list[Measured]] = [[] for _ in commands]
    for turn in range(warmup + repeat):
        for index, cmd in enumerate(commands):
            if before is not None:
                before()
            measured = run_measured(cmd, env, timeout=timeout)
            if turn >= warmup:
                runs[index].append(measured)
    return runs


def median_seconds(runs: list[Measured]) -> float:
    return statistics.median(r.seconds for r in runs)


def seconds_of(runs: list[Measured]) -> list[float]:
    return [r.seconds for r in runs]


def median_call(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> tuple[float, Any]:
    """Median seconds of fn() over `repeat` calls after `warmup`; returns the last result too."""
    median, result, _ = timed_calls(fn, repeat, warmup)
    return median, result


def timed_calls(fn: Callable[[], Any], repeat: int, warmup: int = 1,
                cpu: list[float] | None = None) -> tuple[float, Any, list[float]]:
    """Median seconds, last result and every timed run of fn() (after `warmup` untimed calls); each run's
    CPU seconds (this process, threads included) appended to `cpu` when given."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - started)
        if cpu is not None:
            cpu.append(time.process_time() - started_cpu)
    return statistics.median(times), result, times


def shell_text(cmd: list[str]) -> str:
    """A command as a reader would type it (repo-relative paths, no venv prefix)."""
    parts = []
    for part in cmd:
        text = str(part)
        if text.startswith(str(REPO) + "/"):
            text = text[len(str(REPO)) + 1:]
        if text.startswith(".venv/bin/"):
            text = text[len(".venv/bin/"):]
        parts.append(text if text and " " not in text else repr(text))
    return " ".join(parts)


# ---- the report ----------------------------------------------------------------

def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit in ("MB/s", "MiB"):
        return f"{value:,.0f} {unit}"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:g} {unit}".strip()


def spread(runs: list[float], unit: str) -> str:
    """`min / median / max` of the timed repeats ("" for one run or none)."""
    if len(runs) < 2:
        return ""
    return " / ".join(fmt(v, unit) for v in (min(runs), statistics.median(runs), max(runs)))


def markdown_table(results: list[Result]) -> str:
    lines = ["| # | figure | value | baseline | ratio | target | met? | command |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        value = fmt(r.value, r.unit)
        if spread(r.runs, r.unit):
            value = f"{value} (min / median / max: {spread(r.runs, r.unit)})"
        baseline = fmt(r.baseline, r.unit)
        if spread(r.baseline_runs, r.unit):
            baseline = f"{baseline} ({spread(r.baseline_runs, r.unit)})"
        if r.baseline_label:
            baseline = f"{baseline} ({r.baseline_label})"
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
        met = {True: "yes", False: "**NO**", None: "—"}[r.met]
        cells = [r.target, r.figure, value, baseline, ratio, r.target_text, met, f"`{r.command}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
