"""Host checks: disk, memory, uptime, against the guide's alert levels.

The guide's `df -h | grep -E "/$|/var|/data"` misses the filesystems that
actually fill up in this platform (the log and backup directories may be
mounts of their own) and leaves the 20% rule to the reader's eye. ccops checks
every configured path plus the log dir, the backup dir and the local
cluster's data dir, reports each filesystem once (naming all the paths on it,
so a full disk is one alert, not four), and applies thresholds.disk.free_pct
(free below the warning level WARNING, below the critical one CRITICAL). Free means what df's "Avail" means (f_bavail): the
blocks reserved for root are no comfort to a PostgreSQL running as postgres.

Memory in use is MemTotal - MemAvailable: what the kernel could not hand to a
new process without swapping. MemFree alone would call a healthy box with a
warm page cache "full". Graded by thresholds.memory.used_pct.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Status
from ccops.core.thresholds import Thresholds

GIB = 2**30
# The guide's own list (`df -h | grep -E "/$|/var|/data"`): "/" and "/var" are the default disk_paths;
# /data is where the guide keeps the app's data, so it is watched whenever it exists on this host.
GUIDE_OPTIONAL_PATHS: tuple[str, ...] = ("/data",)


def disk_usage(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Filesystem figures for the one holding `path`: device, mount, total/free bytes, free %."""
    stat = os.statvfs(path)
    total = stat.f_blocks * stat.f_frsize
    free = stat.f_bavail * stat.f_frsize
    free_pct = round(100.0 * stat.f_bavail / stat.f_blocks, 2) if stat.f_blocks else 0.0
    return {"device": os.stat(path).st_dev, "mount": mount_point(path), "total_bytes": total,
            "free_bytes": free, "used_bytes": (stat.f_blocks - stat.f_bfree) * stat.f_frsize, "free_pct": free_pct}


def mount_point(path: str | os.PathLike[str]) -> str:
    """The mount point holding path (what df prints in its last column)."""
    current = Path(os.path.realpath(path))
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return str(current)


def classify_disk(free_pct: float, thresholds: Thresholds) -> Status:
    return thresholds.disk.free_pct.grade(free_pct)


def watched_paths(ctx: RunContext, paths: list[str] | None = None) -> list[tuple[str, str]]:
    """(label, path to measure) pairs: configured paths, then the dirs ccops knows fill up.

    The log, backup and data dirs may not exist yet on a fresh setup; what
    matters is the filesystem that will hold them, so they are measured at
    their nearest existing parent. A path named explicitly must exist.
    """
    explicit = list(paths) if paths is not None else list(ctx.settings.disk_paths)
    chosen = [(p, p) for p in explicit]
    if paths is None:
        chosen += [(p, p) for p in GUIDE_OPTIONAL_PATHS if p not in explicit and os.path.isdir(p)]
        derived = [p for p in (ctx.settings.optional("log_dir"), ctx.settings.optional("backup_dir"),
                               ctx.settings.data_dir) if p]
        for path in derived:
            path = Path(path).absolute()
            existing = next((p for p in [path, *path.parents] if p.exists()), Path("/"))
            label = str(path) if existing == path else f"{path} (not created yet)"
            chosen.append((label, str(existing)))
    unique: list[tuple[str, str]] = []
    for pair in chosen:
        if pair[0] not in [u[0] for u in unique]:
            unique.append(pair)
    return unique


@check("host.disk")
def disk_space(ctx: RunContext, paths: list[str] | None = None) -> list[Finding]:
    """Free space of each filesystem holding a watched path, once per filesystem."""
    t = ctx.settings.thresholds
    found: list[Finding] = []
    by_device: dict[int, dict[str, Any]] = {}
    for label, path in watched_paths(ctx, paths):
        try:
            usage = disk_usage(path)
        except FileNotFoundError:
            found.append(Finding(f"host.disk:{label}", Status.UNKNOWN, f"{label} does not exist: cannot measure its disk"))
            continue
        except OSError as exc:
            found.append(Finding(f"host.disk:{label}", Status.UNKNOWN, f"{label}: cannot measure: {exc.strerror or exc}"))
            continue
        entry = by_device.setdefault(usage["device"], {**usage, "paths": []})
        entry["paths"].append(label)
    for entry in by_device.values():
        found.append(_disk_finding(entry, t))
    return found


