"""Candidates + state -> notifications -> channels: open, repeat, resolve, without storms.

The life of an alert: a rule reports a candidate; if no alert with that key
is open, it opens and is sent. While the rule keeps reporting it, it is sent
again every `repeat_minutes[severity]` (60 min for critical, 240 for warning
by default). When a rule that covers the key reports nothing, it closes with
a "resolved" message. A warning that becomes critical is sent at once as
"escalated"; a critical that eases to warning just changes (no message: the
next reminder says so). Info candidates are events, announced once.

Storm control: everything one evaluation produces for a channel goes out as
one message; a channel sends at most `max_messages_per_hour` messages, and
what it may not send yet, or could not deliver (webhook down), waits in the
state and goes out with its next message. So a burst of findings costs one
message per channel, and a flapping check costs at most the hourly budget.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ccops.alerts import channels as channels_mod
from ccops.alerts.config import AlertConfig, ChannelConfig
from ccops.alerts.config import load as load_config
from ccops.alerts.rules import Candidate, Evaluation, from_findings, now_utc, rule_for
from ccops.alerts.state import StateStore, iso, parse_iso
from ccops.core.findings import Status, severity_rank
from ccops.core.settings import Settings

MAX_PENDING = 200
MAX_RESOLVED_KEPT = 100
ANNOUNCED_KEEP_DAYS = 400


@dataclass
class ChannelReport:
    channel: str
    sent: int = 0  # notifications delivered
    messages: int = 0
    held: int = 0  # waiting: rate limit or delivery failure
    queued_for_digest: int = 0
    error: str = ""


@dataclass
class Outcome:
    """What one evaluation did: for the CLI line, --json, and tests."""

    now: datetime
    notifications: list[dict[str, Any]] = field(default_factory=list)
    open_alerts: list[dict[str, Any]] = field(default_factory=list)
    channels: list[ChannelReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def delivery_failed(self) -> bool:
        return any(c.error for c in self.channels)

    @property
    def exit_code(self) -> int:
        """Monitoring-plugin convention: the worst open alert; 3 when nothing worse but a delivery failed."""
        worst = max((severity_rank(a["severity"]) for a in self.open_alerts), default=0)
        if worst >= Status.CRITICAL.rank:
            return 2
        if worst >= Status.WARNING.rank:
            return 1
        return 3 if self.delivery_failed else 0

    def line(self) -> str:
        counts: dict[str, int] = {}
        for alert in self.open_alerts:
            counts[alert["severity"]] = counts.get(alert["severity"], 0) + 1
        opened = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -severity_rank(kv[0])))
        sent = sum(c.messages for c in self.channels)
        failed = [c for c in self.channels if c.error]
        text = f"{len(self.open_alerts)} open alert(s)" + (f" ({opened})" if opened else "")
        text += f"; {len(self.notifications)} notification(s), {sent} message(s) sent"
        if failed:
            text += "; delivery failed: " + "; ".join(c.error for c in failed)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"now": iso(self.now), "open": self.open_alerts, "notifications": self.notifications,
                "channels": [vars(c) for c in self.channels], "notes": self.notes, "exit_code": self.exit_code}


# ---- reconciling ------------------------------------------------------------------------

def _notification(kind: str, alert: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"kind": kind, "key": alert["key"], "severity": alert["severity"], "title": alert["title"],
            "message": alert["message"], "source": alert.get("source", ""), "opened_at": alert.get("opened_at"),
            "at": iso(now), "value": alert.get("value"), "threshold": alert.get("threshold")}


def reconcile(state: dict[str, Any], evaluation: Evaluation, now: datetime, cfg: AlertConfig) -> list[dict[str, Any]]:
    """Apply an evaluation to the state; the notifications it calls for, in order."""
    alerts: dict[str, dict[str, Any]] = state["alerts"]
    announced: dict[str, str] = state["announced"]
    out: list[dict[str, Any]] = []
    touched: set[str] = set()
    seen: set[str] = set()
    for cand in _dedupe(evaluation.candidates):
        seen.add(cand.key)
        if cand.severity == "info":
            if cand.key not in announced:
                announced[cand.key] = iso(now)
                out.append(_notification("info", _alert_dict(cand, now), now))
            continue
        existing = alerts.get(cand.key)
        if existing is None:
            alert = _alert_dict(cand, now)
            alerts[cand.key] = alert
            out.append(_notification("opened", alert, now))
            alert["last_notified"] = iso(now)
            alert["notifications"] = 1
            touched.add(cand.key)
            continue
        escalated = severity_rank(cand.severity) > severity_rank(existing["severity"])
        existing.update(severity=cand.severity, title=cand.title, message=cand.message, value=cand.value,
                        threshold=cand.threshold, last_seen=iso(now), source=cand.source)
        if escalated:
            out.append(_notification("escalated", existing, now))
            existing["last_notified"] = iso(now)
            existing["notifications"] = existing.get("notifications", 0) + 1
            touched.add(cand.key)
    for key in evaluation.also_announced:
        announced.setdefault(key, iso(now))
    for key in [k for k in alerts if k not in seen and evaluation.covers(k)]:
        alert = alerts.pop(key)
        alert["resolved_at"] = iso(now)
        out.append(_notification("resolved", alert, now))
        state["resolved"] = (state.get("resolved", []) + [alert])[-MAX_RESOLVED_KEPT:]
    out += due_repeats(state, now, cfg, skip=touched)
    cutoff = now - timedelta(days=ANNOUNCED_KEEP_DAYS)
    for key in [k for k, t in announced.items() if not k.startswith("milestone:") and (parse_iso(t) or now) < cutoff]:
        del announced[key]
    return out


def due_repeats(state: dict[str, Any], now: datetime, cfg: AlertConfig, skip: set[str] | None = None) -> list[dict[str, Any]]:
    """Reminders of open alerts whose repeat interval has passed since they were last sent."""
    out = []
    for key, alert in state["alerts"].items():
        if skip and key in skip:
            continue
        minutes = cfg.repeat_after(alert["severity"])
        last = parse_iso(alert.get("last_notified")) or parse_iso(alert.get("opened_at")) or now
        if minutes > 0 and now - last >= timedelta(minutes=minutes):
            out.append(_notification("repeat", alert, now))
            alert["last_notified"] = iso(now)
            alert["notifications"] = alert.get("notifications", 0) + 1
    return out


def _alert_dict(cand: Candidate, now: datetime) -> dict[str, Any]:
    return {"key": cand.key, "severity": cand.severity, "title": cand.title, "message": cand.message,
            "source": cand.source, "value": cand.value, "threshold": cand.threshold, "opened_at": iso(now),
            "last_seen": iso(now), "last_notified": None, "notifications": 0}


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate per key, the most severe (two rules may report the same key)."""
    best: dict[str, Candidate] = {}
    for cand in candidates:
        if cand.key not in best or severity_rank(cand.severity) > severity_rank(best[cand.key].severity):
            best[cand.key] = cand
    return list(best.values())


