"""The guide's log checks, counted by record rather than by `grep`.

The guide reads the app's log with `grep -i error`, `grep -i "critical\\|fatal\\|exception"`
and `grep -i "rate limit"`. Those count lines of text: a traceback adds a dozen
"errors", an INFO line saying "no errors" adds one. These checks read records
(ccops.logs): a record's level decides whether it is an error, and its traceback
lines belong to it. Every window is measured back from ctx.as_of. Logs that cannot
be read at all (no log dir, no docker) give UNKNOWN findings with the reason.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

import pandas as pd

from ccops import logs
from ccops.core.charts import Chart, new_figure
from ccops.core.context import RunContext, check
from ccops.core.errors import NotConfigured
from ccops.core.findings import Finding, Status
from ccops.core.thresholds import Level
from ccops.logs import ratelimit

MAX_ROWS = 200  # rows kept for a table; the counts always cover the whole window
MESSAGE_WIDTH = 200


def _unknown(check_ids: tuple[str, ...], exc: Exception) -> list[Finding]:
    return [Finding(check_id, Status.UNKNOWN, f"no logs to read: {exc}") for check_id in check_ids]


def _no_log_files(ctx: RunContext, check_ids: tuple[str, ...]) -> list[Finding]:
    """WARNING findings when the log dir holds no app log file at all, else [].

    Why: a directory with nothing of the app's (the parent of the real one, say) reads
    as 0 records, which would pass for a quiet, error-free day.
    """
    try:
        log_dir = ctx.settings.app_log_dir()
    except NotConfigured:  # the reader below says so, as UNKNOWN "not configured: set ..."
        return []
    if log_dir is None or not log_dir.is_dir():
        return []
    warning = logs.no_log_files_warning(log_dir)
    return [Finding(check_id, Status.WARNING, warning) for check_id in check_ids] if warning else []


def _when(ctx: RunContext, utc: Any) -> str:
    """A UTC time as reports show it: UTC, and the app's local time when its zone differs."""
    zone = logs.zone_for(ctx.settings)
    stamp = pd.Timestamp(utc).to_pydatetime()
    text = f"{stamp:%Y-%m-%d %H:%M} UTC"
    if logs.zone_name(zone) != "UTC":
        text += f" ({logs.to_local(stamp, zone):%H:%M} {logs.zone_name(zone)})"
    return text


def _problems_note(problems: list[str]) -> str:
    if not problems:
        return ""
    shown = "; ".join(problems[:3]) + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")
    return f" (read with problems: {shown})"


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


# What any of the daily log steps can want: errors (recent_errors), CRITICAL records and
# tracebacks (error_review), rate-limit messages (rate_limit_events_check).
_ERRORS = logs.select_levels(logs.ERROR_LEVELS, tracebacks=True)


def _records(ctx: RunContext, since: Any, until: Any, problems: list[str], select: logs.Select) -> Iterator[logs.LogRecord]:
    """The window's records that `select` wants, from one pass over the log per run.

    The daily runbook asks three questions of the same 24 hours (recent errors,
    exceptions, rate limits); at production volume each pass costs about a
    second, so the first step reads every record any of them could want
    (ERROR and CRITICAL, tracebacks, rate-limit messages) and the others filter
    that list.
    """
    records, found = ctx.cached(_notable_records, since, until)  # one pass per run and window
    problems.extend(found)
    return (r for r in records if select(r.level, r.message.split("\n")))


def _notable_records(ctx: RunContext, since: Any, until: Any) -> tuple[list[logs.LogRecord], list[str]]:
    """One pass over the window's logs for every record any daily log step wants, and the problems met."""
    found: list[str] = []
    # rate-limit messages as the configured log format defines them: refused requests at WARNING+, never a quota figure
    notable = logs.select_any(_ERRORS, ratelimit.select_events(ratelimit.rules_for(ctx.settings)))
    return list(logs.records_for_settings(ctx.settings, since, until, found, notable)), found


def _row(record: logs.LogRecord) -> dict[str, Any]:
    """A table row: `time` is UTC, `local_time` what the log line says (the app's zone)."""
    return {"time": record.time, "local_time": record.written, "level": record.level, "where": record.where,
            "message": record.first_line[:MESSAGE_WIDTH]}


ROW_COLUMNS = ["time", "local_time", "level", "where", "message"]


