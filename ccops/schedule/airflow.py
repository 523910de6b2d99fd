"""The schedule as Apache Airflow DAGs: `ccops schedule export airflow` writes them as one Python file.

Why a generated file and not a plugin: Airflow runs in its own virtualenv
(often on its own host), and a DAG file is imported by every scheduler and
DAG processor loop. So the file imports nothing of ccops and creates nothing
at import; each task shells out to the absolute path of this installation's
`ccops`, from the project directory, exactly as the crontab entry does
(`CCOPS_RUN_MODE=scheduled ccops [--config FILE] [--target NAME] ARGS`).

Decisions an operator should know:
- one DAG per schedule entry, `ccops_<target>.<entry>` (`ccops.<entry>` without
  targets), each holding the one task named after the entry: Airflow gives a DAG
  one schedule, and the entries have cron times of their own, so one DAG per
  target could not keep them. A target's DAGs share the prefix, the tag
  `target:<name>` and one pool.
- the cron times are the crontab's, in the schedule's zone (`[schedule]
  timezone`, else this machine's zone at export time, as cron uses it); the
  first-Sunday / first-Monday guards of monthly and quarterly become a skip
  (the task reads the run's date, data_interval_end, in that zone).
- `max_active_runs=1` (never two runs of one entry) and the pool `ccops_<target>`
  with one slot (never two ccops runs on one deployment) stand in for the local
  lock. ccops still takes its own lock: a run it finds busy exits 75 and the task
  fails (and is retried where retries are allowed).
- retries: none for an entry that changes things, one (after 5 minutes) for a
  read-only one. A runbook entry changes things when the run's `dry_run` is False
  or its `confirm` True, the runbook's own defaults overlaid by the entry's
  `-p` values (backup: dry_run defaults to False, it writes a backup; weekly from
  cron: `-p dry_run false`). A verb entry is read-only only when listed in
  READ_ONLY_VERBS (`health`, ...); `alerts check|digest` send messages, so they
  are not retried.
- the exit code (core/errors.py): 0 OK and 1 WARNING succeed (the task's XCom
  return value is the code, so a WARNING stays visible); 2 CRITICAL and 64 bad
  usage fail at once, never retried (a report to read, a settings fix to make);
  3 (UNKNOWN or the run failed), 75 (already running) and a signal fail the
  task, retried where the entry allows.
"""

from __future__ import annotations

import ast
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ccops.core import errors
from ccops.core.errors import UsageError
from ccops.core.settings import Settings
from ccops.schedule import WEEKDAYS, Entry, ScheduleConfig, load

# the runbook parameters that gate every change (`ccops.actions.guarded`): dry_run False and/or confirm True
GATE_PARAMETERS = ("dry_run", "confirm")
# verb entries (not `run RUNBOOK`) known to read only: safe to retry
READ_ONLY_VERBS = frozenset({("health",), ("logs", "summary"), ("config", "show"), ("config", "check"),
                             ("reports", "list"), ("alerts", "list")})
READ_ONLY_RETRIES = 1
RETRY_DELAY_MINUTES = 5
# the DAG's first date: any day in the past does, catchup is off
START_DATE = (2024, 1, 1)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
JINJA_MARKERS = ("{{", "{%", "{#")

# Declared defaults of a runbook's parameters as written in its `parameters` cell ({"dry_run": "True", ...});
# None when the runbook cannot be read. The caller (the command line) reads them: the notebook reader
# lives in ccops.runbook, above this layer.
DeclaredDefaults = Callable[[str], Mapping[str, str] | None]


@dataclass
class AirflowJob:
    """One schedule entry as an Airflow DAG with its one task."""

    entry: Entry
    dag_id: str
    argv: list[str]
    changes: bool
    retries: int


@dataclass
class AirflowExport:
    """What `ccops schedule export airflow` produced: the file's text and what it holds."""

    text: str
    target: str
    pool: str
    timezone: str
    jobs: list[AirflowJob]

    @property
    def pool_command(self) -> str:
        return pool_command(self.pool, self.target)


