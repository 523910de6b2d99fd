"""API rate limit exceeded: who is limited, pause that agent, wait for the reset, resume gently.

The guide: grep the log for "rate limit", set ENABLE_<AGENT>=false in .env,
wait, re-enable. The runbook does the same in two phases of one notebook:
`phase = "pause"` finds the API and agent from the log (and the live header
probe), pauses the agent through its .env flag (ccops.appenv: atomic, a
backup kept, every other byte untouched), restarts the app, and prints the
exact command to resume and when; `phase = "resume"` re-enables the flag,
restarts, and checks that agent's errors since. Headless runs never sleep
until a reset that may be hours away: cron (or an operator) runs the resume
phase at the printed time.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta

import pandas as pd

from ccops import actions, appenv
from ccops.context import RunContext, check
from ccops.db import query_df
from ccops.findings import Finding, Findings, Status

RESUME_MARGIN = timedelta(minutes=5)


def limited_table(ctx: RunContext, hours: float) -> pd.DataFrame:
    """Rate-limit events of the window, grouped by API and agent, with the latest reset time."""
    from ccops import logs

    since, until = ctx.as_of - timedelta(hours=hours), ctx.as_of
    records = logs.read_records(ctx.settings.effective_log_dir, since, until,
                               select=logs.select_matching(logs.RATE_LIMIT_RE, logs.RATE_LIMIT_NEEDLES))
    events = logs.rate_limit_events(records)
    columns = ["api", "agent", "events", "last_event", "reset_at", "remaining"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    grouped = events.groupby(["api", "agent"], dropna=False).agg(
        events=("time", "size"), last_event=("time", "max"), reset_at=("reset_at", "max"),
        remaining=("remaining", "last"),
    ).reset_index()
    return grouped.sort_values(["events", "last_event"], ascending=False).reset_index(drop=True)[columns]


def chosen_agent(ctx: RunContext, agent: str, hours: float) -> tuple[str, pd.Series | None]:
    """The agent to act on: the one named, else the one with the most rate-limit events."""
    table = ctx.state.get("rate_limited")
    if table is None:
        table = limited_table(ctx, hours)
        ctx.state["rate_limited"] = table
    if agent:
        rows = table[table["agent"] == agent]
        return agent, rows.iloc[0] if not rows.empty else None
    named = table[table["agent"].astype(bool)]
    if named.empty:
        return "", None
    return str(named.iloc[0]["agent"]), named.iloc[0]


@check("rate_limit.events")
def who_is_limited(ctx: RunContext, hours: float = 6) -> Finding:
    """Step 1: which API and which agents hit limits in the last hours, and when the limit resets."""
    table = limited_table(ctx, hours)
    ctx.state["rate_limited"] = table
    if table.empty:
        return Finding("rate_limit.events", Status.OK, f"no rate-limit events in the log in the last {hours:g} h", 0)
    top = table.iloc[0]
    recent = pd.Timestamp(top["last_event"]) >= pd.Timestamp(ctx.as_of - timedelta(hours=1))
    reset = "" if pd.isna(top["reset_at"]) else f", limit resets {pd.Timestamp(top['reset_at']):%Y-%m-%d %H:%M} UTC"
    who = f"{top['agent']} on the {top['api']} API" if top["agent"] else f"the {top['api']} API"
    return Finding("rate_limit.events", Status.CRITICAL if recent else Status.WARNING,
                   f"{int(table['events'].sum())} rate-limit events in the last {hours:g} h; most: {who} "
                   f"({int(top['events'])} events, last {pd.Timestamp(top['last_event']):%H:%M}){reset}",
                   int(table["events"].sum()), data=table)


def _set_flag_and_restart(ctx: RunContext, flag: str, value: str) -> str:
    from ccops.services import get_backend

    change = appenv.set_flag(ctx.settings.effective_app_env_file, flag, value)
    get_backend(ctx.settings).restart("app")
    return change.line() + "; app restarted"


def pause_agent(ctx: RunContext, agent: str = "", dry_run: bool = True, confirm: bool = False,
                hours: float = 6) -> Findings:
    """Step 2: set the agent's ENABLE_* flag to false in the app's .env and restart the app."""
    name, _ = chosen_agent(ctx, agent, hours)
    if not name:
        return ctx.record([Finding("action.pause", Status.INFO, "no agent to pause: no rate-limited agent found "
                                   "(set the `agent` parameter to pause one by name)")])
    flag = appenv.flag_for_agent(name)
    ctx.state["paused_agent"] = name
    return actions.guarded(ctx, "pause", f"set {flag}=false in {ctx.settings.effective_app_env_file} and restart the app",
                           lambda: _set_flag_and_restart(ctx, flag, "false"), dry_run, confirm)


def resume_command(ctx: RunContext, agent: str) -> str:
    """The exact command that runs the resume phase for this agent."""
    parts = ["ccops", "run", "emergency/api_rate_limit", "-p", "phase", "resume", "-p", "agent", agent,
             "-p", "dry_run", "False", "-p", "confirm", "True"]
    if ctx.settings.config_file:
        parts[1:1] = ["--config", str(ctx.settings.config_file)]
    return shlex.join(parts)


@check("rate_limit.wait")
def wait_for_reset(ctx: RunContext, agent: str = "", hours: float = 6) -> Finding:
    """Step 3: when the limit resets, and the exact command to run then (no sleeping for hours)."""
    name, row = chosen_agent(ctx, agent, hours)
    if not name:
        return Finding("rate_limit.wait", Status.INFO, "nothing to wait for: no rate-limited agent")
    reset_at: datetime | None = None
    if row is not None and not pd.isna(row["reset_at"]):
        reset_at = pd.Timestamp(row["reset_at"]).to_pydatetime()
    when = (reset_at + RESUME_MARGIN) if reset_at else ctx.as_of + timedelta(minutes=15)
    basis = f"the limit resets at {reset_at:%Y-%m-%d %H:%M:%S} UTC" if reset_at else \
        "no reset time was logged; X windows are 15 minutes"
    command = resume_command(ctx, name)
    return Finding("rate_limit.wait", Status.INFO,
                   f"{basis}: resume {name} at or after {when:%Y-%m-%d %H:%M} UTC with: {command}",
                   when.isoformat() + "Z")


def resume_agent(ctx: RunContext, agent: str = "", dry_run: bool = True, confirm: bool = False,
                 hours: float = 6) -> Findings:
    """Step 4: re-enable the agent's flag and restart the app."""
    name = agent or ctx.state.get("paused_agent", "")
    if not name:
        name, _ = chosen_agent(ctx, agent, hours)
    if not name:
        return ctx.record([Finding("action.resume", Status.INFO, "no agent to resume: set the `agent` parameter")])
    flag = appenv.flag_for_agent(name)
    ctx.state["resumed_agent"] = name
    return actions.guarded(ctx, "resume", f"set {flag}=true in {ctx.settings.effective_app_env_file} and restart the app",
                           lambda: _set_flag_and_restart(ctx, flag, "true"), dry_run, confirm)


