"""The guide's maintenance schedule as crontab entries, installed as one marked block.

The guide's summary table (daily, weekly, monthly, quarterly) plus its two
cron lines (hourly health check, backup at 02:00) become entries of the
user's crontab. They live in one block between `# BEGIN ccops (managed; do not
edit)` and `# END ccops`; install replaces that block and leaves every other
line as it was, so running it twice changes nothing and `remove` gives back
exactly the crontab the user had.

Decisions an operator should know:
- cron cannot say "first Sunday of the month": its day-of-month and
  day-of-week fields are OR-ed when both are set. The monthly entry fires on
  days 1-7 and a guard `[ "$(date +%u)" = 7 ]` lets only the Sunday through;
  `%` is escaped as `\\%` because cron turns a bare `%` into a newline.
- quarterly runs on the first Monday of January, April, July and October
  (a working day of the quarter's first week, so its report is read that
  week), with the same kind of guard.
- the hourly health check is `ccops health` alone: `ccops alerts check` runs
  every 5 minutes and raises the same findings as alerts (with repeat and
  resolve), so a second alert path from the health line would double them.
- a configured timezone becomes a `CRON_TZ=` line inside the block, which
  cronie (RHEL, Fedora, Alpine, Termux) honours; Debian's and Ubuntu's cron
  ignore CRON_TZ and run entries in the system's zone, so leave `timezone`
  unset there (or set the system zone). The guards use the same zone. The
  block is always placed at the end of the crontab, because crontab variable
  lines apply to every line after them.
- every command is `cd <project dir> && CCOPS_RUN_MODE=scheduled <venv>/bin/ccops [--config FILE] ...`
  with its output appended, after a timestamp line, to `<home>/cron/<name>.log`:
  cron has no virtualenv, no CCOPS_* variables and no working directory; the
  variable marks the run record's mode as `scheduled`.
- the weekly entry applies the guide's weekly database maintenance
  (`-p dry_run false`: VACUUM ANALYZE and REINDEX CONCURRENTLY, non-blocking and
  non-destructive) unless `weekly_maintenance = false`; it never passes confirm.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from ccops.core.errors import CcopsError
from ccops.core.reader import SectionReader
from ccops.core.settings import Settings

BEGIN = "# BEGIN ccops (managed; do not edit)"
END = "# END ccops"


def markers(target: str = "") -> tuple[str, str]:
    """The block's BEGIN and END lines: one block per target ([targets.<name>]), so installing or removing
    staging's schedule never touches production's."""
    if not target:
        return BEGIN, END
    return f"# BEGIN ccops target={target} (managed; do not edit)", f"# END ccops target={target}"
CRONTAB_ENV = "CCOPS_CRONTAB_CMD"
WEEKDAYS = {1: "Monday", 2: "Tuesday", 3: "Wednesday", 4: "Thursday", 5: "Friday", 6: "Saturday", 7: "Sunday"}


class ScheduleError(CcopsError):
    """The crontab could not be read or written, or holds a block ccops cannot safely replace."""


@dataclass
class Entry:
    """One scheduled job: when (cron + optional weekday guard) and which ccops verb."""

    name: str
    cron: str
    args: tuple[str, ...]
    description: str
    weekday: int | None = None  # ISO weekday (1 = Monday .. 7 = Sunday) the guard lets through
    runbook: str | None = None  # the runbook it runs, watched by the dead man's switch
    part: str | None = None
    cadence_hours: float | None = None  # longest normal gap between two runs
    enabled: bool = True
    # the backup's own watch is the stronger "newest verified backup < 26 h" rule, not the run's
    watched: bool = True
    command: str = ""  # the shell command as written to the crontab (filled by build_entries)

    @property
    def job(self) -> str:
        """The dead man's switch's name for it: `daily:morning`, `weekly`, ..."""
        return f"{self.runbook}:{self.part}" if self.part else str(self.runbook)

    @property
    def when(self) -> str:
        guard = f" ({WEEKDAYS[self.weekday]}s only)" if self.weekday else ""
        return self.cron + guard


# The guide's weekly database maintenance (VACUUM ANALYZE, REINDEX CONCURRENTLY) blocks no writer and
# deletes nothing, so the scheduled weekly run does it (dry_run false); dropping invalid leftover
# indexes still needs confirm, which cron never gives. `schedule.weekly_maintenance = false` makes
# the weekly entry a report only.
WEEKLY_MAINTAINS = ("run", "weekly", "-p", "dry_run", "false")
WEEKLY_MAINTAINS_TEXT = "weekly Sunday morning routine, database maintenance applied (VACUUM ANALYZE, REINDEX CONCURRENTLY)"
WEEKLY_REPORTS = ("run", "weekly")
WEEKLY_REPORTS_TEXT = "weekly Sunday morning routine, database maintenance as a dry run (schedule.weekly_maintenance = false)"
RUN_MODE_ASSIGNMENT = "CCOPS_RUN_MODE=scheduled"  # the run record's `mode` (runner.run_mode)

DEFAULT_ENTRIES = (
    Entry("health", "0 * * * *", ("health",), "the guide's hourly health check (scripts/health_check.py)"),
    Entry("alerts", "*/5 * * * *", ("alerts", "check"), "evaluate the alert rules, send, repeat and resolve alerts"),
    Entry("backup", "0 2 * * *", ("run", "backup", "-p", "confirm", "true"),
          "daily backup at 02:00: dump, verify, retention (scripts/backup.sh)", runbook="backup",
          cadence_hours=24, watched=False),
    Entry("daily-morning", "0 7 * * *", ("run", "daily", "-p", "part", "morning"),
          "daily morning checks: health, content, API limits, errors", runbook="daily", part="morning",
          cadence_hours=24),
    Entry("daily-evening", "0 19 * * *", ("run", "daily", "-p", "part", "evening"),
          "daily evening checks: backup, engagement, disk", runbook="daily", part="evening", cadence_hours=24),
    Entry("weekly", "0 6 * * 0", WEEKLY_MAINTAINS, WEEKLY_MAINTAINS_TEXT, runbook="weekly", cadence_hours=7 * 24),
    Entry("monthly", "0 5 1-7 * *", ("run", "monthly"), "monthly, first Sunday of the month", weekday=7,
          runbook="monthly", cadence_hours=35 * 24),
    Entry("quarterly", "0 4 1-7 1,4,7,10 *", ("run", "quarterly"),
          "quarterly, first Monday of January, April, July and October", weekday=1, runbook="quarterly",
          cadence_hours=98 * 24),
    Entry("digest", "0 8 * * *", ("alerts", "digest"), "daily digest of info alerts"),
)

JOB_KEYS = {"cron", "enabled", "args", "weekday", "description", "cadence_hours", "watched"}
TOP_KEYS = {"timezone", "ccops", "project_dir", "log_dir", "jobs", "weekly_maintenance"}


@dataclass
class ScheduleConfig:
    entries: list[Entry]
    timezone: str = ""
    ccops: str = ""
    project_dir: Path = field(default_factory=Path.cwd)
    log_dir: Path = Path(".ccops/cron")
    config_file: Path | None = None
    target: str = ""  # [targets.<name>]: every command names it, and its block is its own

    @property
    def enabled_entries(self) -> list[Entry]:
        return [e for e in self.entries if e.enabled]

    def zone(self) -> tzinfo:
        """The zone cron fires in: the configured one, else the machine's local time (as cron uses)."""
        if self.timezone:
            from zoneinfo import ZoneInfo

            return ZoneInfo(self.timezone)
        from dateutil.tz import tzlocal

        return tzlocal()


