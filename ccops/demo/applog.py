"""The app's log files, written exactly as loguru writes them in production (FACTS.md, Logs).

The log runbooks count by the level field, follow multi-line records, read
rotated `.zip` files and convert the app's local times: the demo's logs must
exercise all of that, so the format is the app's to the byte
(`{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {name}:{function} - {message}`),
in the host's LOCAL time with no zone (the demo's host lives in
Europe/Amsterdam, UTC+1/UTC+2, while the database holds UTC), one file per
local day, every day before the last rotated at local midnight into a zip
named the way loguru names it (`content_creator_2026-12-02.2026-12-02_09-20-33_298768.log.zip`:
the file's creation time) holding the `.log`. Zip member times and file mtimes
are derived from the data, never from the clock, so the same inputs give
byte-identical files. File names follow ccops.logs' one rule (the one the log
checks and the disk clean-up use).
"""

from __future__ import annotations

import calendar
import gzip
import io
import os
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ccops import logs
from ccops.core import fs
from ccops.demo.catalog import TRACE_FRAMES, AgentSpec

LEVELS = logs.LEVELS
DEMO_TIMEZONE = "Europe/Amsterdam"  # the zone of the demo host's clock, so of its log lines


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One loguru record; `extra` are its continuation lines (traceback, lists)."""

    ts: datetime
    level: str
    where: str  # "{name}:{function}"
    message: str
    extra: tuple[str, ...] = ()


def to_local(ts: datetime, zone: ZoneInfo) -> datetime:
    """A naive UTC instant (the database's kind) as the naive local time a log line shows."""
    return ts.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


def format_record(record: LogRecord, zone: ZoneInfo | None = None) -> str:
    """The record's lines; its time in `zone`'s local time (UTC when None)."""
    ts = to_local(record.ts, zone) if zone else record.ts
    head = f"{ts:%Y-%m-%d %H:%M:%S} | {record.level:<8} | {record.where} - {record.message}\n"
    if not record.extra:
        return head
    return head + "\n".join(record.extra) + "\n"


def log_name(day: date) -> str:
    return logs.app_log_name(day)


def rotated_name(day: date, created: datetime) -> str:
    """loguru's name for the zipped file of `day`: the stem, the file's creation time, `.log.zip`."""
    return logs.rotated_log_name(day, created)


def demo_log_files(log_dir: Path) -> list[Path]:
    """The app's dated log files (what this module writes, and what ccops' clean-up made of
    them), in reading order."""
    return [path for path, name in logs.app_log_files(Path(log_dir))
            if name.day is not None and name.stem.startswith(logs.APP_LOG_STEM)]


def write_logs(records: list[LogRecord], log_dir: Path, as_of: datetime, first: datetime | date | None = None,
               timezone: str = DEMO_TIMEZONE) -> list[Path]:
    """Write one file per LOCAL day in `timezone`; days before as_of's local day rotated and zipped
    under loguru's name, as_of's day as the plain `.log` the app is still writing."""
    zone = ZoneInfo(timezone)
    log_dir.mkdir(parents=True, exist_ok=True)
    by_day: dict[date, list[str]] = defaultdict(list)
    created: dict[date, datetime] = {}
    for record in sorted(records, key=lambda r: r.ts):
        if record.ts <= as_of:
            day = to_local(record.ts, zone).date()
            created.setdefault(day, to_local(record.ts, zone))
            by_day[day].append(format_record(record, zone))
    last = to_local(as_of, zone).date()
    if isinstance(first, datetime):
        day = to_local(first, zone).date()
    else:
        day = first or (min(by_day) if by_day else last)
    written: list[Path] = []
    while day <= last:
        data = "".join(by_day.get(day, [])).encode("utf-8")
        if day < last:
            midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
            path = log_dir / rotated_name(day, created.get(day, midnight - timedelta(days=1)))
            _write_atomic(path, _zip_bytes(log_name(day), data, midnight))
            _set_mtime(path, _to_utc(midnight, zone))
        else:
            path = log_dir / log_name(day)
            _write_atomic(path, data)
            _set_mtime(path, as_of)
        written.append(path)
        day += timedelta(days=1)
    return written


def _to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local wall time as a naive UTC instant (the first one, in an autumn's repeated hour)."""
    return local.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def read_log_text(path: Path) -> str:
    """A day's text, whether rotated (zip), compressed by ccops' clean-up (gz) or live (plain)."""
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            return "".join(archive.read(name).decode("utf-8") for name in archive.namelist())
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return handle.read().decode("utf-8")
    return path.read_text(encoding="utf-8")


def _zip_bytes(member: str, data: bytes, when: datetime) -> bytes:
    buffer = io.BytesIO()
    info = zipfile.ZipInfo(member, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    # not fsynced: the demo writes hundreds of these and can regenerate them after a crash
    fs.write_atomic(path, data, None, durable=False)


def _set_mtime(path: Path, when: datetime) -> None:
    stamp = calendar.timegm(when.timetuple())
    os.utime(path, (stamp, stamp))


# ---- records for one agent execution ---------------------------------------------

BASE = "src.agents.base_agent:run"


def run_records(
    agent: AgentSpec, ts: datetime, status: str, exec_s: float, message: str | None, traceback: bool
) -> list[LogRecord]:
    """What base_agent.run logs for one agent_logs row: a DEBUG start, then the outcome at ts."""
    started = ts - timedelta(seconds=exec_s)
    out = [LogRecord(started, "DEBUG", BASE, f"{agent.name} starting {agent.action}")]
    if status == "success":
        out.append(LogRecord(ts, "INFO", BASE, f"{agent.name} completed {agent.action} in {exec_s:.2f}s"))
    elif status == "warning":
        out.append(LogRecord(ts, "WARNING", BASE, f"{agent.name} warning: {message}"))
    else:
        extra = traceback_lines(agent, message or "") if traceback else ()
        out.append(LogRecord(ts, "ERROR", BASE, f"{agent.name} failed: {message}", extra))
    return out


def traceback_lines(agent: AgentSpec, error_message: str) -> tuple[str, ...]:
    """A Python traceback as the app's logger.exception prints it (lines without a timestamp)."""
    lines = [
        "Traceback (most recent call last):",
        '  File "/app/src/agents/base_agent.py", line 88, in run',
        "    result = await self.execute()",
    ]
    frames = TRACE_FRAMES.get(agent.name)
    if error_message.startswith("sqlalchemy."):  # database trouble surfaces in the session, whoever called
        frames = ("src/database/connection.py", "get_db", "session = SessionLocal()",
                  "sqlalchemy/pool/impl.py", "_do_get", "raise exc.TimeoutError(")
    if frames:
        own_file, own_fn, own_call, lib_file, lib_fn, lib_call = frames
        lines += [
            f'  File "{_where(own_file)}", line {40 + len(own_call) % 50}, in {own_fn}',
            f"    {own_call}",
            f'  File "{_where(lib_file)}", line {20 + len(lib_call) % 60}, in {lib_fn}',
            f"    {lib_call}",
        ]
    else:
        module_file = agent.module.replace(".", "/") + ".py"
        lines += [f'  File "/app/{module_file}", line 57, in execute', "    return await self._run_once()"]
    lines.append(error_message)
    return tuple(lines)


def _where(path: str) -> str:
    """The app's code lives in /app, its libraries in the image's site-packages."""
    return f"/app/{path}" if path.startswith("src/") else f"/usr/local/lib/python3.11/site-packages/{path}"