def dag_prefix(target: str) -> str:
    """`ccops_<target>`, or `ccops` when the settings name no target."""
    return f"ccops_{target}" if target else "ccops"


def pool_command(pool: str, target: str) -> str:
    where = f" on {target}" if target else ""
    return f"airflow pools set {pool} 1 {shlex.quote(f'ccops: one run at a time{where} (the local lock)')}"


def passed_parameters(args: tuple[str, ...]) -> dict[str, str]:
    """The `-p NAME VALUE` / `--param NAME VALUE` pairs of an entry's ccops arguments."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i] in ("-p", "--param") and i + 2 < len(args):
            found[args[i + 1]] = args[i + 2]
            i += 3
        else:
            i += 1
    return found


def _flag(raw: str | None) -> bool | None:
    """A boolean as the CLI (`-p dry_run false`) or the parameters cell (`dry_run = True`) writes it."""
    if raw is None:
        return None
    text = raw.strip()
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, bool) else None


def changes_things(entry: Entry, declared: Mapping[str, str] | None) -> bool:
    """Whether a run of the entry may change something (then Airflow must not retry it).

    A runbook entry: the gate's parameters as the run will see them (the entry's
    `-p` over the runbook's defaults); a runbook that cannot be read counts as
    changing. A verb entry: read-only only when READ_ONLY_VERBS lists it.
    """
    if not entry.runbook:
        words = tuple(a for a in entry.args if not a.startswith("-"))
        return not any(words[:len(verb)] == verb for verb in READ_ONLY_VERBS)
    if declared is None:
        return True
    passed = passed_parameters(entry.args)
    value = {name: _flag(passed.get(name, declared.get(name))) for name in GATE_PARAMETERS if name in declared}
    return value.get("dry_run") is False or value.get("confirm") is True


def ccops_argv(cfg: ScheduleConfig) -> list[str]:
    """The ccops program as argv: the configured path, or `python -m ccops.cli` when no executable was found."""
    if " " in cfg.ccops and not Path(cfg.ccops).exists():
        return shlex.split(cfg.ccops)
    return [cfg.ccops]


def job_argv(entry: Entry, cfg: ScheduleConfig) -> list[str]:
    """What the task runs: the crontab entry's command (`command_for`) without the cd, the log and the guard."""
    argv = ccops_argv(cfg)
    if cfg.config_file:
        argv += ["--config", str(cfg.config_file)]
    if cfg.target:
        argv += ["--target", cfg.target]
    return argv + list(entry.args)


def local_zone_name(env: Mapping[str, str] | None = None) -> str:
    """This machine's IANA zone, the one cron uses when `[schedule] timezone` is unset; UTC when it has no name."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    def valid(name: str) -> bool:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return False
        return True

    env = os.environ if env is None else env
    tz = env.get("TZ", "").strip().lstrip(":")
    if tz and valid(tz):
        return tz
    try:
        name = Path("/etc/timezone").read_text().strip()
        if name and valid(name):
            return name
    except OSError:
        pass
    try:
        link = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    name = link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else ""
    return name if name and valid(name) else "UTC"


def jobs_for(cfg: ScheduleConfig, declared: DeclaredDefaults) -> list[AirflowJob]:
    """The enabled entries as Airflow jobs; UsageError when a path would read as a Jinja template to Airflow."""
    jobs = []
    for entry in cfg.enabled_entries:
        argv = job_argv(entry, cfg)
        for part in [*argv, str(cfg.project_dir)]:
            if any(marker in part for marker in JINJA_MARKERS):
                raise UsageError(f"schedule entry {entry.name}: {part!r} holds a Jinja marker ({{{{, {{% or {{#}}), "
                                 "which Airflow would render as a template: use a path without it")
        changes = changes_things(entry, declared(entry.runbook) if entry.runbook else None)
        jobs.append(AirflowJob(entry, f"{dag_prefix(cfg.target)}.{entry.name}", argv, changes,
                               0 if changes else READ_ONLY_RETRIES))
    return jobs


def export(settings: Settings, declared: DeclaredDefaults) -> AirflowExport:
    """The DAG file for the settings' schedule and target (`--target`, as the crontab block has it); nothing is written."""
    cfg = load(settings)
    zone = cfg.timezone or local_zone_name()
    jobs = jobs_for(cfg, declared)
    pool = dag_prefix(cfg.target)
    source = str(cfg.config_file or settings.deployment_file or cfg.project_dir)
    return AirflowExport(render(jobs, cfg.target, pool, zone, cfg, source), cfg.target, pool, zone, jobs)