# ---- settings ---------------------------------------------------------------------------

def load(settings: Settings) -> ScheduleConfig:
    """[schedule] validated, entries with their commands built; ConfigError naming the key and file."""
    top = SectionReader.of(settings, "schedule")
    top.unknown(TOP_KEYS)
    for key in ("timezone", "ccops", "project_dir", "log_dir"):
        top.string(key)
    # an empty timezone means the machine's local time, as cron uses (zone())
    timezone = top.timezone("timezone") if top.get("timezone") else ""
    # with no ccops.toml the cron job runs where `schedule install` was run, as it always has
    base = settings.config_file.parent if settings.config_file else Path.cwd()
    project_dir = _abs(str(top.path("project_dir") if top.get("project_dir") else base), base)
    log_dir = (_abs(str(top.path("log_dir")), base) if top.get("log_dir")
               else _abs(str(settings.home), Path.cwd()) / "cron")
    cfg = ScheduleConfig(entries=[replace(e) for e in DEFAULT_ENTRIES], timezone=timezone,
                         ccops=top.string("ccops") or default_ccops(), project_dir=project_dir, log_dir=log_dir,
                         config_file=settings.config_file.resolve() if settings.config_file else None,
                         target=settings.target)
    if not top.boolean("weekly_maintenance", True):
        _weekly_report_only(cfg)
    jobs = top.section("jobs")
    by_name = {e.name: e for e in cfg.entries}
    for name in jobs.table:
        job = jobs.section(name)
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise jobs.fail(name, "job names are lower-case letters, digits, '-' and '_'")
        job.unknown(JOB_KEYS)
        entry = by_name.get(name)
        if entry is None:
            if "args" not in job or "cron" not in job:
                raise jobs.fail(name, "a job of your own needs cron and args (the ccops arguments, e.g. [\"health\"])")
            entry = Entry(name, "", (), "")
            cfg.entries.append(entry)
            by_name[name] = entry
        _apply_job(entry, job)
    for entry in cfg.entries:
        entry.command = command_for(entry, cfg)
    return cfg


