"""Alert life cycle against real peers: a webhook receiver on 127.0.0.1, real state files, real run records.

The clock is injected (`now=`), so "one repeat after the interval" is exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccops import alerts
from ccops.alerts import engine
from ccops.alerts.state import StateStore
from ccops.core.settings import ConfigError, load_settings

T0 = datetime(2026, 11, 28, 8, 0, 0)
REPO = Path(__file__).resolve().parent.parent
ONLY = """
[alerts.rules]
system_down = false
database = false
health = false
disk = false
memory = false
error_rate = false
no_content = false
api_rate_limit = false
backup_age = false
deadman = false
high_engagement = false
ab_test = false
milestones = false
"""


def rules_only(*enabled: str) -> str:
    text = ONLY
    for rule in enabled:
        text = text.replace(f"{rule} = false", f"{rule} = true")
    return text


class Receiver:
    """A webhook endpoint: records every POST (path, JSON body); can be told to fail."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.messages.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def at(self, path: str) -> list[dict]:
        return [body for p, body in self.messages if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("ALERT_HOOK_URL", receiver.url + "/json?token=s3cr3t-hook-token")
    monkeypatch.setenv("ALERT_SLACK_URL", receiver.url + "/slack?token=s3cr3t-slack-token")
    yield receiver
    receiver.close()


HOOKS = """
[[alerts.channels]]
type = "webhook"
name = "ops-json"
url_env = "ALERT_HOOK_URL"
severities = ["critical", "warning"]

[[alerts.channels]]
type = "webhook"
name = "ops-slack"
url_env = "ALERT_SLACK_URL"
format = "slack"
"""


def write_config(root: Path, text: str):
    (root / "ccops.toml").write_text(text)
    return load_settings()


def disk_config(root: Path, warning_pct: float) -> str:
    return f"""
[paths]
disk_paths = ["{root}"]

[thresholds]
disk_free_warning_pct = {warning_pct}
disk_free_critical_pct = 0.0

[alerts]
repeat_minutes = {{ warning = 30 }}
{rules_only("disk")}
{HOOKS}
"""


def kinds(body: dict) -> list[str]:
    return [a["kind"] for a in body["alerts"]]


def test_persisting_problem_one_message_one_repeat_one_resolved(ccops_env, hook):
    # every filesystem has less than 100% free: a real, persisting warning from the real disk check
    settings = write_config(ccops_env, disk_config(ccops_env, 100.0))
    key = f"host.disk:{ccops_env}"
    first = alerts.check(settings, now=T0)
    assert [a["key"] for a in first.open_alerts] == [key]
    assert first.exit_code == 1
    for minutes in (5, 10, 25):  # still open, inside the 30-minute repeat interval: silence
        alerts.check(settings, now=T0 + timedelta(minutes=minutes))
    assert [kinds(b) for b in hook.at("/json?token=s3cr3t-hook-token")] == [["opened"]]
    alerts.check(settings, now=T0 + timedelta(minutes=30))
    alerts.check(settings, now=T0 + timedelta(minutes=35))
    assert [kinds(b) for b in hook.at("/json?token=s3cr3t-hook-token")] == [["opened"], ["repeat"]]

    settings = write_config(ccops_env, disk_config(ccops_env, 0.0))  # the problem goes away
    done = alerts.check(settings, now=T0 + timedelta(minutes=40))
    assert done.open_alerts == [] and done.exit_code == 0
    alerts.check(settings, now=T0 + timedelta(minutes=45))

    bodies = hook.at("/json?token=s3cr3t-hook-token")
    assert [kinds(b) for b in bodies] == [["opened"], ["repeat"], ["resolved"]]
    opened, repeat, resolved = bodies
    assert opened["severity"] == "warning" and opened["alerts"][0]["key"] == key
    assert opened["subject"].endswith("WARNING: Disk space low")
    assert "% free" in opened["alerts"][0]["message"]
    assert repeat["alerts"][0]["opened_at"] == "2026-11-28T08:00:00Z"
    assert "(open since 2026-11-28T08:00:00Z, 30 min)" in repeat["text"]
    assert resolved["severity"] == "resolved" and "(was open 40 min)" in resolved["text"]

    slack = hook.at("/slack?token=s3cr3t-slack-token")
    assert len(slack) == 3 and list(slack[0]) == ["text"], "Slack format: one mrkdwn text field"
    assert slack[0]["text"].startswith("*[ccops ") and "OPENED WARNING Disk space low" in slack[0]["text"]
    assert "RESOLVED" in slack[2]["text"]

    state_text = (ccops_env / "home" / "alerts" / "state.json").read_text()
    assert "s3cr3t" not in state_text, "webhook URLs (secrets) never reach the state file"
    assert os.environ["ALERT_HOOK_URL"] in settings.secret_values()


def test_burst_is_one_message_per_channel_and_budget_holds_the_rest(ccops_env, hook):
    settings = write_config(ccops_env, f"[alerts]\nmax_messages_per_hour = 2\n{rules_only()}\n{HOOKS}")
    findings = [{"check": f"postgres.bloat:t{i}", "status": "WARNING", "summary": f"table t{i} is 40% bloat",
                 "value": 40, "threshold": 30} for i in range(6)]
    record = {"runbook": "weekly", "start": "2026-11-28T06:00:00Z", "outcome": "warning", "findings": findings}
    out = alerts.raise_from_run(settings, record, now=T0)
    assert len(out.notifications) == 6
    bodies = hook.at("/json?token=s3cr3t-hook-token")
    assert len(bodies) == 1 and kinds(bodies[0]) == ["opened"] * 6, "a burst is one message"
    assert bodies[0]["subject"].endswith("WARNING: 6 alerts (6 opened)")
    assert {a["key"] for a in bodies[0]["alerts"]} == {f"run:weekly:postgres.bloat:t{i}" for i in range(6)}

    def run(i: int, at: datetime):
        rec = {"runbook": f"rb{i}", "start": "2026-11-28T06:00:00Z", "outcome": "critical",
               "findings": [{"check": "x.y", "status": "CRITICAL", "summary": f"problem {i}"}]}
        return alerts.raise_from_run(settings, rec, now=at)

    run(1, T0 + timedelta(minutes=1))  # the second message of the hour
    held = run(2, T0 + timedelta(minutes=2))  # over budget: kept for later
    assert [c.held for c in held.channels] == [1, 1]
    assert len(hook.at("/json?token=s3cr3t-hook-token")) == 2
    assert alerts.list_open(settings)["pending"] == {"ops-json": 1, "ops-slack": 1}
    run(3, T0 + timedelta(minutes=61))  # an hour after the first: the held one goes out with the new one
    last = hook.at("/json?token=s3cr3t-hook-token")[-1]
    assert [(a["kind"], a["key"]) for a in last["alerts"]] == [
        ("opened", "run:rb2:x.y"), ("opened", "run:rb3:x.y"), ("repeat", "run:rb1:x.y")]  # rb1: critical, 60 min
    assert alerts.list_open(settings)["pending"] == {}


def test_undelivered_message_is_retried_and_the_exit_code_says_so(ccops_env, hook):
    settings = write_config(ccops_env, f"{rules_only()}\n{HOOKS}")
    hook.fail_next = 2  # both channels answer 500 once
    rec = {"runbook": "daily", "start": "2026-11-28T07:00:00Z", "outcome": "warning",
           "findings": [{"check": "content.published_yesterday", "status": "WARNING", "summary": "10 posts"}]}
    out = alerts.raise_from_run(settings, rec, now=T0)
    assert all("HTTP 500" in c.error for c in out.channels)
    assert all("s3cr3t" not in c.error for c in out.channels)
    assert hook.messages == []
    again = alerts.check(settings, now=T0 + timedelta(minutes=5))  # no rule enabled: only the retry
    assert again.notifications == [] and not again.delivery_failed
    assert [kinds(b) for b in hook.at("/json?token=s3cr3t-hook-token")] == [["opened"]]
    assert again.exit_code == 1, "the open warning"


def test_escalation_is_sent_at_once_and_easing_is_quiet(ccops_env, hook):
    settings = write_config(ccops_env, f"{rules_only()}\n{HOOKS}")

    def run(status: str, minutes: int):
        rec = {"runbook": "weekly", "start": "2026-11-28T06:00:00Z", "outcome": status.lower(),
               "findings": [{"check": "postgres.sequences", "status": status, "summary": f"sequence {status}"}]}
        return alerts.raise_from_run(settings, rec, now=T0 + timedelta(minutes=minutes))

    run("WARNING", 0)
    run("CRITICAL", 10)
    run("WARNING", 20)
    assert [kinds(b) for b in hook.at("/json?token=s3cr3t-hook-token")] == [["opened"], ["escalated"]]
    assert alerts.list_open(settings)["open"][0]["severity"] == "warning"


def test_run_findings_open_alerts_and_a_later_run_resolves_only_what_it_evaluated(ccops_env):
    settings = write_config(ccops_env, rules_only())

    def run(findings, outcome="warning", part=None, error=None):
        rec = {"runbook": "daily", "start": "2026-11-28T07:00:00Z", "outcome": outcome, "error": error,
               "parameters": {"part": part} if part else {}, "findings": findings}
        return alerts.raise_from_run(settings, rec, now=T0)

    run([{"check": "content.published_yesterday", "status": "WARNING", "summary": "10 posts, usually 30"},
         {"check": "host.disk:/var", "status": "CRITICAL", "summary": "/var: 5% free"},
         {"check": "apis.rate_limit_events", "status": "UNKNOWN", "summary": "no logs"}], part="morning")
    keys = {a["key"] for a in alerts.list_open(settings)["open"]}
    assert keys == {"run:daily:content.published_yesterday", "host.disk:/var"}, \
        "a check `alerts check` also evaluates shares its key; UNKNOWN opens nothing"

    # the evening part evaluates other checks: nothing of the morning closes
    run([{"check": "backup.daily", "status": "OK", "summary": "fine"}], outcome="ok", part="evening")
    assert {a["key"] for a in alerts.list_open(settings)["open"]} == keys
    # the next morning: content fine, the disk check now UNKNOWN (could not look): only content closes
    out = run([{"check": "content.published_yesterday", "status": "OK", "summary": "31 posts"},
               {"check": "host.disk:/var", "status": "UNKNOWN", "summary": "cannot stat"}], outcome="ok", part="morning")
    assert [(n["kind"], n["key"]) for n in out.notifications] == [("resolved", "run:daily:content.published_yesterday")]
    assert [a["key"] for a in alerts.list_open(settings)["open"]] == ["host.disk:/var"]

    failed = run([], outcome="timed-out", part="evening", error="timed out after 1800 s while running cell [7]")
    assert [(n["kind"], n["key"], n["severity"]) for n in failed.notifications] == \
        [("opened", "run.failed:daily:evening", "warning")]
    assert "timed out after 1800 s" in failed.notifications[0]["message"]
    fixed = run([], outcome="ok", part="all")  # a run of all parts counts for each part
    assert [(n["kind"], n["key"]) for n in fixed.notifications] == [("resolved", "run.failed:daily:evening")]


# ---- dead man's switch --------------------------------------------------------------------

def write_record(archive: Path, runbook: str, start: datetime, outcome: str, part: str | None = None) -> None:
    stem = f"{start:%Y%m%dT%H%M%SZ}-{runbook}"
    rel = f"{runbook}/{start:%Y}/{start:%m}/{stem}.json"
    record = {"runbook": runbook, "run_id": stem, "parameters": {"part": part} if part else {},
              "start": f"{start:%Y-%m-%dT%H:%M:%SZ}", "end": f"{start + timedelta(minutes=9):%Y-%m-%dT%H:%M:%SZ}",
              "outcome": outcome, "exit_code": 0, "findings": [], "counts": {}, "paths": {"json": rel}}
    path = archive / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


DEADMAN = rules_only("deadman") + "\n[alerts]\ndeadman_grace_minutes = 45\n"


def test_dead_mans_switch_fires_when_daily_has_not_succeeded_for_25_hours(ccops_env):
    settings = write_config(ccops_env, DEADMAN)
    archive = ccops_env / "outputs"
    now = T0  # Saturday 08:00 UTC
    write_record(archive, "daily", now - timedelta(hours=25), "warning", part="morning")  # last success
    write_record(archive, "daily", now - timedelta(hours=1), "failed", part="morning")  # today's: failed
    write_record(archive, "daily", now - timedelta(hours=13), "ok", part="evening")
    out = alerts.check(settings, now=now)
    assert [(a["key"], a["severity"]) for a in out.open_alerts] == [("deadman:daily:morning", "critical")]
    message = out.open_alerts[0]["message"]
    assert "last completed run started 2026-11-27 07:00 UTC, 25.0 h ago" in message
    assert "expected every 24.0 h plus 45 min grace" in message
    assert out.exit_code == 2

    write_record(archive, "daily", now + timedelta(minutes=2), "ok", part="morning")  # a manual rerun succeeds
    later = alerts.check(settings, now=now + timedelta(minutes=15))
    assert later.open_alerts == []
    assert [(n["kind"], n["key"]) for n in later.notifications] == [("resolved", "deadman:daily:morning")]


def test_dead_mans_switch_is_quiet_when_the_daily_runbook_succeeded(ccops_env):
    settings = write_config(ccops_env, DEADMAN)
    archive = ccops_env / "outputs"
    write_record(archive, "daily", T0 - timedelta(hours=1), "critical", part="morning")  # it ran: findings are alerts of their own
    write_record(archive, "daily", T0 - timedelta(hours=13), "ok", part="evening")
    assert alerts.check(settings, now=T0).open_alerts == []
    # weekly, monthly, quarterly never ran: watched from the first check on, overdue only a cadence later
    week_later = alerts.check(settings, now=T0 + timedelta(days=7, hours=1))
    overdue = {a["key"] for a in week_later.open_alerts}
    assert "deadman:weekly" in overdue and "deadman:monthly" not in overdue
    assert "no completed run since it was first watched at 2026-11-28 08:00 UTC" in \
        next(a for a in week_later.open_alerts if a["key"] == "deadman:weekly")["message"]


def test_dead_mans_switch_counts_runs_reported_by_the_runner(ccops_env):
    settings = write_config(ccops_env, DEADMAN)  # no archive at all: only what raise_from_run recorded
    alerts.check(settings, now=T0 - timedelta(days=2))  # start watching
    for part in ("morning", "evening"):
        alerts.raise_from_run(settings, {"runbook": "daily", "parameters": {"part": part}, "outcome": "ok",
                                         "start": "2026-11-28T07:00:00Z", "findings": []}, now=T0)
    keys = {a["key"] for a in alerts.check(settings, now=T0 + timedelta(hours=2)).open_alerts}
    assert not any(k.startswith("deadman:daily") for k in keys)
    late = {a["key"] for a in alerts.check(settings, now=T0 + timedelta(hours=25, minutes=46)).open_alerts}
    assert {"deadman:daily:morning", "deadman:daily:evening"} <= late


def test_newest_verified_backup_older_than_26_hours_is_critical(ccops_env):
    pytest.importorskip("ccops.backup", reason="ccops.backup (latest verified backup) not available")
    backups = ccops_env / "home" / "backups"
    # a ccops.toml makes this a deployment: its backup dir is named, never a default
    settings = write_config(ccops_env, f'[paths]\nbackup_dir = "{backups}"\n' + rules_only("backup_age"))
    backups.mkdir(parents=True)
    good = b"-- PostgreSQL database dump\nSELECT 1;\n--\n-- PostgreSQL database dump complete\n--\n"
    (backups / "contentcreator_20261127_020000.sql").write_bytes(good)
    (backups / "contentcreator_20261128_020000.sql").write_bytes(good[:30])  # truncated: not verified
    out = alerts.check(settings, now=T0)
    assert [(a["key"], a["severity"]) for a in out.open_alerts] == [("backup.latest_verified", "critical")]
    message = out.open_alerts[0]["message"]
    assert "contentcreator_20261127_020000.sql, is 30.0 h old" in message
    assert "contentcreator_20261128_020000.sql: plain dump lacks" in message
    cache = json.loads((ccops_env / "home" / "alerts" / "state.json").read_text())["verified_backups"]
    assert cache["contentcreator_20261128_020000.sql"]["ok"] is False, "each verdict is cached"

    (backups / "contentcreator_20261128_020000.sql").write_bytes(good)  # rewritten: verified afresh
    fixed = alerts.check(settings, now=T0 + timedelta(minutes=5))
    assert fixed.open_alerts == [] and fixed.notifications[0]["kind"] == "resolved"


# ---- state ---------------------------------------------------------------------------------

WORKER = """
import sys
from ccops.core.settings import load_settings
from ccops.alerts import raise_from_run
settings = load_settings()
worker = sys.argv[1]
for i in range(5):
    rec = {"runbook": f"rb{worker}", "start": "2026-11-28T07:00:00Z", "outcome": "warning",
           "findings": [{"check": f"c{i}", "status": "WARNING", "summary": f"worker {worker} finding {i}"}]}
    assert raise_from_run(settings, rec) is not None
"""


def test_concurrent_writers_lose_no_update(ccops_env):
    write_config(ccops_env, rules_only())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(w)], cwd=ccops_env, env=env,
                              stderr=subprocess.PIPE, text=True) for w in range(4)]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    state = json.loads((ccops_env / "home" / "alerts" / "state.json").read_text())
    assert sorted(state["alerts"]) == sorted(f"run:rb{w}:c{i}" for w in range(4) for i in range(5))
    log = (ccops_env / "home" / "alerts" / "alerts.log").read_text()
    assert log.count("OPENED WARNING") == 20, "the default channel (a log file) got every alert once"
    assert not list((ccops_env / "home" / "alerts").glob(".state.json.*")), "no temporary file left behind"