AGENT_ERRORS_SQL = """
SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'error') AS errors
FROM agent_logs
WHERE agent_name = :agent AND "timestamp" > :since AND "timestamp" <= :until
"""


@check("rate_limit.after")
def agent_error_rate(ctx: RunContext, agent: str = "", hours: float = 1) -> Finding:
    """Step 5: the resumed agent's runs and errors since, and any new rate-limit events."""
    name = agent or ctx.state.get("resumed_agent") or ctx.state.get("paused_agent", "")
    if not name:
        return Finding("rate_limit.after", Status.INFO, "no agent resumed in this run")
    since = ctx.as_of - timedelta(hours=hours)
    with ctx.db() as conn:
        counts = query_df(conn, AGENT_ERRORS_SQL, agent=name, since=since, until=ctx.as_of).iloc[0]
    runs, errors = int(counts["runs"]), int(counts["errors"])
    table = limited_table(ctx, hours)
    events = int(table.loc[table["agent"] == name, "events"].sum()) if not table.empty else 0
    rate = errors / runs if runs else 0.0
    summary = f"{name}: {runs} runs, {errors} errors ({rate:.0%}) and {events} rate-limit events in the last {hours:g} h"
    status = Status.WARNING if events or rate > 0.2 else Status.OK
    if runs == 0:
        status, summary = Status.INFO, summary + " (not run yet since: check again later)"
    return Finding("rate_limit.after", status, summary, round(rate, 3), 0.2)