def _weekly_report_only(cfg: ScheduleConfig) -> None:
    """schedule.weekly_maintenance = false: the weekly entry reports what maintenance would do, and does none."""
    for entry in cfg.entries:
        if entry.name == "weekly":
            entry.args, entry.description = WEEKLY_REPORTS, WEEKLY_REPORTS_TEXT


def _apply_job(entry: Entry, job: SectionReader) -> None:
    """One [schedule.jobs.<name>] over its entry; cron, args and weekday keep their own wording (with an example)."""
    if "cron" in job:
        cron = job.get("cron")
        if not isinstance(cron, str) or not valid_cron(cron):
            raise job.fail("cron", f"expected five cron fields (minute hour day month weekday), got {cron!r}")
        entry.cron = " ".join(cron.split())
    entry.enabled = job.boolean("enabled", entry.enabled)
    if "args" in job:
        args = job.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) and a for a in args):
            raise job.fail("args", f"expected a list of ccops arguments, e.g. [\"run\", \"weekly\"], got {args!r}")
        entry.args = tuple(args)
        entry.runbook, entry.part = _runbook_of(entry.args)
    if "weekday" in job:
        day = job.get("weekday")
        if day is not False and (isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 7):
            raise job.fail("weekday", f"expected 1 (Monday) to 7 (Sunday), or false for no guard, got {day!r}")
        entry.weekday = day or None
    entry.description = job.string("description", entry.description)
    entry.watched = job.boolean("watched", entry.watched)
    if "cadence_hours" in job:
        entry.cadence_hours = job.number("cadence_hours", 0.0, above=0)
    if entry.runbook and entry.cadence_hours is None:
        entry.cadence_hours = 24.0


def _runbook_of(args: tuple[str, ...]) -> tuple[str | None, str | None]:
    if len(args) < 2 or args[0] != "run":
        return None, None
    part = None
    for i, arg in enumerate(args[:-2]):
        if arg in ("-p", "--param") and args[i + 1] == "part":
            part = args[i + 2]
    return args[1].removesuffix(".ipynb"), (part if part not in (None, "all") else None)


def valid_cron(expression: str) -> bool:
    """Five standard fields that croniter accepts (no seconds field, no @reboot)."""
    from croniter import croniter

    return len(expression.split()) == 5 and croniter.is_valid(expression)


