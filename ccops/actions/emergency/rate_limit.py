"""API rate limit exceeded: who was refused, hold what the app lets us hold, resume at the reset.

The guide: grep the log for "rate limit", set ENABLE_<AGENT>=false in .env,
wait, re-enable. The real app has no ENABLE_* keys and refuses to start with a
key it does not define (FACTS.md), so this runbook offers what the app
supports, in two phases of one notebook:

- `phase = "pause"`: the refused requests (429s) of the last hours, the agent
  behind them inferred from agent_logs and the client -> agent map (labelled
  "inferred"), the reset from a live probe or the API's window after the last
  429. If the reset has passed, nothing is paused. Otherwise, by `mode`:
  `hold_publishing` sets HUMAN_IN_THE_LOOP=true (content waits for approval, so
  nothing is published to X), `stop` stops the app, `agent` sets a per-agent key
  only when ratelimit.agent_key_template names one the app defines. `auto` holds
  publishing for X and stops the app for other APIs. Every .env edit is checked
  by the app's own settings load and put back byte for byte if it fails. The
  previous value (or its absence) is recorded in `<home>/ratelimit/pause.json`,
  and the resume time is written in the report; `schedule_resume` installs a
  one-shot crontab line that runs the resume phase then.
- `phase = "resume"`: restores exactly what the pause changed (the previous
  value, or no line at all), starts or restarts the app, removes the one-shot
  line, and checks the agents' errors since.
Headless runs never sleep until a reset: cron (or an operator) runs the resume.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from ccops import actions, logs
from ccops.core import fs
from ccops.core.context import RunContext, check, describe
from ccops.core.db import query_df
from ccops.core.findings import Finding, Findings, Status
from ccops.deploy import appenv
from ccops.logs import ratelimit

RESUME_MARGIN = timedelta(minutes=5)
HOLD_KEY = "HUMAN_IN_THE_LOOP"
MODES = ("auto", "hold_publishing", "stop", "agent")
ONE_SHOT_BEGIN = "# BEGIN ccops one-shot: rate-limit resume (removed by the resume run)"
ONE_SHOT_END = "# END ccops one-shot"
EVENT_TABLE = ["api", "client", "agent", "attribution", "events", "first_event", "last_event", "reset_at"]


# ---- step 1: who was refused --------------------------------------------------------------

def events_in(ctx: RunContext, hours: float) -> tuple[pd.DataFrame, str]:
    """The window's refused requests, each with its inferred agent (read once per run, shared by the later steps)."""
    return ctx.cached(_attributed_events, hours)


def _attributed_events(ctx: RunContext, hours: float) -> tuple[pd.DataFrame, str]:
    since, until = ctx.as_of - timedelta(hours=hours), ctx.as_of
    rules = ratelimit.rules_for(ctx.settings)  # what the configured log format calls a refused request
    records = logs.records_for_settings(ctx.settings, since, until, select=ratelimit.select_events(rules))
    events = ratelimit.rate_limit_events(records, rules)
    cfg = ratelimit.config_of(ctx.settings)
    if events.empty:
        return ratelimit.attribute(events, cfg, None)
    try:
        with ctx.db() as conn:
            return ratelimit.attribute(events, cfg, conn)
    except Exception as exc:  # noqa: BLE001 - no database: the client map still names candidates
        attributed, _ = ratelimit.attribute(events, cfg, None)
        return attributed, f"agent_logs not read ({describe(exc)}): agents inferred from the client map only"


def event_table(events: pd.DataFrame) -> pd.DataFrame:
    """Events grouped by API, client and inferred agent, newest group first."""
    if events.empty:
        return pd.DataFrame(columns=EVENT_TABLE)
    grouped = events.groupby(["api", "client", "agent", "attribution"], dropna=False, sort=False).agg(
        events=("time", "size"), first_event=("time", "min"), last_event=("time", "max"),
        reset_at=("reset_at", "max")).reset_index()
    return grouped.sort_values("last_event", ascending=False).reset_index(drop=True)[EVENT_TABLE]


