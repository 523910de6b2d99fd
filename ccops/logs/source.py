"""Where the logs are, per the settings: the app's log dir, else `docker compose logs`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from ccops.logs import snapshot
from ccops.logs.clock import LocalClock, naive
from ccops.logs.compose import compose_log_lines
from ccops.logs.counts import count_levels, summarize_dir
from ccops.logs.files import log_files
from ccops.logs.format import LogFormat, format_for, zone_for
from ccops.logs.reader import read_records
from ccops.logs.records import LogRecord, Select, iter_records
from ccops.logs.summary import LogSummary, window

if TYPE_CHECKING:  # pragma: no cover
    from ccops.core.settings import Settings


def summary_for_settings(settings: Settings, since: datetime | None = None, until: datetime | None = None, *,
                         grep_compare: bool = False) -> LogSummary:
    """`ccops logs summary`: the log dir when it exists, else `docker compose logs` under compose.

    `until` None means now, `since` None means 24 h before `until`.
    """
    since, until = window(since, until)
    fmt = format_for(settings)
    zone = zone_for(settings)
    log_dir = settings.app_log_dir()  # no demo default on a deployment: "not configured: set paths.log_dir"
    if log_dir is not None and (log_dir.exists() or settings.effective_backend != "compose"):
        if not (os.environ.get(snapshot.SNAPSHOT_ENV) or snapshot.recording_active()):
            return summarize_dir(log_dir, since, until, grep_compare=grep_compare, zone=zone, fmt=fmt)
        key = snapshot.key_for("summary", log_dir, since, until, zone, fmt.name, bool(grep_compare))
        paths = _window_files(log_dir, since, until, zone, fmt)
        recorded = snapshot.lookup(key, paths) if paths is not None else None
        if isinstance(recorded, LogSummary):
            return recorded
        state = snapshot.file_state(paths) if paths is not None else None  # before the read, as for records
        summary = summarize_dir(log_dir, since, until, grep_compare=grep_compare, zone=zone, fmt=fmt)
        snapshot.record(key, state, summary)
        return summary
    lines = compose_log_lines(settings, since, until, fmt=fmt)
    return count_levels(lines, since, until, grep_compare=grep_compare,
                        source=f"docker compose logs {settings.compose.app_service}", zone=zone, fmt=fmt)


def records_for_settings(settings: Settings, since: datetime, until: datetime,
                         problems: list[str] | None = None, select: Select | None = None) -> Iterator[LogRecord]:
    """Records of the UTC window [since, until) from wherever the logs are (log dir, else compose).

    Lines are read in the format of the setting logs.format and their times in the zone of
    logs.timezone; record.time is UTC.
    """
    since, until = naive(since), naive(until)
    fmt = format_for(settings)
    zone = zone_for(settings)
    log_dir = settings.app_log_dir()  # no demo default on a deployment: "not configured: set paths.log_dir"
    if log_dir is not None and (log_dir.exists() or settings.effective_backend != "compose"):
        select_key = getattr(select, "key", None) if select is not None else ("all",)
        paths = _window_files(log_dir, since, until, zone, fmt) if select_key is not None else None
        if paths is None or not (os.environ.get(snapshot.SNAPSHOT_ENV) or snapshot.recording_active()):
            yield from read_records(log_dir, since, until, problems, select, zone=zone, fmt=fmt)
            return
        key = snapshot.key_for("records", log_dir, since, until, zone, fmt.name, select_key)
        recorded = snapshot.lookup(key, paths)
        if recorded is None:
            found: list[str] = []
            state = snapshot.file_state(paths)  # before the read: a file growing meanwhile is read again
            records = list(read_records(log_dir, since, until, found, select, zone=zone, fmt=fmt))
            snapshot.record(key, state, (records, found))
        else:
            records, found = recorded
        yield from records
        if problems is not None:
            problems.extend(found)
        return
    lines = compose_log_lines(settings, since, until, fmt=fmt)
    for record in iter_records(lines, source="docker compose logs", select=select, clock=LocalClock(zone), fmt=fmt):
        if since <= record.time < until:
            yield record


def _window_files(log_dir: Path, since: datetime, until: datetime, zone: tzinfo | None, fmt: LogFormat) -> list[Path] | None:
    """The files the readers read for this window (None when the dir cannot be listed: the reader says why)."""
    try:
        return log_files(log_dir, naive(since), naive(until), zone, fmt.files)
    except Exception:  # noqa: BLE001 - the reader raises its own, worded error for the same dir
        return None