# ---- dispatching ------------------------------------------------------------------------

def _routes(channel: ChannelConfig, item: dict[str, Any]) -> str | None:
    """'send', 'digest' or None for one notification on one channel."""
    if item["kind"] == "info":
        if channel.digest:
            return "digest"
        return "send" if channel.wants("info") else None
    return "send" if channel.wants(item["severity"]) else None


def dispatch(state: dict[str, Any], notifications: list[dict[str, Any]], now: datetime, cfg: AlertConfig,
             scrub: Any = None) -> list[ChannelReport]:
    """Deliver to every channel in one message each, honouring the hourly budget; keep what is not sent."""
    reports = []
    names = {c.name for c in cfg.channels}
    for table in ("pending", "digest", "sent"):
        state[table] = {k: v for k, v in state.get(table, {}).items() if k in names}
    hour_ago = now - timedelta(hours=1)
    for channel in cfg.channels:
        report = ChannelReport(channel.name)
        items = list(state["pending"].get(channel.name, []))
        for item in notifications:
            route = _routes(channel, item)
            if route == "send":
                items.append(item)
            elif route == "digest":
                state["digest"].setdefault(channel.name, []).append(item)
                report.queued_for_digest += 1
        sent_times = [t for t in state["sent"].get(channel.name, []) if (parse_iso(t) or now) > hour_ago]
        state["sent"][channel.name] = sent_times
        if items and len(sent_times) >= cfg.max_messages_per_hour:
            report.held = len(items)
            state["pending"][channel.name] = items[-MAX_PENDING:]
        elif items:
            _send(channel, items, report, state, now, scrub, target=cfg.target)
        reports.append(report)
    return reports