# ---- the file ---------------------------------------------------------------------------

HEADER = '''"""ccops' maintenance schedule{for_target}, as Apache Airflow DAGs.

Generated by `ccops schedule export airflow{target_option}` from {source}.
Do not edit: change [schedule] in ccops' settings and export again.
"""
'''

# The part of the file that is the same for every export: imports that work on Airflow 3 (task SDK,
# standard provider) and 2.x, the exit-code mapping, and the one callable every task runs.
BODY = '''
from __future__ import annotations

import os
import shlex
import signal
import subprocess
from datetime import datetime
from zoneinfo import ZoneInfo

import pendulum

try:  # Airflow 3: the task SDK and the standard provider
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 2.x
    from airflow import DAG
    from airflow.exceptions import AirflowFailException, AirflowSkipException
    from airflow.operators.python import PythonOperator

CCOPS_TARGET = {target!r}
PROJECT_DIR = {project_dir!r}
POOL = {pool!r}
TIMEZONE = {zone!r}
TAGS = {tags!r}
START = pendulum.datetime({start}, tz=TIMEZONE)
RETRY_DELAY = pendulum.duration(minutes={retry_minutes})
STOP_GRACE_SECONDS = 120  # after SIGTERM, ccops stops its run and archives it as killed
WEEKDAYS = {weekdays!r}

# ccops' exit codes (the monitoring-plugin convention, ccops/core/errors.py) and what each makes of the task
SUCCEEDS = {succeeds!r}
FAILS_WITHOUT_RETRY = {fails!r}
# any other code fails the task, retried where the task has retries: {retried}
EXIT_NAMES = {names!r}

DOC = {doc!r}


class CcopsRunFailed(RuntimeError):
    """ccops could not give a report (exit 3, 75, a signal): worth a retry where the entry is read-only."""


def verdict(code):
    """What an exit code makes of the task: "success", "fail" (never retried) or "retry"."""
    if code in SUCCEEDS:
        return "success"
    if code in FAILS_WITHOUT_RETRY:
        return "fail"
    return "retry"


def _stop(proc):
    """The task is being stopped: SIGTERM to ccops' process group (it archives the run as killed), then SIGKILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(STOP_GRACE_SECONDS)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_ccops(argv, weekday=None, **context):
    """Run one ccops command as its crontab entry does; the exit code decides the task's state."""
    if weekday is not None:
        moment = context.get("data_interval_end") or datetime.now(ZoneInfo(TIMEZONE))
        day = moment.astimezone(ZoneInfo(TIMEZONE))
        if day.isoweekday() != weekday:
            raise AirflowSkipException(f"runs on {{WEEKDAYS[weekday]}}s only; {{day:%A %Y-%m-%d}} in {{TIMEZONE}}")
    print("$ cd " + shlex.quote(PROJECT_DIR) + " && CCOPS_RUN_MODE=scheduled " + shlex.join(argv), flush=True)
    env = dict(os.environ, CCOPS_RUN_MODE="scheduled")
    proc = subprocess.Popen(argv, cwd=PROJECT_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    meaning = EXIT_NAMES.get(code, "killed by a signal" if code < 0 else "failed")
    print(f"ccops exited {{code}} ({{meaning}})", flush=True)
    outcome = verdict(code)
    if outcome == "success":
        return code
    if outcome == "fail":
        raise AirflowFailException(f"ccops exited {{code}} ({{meaning}}): read the run's report")
    raise CcopsRunFailed(f"ccops exited {{code}} ({{meaning}})")
'''