def quota_note(ctx: RunContext, hours: float) -> Finding | None:
    """Remaining-quota figures of successful responses: "approaching the limit" at most, never an event."""
    since, until = ctx.as_of - timedelta(hours=hours), ctx.as_of
    rules = ratelimit.rules_for(ctx.settings)
    readings = ratelimit.quota_readings(logs.records_for_settings(ctx.settings, since, until,
                                                                  select=ratelimit.select_quota(rules)), rules)
    if readings.empty:
        return None
    low = ratelimit.approaching(readings, ctx.settings.apis.remaining_warning_share)
    share = f"{ctx.settings.apis.remaining_warning_share:.0%}"
    if low.empty:
        return Finding("rate_limit.quota", Status.OK,
                       f"{len(readings)} successful responses reported their remaining quota; none under {share} "
                       "(quota figures are not rate-limit events)", len(readings))
    parts = ", ".join(f"{r.api} {int(r.remaining)} of {int(r.limit)} left at {pd.Timestamp(r.time):%H:%M}"
                      for r in low.itertuples())
    return Finding("rate_limit.quota", Status.INFO, f"approaching the limit (under {share} left): {parts}",
                   int(low["remaining"].min()), data=low)


@check("rate_limit.events")
def who_is_limited(ctx: RunContext, hours: float = 6) -> list[Finding]:
    """Step 1: the refused requests (429s) of the last hours, by API and inferred agent."""
    events, note = events_in(ctx, hours)
    found = [f for f in [quota_note(ctx, hours)] if f is not None]
    if events.empty:
        return [Finding("rate_limit.events", Status.OK,
                        f"no rate-limit events (refused requests) in the log in the last {hours:g} h", 0), *found]
    table = event_table(events)
    top = table.iloc[0]
    reset, basis = reset_for(ctx, events, str(top["api"]))
    who = f"{top['agent']} ({top['attribution']})" if top["agent"] else "no agent known"
    text = (f"{len(events)} refused requests (HTTP 429) in the last {hours:g} h; latest: the {top['api']} API via "
            f"{top['client'] or 'an unnamed client'}, {who}, last at {pd.Timestamp(top['last_event']):%H:%M:%S} UTC")
    if reset is not None and reset <= ctx.as_of:
        status, text = Status.WARNING, text + f"; the limit reset at {reset:%Y-%m-%d %H:%M:%S} UTC ({basis})"
    else:
        until = f" until {reset:%Y-%m-%d %H:%M:%S} UTC ({basis})" if reset is not None else ""
        status, text = Status.CRITICAL, text + f"; still limited{until}"
    if note:
        text += f"; {note}"
    return [Finding("rate_limit.events", status, text, len(events), data=table), *found]


def probed_reset(ctx: RunContext, api: str) -> tuple[datetime | None, str]:
    """What this run's live probe of `api` said: (reset, "") when exhausted, (None, why) when not limited now."""
    for finding in reversed(ctx.findings):
        if finding.check != f"apis.{api}.rate_limit" or finding.data is None or finding.data.empty:
            continue
        row = finding.data.iloc[0]
        exhausted = row.get("status_code") == 429 or row.get("remaining") == 0
        reset = row.get("reset_at")
        if exhausted and reset is not None and not pd.isna(reset):
            return pd.Timestamp(reset).to_pydatetime(), ""
        if not exhausted and row.get("remaining") is not None and not pd.isna(row.get("remaining")):
            return None, f"the live probe shows {int(row['remaining'])} of {row['limit']} requests left"
    return None, ""


def reset_for(ctx: RunContext, events: pd.DataFrame, api: str) -> tuple[datetime | None, str]:
    """When `api`'s limit resets: the live probe, else the log, else the window after the last 429."""
    probed, not_limited = probed_reset(ctx, api)
    if not_limited:
        return ctx.as_of, not_limited
    cfg = ratelimit.config_of(ctx.settings)
    return ratelimit.reset_estimate(events, api, cfg, probed)