@check("logs.recent_errors")
def recent_errors(ctx: RunContext, limit: int = 20) -> list[Finding]:
    """The last `limit` ERROR/CRITICAL records of the last 24 h (the guide's `logs | grep -i error`).

    Graded as the guide's monitoring alerts grade errors: per hour (thresholds
    logs.errors_per_hour, warning/critical), on the worst UTC hour of the window. Errors
    below those levels are evidence (INFO), not an alarm: one ERROR a day is a normal
    day for an app that talks to five APIs, and an alert raised every day is ignored.
    """
    empty = _no_log_files(ctx, ("logs.recent_errors",))
    if empty:
        return empty
    since, until = ctx.window(24)
    latest: deque[logs.LogRecord] = deque(maxlen=max(0, int(limit)))
    by_level: Counter[str] = Counter()
    by_hour: Counter[Any] = Counter()
    problems: list[str] = []
    try:
        select = logs.select_levels(logs.ERROR_LEVELS)
        for record in _records(ctx, since, until, problems, select):
            by_level[record.level] += 1
            by_hour[record.time.replace(minute=0, second=0, microsecond=0)] += 1
            latest.append(record)
    except logs.LogSourceError as exc:
        return _unknown(("logs.recent_errors",), exc)
    total = sum(by_level.values())
    table = pd.DataFrame([_row(r) for r in reversed(latest)], columns=ROW_COLUMNS)
    note = _problems_note(problems)
    if not total:
        return [Finding("logs.recent_errors", Status.OK, f"no ERROR or CRITICAL records in the last 24 h{note}",
                        0, data=table)]
    hour, worst = max(by_hour.items(), key=lambda item: (item[1], item[0]))
    status, threshold, word = _grade_hour(ctx, worst)
    summary = (f"{_n(total, 'error record')} in the last 24 h ({by_level['ERROR']} ERROR, {by_level['CRITICAL']} "
               f"CRITICAL); worst hour {_when(ctx, hour)} had {worst}, {word}")
    newest = latest[-1] if latest else None
    if newest is not None:
        summary += f"; latest {_when(ctx, newest.time)} in {newest.where}: {ctx.excerpt(newest.first_line, 120)}"
    return [Finding("logs.recent_errors", status, summary + note, worst, threshold, data=table)]


def _grade_hour(ctx: RunContext, count: int) -> tuple[Status, float, str]:
    """An hour's error count against the guide's per-hour levels: (status, threshold, words)."""
    level = ctx.settings.thresholds.logs.errors_per_hour
    status = level.grade(count, below=Status.INFO)
    return status, level.limit(status), _limit_words(level, status)


def _limit_words(level: Level, status: Status) -> str:
    if status == Status.CRITICAL:
        return f"above the critical limit of {level.limit(status):g}/h"
    if status == Status.WARNING:
        return f"above the warning limit of {level.limit(status):g}/h"
    return f"within the warning limit of {level.first:g}/h"


@check("logs.error_review")
def error_review(ctx: RunContext, hours: int = 24) -> list[Finding]:
    """CRITICAL records and exceptions of the window, and errors per hour against the guide's limits.

    A CRITICAL record is the app saying it cannot go on: CRITICAL. Exceptions are ERROR
    records with a traceback, already graded per hour by logs.errors_per_hour: here they
    are evidence (INFO), the most frequent named, so the review is green on a normal day.
    """
    empty = _no_log_files(ctx, ("logs.error_review", "logs.errors_per_hour"))
    if empty:
        return empty
    since, until = ctx.window(hours)
    per_hour = ctx.settings.thresholds.logs.errors_per_hour
    problems: list[str] = []
    kept: deque[dict[str, Any]] = deque(maxlen=MAX_ROWS)
    criticals = exceptions = 0
    exception_kinds: Counter[str] = Counter()
    try:
        summary = logs.summary_for_settings(ctx.settings, since, until)
        select = logs.select_levels({"CRITICAL"}, tracebacks=True)
        for record in _records(ctx, since, until, problems, select):
            kind = "critical" if record.level == "CRITICAL" else "exception"
            if kind == "critical":
                criticals += 1
            if record.has_traceback:
                exceptions += 1
                exception_kinds[record.exception_line[:MESSAGE_WIDTH]] += 1
            kept.append({**_row(record), "kind": kind, "exception": record.exception_line[:MESSAGE_WIDTH]})
    except logs.LogSourceError as exc:
        return _unknown(("logs.error_review", "logs.errors_per_hour"), exc)
    note = _problems_note(sorted(set(problems) | set(summary.problems)))
    table = pd.DataFrame(list(reversed(kept)),
                         columns=["time", "local_time", "level", "kind", "where", "message", "exception"])
    span = f"the last {hours} h"
    if criticals or exceptions:
        status = Status.CRITICAL if criticals else Status.INFO
        text = f"{_n(criticals, 'CRITICAL record')} and {_n(exceptions, 'exception')} in {span}"
        if exception_kinds:
            kind, n = exception_kinds.most_common(1)[0]
            text += f"; most frequent: {kind} ({n}x)"
    else:
        status, text = Status.OK, f"no CRITICAL records and no exceptions in {span}"
    review = Finding("logs.error_review", status, text + note, criticals + exceptions, data=table)
    return [review, _errors_per_hour(summary, per_hour, span)]


