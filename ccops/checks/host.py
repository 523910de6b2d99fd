"""Host checks: disk, memory, uptime, against the guide's alert levels.

The guide's `df -h | grep -E "/$|/var|/data"` misses the filesystems that
actually fill up in this platform (the log and backup directories may be
mounts of their own) and leaves the 20% rule to the reader's eye. ccops checks
every configured path plus the log and backup dirs and the local database's
data dir, reports each filesystem once (naming all paths on it), and applies
the thresholds: < 20% free WARNING, < 10% CRITICAL; memory in use (MemTotal -
MemAvailable, what the kernel could not hand out) > 80% WARNING, > 90%
CRITICAL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ccops.config import Thresholds
from ccops.context import RunContext, check
from ccops.findings import Finding, Status


def disk_usage(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Total, free (for unprivileged users, as df shows) and free % of the filesystem holding path."""
    stat = os.statvfs(path)
    total = stat.f_blocks * stat.f_frsize
    free = stat.f_bavail * stat.f_frsize
    return {"device": os.stat(path).st_dev, "total_bytes": total, "free_bytes": free,
            "free_pct": round(100.0 * stat.f_bavail / stat.f_blocks, 2) if stat.f_blocks else 0.0}


def classify_disk(free_pct: float, thresholds: Thresholds) -> Status:
    if free_pct < thresholds.disk_free_critical_pct:
        return Status.CRITICAL
    if free_pct < thresholds.disk_free_warning_pct:
        return Status.WARNING
    return Status.OK


def watched_paths(ctx: RunContext, paths: list[str] | None) -> list[str]:
    """The configured paths plus the log dir, the backup dir and the local cluster's data."""
    chosen = list(paths) if paths is not None else list(ctx.settings.disk_paths)
    if paths is None:
        chosen += [str(ctx.settings.effective_log_dir), str(ctx.settings.effective_backup_dir)]
        if ctx.settings.embedded:
            from ccops import localpg

            chosen.append(str(localpg.demo_cluster(ctx.settings.home).datadir))
    unique: list[str] = []
    for path in chosen:
        if path not in unique:
            unique.append(path)
    return unique


@check("host.disk")
def disk_space(ctx: RunContext, paths: list[str] | None = None) -> list[Finding]:
    """Free space of each filesystem holding a watched path, once per filesystem."""
    t = ctx.settings.thresholds
    found: list[Finding] = []
    by_device: dict[int, dict[str, Any]] = {}
    for path in watched_paths(ctx, paths):
        if not Path(path).exists():
            found.append(Finding(f"host.disk:{path}", Status.UNKNOWN, f"{path} does not exist"))
            continue
        usage = disk_usage(path)
        entry = by_device.setdefault(usage["device"], {**usage, "paths": []})
        entry["paths"].append(path)
    for entry in by_device.values():
        first = entry["paths"][0]
        status = classify_disk(entry["free_pct"], t)
        threshold = t.disk_free_critical_pct if status == Status.CRITICAL else t.disk_free_warning_pct
        also = f" (also holds {', '.join(entry['paths'][1:])})" if len(entry["paths"]) > 1 else ""
        found.append(Finding(
            f"host.disk:{first}", status,
            f"{first}: {entry['free_pct']:.1f}% free ({entry['free_bytes'] / 2**30:,.1f} of "
            f"{entry['total_bytes'] / 2**30:,.1f} GiB){also}",
            entry["free_pct"], threshold,
            data=pd.DataFrame({"path": entry["paths"]}),
        ))
    return found


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per key."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return values


def memory_used_pct(info: dict[str, int]) -> float:
    total = info["MemTotal"]
    available = info.get("MemAvailable", info.get("MemFree", 0) + info.get("Cached", 0) + info.get("Buffers", 0))
    return round(100.0 * (total - available) / total, 2)


@check("host.memory")
def memory(ctx: RunContext, meminfo_path: str = "/proc/meminfo") -> Finding:
    """Memory in use against 80% (warning) and 90% (critical)."""
    info = parse_meminfo(Path(meminfo_path).read_text())
    used = memory_used_pct(info)
    t = ctx.settings.thresholds
    status = (Status.CRITICAL if used > t.memory_used_critical_pct
              else Status.WARNING if used > t.memory_used_warning_pct else Status.OK)
    threshold = t.memory_used_critical_pct if status == Status.CRITICAL else t.memory_used_warning_pct
    swap = info.get("SwapTotal", 0) - info.get("SwapFree", 0)
    return Finding("host.memory", status,
                   f"{used:.1f}% of {info['MemTotal'] / 2**30:,.1f} GiB memory in use, swap in use {swap / 2**20:,.0f} MiB",
                   used, threshold)


@check("host.uptime")
def uptime_load(ctx: RunContext) -> Finding:
    """Uptime and load averages (the guide's `uptime`), load against the number of CPUs."""
    seconds = float(Path("/proc/uptime").read_text().split()[0])
    load1, load5, load15 = os.getloadavg()
    cpus = os.cpu_count() or 1
    status = Status.WARNING if load15 > 2 * cpus else Status.OK
    days, rest = divmod(int(seconds), 86400)
    return Finding("host.uptime", status if status != Status.OK else Status.INFO,
                   f"up {days} days {rest // 3600} h; load {load1:.2f} {load5:.2f} {load15:.2f} on {cpus} CPUs",
                   round(load15, 2), 2 * cpus)