def test_state_survives_restart_and_a_torn_file_is_set_aside(ccops_env, capsys):
    settings = write_config(ccops_env, rules_only())
    rec = {"runbook": "weekly", "start": "2026-11-28T06:00:00Z", "outcome": "warning",
           "findings": [{"check": "security.ssl", "status": "WARNING", "summary": "certificate expires in 10 days"}]}
    alerts.raise_from_run(settings, rec, now=T0)
    again = alerts.raise_from_run(load_settings(), rec, now=T0 + timedelta(minutes=5))  # a new process, same state
    assert again.notifications == [], "already open: not sent again"
    store = StateStore(ccops_env / "home" / "alerts")
    store.path.write_text('{"alerts": {"x": ')  # torn
    fresh = alerts.raise_from_run(settings, rec, now=T0 + timedelta(minutes=10))
    assert [n["kind"] for n in fresh.notifications] == ["opened"]
    assert list(store.directory.glob("state.json.corrupt-*"))
    assert "unreadable" in capsys.readouterr().err


# ---- configuration and CLI -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("[alerts]\nrepeat_minute = 5", "alerts.repeat_minute: unknown setting"),
    ("[alerts]\nrepeat_minutes = {critical = -1}", "alerts.repeat_minutes.critical: expected 0 or more"),
    ("[[alerts.channels]]\ntype = \"webhook\"\nurl = \"https://hooks.example/T0/B0/x\"",
     "alerts.channels[1].url: a webhook URL carries its token"),
    ("[[alerts.channels]]\ntype = \"pager\"", "alerts.channels[1].type: expected one of"),
    ("[[alerts.channels]]\ntype = \"email\"\nhost = \"smtp\"\nfrom = \"ops@example.org\"\nto = []",
     "alerts.channels[1].to: expected a list of e-mail addresses"),
    ("[[alerts.channels]]\ntype = \"log\"\nseverities = [\"urgent\"]", "alerts.channels[1].severities: expected some of"),
    ("[alerts.rules]\ndisk_space = false", "alerts.rules.disk_space: unknown setting"),
    ("[alerts.engagement]\nmethod = \"zscore\"", "alerts.engagement.method: expected one of sigma, percentile"),
])
def test_bad_settings_fail_with_one_line_naming_key_and_file(ccops_env, text, expected):
    settings = write_config(ccops_env, text)
    with pytest.raises(ConfigError) as err:
        alerts.load_config(settings)
    assert str(err.value).startswith(f"{ccops_env / 'ccops.toml'}: ")
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_check_list_and_usage_errors(ccops_env, capsys):
    from ccops.cli import main

    write_config(ccops_env, rules_only("disk") + f"\n[paths]\ndisk_paths = [\"{ccops_env}\"]\n"
                 "[thresholds]\ndisk_free_warning_pct = 100.0\ndisk_free_critical_pct = 0.0\n")
    assert main(["alerts", "check", "--dry-run", "--as-of", "2026-11-28T08:00:00Z"]) == 1
    assert "OPENED WARNING Disk space low" in capsys.readouterr().out
    assert not (ccops_env / "home" / "alerts" / "state.json").exists(), "--dry-run saves nothing"
    assert main(["alerts", "check", "--json", "--as-of", "2026-11-28T08:00:00Z"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["open"][0]["key"] == f"host.disk:{ccops_env}" and data["exit_code"] == 1
    assert main(["alerts", "list"]) == 0
    assert "WARNING   since 2026-11-28T08:00:00Z  Disk space low" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["alerts", "bogus"])
    assert usage.value.code == 64
    (ccops_env / "ccops.toml").write_text("[alerts]\nrepeat = 1\n")
    assert main(["alerts", "check"]) == 64
    assert "alerts.repeat: unknown setting" in capsys.readouterr().err


def test_reconcile_without_coverage_keeps_alerts_open(ccops_env):
    """A rule that could not look (database down) must not 'resolve' what it did not see."""
    settings = write_config(ccops_env, rules_only())
    cfg = alerts.load_config(settings)
    state = {"alerts": {}, "announced": {}, "resolved": []}
    first = engine.Evaluation(candidates=[engine.Candidate("content.none_recent", "warning", "No content", "6 h", "t")],
                              covered_keys={"content.none_recent"})
    engine.reconcile(state, first, T0, cfg)
    blind = engine.Evaluation(notes=["no_content: skipped: the database is not reachable"])
    assert engine.reconcile(state, blind, T0 + timedelta(minutes=5), cfg) == []
    assert "content.none_recent" in state["alerts"]
    seen = engine.Evaluation(covered_keys={"content.none_recent"})
    assert [n["kind"] for n in engine.reconcile(state, seen, T0 + timedelta(minutes=10), cfg)] == ["resolved"]


def test_dead_mans_switch_counts_from_the_schedule_install(ccops_env):
    settings = write_config(ccops_env, DEADMAN)
    write_record(ccops_env / "outputs", "daily", T0 - timedelta(days=9), "ok")  # a manual run long ago
    installed = T0 - timedelta(hours=2)
    (ccops_env / "home").mkdir(exist_ok=True)
    (ccops_env / "home" / "schedule.json").write_text(json.dumps({"installed_at": f"{installed:%Y-%m-%dT%H:%M:%SZ}"}))
    assert alerts.check(settings, now=T0).open_alerts == [], "installed 2 h ago: nothing can be late yet"
    late = alerts.check(settings, now=installed + timedelta(hours=24, minutes=46)).open_alerts
    assert {a["key"] for a in late} == {"deadman:daily:morning", "deadman:daily:evening"}
    assert "no completed run since the schedule was installed at 2026-11-28 06:00 UTC" in late[0]["message"]


def test_a_runs_backup_finding_joins_the_live_backup_alert(ccops_env):
    settings = write_config(ccops_env, rules_only())
    rec = {"runbook": "backup", "start": "2026-11-28T02:00:00Z", "outcome": "critical", "findings": [
        {"check": "backup.latest_verified", "status": "CRITICAL", "summary": "no verified backup in /backups"}]}
    out = alerts.raise_from_run(settings, rec, now=T0)
    assert [(a["key"], a["title"]) for a in out.open_alerts] == [("backup.latest_verified", "No recent verified backup")]
    rec["findings"][0].update(status="OK", summary="latest verified backup 0.1 h old")
    assert [n["kind"] for n in alerts.raise_from_run(settings, rec, now=T0).notifications] == ["resolved"]


class XApi:
    """X's API on 127.0.0.1: answers GET /2/users/me with rate-limit headers; counts the probes."""

    def __init__(self) -> None:
        self.remaining = 50
        self.calls = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                api.calls += 1
                self.send_response(200)
                self.send_header("x-rate-limit-limit", "900")
                self.send_header("x-rate-limit-remaining", str(api.remaining))
                self.send_header("x-rate-limit-reset", "1796025600")
                self.end_headers()
                self.wfile.write(b'{"data": {"id": "1"}}')

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_api_rate_limit_approaching_is_probed_at_most_hourly(ccops_env, monkeypatch):
    api = XApi()
    monkeypatch.setenv("TWITTER_BEARER_TOKEN", "x-token-value-123")  # the app's own key (FACTS.md)
    try:
        settings = write_config(ccops_env, f'[apis]\nx_base_url = "{api.url}"\nremaining_warning_share = 0.1\n'
                                           + rules_only("api_rate_limit"))
        first = alerts.check(settings, now=T0)
        assert [(a["key"], a["severity"], a["title"]) for a in first.open_alerts] == \
            [("apis.x.rate_limit", "warning", "API rate limit approaching")]
        assert first.open_alerts[0]["message"].startswith("X: only 50 of 900 requests left")
        api.remaining = 800
        quiet = alerts.check(settings, now=T0 + timedelta(minutes=5))
        assert api.calls == 1, "not probed again within api_probe_minutes"
        assert quiet.notifications == [] and len(quiet.open_alerts) == 1, "not probed: left as it was"
        later = alerts.check(settings, now=T0 + timedelta(minutes=60))
        assert api.calls == 2
        assert [(n["kind"], n["key"]) for n in later.notifications] == [("resolved", "apis.x.rate_limit")]
    finally:
        api.server.shutdown()
        api.server.server_close()
    assert "x-token-value-123" not in (ccops_env / "home" / "alerts" / "state.json").read_text()