# ---- step 2: pause -----------------------------------------------------------------------------

@dataclass
class Plan:
    """What a pause would do, decided before anything changes."""

    mode: str
    api: str
    agent: str
    resume_at: datetime | None
    basis: str
    key: str = ""
    value: str = ""
    refusal: str = ""


def _state_file(ctx: RunContext) -> Path:
    return Path(ctx.settings.home) / "ratelimit" / "pause.json"


def read_pause(ctx: RunContext) -> dict[str, Any] | None:
    """The pause ccops has in place (what it changed and the value before), None when there is none."""
    try:
        return json.loads(_state_file(ctx).read_text())
    except (OSError, ValueError):
        return None


def _write_pause(ctx: RunContext, state: dict[str, Any]) -> None:
    """Record the pause (0600: it names the .env) so the resume restores exactly what was there."""
    path = _state_file(ctx)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fs.write_atomic(path, json.dumps(state, indent=1) + "\n")


def make_plan(ctx: RunContext, mode: str, agent: str, hours: float) -> Plan:
    """The pause for the latest limited API, or why there is nothing to pause."""
    if mode not in MODES:
        return Plan(mode, "", agent, None, "", refusal=f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    events, _ = events_in(ctx, hours)
    if events.empty:
        return Plan(mode, "", agent, None, "", refusal=f"nothing to pause: no refused requests in the last {hours:g} h")
    latest = events.sort_values("time").iloc[-1]
    api = str(latest["api"])
    reset, basis = reset_for(ctx, events, api)
    if reset is None or reset <= ctx.as_of:
        when = f"at {reset:%Y-%m-%d %H:%M:%S} UTC" if reset is not None else "already"
        return Plan(mode, api, agent, reset, basis, refusal=f"nothing paused: the limit reset {when} ({basis})")
    name = agent or str(latest["agent"])
    chosen = mode if mode != "auto" else ("hold_publishing" if api == "x" else "stop")
    plan = Plan(chosen, api, name, reset + RESUME_MARGIN, basis)
    if chosen == "hold_publishing":
        plan.key, plan.value = HOLD_KEY, "true"
    elif chosen == "agent":
        _agent_key(ctx, plan)
    elif ctx.settings.effective_backend == "none":
        plan.refusal = "refused: cannot stop the app: no service backend configured (set service.backend)"
    if plan.key and not plan.refusal and not ctx.settings.optional("app_env_file"):
        plan.refusal = "refused: not configured: set paths.app_env_file (the app's .env) to hold or pause"
    if plan.key and not plan.refusal:
        try:
            appenv.require_known(ctx.settings, plan.key)
        except appenv.UnknownKeyError as exc:
            plan.refusal = str(exc)
    return plan


def _agent_key(ctx: RunContext, plan: Plan) -> None:
    """The per-agent key, only from a configured template and for one named agent."""
    template = ratelimit.config_of(ctx.settings).agent_key_template
    if not template:
        plan.refusal = ("refused: the app has no per-agent switch (set ratelimit.agent_key_template only if your "
                        f"app defines such keys). What the app offers: {'; '.join(appenv.MECHANISMS)}")
    elif not plan.agent or " / " in plan.agent:
        plan.refusal = f"refused: name one agent with the `agent` parameter (inferred: {plan.agent or 'none'})"
    else:
        plan.key, plan.value = appenv.agent_key(template, plan.agent), "false"


def restart_app(ctx: RunContext) -> str:
    """Restart the app so it reads its .env again; without a backend, say that an operator must."""
    from ccops.deploy.services import get_backend

    backend = get_backend(ctx.settings)
    if backend.name == "none":
        return "restart the app yourself for the change to take effect (no service backend: set service.backend)"
    backend.restart("app")
    return "app restarted"


def describe_plan(ctx: RunContext, plan: Plan) -> str:
    """One sentence: what the pause does and until when."""
    env = ctx.settings.optional("app_env_file") or "the app's .env (not configured: set paths.app_env_file)"
    what = {"hold_publishing": f"hold publishing: set {HOLD_KEY}=true in {env} (content waits for approval), "
                               "check the app's settings load, restart the app",
            "stop": "stop the app",
            "agent": f"pause {plan.agent}: set {plan.key}={plan.value} in {env}, check the app's settings load, "
                     "restart the app"}[plan.mode]
    return f"{what} until {plan.resume_at:%Y-%m-%d %H:%M} UTC"


def _do_pause(ctx: RunContext, plan: Plan, schedule_resume: bool) -> str:
    """Change what the plan says, record the previous value, schedule the resume if asked."""
    from ccops.deploy.services import get_backend

    state: dict[str, Any] = {"mode": plan.mode, "api": plan.api, "agent": plan.agent,
                             "paused_at": _iso(datetime.now(UTC)), "resume_at": _iso(plan.resume_at)}
    done = []
    if plan.key:
        change = appenv.edit_validated(ctx.settings, plan.key, plan.value)
        state.update(key=plan.key, value=plan.value, previous=change.old, changed=change.changed,
                     added_separator=change.added_separator, env_file=str(change.path))
        done.append(change.line())
        _write_pause(ctx, state)  # before the restart: a failed restart must not lose the previous value
        if change.changed:
            done.append(restart_app(ctx))
    else:
        _write_pause(ctx, state)
        get_backend(ctx.settings).stop("app")
        done.append("app stopped")
    if schedule_resume and plan.resume_at is not None:
        done.append(install_resume(ctx, plan.resume_at))
        state["scheduled"] = True
        _write_pause(ctx, state)
    return "; ".join(done) + f"; resume at {plan.resume_at:%Y-%m-%d %H:%M} UTC"


def pause(ctx: RunContext, mode: str = "auto", agent: str = "", dry_run: bool = True, confirm: bool = False,
          hours: float = 6, schedule_resume: bool = False) -> Findings:
    """Step 2: hold what the app lets us hold until the reset; nothing when the reset has passed."""
    if not ctx.section_enabled():
        return Findings()
    plan = make_plan(ctx, mode, agent, hours)
    ctx.results.rate_limit_plan = plan
    if plan.refusal:
        status = Status.WARNING if plan.refusal.startswith("refused") else Status.INFO
        return ctx.record([Finding("action.pause", status, plan.refusal)])
    existing = read_pause(ctx)
    if existing:
        return ctx.record([Finding("action.pause", Status.INFO,
                                   f"already paused by ccops since {existing.get('paused_at')} ({existing.get('mode')}"
                                   f"{', ' + existing['key'] if existing.get('key') else ''}); resume first "
                                   f"(recorded in {_state_file(ctx)})")])
    return actions.guarded(ctx, "pause", describe_plan(ctx, plan), lambda: _do_pause(ctx, plan, schedule_resume),
                           dry_run, confirm)


# ---- step 3: wait -------------------------------------------------------------------------------

def resume_command(ctx: RunContext) -> list[str]:
    """The exact command that runs the resume phase."""
    parts = ["ccops", "run", "emergency/api_rate_limit", "-p", "phase", "resume", "-p", "dry_run", "False",
             "-p", "confirm", "True"]
    if ctx.settings.config_file:
        parts[1:1] = ["--config", str(ctx.settings.config_file)]
    return parts


@check("rate_limit.wait")
def wait_for_reset(ctx: RunContext) -> Finding:
    """Step 3: when the limit resets and the resume is due, and the command that resumes (no sleeping)."""
    plan = ctx.results.rate_limit_plan
    paused = read_pause(ctx)
    if paused:
        scheduled = "; a one-shot crontab line runs it then" if paused.get("scheduled") else ""
        return Finding("rate_limit.wait", Status.INFO,
                       f"resume at or after {paused.get('resume_at')} with: {shlex.join(resume_command(ctx))}"
                       f"{scheduled}", paused.get("resume_at"))
    if plan is None or plan.resume_at is None or plan.refusal:
        why = plan.refusal if plan is not None and plan.refusal else "nothing paused"
        return Finding("rate_limit.wait", Status.INFO, f"nothing to wait for: {why}")
    return Finding("rate_limit.wait", Status.INFO,
                   f"the limit resets by {plan.resume_at - RESUME_MARGIN:%Y-%m-%d %H:%M:%S} UTC ({plan.basis}): "
                   f"after a pause, resume at or after {plan.resume_at:%Y-%m-%d %H:%M} UTC with: "
                   f"{shlex.join(resume_command(ctx))}", _iso(plan.resume_at))


# ---- step 4: resume ---------------------------------------------------------------------------

def _do_resume(ctx: RunContext, state: dict[str, Any]) -> str:
    """Put back exactly what the pause changed, start or restart the app, drop the one-shot line."""
    from ccops.deploy.services import get_backend

    done = []
    if state.get("key"):
        done.append(_restore_key(ctx, state))
        if state.get("changed") and not done[-1].startswith("left"):
            done.append(restart_app(ctx))
    else:
        get_backend(ctx.settings).start("app")
        done.append("app started")
    if state.get("scheduled"):
        done.append(remove_resume(ctx))
    _state_file(ctx).unlink(missing_ok=True)
    return "; ".join(done)


def _restore_key(ctx: RunContext, state: dict[str, Any]) -> str:
    """The key back to its value before the pause (or absent), unless someone changed it since."""
    key, path = state["key"], Path(state.get("env_file") or ctx.settings.effective_app_env_file)
    if not state.get("changed"):
        return f"{key} was already {state.get('value')} before the pause: left as it is"
    current = appenv.read_flag(path, key)
    if current != state.get("value"):
        return f"left {key} as it is: it is {current!r} now, not the {state.get('value')!r} the pause set"
    previous = state.get("previous")
    change = appenv.edit_validated(ctx.settings, key, previous, path=path,
                                   strip_final_newline=bool(state.get("added_separator")))
    return change.line()


def resume(ctx: RunContext, dry_run: bool = True, confirm: bool = False) -> Findings:
    """Step 4: undo the recorded pause - the previous value (or no line), the app running again."""
    if not ctx.section_enabled():
        return Findings()
    state = read_pause(ctx)
    if not state:
        return ctx.record([Finding("action.resume", Status.INFO,
                                   f"nothing to resume: no pause by ccops recorded in {_state_file(ctx)}")])
    ctx.results.resumed_pause = state
    if state.get("key"):
        previous = "absent" if state.get("previous") is None else repr(state.get("previous"))
        what = f"restore {state['key']} to its value before the pause ({previous}) and restart the app"
    else:
        what = "start the app again"
    return actions.guarded(ctx, "resume", what, lambda: _do_resume(ctx, state), dry_run, confirm)


AGENT_ERRORS_SQL = """
SELECT agent_name, count(*) AS runs, count(*) FILTER (WHERE status = 'error') AS errors
FROM agent_logs
WHERE agent_name = ANY(:agents) AND "timestamp" > :since AND "timestamp" <= :until
GROUP BY agent_name ORDER BY agent_name
"""


@check("rate_limit.after")
def agent_error_rate(ctx: RunContext, agent: str = "", hours: float = 1) -> Finding:
    """Step 5: the held agents' runs and errors since, and any new refused requests."""
    state = ctx.results.resumed_pause or {}
    named = agent or str(state.get("agent") or "")
    agents = [a.strip() for a in named.split("/") if a.strip()]
    if not agents:
        return Finding("rate_limit.after", Status.INFO, "no agent resumed in this run")
    since = ctx.as_of - timedelta(hours=hours)
    with ctx.db() as conn:
        table = query_df(conn, AGENT_ERRORS_SQL, agents=agents, since=since, until=ctx.as_of)
    runs, errors = int(table["runs"].sum()), int(table["errors"].sum())
    events, _ = events_in(ctx, hours)
    rate = errors / runs if runs else 0.0
    summary = (f"{', '.join(agents)}: {runs} runs, {errors} errors ({rate:.0%}) and {len(events)} refused requests "
               f"in the last {hours:g} h")
    level = ctx.settings.thresholds.apis.resumed_error_rate
    status = Status.WARNING if len(events) else level.grade(rate)
    if runs == 0:
        status, summary = Status.INFO, summary + " (not run yet since: check again later)"
    return Finding("rate_limit.after", status, summary, round(rate, 3), level.first, data=table)


# ---- the one-shot scheduled resume ------------------------------------------------------------

def one_shot_block(ctx: RunContext, at: datetime) -> str:
    """A crontab block that runs the resume phase once at `at` (cron's local time; a year guard)."""
    from ccops import schedule

    cfg = schedule.load(ctx.settings)
    local = at.replace(tzinfo=UTC).astimezone()  # cron fires in the machine's zone (the block precedes CRON_TZ)
    args = tuple(resume_command(ctx)[1:])
    if ctx.settings.config_file:
        args = args[2:]  # command_for adds --config itself
    entry = schedule.Entry("rate-limit-resume", f"{local.minute} {local.hour} {local.day} {local.month} *", args,
                           "resume after the rate limit")
    command = f'[ "$(date +%Y)" = {local.year} ] && {schedule.command_for(entry, cfg)}'
    return "\n".join([ONE_SHOT_BEGIN, f"{entry.cron} {schedule.cron_escape(command)}", ONE_SHOT_END]) + "\n"


def _without_one_shot(text: str) -> str:
    lines = text.splitlines(keepends=True)
    if ONE_SHOT_BEGIN + "\n" not in lines:
        return text
    start = lines.index(ONE_SHOT_BEGIN + "\n")
    end = next((i for i in range(start, len(lines)) if lines[i].rstrip("\n") == ONE_SHOT_END), start)
    return "".join(lines[:start] + lines[end + 1:])


def install_resume(ctx: RunContext, at: datetime) -> str:
    """Install the one-shot line before ccops' managed block (so its CRON_TZ does not apply); replaces an older one."""
    from ccops import schedule

    if at <= datetime.now(UTC).replace(tzinfo=None):
        return f"no resume scheduled: {at:%Y-%m-%d %H:%M} UTC has passed; run the resume phase now"
    cmd = schedule.crontab_command()
    current = _without_one_shot(schedule.read_crontab(cmd))
    block = one_shot_block(ctx, at)
    lines = current.splitlines(keepends=True)
    begin = schedule.BEGIN + "\n"
    if begin in lines:
        index = lines.index(begin)
        new = "".join(lines[:index]) + block + "".join(lines[index:])
    else:
        new = current + ("" if not current or current.endswith("\n") else "\n") + block
    schedule.load(ctx.settings).log_dir.mkdir(parents=True, exist_ok=True)
    schedule.write_crontab(cmd, new)
    return f"resume scheduled: a one-shot crontab line at {at:%Y-%m-%d %H:%M} UTC"


def remove_resume(ctx: RunContext) -> str:
    """Take the one-shot line out again; every other crontab line stays."""
    from ccops import schedule

    try:
        cmd = schedule.crontab_command()
        current = schedule.read_crontab(cmd)
        new = _without_one_shot(current)
        if new == current:
            return "no scheduled resume to remove"
        schedule.write_crontab(cmd, new)
    except (schedule.ScheduleError, OSError) as exc:
        return f"the one-shot crontab line could not be removed ({exc}): remove it with `crontab -e`"
    return "the one-shot resume line was removed from the crontab"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