def _errors_per_hour(summary: logs.LogSummary, level: Level, span: str) -> Finding:
    warning = level.first
    frame = summary.errors_per_hour()
    if frame.empty:
        return Finding("logs.errors_per_hour", Status.OK, f"no data: the window ({span}) holds no whole hour", 0,
                       warning, data=frame)
    worst = frame.loc[frame["errors"].idxmax()]
    count, hour = int(worst["errors"]), pd.Timestamp(worst["hour"])
    where = f"{hour:%Y-%m-%d %H:00}-{hour + pd.Timedelta(hours=1):%H:00} UTC"
    if summary.timezone != "UTC":  # and as the app's log shows it
        start, end = summary.local(hour.to_pydatetime()), summary.local((hour + pd.Timedelta(hours=1)).to_pydatetime())
        where += f" ({start:%H:%M}-{end:%H:%M} {summary.timezone})"
    status = level.grade(count)
    threshold, word = level.limit(status), _limit_words(level, status)
    over = int(level.beyond(frame["errors"]).sum())
    text = f"worst hour {where} had {_n(count, 'error record')} (ERROR+CRITICAL), {word}"
    if over > 1:
        text += f"; {over} hours of {span} above {warning:g}/h"
    return Finding("logs.errors_per_hour", status, text, count, threshold, data=frame,
                   chart=_errors_chart(level))


def _errors_chart(level: Level) -> Chart:
    return Chart(x="hour", y="errors", kind="bar", title="ERROR + CRITICAL records per hour",
                 x_label="hour (UTC)", y_label="error records / hour",
                 thresholds={p: getattr(level, p) for p in level.sides()})


@check("apis.rate_limit_events")
def rate_limit_events_check(ctx: RunContext, hours: int = 24) -> list[Finding]:
    """Rate-limit trouble in the log (the guide's `grep -i "rate limit"`), per API and agent."""
    since, until = ctx.window(hours)
    problems: list[str] = []
    try:
        rules = ratelimit.rules_for(ctx.settings)
        events = ratelimit.rate_limit_events(_records(ctx, since, until, problems, ratelimit.select_events(rules)), rules)
    except logs.LogSourceError as exc:
        return _unknown(("apis.rate_limit_events",), exc)
    note = _problems_note(problems)
    if events.empty:
        return [Finding("apis.rate_limit_events", Status.OK, f"no rate-limit events in the last {hours} h{note}", 0,
                        data=events)]
    table = rate_limit_table(events)
    parts = ", ".join(
        f"{row.api} {row.events}" + (f" ({row.agent})" if row.agent else "") for row in table.itertuples()
    )
    text = f"{_n(len(events), 'rate-limit event')} in the last {hours} h: {parts}"
    pending = table[table["latest_reset_at"].notna() & (table["latest_reset_at"] > pd.Timestamp(ctx.as_of))]
    if not pending.empty:
        text += "; still limited: " + ", ".join(
            f"{row.api} until {pd.Timestamp(row.latest_reset_at):%H:%M:%S} UTC" for row in pending.itertuples()
        )
    return [Finding("apis.rate_limit_events", Status.WARNING, text + note, len(events), data=table)]


def rate_limit_table(events: pd.DataFrame) -> pd.DataFrame:
    """Events per API and agent: how many, first and last, lowest remaining, latest reset."""
    grouped = events.groupby(["api", "agent"], dropna=False, sort=False)
    table = grouped.agg(
        events=("time", "size"), first_seen=("time", "min"), last_seen=("time", "max"),
        min_remaining=("remaining", "min"), latest_reset_at=("reset_at", "max"),
    ).reset_index()
    return table.sort_values(["events", "last_seen"], ascending=[False, False]).reset_index(drop=True)