DAG_BLOCK = '''

# {name}: {description}{guard}
with DAG(
    dag_id={dag_id!r},
    description={description!r},
    schedule={cron!r},
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=TAGS,
    doc_md=DOC,
):
    PythonOperator(
        task_id={name!r},
        owner="ccops",
        python_callable=run_ccops,
        op_kwargs={{"argv": {argv!r}, "weekday": {weekday!r}}},
        pool=POOL,
        retries={retries!r},  # {why}
        retry_delay=RETRY_DELAY,
    )
'''

DOC = """\
### ccops{for_target}

Each DAG runs one entry of ccops' maintenance schedule (`ccops schedule show`) at the
crontab entry's time, in {zone}, by running `{ccops}` in `{project_dir}`.

**Before the first run, create the pool** that keeps ccops to one run at a time on this
deployment, as its local lock does on one host:

    {pool_command}

Exit codes: 0 OK and 1 WARNING succeed (the task's return value is the code); 2 CRITICAL
and 64 (bad usage) fail at once; 3 (UNKNOWN or the run failed), 75 (already running) and
a signal fail the task, retried once after {retry_minutes} minutes where the entry changes
nothing. Entries that change things (a backup, weekly maintenance) are never retried.
Every run is archived by ccops as usual (`ccops reports list`).
"""


def render(jobs: list[AirflowJob], target: str, pool: str, zone: str, cfg: ScheduleConfig, source: str) -> str:
    """The DAG file's text: a header, the shared body, one `with DAG(...)` block per job."""
    for_target = f" for target {target}" if target else ""
    names = {errors.EXIT_OK: "OK", errors.EXIT_WARNING: "WARNING", errors.EXIT_CRITICAL: "CRITICAL",
             errors.EXIT_UNKNOWN: "UNKNOWN or run failed", errors.EXIT_USAGE: "bad usage",
             errors.EXIT_TEMPFAIL: "already running"}
    doc = DOC.format(for_target=for_target, zone=zone, ccops=shlex.join(ccops_argv(cfg)),
                     project_dir=cfg.project_dir, pool_command=pool_command(pool, target),
                     retry_minutes=RETRY_DELAY_MINUTES)
    text = HEADER.format(for_target=for_target, target_option=f" --target {target}" if target else "",
                         source=source)
    text += BODY.format(
        target=target, project_dir=str(cfg.project_dir), pool=pool, zone=zone,
        tags=["ccops", f"target:{target}"] if target else ["ccops"],
        start=", ".join(str(n) for n in START_DATE), retry_minutes=RETRY_DELAY_MINUTES, weekdays=WEEKDAYS,
        succeeds={errors.EXIT_OK: "OK", errors.EXIT_WARNING: "WARNING"},
        fails={errors.EXIT_CRITICAL: "CRITICAL", errors.EXIT_USAGE: "bad usage"},
        retried="3 UNKNOWN or the run failed, 75 already running, a signal", names=names, doc=doc)
    for job in jobs:
        entry = job.entry
        guard = f"; runs only on {WEEKDAYS[entry.weekday]}s (the task skips other days)" if entry.weekday else ""
        why = "changes things: never retried" if job.changes else "reads only: a failed run is tried again"
        text += DAG_BLOCK.format(name=entry.name, description=" ".join(entry.description.split()), guard=guard,
                                 dag_id=job.dag_id,
                                 cron=entry.cron, argv=job.argv, weekday=entry.weekday, retries=job.retries,
                                 why=why)
    return text
