"""The app's loguru logs: find the files, read them, count records by level.

The maintenance guide counts errors with `grep -i error | wc -l`. That counts
lines of text, not error records: every INFO line that mentions an error and
every traceback line adds one. ccops counts *records* by their level field,
with a record's continuation lines (tracebacks, lists) belonging to it.

What a log looks like is a `LogFormat` (format.py): the header as a loguru format
string, the file names, the time zone handling and the rate-limit rules. Every reader
derives what it needs from it; the formats live in formats/, one module each, and the
setting logs.format picks one (default: the app's own, `contentcreator`)::

    2025-11-23 15:23:43 | ERROR    | __main__:_error - Missing package: Tweepy            contentcreator
    2025-11-23 15:23:43.123 | ERROR    | __main__:_error:42 - Missing package: Tweepy     loguru_default

The package, by concern:

- format.py, formats/: the seam and its instances;
- files.py: the one file-name rule, and the files of a window;
- decompress.py: .zip / .gz (inflated with ISA-L), and damaged files;
- clock.py: the app's local times to UTC (logs.timezone), DST included;
- records.py: records and the selectors that choose them;
- reader.py: whole-line blocks, lines, records of a window, the worker pool;
- fastcount.py, counts.py: counting by level and UTC hour (numpy for whole blocks);
- parallel.py: a directory's files counted in forked worker processes, one file per task;
- summary.py: the result as tables, JSON and text;
- compose.py, source.py: `docker compose logs`, and choosing the source from the settings;
- ratelimit.py: refused requests, quota, who and until when.

This module is the public face: callers import from `ccops.logs` and need not know
the layout above.
"""

from __future__ import annotations

from ccops.logs.clock import (
    STOP_SLACK,
    TIME_FORMAT,
    ZERO,
    LocalClock,
    gap_note,
    to_local,
    zone_name,
    zone_named,
)
from ccops.logs.compose import (
    ANSI_RE,
    COMPOSE_PREFIX_RE,
    COMPOSE_TIMEOUT_SECONDS,
    compose_command,
    compose_log_lines,
    parse_compose_lines,
)
from ccops.logs.counts import count_levels, summarize, summarize_dir
from ccops.logs.decompress import READ_ERRORS
from ccops.logs.errors import LogSourceError
from ccops.logs.files import (
    APP_FILES,
    APP_LOG_STEM,
    DATE_RE,
    LOG_NAME_RE,
    LOG_PATTERNS,
    NOT_RECORD_STEMS,
    FileNames,
    LogName,
    app_log_files,
    app_log_name,
    archived_log_name,
    compressed_log_name,
    file_day,
    log_files,
    no_log_files_warning,
    parse_log_name,
    rotated_log_name,
)
from ccops.logs.format import (
    DEFAULT_FORMAT,
    ERROR_LEVELS,
    LEVELS,
    Layout,
    LogFormat,
    RateLimitRules,
    all_formats,
    default_format,
    format_for,
    format_named,
    zone_for,
)
from ccops.logs.reader import BLOCK_SIZE, open_text, read_records
from ccops.logs.records import (
    TRACEBACK,
    LogRecord,
    Select,
    Selector,
    iter_records,
    select_any,
    select_levels,
    select_matching,
)
from ccops.logs.source import records_for_settings, summary_for_settings
from ccops.logs.summary import DEFAULT_WINDOW, LogSummary

__all__ = [
    "ANSI_RE", "APP_FILES", "APP_LOG_STEM", "BLOCK_SIZE", "COMPOSE_PREFIX_RE", "COMPOSE_TIMEOUT_SECONDS", "DATE_RE",
    "DEFAULT_FORMAT", "DEFAULT_WINDOW", "ERROR_LEVELS", "LEVELS", "LOG_NAME_RE", "LOG_PATTERNS", "NOT_RECORD_STEMS",
    "READ_ERRORS", "STOP_SLACK", "TIME_FORMAT", "TRACEBACK", "ZERO", "FileNames", "Layout", "LocalClock", "LogFormat",
    "LogName", "LogRecord", "LogSourceError", "LogSummary", "RateLimitRules", "Select", "Selector", "app_log_files",
    "app_log_name", "archived_log_name", "compose_command", "compose_log_lines", "compressed_log_name", "count_levels",
    "default_format", "file_day", "format_for", "format_named", "all_formats", "gap_note", "iter_records", "log_files",
    "no_log_files_warning", "open_text", "parse_compose_lines", "parse_log_name", "read_records",
    "records_for_settings", "rotated_log_name", "select_any", "select_levels", "select_matching", "summarize",
    "summarize_dir", "summary_for_settings", "to_local", "zone_for", "zone_name", "zone_named",
]