def _send(channel: ChannelConfig, items: list[dict[str, Any]], report: ChannelReport, state: dict[str, Any],
          now: datetime, scrub: Any, digest: bool = False, target: str = "") -> bool:
    message = channels_mod.compose(items, host=channels_mod.origin(target), digest=digest)
    if scrub is not None:
        message.subject, message.text = scrub.text(message.subject), scrub.text(message.text)
        message.items = scrub.data(message.items)
    try:
        channels_mod.deliver(channel, message)
    except channels_mod.DeliveryError as exc:
        report.error = scrub.text(str(exc)) if scrub is not None else str(exc)
        report.held = len(items)
        if not digest:
            state["pending"][channel.name] = items[-MAX_PENDING:]
        return False
    report.sent = len(items)
    report.messages = 1
    state["pending"].pop(channel.name, None)
    state["sent"].setdefault(channel.name, []).append(iso(now))
    return True


def _scrubber(settings: Settings) -> Any:
    from ccops.core.scrub import Scrubber

    try:
        return Scrubber(settings)
    except Exception:  # noqa: BLE001 - no secrets resolvable: nothing to hide
        return None


def _open_list(state: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(state["alerts"].values(), key=lambda a: (-severity_rank(a["severity"]), a["opened_at"], a["key"]))


def store_for(cfg: AlertConfig) -> StateStore:
    return StateStore(cfg.state_dir)


# ---- the operations ---------------------------------------------------------------------

def check(settings: Settings, now: datetime | None = None, send: bool = True) -> Outcome:
    """`ccops alerts check`: evaluate every rule, then open, repeat, resolve and deliver.

    With send=False (`--dry-run`) nothing is delivered and the state is not saved.

    The slow part (checks, queries, probes) runs before the state lock is
    taken, so a runbook's raise_from_run never waits for a slow probe.
    """
    from ccops.alerts import deadman
    from ccops.alerts.rules import evaluate_live
    from ccops.core.context import RunContext

    now = now or now_utc()
    cfg = load_config(settings)
    store = store_for(cfg)
    snapshot = store.read()
    ctx = RunContext(runbook="alerts", settings=settings, as_of=now)
    evaluation = evaluate_live(ctx, cfg, snapshot)
    scrub = _scrubber(settings)
    with store.locked(save=send) as state:
        if cfg.enabled("deadman"):
            _guard(evaluation, "deadman", lambda: deadman.overdue_runs(settings, cfg, state, now,
                                                                      state["watch_since"]))
        if cfg.enabled("backup_age"):
            _guard(evaluation, "backup_age", lambda: deadman.stale_backup(
                settings, cfg, now, state["verified_backups"], state["watch_since"]))
        state["probes"].update(evaluation.probed)
        notifications = reconcile(state, evaluation, now, cfg)
        reports = dispatch(state, notifications, now, cfg, scrub) if send else []
        return Outcome(now, notifications, _open_list(state), reports, evaluation.notes)


def _guard(evaluation: Evaluation, name: str, fn: Any) -> None:
    from ccops.core.context import describe
    from ccops.core.settings import ConfigError

    try:
        evaluation.merge(fn())
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - the switch that cannot look covers nothing and says why
        evaluation.notes.append(f"{name}: could not run: {describe(exc)}")


COMPLETED = ("ok", "warning", "critical", "unknown")


def run_evaluation(record: dict[str, Any]) -> Evaluation:
    """The alerts a run record calls for.

    WARNING/CRITICAL findings open alerts. A finding of a check that `alerts
    check` also evaluates (disk, memory, services, health, API limits) uses the
    same key, so it joins that alert; any other is keyed `run:<runbook>:<check>`
    and is closed by a later run of the same runbook that evaluated the same
    check without a problem (a part of the runbook that was skipped closes
    nothing). A failed, timed-out or killed run opens `run.failed:<job>`, closed
    by the next completed run of that job.
    """
    from ccops.alerts.deadman import job_name
    from ccops.core.findings import Finding, Status

    runbook = str(record.get("runbook") or "unknown")
    part = str((record.get("parameters") or {}).get("part") or "all")
    job = job_name(runbook, part)
    source = f"run {runbook}" + (f" ({part})" if part != "all" else "") + f" at {record.get('start', '?')}"
    shared: list[Finding] = []
    own: list[Finding] = []
    for raw in record.get("findings") or []:
        try:
            finding = Finding.from_dict(raw)
        except (KeyError, ValueError, TypeError):
            continue
        if raw.get("resolved_by"):  # an incident this run repaired and verified: it covers its key, raises nothing
            finding.status = Status.OK
        (shared if rule_for(finding.check) else own).append(finding)
    out = from_findings(shared, source=source)
    out.merge(from_findings(own, key_prefix=f"run:{runbook}:", source=source))
    for cand in out.candidates:
        if cand.key.startswith("run:"):
            cand.title = f"{runbook}: {cand.key.split(':', 2)[2]}"
    outcome = record.get("outcome")
    if outcome in COMPLETED:
        out.covered_keys.add(f"run.failed:{job}")
        if part == "all":
            out.covered_keys.add(f"run.failed:{runbook}")
            out.covered_prefixes.add(f"run.failed:{runbook}:")
    elif outcome in ("failed", "timed-out", "killed"):
        out.candidates.append(Candidate(
            f"run.failed:{job}", "warning", f"Runbook {job} {outcome}",
            f"{job} {outcome}: {record.get('error') or 'no error recorded'}", source))
    return out


def raise_from_run(settings: Settings, record: dict[str, Any], now: datetime | None = None,
                   problems: list[str] | None = None) -> Outcome | None:
    """Called by the runner for each run, before its archive is written: its findings through the alert path.

    Never raises: a broken alert setup must not turn a finished run into a
    failed one. Problems are one line on stderr (and appended to `problems`);
    None is returned when nothing could be evaluated. A state file that cannot
    be saved (a full disk) does not undo what was delivered.
    """
    from ccops.alerts.deadman import COMPLETED as DONE
    from ccops.alerts.deadman import job_name

    def problem(text: str) -> None:
        line = f"ccops: alerts for run {record.get('runbook')!r}: {text}"
        print(line, file=sys.stderr)
        if problems is not None:
            problems.append(text)

    outcome: Outcome | None = None
    try:
        now = now or now_utc()
        cfg = load_config(settings)
        evaluation = run_evaluation(record) if cfg.enabled("runs") else Evaluation()
        scrub = _scrubber(settings)
        with store_for(cfg).locked() as state:
            if record.get("outcome") in DONE:
                runbook = str(record.get("runbook"))
                part = str((record.get("parameters") or {}).get("part") or "all")
                state["runs"][job_name(runbook, part)] = {"start": record.get("start"), "end": record.get("end"),
                                                          "outcome": record.get("outcome")}
            notifications = reconcile(state, evaluation, now, cfg)
            reports = dispatch(state, notifications, now, cfg, scrub)
            outcome = Outcome(now, notifications, _open_list(state), reports, evaluation.notes)
        return outcome
    except OSError as exc:
        from ccops.archive import describe_os_error

        where = f"{exc.filename}: " if exc.filename else ""
        if outcome is not None:  # delivered, but the state is not saved: repeats may come early
            problem(f"alert state not saved: {where}{describe_os_error(exc)}")
            return outcome
        problem(f"not raised: {where}{describe_os_error(exc)}")
        return None
    except Exception as exc:  # noqa: BLE001 - see docstring
        problem(f"not raised: {exc}")
        return None


def alerts_for_run(settings: Settings, record: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """raise_from_run for the runner, summarised for the run record.

    {"notifications": n, "delivered": [channels], "undelivered": ["channel: why"],
    "held": [rate-limited channels], "problems": [...]}. Notifications that were
    not delivered are queued for the next attempt (`ccops alerts check`) and
    named on stderr in one line, so a run's alert is never lost silently.
    """
    problems: list[str] = []
    outcome = raise_from_run(settings, record, now=now, problems=problems)
    summary: dict[str, Any] = {"notifications": 0, "delivered": [], "undelivered": [], "held": [],
                               "problems": problems}
    if outcome is None:
        return summary
    summary["notifications"] = len(outcome.notifications)
    for report in outcome.channels:
        if report.error:
            summary["undelivered"].append(report.error)
        elif report.messages:
            summary["delivered"].append(report.channel)
        elif report.held:
            summary["held"].append(report.channel)
    if summary["undelivered"]:
        print(f"ccops: alerts of run {record.get('runbook')!r} not delivered, queued for the next attempt: "
              + "; ".join(summary["undelivered"]), file=sys.stderr)
    return summary


def would_raise(record: dict[str, Any]) -> dict[str, Any]:
    """For a run whose as_of is in the past: the alerts its findings call for, without touching the state.

    A past day's report describes then, not now: opening, updating or resolving
    a live alert from it would page someone for an old problem or close an
    alert that is still true. Nothing is read or written, nothing is sent.
    """
    evaluation = run_evaluation(record)
    return {"backdated": True, "notifications": 0, "delivered": [], "undelivered": [], "held": [], "problems": [],
            "note": f"as_of {record.get('as_of')} is in the past: live alerts were not opened, updated or resolved",
            "would_raise": [{"key": c.key, "severity": c.severity, "title": c.title, "message": c.message}
                            for c in _dedupe(evaluation.candidates)]}


def list_open(settings: Settings, include_resolved: bool = False) -> dict[str, Any]:
    cfg = load_config(settings)
    state = store_for(cfg).read()
    data: dict[str, Any] = {"open": _open_list(state)}
    if include_resolved:
        data["resolved"] = list(reversed(state.get("resolved", [])))
    data["pending"] = {k: len(v) for k, v in state.get("pending", {}).items() if v}
    data["digest"] = {k: len(v) for k, v in state.get("digest", {}).items() if v}
    return data


def send_digest(settings: Settings, now: datetime | None = None) -> Outcome:
    """`ccops alerts digest`: the info alerts collected for digest channels, one message each."""
    now = now or now_utc()
    cfg = load_config(settings)
    scrub = _scrubber(settings)
    outcome = Outcome(now)
    with store_for(cfg).locked() as state:
        for channel in cfg.channels:
            items = state["digest"].get(channel.name, [])
            report = ChannelReport(channel.name)
            if items and _send(channel, items, report, state, now, scrub, digest=True, target=cfg.target):
                state["digest"].pop(channel.name, None)
                outcome.notifications += items
            outcome.channels.append(report)
        state["last_digest"] = iso(now)
        outcome.open_alerts = _open_list(state)
    return outcome


def send_test(settings: Settings, channel_name: str | None = None, now: datetime | None = None) -> Outcome:
    """`ccops alerts test`: one test message to each channel (or one), state untouched."""
    from ccops.core.errors import UsageError

    now = now or now_utc()
    cfg = load_config(settings)
    chosen = [c for c in cfg.channels if channel_name in (None, c.name)]
    if not chosen:
        raise UsageError(f"no channel named {channel_name!r}; configured: {', '.join(c.name for c in cfg.channels)}")
    item = {"kind": "test", "key": "ccops.test", "severity": "info", "title": "Test alert",
            "message": "ccops can reach this channel", "source": "ccops alerts test", "opened_at": iso(now),
            "at": iso(now), "value": None, "threshold": None}
    outcome = Outcome(now, [item])
    scrub = _scrubber(settings)
    for channel in chosen:
        report = ChannelReport(channel.name)
        message = channels_mod.compose([item], host=channels_mod.origin(cfg.target))
        try:
            channels_mod.deliver(channel, message)
            report.sent, report.messages = 1, 1
        except channels_mod.DeliveryError as exc:
            report.error = scrub.text(str(exc)) if scrub is not None else str(exc)
        outcome.channels.append(report)
    return outcome
