"""The dead man's switch: a job that did not run is an incident too (healthchecks.io).

Every check so far looks at what happened; nothing looks at what did not.
A daily runbook whose cron line was deleted, whose venv broke or whose run
hangs at the same cell every night leaves no finding at all. So each
scheduled runbook has a cadence (the longest normal gap between two runs),
and when its last completed run is older than the cadence plus a grace
period, that is a CRITICAL alert. "Completed" means the notebook ran to its
end (outcome ok, warning, critical or unknown: its findings are alerted on
their own); a failed, timed-out or killed run does not count as having run.

A job that never completed is measured from when the switch first watched
it, so a fresh installation gets one full cadence before it complains.

Backups get the same treatment with their own limit: the newest *verified*
backup must be younger than thresholds.backup.max_age_hours (a day plus slack for a slow dump).
Verifying reads the whole file, so each verdict is cached in the alert state
by file name, size and mtime, and each backup is read once, not every five
minutes.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ccops.alerts.config import AlertConfig
from ccops.alerts.rules import Candidate, Evaluation
from ccops.alerts.state import iso, parse_iso
from ccops.core.settings import Settings

COMPLETED = ("ok", "warning", "critical", "unknown")
RECORDS_SCANNED = 60


def job_name(runbook: str, part: str | None) -> str:
    return f"{runbook}:{part}" if part and part != "all" else runbook


def _part_of(record: dict[str, Any], archive_dir: Path) -> str:
    """The `part` parameter of a run; list_records gives summaries, so read the record when needed."""
    params = record.get("parameters")
    if params is None:
        rel = (record.get("paths") or {}).get("json")
        try:
            params = json.loads((Path(archive_dir) / rel).read_text(encoding="utf-8")).get("parameters") if rel else {}
        except (OSError, ValueError):
            params = {}
    return str((params or {}).get("part") or "all")


def last_completed_from_archive(records: list[dict[str, Any]], archive_dir: Path, runbook: str,
                                part: str | None) -> datetime | None:
    """Start of the newest completed run of the runbook (a run of all parts counts for each part).

    `records` are archive.list_records(...) summaries, newest first.
    """
    mine = [r for r in records if r.get("runbook") == runbook]
    for record in mine[:RECORDS_SCANNED]:
        if record.get("outcome") not in COMPLETED:
            continue
        run_part = _part_of(record, archive_dir)
        if part and run_part not in ("all", part):
            continue
        return parse_iso(record.get("start"))
    return None


def last_completed_from_state(state: dict[str, Any], runbook: str, part: str | None) -> datetime | None:
    runs = state.get("runs", {})
    times = [parse_iso(runs.get(runbook, {}).get("start"))]
    if part:
        times.append(parse_iso(runs.get(job_name(runbook, part), {}).get("start")))
    known = [t for t in times if t]
    return max(known) if known else None


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 72 else f"{hours / 24:.1f} days"


def overdue_runs(settings: Settings, cfg: AlertConfig, state: dict[str, Any], now: datetime,
                 watch_since: dict[str, str]) -> Evaluation:
    """CRITICAL for every scheduled runbook whose last completed run is older than cadence + grace."""
    from ccops import archive
    from ccops.schedule import installed_at, watched_jobs

    out = Evaluation(covered_prefixes={"deadman:"})
    grace = timedelta(minutes=cfg.deadman_grace_minutes)
    jobs = watched_jobs(settings)
    newest: dict[str, list[dict[str, Any]]] = {}  # per runbook, the runs last_completed_from_archive looks at
    scheduled = installed_at(settings)  # a job cannot be late before one cadence has passed since then
    for entry in jobs:
        job = entry.job
        if entry.runbook is None:  # watched_jobs returns only entries that run a runbook
            continue
        key = f"deadman:{job}"
        if entry.runbook not in newest:  # from the index state: only the shards of the runbook's newest folders
            newest[entry.runbook] = archive.list_records(Path(settings.archive_dir), runbook=entry.runbook,
                                                         newest=RECORDS_SCANNED)
        records = newest[entry.runbook]
        last = max(filter(None, [last_completed_from_state(state, entry.runbook, entry.part),
                                 last_completed_from_archive(records, settings.archive_dir, entry.runbook, entry.part)]),
                   default=None)
        limit = timedelta(hours=entry.cadence_hours or 24) + grace
        since = parse_iso(watch_since.setdefault(job, iso(now))) or now
        reference = last or since
        if scheduled and scheduled > reference:
            reference = scheduled
        age = now - reference
        if age <= limit:
            continue
        if reference is scheduled:
            what = f"no completed run since the schedule was installed at {scheduled:%Y-%m-%d %H:%M} UTC"
        elif last:
            what = f"last completed run started {reference:%Y-%m-%d %H:%M} UTC, {_hours(age)} ago"
        else:
            what = f"no completed run since it was first watched at {since:%Y-%m-%d %H:%M} UTC ({_hours(age)} ago)"
        out.candidates.append(Candidate(
            key, "critical", "Scheduled runbook not running",
            f"{entry.name} (`ccops {' '.join(entry.args)}`, {entry.when}) is overdue: {what}; expected every "
            f"{_hours(limit - grace)} plus {cfg.deadman_grace_minutes:g} min grace", "dead man's switch",
            round(age.total_seconds() / 3600, 2), round(limit.total_seconds() / 3600, 2)))
    return out


def _cached_verification(cache: dict[str, Any], path: Path) -> tuple[bool, str]:
    from ccops.backup import verify_backup

    stat = path.stat()
    entry = cache.get(path.name)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return bool(entry["ok"]), str(entry.get("reason", ""))
    result = verify_backup(path)
    cache[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ok": result.ok, "reason": result.reason}
    return result.ok, result.reason


def latest_verified_backup(backup_dir: Path, cache: dict[str, Any]) -> tuple[Any, list[str]]:
    """(newest verified backup or None, why newer ones failed), reading each new file once."""
    from ccops.backup import list_backups

    failures: list[str] = []
    backups = list_backups(Path(backup_dir), verify=False)
    names = {b.path.name for b in backups}
    for stale in [name for name in cache if name not in names]:
        del cache[stale]
    for info in backups:
        ok, reason = _cached_verification(cache, info.path)
        if ok:
            return info, failures
        failures.append(f"{info.path.name}: {reason}")
    return None, failures


def stale_backup(settings: Settings, cfg: AlertConfig, now: datetime, cache: dict[str, Any],
                 watch_since: dict[str, str]) -> Evaluation:
    """CRITICAL when the newest verified backup is older than backup_max_age_hours (thresholds.backup.max_age_hours)."""
    key = "backup.latest_verified"
    out = Evaluation(covered_keys={key})
    directory = settings.effective_backup_dir
    latest, failures = latest_verified_backup(directory, cache)
    limit = timedelta(hours=cfg.backup_max_age_hours)
    failed = f"; newer backups failed verification: {'; '.join(failures[:3])}" if failures else ""
    if latest is not None:
        age = now - latest.created
        if age <= limit:
            return out
        what = f"the newest verified backup, {latest.path.name}, is {_hours(age)} old"
    else:
        since = parse_iso(watch_since.setdefault("backup", iso(now))) or now
        age = now - since
        if age <= limit:
            return out
        what = f"there is no verified backup in {directory} (watched since {since:%Y-%m-%d %H:%M} UTC)"
    out.candidates.append(Candidate(
        key, "critical", "No recent verified backup",
        f"{what}; limit {cfg.backup_max_age_hours:g} h{failed}", "dead man's switch",
        round(age.total_seconds() / 3600, 2), cfg.backup_max_age_hours))
    return out