@check("logs.summary")
def log_summary(ctx: RunContext, hours: int = 24) -> list[Finding]:
    """Records by level, and what the guide's `grep -i error | wc -l` would have said instead."""
    empty = _no_log_files(ctx, ("logs.summary",))
    if empty:
        return empty
    since, until = ctx.window(hours)
    try:
        summary = logs.summary_for_settings(ctx.settings, since, until, grep_compare=True)
    except logs.LogSourceError as exc:
        return _unknown(("logs.summary",), exc)
    by_level = summary.by_level
    errors, grep = summary.errors, summary.grep_error_lines or 0
    text = (f"{_n(summary.total, 'record')} in the last {hours} h, {_n(errors, 'error')} "
            f"({by_level.get('ERROR', 0)} ERROR, {by_level.get('CRITICAL', 0)} CRITICAL)")
    if grep != errors:
        extra = grep - by_level.get("ERROR", 0)
        text += (f"; the guide's `grep -i error | wc -l` would say {grep}: it counts lines, not records, "
                 f"so {extra} lines that merely mention \"error\" (other levels' messages, traceback lines) add to it")
    else:
        text += f"; `grep -i error | wc -l` happens to agree ({grep})"
    return [Finding("logs.summary", Status.INFO, text + _problems_note(summary.problems), errors,
                    data=summary.level_table())]


@check("logs.errors_by_day")
def errors_by_day(ctx: RunContext, days: int = 7) -> list[Finding]:
    """The guide's weekly "Errors Last Week" (`logs --since=168h | grep -i error | wc -l`), by record.

    A look back, not an alarm: WARNING when some hour of the period went over the hourly
    warning limit (the daily checks alert in time), OK otherwise.
    """
    empty = _no_log_files(ctx, ("logs.errors_by_day",))
    if empty:
        return empty
    since, until = ctx.window(24 * days)
    level = ctx.settings.thresholds.logs.errors_per_hour
    warning = level.first
    try:
        summary = logs.summary_for_settings(ctx.settings, since, until, grep_compare=True)
    except logs.LogSourceError as exc:
        return _unknown(("logs.errors_by_day",), exc)
    table = errors_per_day(summary)
    hourly = summary.errors_per_hour()
    span = f"the last {days} days"
    text = f"{_n(summary.errors, 'error record')} (ERROR+CRITICAL) in {span}"
    status = Status.OK
    if summary.errors:
        worst_day = table.loc[table["errors"].idxmax()]
        text += f", most on {worst_day['day']:%Y-%m-%d} ({int(worst_day['errors'])})"
        over = hourly[level.beyond(hourly["errors"])]
        if not over.empty:
            status = Status.WARNING
            text += f"; {_n(len(over), 'hour')} above {warning:g} errors/h"
    grep = summary.grep_error_lines or 0
    text += f"; `grep -i error | wc -l` would say {grep}" + _problems_note(summary.problems)
    return [Finding("logs.errors_by_day", status, text, summary.errors, warning, data=table,
                    figure=_daily_figure(table) if summary.errors else None)]


def errors_per_day(summary: logs.LogSummary) -> pd.DataFrame:
    """Per UTC day of the summary: records, warnings, errors, criticals and the worst hour's errors."""
    rows: dict[Any, dict[str, Any]] = {}
    for hour, counts in summary.by_hour.items():
        day = rows.setdefault(hour.date(), {"day": pd.Timestamp(hour.date()), "records": 0, "WARNING": 0,
                                            "ERROR": 0, "CRITICAL": 0, "errors": 0, "worst_hour_errors": 0})
        errors = counts.get("ERROR", 0) + counts.get("CRITICAL", 0)
        day["records"] += sum(counts.values())
        for level in ("WARNING", "ERROR", "CRITICAL"):
            day[level] += counts.get(level, 0)
        day["errors"] += errors
        day["worst_hour_errors"] = max(day["worst_hour_errors"], errors)
    columns = ["day", "records", "WARNING", "ERROR", "CRITICAL", "errors", "worst_hour_errors"]
    return pd.DataFrame([rows[d] for d in sorted(rows)], columns=columns)


def _daily_figure(table: pd.DataFrame) -> Any:
    figure = new_figure(7, 2.6)
    axis = figure.add_subplot(1, 1, 1)
    axis.bar([f"{d:%a %d}" for d in table["day"]], table["errors"], color="#d9534f")
    axis.set_ylabel("errors / day")
    axis.set_title("ERROR + CRITICAL records per day (UTC)", fontsize=10)
    figure.tight_layout()
    return figure