def _disk_finding(entry: dict[str, Any], t: Thresholds) -> Finding:
    first = entry["paths"][0]
    status = classify_disk(entry["free_pct"], t)
    threshold = t.disk.free_pct.limit(status)
    on = f"{first} (filesystem {entry['mount']})" if entry["mount"] != first else first
    also = f"; also holds {', '.join(entry['paths'][1:])}" if len(entry["paths"]) > 1 else ""
    summary = (f"{on}: {entry['free_pct']:.1f}% free, {_size(entry['free_bytes'])} of "
               f"{_size(entry['total_bytes'])}{also}")
    if status != Status.OK:
        summary += f" (below {threshold:g}%)"
    table = pd.DataFrame({
        "path": entry["paths"],
        "mount": entry["mount"],
        "free_pct": entry["free_pct"],
        "free_gib": round(entry["free_bytes"] / GIB, 2),
        "total_gib": round(entry["total_bytes"] / GIB, 2),
    })
    return Finding(f"host.disk:{first}", status, summary, entry["free_pct"], threshold, data=table)


def _size(count: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 2**20)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count / 1024:,.0f} KiB"


# ---- memory ----------------------------------------------------------------------------------

def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as bytes per key (HugePages_* counts stay counts)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return values


def memory_used_pct(info: dict[str, int]) -> float:
    """(MemTotal - MemAvailable) / MemTotal; kernels before 3.14 lack MemAvailable: estimate it."""
    total = info["MemTotal"]
    available = info.get("MemAvailable")
    if available is None:
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
    return round(100.0 * (total - available) / total, 2) if total else 0.0


def classify_memory(used_pct: float, thresholds: Thresholds) -> Status:
    return thresholds.memory.used_pct.grade(used_pct)


@check("host.memory")
def memory(ctx: RunContext, meminfo_path: str = "/proc/meminfo") -> Finding:
    """Memory in use against thresholds.memory.used_pct (warning/critical); the guide's `free -h`."""
    try:
        info = parse_meminfo(Path(meminfo_path).read_text())
    except OSError as exc:
        return Finding("host.memory", Status.UNKNOWN, f"cannot read {meminfo_path}: {exc.strerror or exc} (not Linux?)")
    if not info.get("MemTotal"):
        return Finding("host.memory", Status.UNKNOWN, f"{meminfo_path} has no MemTotal")
    used = memory_used_pct(info)
    t = ctx.settings.thresholds
    status = classify_memory(used, t)
    threshold = t.memory.used_pct.limit(status)
    swap_used = info.get("SwapTotal", 0) - info.get("SwapFree", 0)
    summary = (f"{used:.1f}% of {_size(info['MemTotal'])} memory in use, "
               f"{_size(info.get('MemAvailable', 0))} available, swap in use {_size(swap_used)}")
    keys = ["MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached", "SwapTotal", "SwapFree"]
    table = pd.DataFrame({"field": [k for k in keys if k in info],
                          "mib": [round(info[k] / 2**20, 1) for k in keys if k in info]})
    return Finding("host.memory", status, summary, used, threshold, data=table)


# ---- uptime ------------------------------------------------------------------------------------

def parse_uptime(text: str) -> float:
    """/proc/uptime's first field: seconds since boot."""
    return float(text.split()[0])


@check("host.uptime")
def uptime_load(ctx: RunContext) -> Finding:
    """The guide's `uptime`: time since boot and load averages, set against the number of CPUs."""
    seconds = parse_uptime(Path("/proc/uptime").read_text())
    load1, load5, load15 = os.getloadavg()
    cpus = os.cpu_count() or 1
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    summary = (f"up {days} d {hours} h {rest // 60} min; load average {load1:.2f}, {load5:.2f}, {load15:.2f} "
               f"(1, 5, 15 min) on {cpus} CPUs, {load15 / cpus:.2f} per CPU over 15 min")
    table = pd.DataFrame({"uptime_s": [round(seconds)], "load1": [load1], "load5": [load5],
                          "load15": [load15], "cpus": [cpus]})
    return Finding("host.uptime", Status.INFO, summary, round(load15, 2), data=table)