def _abs(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def default_ccops() -> str:
    """The ccops of this installation: beside the running interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "ccops"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ccops")
    return found or f"{sys.executable} -m ccops.cli"


def watched_jobs(settings: Settings) -> list[Entry]:
    """The enabled entries that run a runbook: what the dead man's switch expects to see succeed."""
    return [e for e in load(settings).enabled_entries if e.runbook and e.watched]


# ---- rendering --------------------------------------------------------------------------

def cron_escape(command: str) -> str:
    """Escape `%`, which cron would turn into a newline and feed the rest to stdin."""
    return command.replace("%", "\\%")


def command_for(entry: Entry, cfg: ScheduleConfig) -> str:
    """The shell command cron runs for an entry (before %-escaping)."""
    ccops = cfg.ccops if " " in cfg.ccops and not Path(cfg.ccops).exists() else shlex.quote(cfg.ccops)
    config = f" --config {shlex.quote(str(cfg.config_file))}" if cfg.config_file else ""
    log = shlex.quote(str(cfg.log_dir / f"{entry.name}.log"))
    stamp = 'echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) ' + entry.name + '"'
    target = f" --target {shlex.quote(cfg.target)}" if cfg.target else ""
    verb = f"{RUN_MODE_ASSIGNMENT} {ccops}{config}{target} {shlex.join(entry.args)}"
    run = f"cd {shlex.quote(str(cfg.project_dir))} && {{ {stamp}; {verb}; }} >> {log} 2>&1"
    if entry.weekday:
        tz = f"TZ={shlex.quote(cfg.timezone)} " if cfg.timezone else ""
        run = f'[ "$({tz}date +%u)" = {entry.weekday} ] && {run}'
    return run


def render_block(entries: list[Entry], timezone: str = "", source: str = "", target: str = "") -> str:
    """The managed block, ending with a newline; entries need their `command` filled (build via load)."""
    begin, end = markers(target)
    lines = [begin, "# `ccops schedule show` explains it, `ccops schedule install` rewrites it,"
                    " `ccops schedule remove` takes it out."]
    if source:
        lines.append(f"# settings: {source}")
    if timezone:
        lines.append(f"# times below are {timezone} (CRON_TZ needs cronie; Debian's cron uses the system zone)")
        lines.append(f"CRON_TZ={timezone}")
    for entry in entries:
        if not entry.enabled:
            continue
        guard = f"; runs only on {WEEKDAYS[entry.weekday]}s" if entry.weekday else ""
        lines.append(f"# {entry.name}: {entry.description}{guard}")
        lines.append(f"{entry.cron} {cron_escape(entry.command)}")
    lines.append(end)
    return "\n".join(lines) + "\n"


def _block_span(lines: list[str], target: str = "") -> tuple[int, int] | None:
    """(first, last) line index of the managed block, None when absent; ScheduleError when half there."""
    begin, end = markers(target)
    begins = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        where = ", ".join(str(i + 1) for i in sorted(begins + ends))
        raise ScheduleError(f"the crontab's ccops markers are not one BEGIN followed by one END (lines {where}); "
                            "fix them with `crontab -e` before installing or removing")
    return begins[0], ends[0]


def remove_from(existing: str, target: str = "") -> str:
    """The crontab without the managed block; every other line kept as it was."""
    lines = existing.splitlines()
    span = _block_span(lines, target)
    if span is None:
        return existing
    kept = lines[: span[0]] + lines[span[1] + 1:]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept) + "\n" if kept else ""


def merge_into(existing: str, block: str, target: str = "") -> str:
    """The crontab with the block (re)placed at its end: idempotent, every other line kept.

    With several targets, "the end" is the run of ccops blocks there: a block
    followed only by other targets' blocks stays where it is, so installing
    production's schedule again does not move it behind staging's (and the
    crontab, unchanged, is not rewritten).
    """
    lines = existing.splitlines()
    span = _block_span(lines, target)
    if span is not None and _only_ccops_blocks(lines[span[1] + 1:]):
        after = "\n".join(lines[span[1] + 1:])
        return "\n".join(lines[: span[0]]) + ("\n" if span[0] else "") + block + (after + "\n" if after else "")
    rest = remove_from(existing, target).rstrip("\n")
    return (rest + "\n\n" if rest else "") + block


def _only_ccops_blocks(lines: list[str]) -> bool:
    """Whether these crontab lines are nothing but ccops' own managed blocks (and blank lines)."""
    inside = False
    for line in lines:
        text = line.strip()
        if text.startswith("# BEGIN ccops") and text.endswith("(managed; do not edit)"):
            inside = True
        elif text.startswith("# END ccops") and inside:
            inside = False
        elif not inside and text:
            return False
    return not inside


def installed_block(existing: str, target: str = "") -> str | None:
    lines = existing.splitlines()
    span = _block_span(lines, target)
    return None if span is None else "\n".join(lines[span[0]: span[1] + 1]) + "\n"


# ---- next runs --------------------------------------------------------------------------

def next_run(entry: Entry, after: datetime, zone: tzinfo) -> datetime | None:
    """The first time after `after` that the entry really runs (cron fires and the guard lets it through)."""
    from croniter import croniter

    start = after.replace(tzinfo=zone) if after.tzinfo is None else after.astimezone(zone)
    it = croniter(entry.cron, start)
    for _ in range(5000):
        moment = it.get_next(datetime)
        if entry.weekday is None or moment.isoweekday() == entry.weekday:
            return moment
    return None


def next_runs(entries: list[Entry], after: datetime, zone: tzinfo | None = None) -> list[tuple[Entry, datetime | None]]:
    """Each enabled entry with its next run after `after` (naive = in `zone`), in `zone`."""
    from datetime import UTC

    zone = zone or UTC
    return [(e, next_run(e, after, zone)) for e in entries if e.enabled]


# ---- the crontab ------------------------------------------------------------------------

def crontab_command(explicit: str | None = None) -> list[str]:
    """The crontab program: the argument, $CCOPS_CRONTAB_CMD, else `crontab` on PATH."""
    raw = explicit or os.environ.get(CRONTAB_ENV) or "crontab"
    cmd = shlex.split(raw)
    if not cmd or shutil.which(cmd[0]) is None:
        raise ScheduleError(f"{cmd[0] if cmd else raw!r} not found: install cron (e.g. apt-get install cron) "
                            f"or point {CRONTAB_ENV} at a crontab program")
    return cmd


