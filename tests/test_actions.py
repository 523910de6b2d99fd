"""Guarded actions: nothing runs with the defaults, the confirmed action runs once, the timeline records both."""

from __future__ import annotations

from datetime import datetime

from ccops import actions
from ccops.core.context import RunContext
from ccops.core.settings import load_settings


def make_ctx() -> RunContext:
    return RunContext(runbook="t", settings=load_settings(), as_of=datetime(2026, 11, 28, 3))


def test_defaults_only_describe(ccops_env):
    ctx, calls = make_ctx(), []
    found = actions.guarded(ctx, "restart", "restart the app", lambda: calls.append(1) or "restarted")
    assert calls == []
    assert found[0].status.value == "INFO" and found[0].summary.startswith("would restart the app")
    found = actions.guarded(ctx, "restart", "restart the app", lambda: calls.append(1), dry_run=False)
    assert calls == [] and "confirm is False" in found[0].summary


def test_confirmed_action_runs_and_failures_are_reported(ccops_env):
    ctx, calls = make_ctx(), []
    ok = actions.guarded(ctx, "restart", "restart the app", lambda: calls.append(1) or "restarted",
                         dry_run=False, confirm=True)
    assert calls == [1] and ok[0].status.value == "OK" and "restarted" in ok[0].summary

    def boom() -> str:
        raise RuntimeError("docker: command not found")

    failed = actions.guarded(ctx, "reset", "stop and start everything", boom, dry_run=False, confirm=True)
    assert failed[0].status.value == "CRITICAL" and "docker: command not found" in failed[0].summary
    line = actions.timeline(ctx)[0]
    assert line.summary == "2 of 2 actions run, 1 failed"
    assert list(line.data["result"]) == ["done", "FAILED"]