def read_crontab(cmd: list[str]) -> str:
    """The user's crontab text ('' when there is none)."""
    proc = subprocess.run([*cmd, "-l"], capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return proc.stdout
    if "no crontab" in proc.stderr.lower():
        return ""
    raise ScheduleError(f"`{shlex.join([*cmd, '-l'])}` failed: {proc.stderr.strip() or proc.returncode}")


def write_crontab(cmd: list[str], text: str) -> None:
    proc = subprocess.run([*cmd, "-"], input=text, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise ScheduleError(f"`{shlex.join([*cmd, '-'])}` refused the new crontab: {proc.stderr.strip() or proc.returncode}")


@dataclass
class Change:
    action: str  # installed | unchanged | removed | absent
    entries: int
    other_lines: int
    crontab: str

    def line(self) -> str:
        what = {"installed": f"installed {self.entries} ccops entries", "unchanged": "already installed, unchanged",
                "removed": "removed the ccops block", "absent": "no ccops block to remove"}[self.action]
        return f"{what}; {self.other_lines} other crontab lines kept"


def _other_lines(text: str, target: str = "") -> int:
    return sum(1 for line in remove_from(text, target).splitlines() if line.strip())


def install(settings: Settings, crontab: str | None = None) -> Change:
    """Write the block into the user's crontab (create the log dir first: `>>` would fail without it)."""
    cfg = load(settings)
    cmd = crontab_command(crontab)
    current = read_crontab(cmd)
    block = render_block(cfg.entries, cfg.timezone, str(cfg.config_file or cfg.project_dir), cfg.target)
    new = merge_into(current, block, cfg.target)
    entries = len(cfg.enabled_entries)
    if new == current:
        return Change("unchanged", entries, _other_lines(current, cfg.target), current)
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    write_crontab(cmd, new)
    _record_install(settings)
    return Change("installed", entries, _other_lines(new, cfg.target), new)


INSTALL_RECORD = "schedule.json"


def _record_install(settings: Settings) -> None:
    """When the schedule was (re)installed: the dead man's switch gives each job a cadence from then."""
    import json
    from datetime import UTC

    from ccops.archive import write_atomic

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_atomic(Path(settings.home) / INSTALL_RECORD, json.dumps({"installed_at": now}) + "\n")


def installed_at(settings: Settings) -> datetime | None:
    """The last `ccops schedule install` that changed the crontab (naive UTC), if any."""
    import json

    try:
        text = json.loads((Path(settings.home) / INSTALL_RECORD).read_text())["installed_at"]
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(settings: Settings | None = None, crontab: str | None = None) -> Change:
    target = settings.target if settings else ""
    cmd = crontab_command(crontab)
    current = read_crontab(cmd)
    if installed_block(current, target) is None:
        return Change("absent", 0, _other_lines(current, target), current)
    new = remove_from(current, target)
    write_crontab(cmd, new)
    return Change("removed", 0, _other_lines(new, target), new)


def show(settings: Settings, after: datetime | None = None, crontab: str | None = None) -> dict[str, Any]:
    """The entries, their next runs, and whether the installed block matches (when a crontab is readable)."""
    from datetime import UTC

    cfg = load(settings)
    zone = cfg.zone()
    moment = after or datetime.now(UTC)
    block = render_block(cfg.entries, cfg.timezone, str(cfg.config_file or cfg.project_dir), cfg.target)
    try:
        current = read_crontab(crontab_command(crontab))
        present = installed_block(current, cfg.target)
        status = "not installed" if present is None else ("installed" if present == block else
                                                          "installed but differs: run `ccops schedule install`")
    except (ScheduleError, OSError, subprocess.SubprocessError) as exc:
        status = f"unknown ({exc})"
    from ccops.core.runbooks import available

    runbooks = set(available(settings.effective_runbooks_dir))
    rows = []
    for entry, when in next_runs(cfg.entries, moment, zone):
        missing = bool(entry.runbook) and entry.runbook not in runbooks
        rows.append({"name": entry.name, "cron": entry.cron, "weekday": entry.weekday, "when": entry.when,
                     "description": entry.description, "command": entry.command,
                     "next_run": when.isoformat() if when else None, "runbook_missing": missing})
    return {"timezone": cfg.timezone or "system local time", "status": status, "entries": rows, "block": block}
