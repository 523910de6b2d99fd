"""The guide's "Monitoring Alerts" list as rules: findings and queries in, alert candidates out.

A rule says two things: which alerts are open now (candidates) and which
alert keys it looked at (coverage). Coverage is what lets an alert close:
an open alert is resolved only by a rule that evaluated its key and found
nothing wrong. A rule that could not look (the database is down, the log
dir is gone, a check returned UNKNOWN) covers nothing, so its open alerts
stay open instead of being "resolved" by an outage of the monitoring itself.

Alert keys are the check ids of the findings (`host.disk:/var`,
`services.status`, ...), so the same problem found by `ccops alerts check`
and by a runbook run is one alert, not two. Info alerts are events (a post
that took off, a test that reached significance, a milestone): announced
once, never repeated, never "resolved".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ccops.alerts.config import AlertConfig
from ccops.core.context import RunContext, describe
from ccops.core.findings import Finding, Status, severity_rank

SEVERITY_OF = {Status.CRITICAL: "critical", Status.WARNING: "warning"}  # findings that open an alert; ranked by severity_rank


@dataclass
class Candidate:
    """An alert that should be open (warning/critical) or announced (info) now."""

    key: str
    severity: str
    title: str
    message: str
    source: str
    value: Any = None
    threshold: Any = None


@dataclass
class Evaluation:
    """What one or more rules found, and which keys they are authoritative for."""

    candidates: list[Candidate] = field(default_factory=list)
    covered_keys: set[str] = field(default_factory=set)
    covered_prefixes: set[str] = field(default_factory=set)
    uncovered_keys: set[str] = field(default_factory=set)  # looked but could not tell (UNKNOWN)
    notes: list[str] = field(default_factory=list)  # rules that could not run, and why
    also_announced: list[str] = field(default_factory=list)  # info keys to remember without sending
    probed: dict[str, str] = field(default_factory=dict)  # throttled rule -> when it last looked

    def covers(self, key: str) -> bool:
        if key in self.uncovered_keys:
            return False
        return key in self.covered_keys or any(key.startswith(p) for p in self.covered_prefixes)

    def merge(self, other: Evaluation) -> Evaluation:
        self.candidates += other.candidates
        self.covered_keys |= other.covered_keys
        self.covered_prefixes |= other.covered_prefixes
        self.uncovered_keys |= other.uncovered_keys
        self.notes += other.notes
        self.also_announced += other.also_announced
        self.probed.update(other.probed)
        return self


# ---- findings -> alerts -----------------------------------------------------------------

@dataclass(frozen=True)
class FindingRule:
    rule: str
    title: str
    checks: tuple[str, ...]  # exact ids, or prefixes ending in ":" for per-item checks (host.disk:<path>)

    def matches(self, check_id: str) -> bool:
        return any(check_id == c or (c.endswith(":") and check_id.startswith(c)) for c in self.checks)


FINDING_RULES = (
    FindingRule("system_down", "System down", ("services.status", "services.status_endpoint")),
    FindingRule("database", "Database connection failed", ("health.database",)),
    FindingRule("health", "Health check", ("health.agent_activity", "health.content", "health.agent_errors")),
    FindingRule("disk", "Disk space low", ("host.disk:",)),
    FindingRule("memory", "Memory usage high", ("host.memory",)),
    FindingRule("error_rate", "Error rate high", ("logs.errors_last_hour",)),
    FindingRule("api_rate_limit", "API rate limit approaching", ("apis.x.rate_limit", "apis.anthropic.rate_limit")),
    # evaluated live by the dead man's switch (deadman.stale_backup); listed so a run's finding joins that alert
    FindingRule("backup_age", "No recent verified backup", ("backup.latest_verified",)),
)


def rule_for(check_id: str) -> FindingRule | None:
    """The live rule that owns a check id (so a run's finding joins the same alert), if any."""
    return next((r for r in FINDING_RULES if r.matches(check_id)), None)


def from_findings(findings: Iterable[Finding], rule: FindingRule | None = None, key_prefix: str = "",
                  title: str | None = None, source: str = "alerts check") -> Evaluation:
    """WARNING/CRITICAL findings become candidates; every finding that is not UNKNOWN covers its key."""
    out = Evaluation()
    found = list(findings)
    for finding in found:
        key = key_prefix + finding.check
        if finding.status == Status.UNKNOWN:
            out.uncovered_keys.add(key)
            out.notes.append(f"{finding.check}: {finding.summary}")
            continue
        out.covered_keys.add(key)
        severity = SEVERITY_OF.get(finding.status)
        if severity:
            owner = rule or rule_for(finding.check)
            out.candidates.append(Candidate(
                key=key, severity=severity, title=title or (owner.title if owner else finding.check),
                message=finding.summary, source=source, value=finding.value, threshold=finding.threshold,
            ))
    # a per-item check that ran covers its whole family, so an item that disappeared (an unmounted path) closes
    for prefix in {f.check.split(":", 1)[0] + ":" for f in found if ":" in f.check and f.status != Status.UNKNOWN}:
        out.covered_prefixes.add(key_prefix + prefix)
    return out


# ---- the live sources of `ccops alerts check` -------------------------------------------------

def _guarded(name: str, fn: Callable[[], Evaluation]) -> Evaluation:
    from ccops.core.settings import ConfigError

    try:
        return fn()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a rule that cannot run covers nothing and says why
        return Evaluation(notes=[f"{name}: could not run: {describe(exc)}"])


def evaluate_live(ctx: RunContext, cfg: AlertConfig, state: dict[str, Any] | None = None) -> Evaluation:
    """Every enabled live rule against the system as it is at ctx.as_of (`state`: a snapshot, read only)."""
    from ccops.alerts.state import iso, parse_iso
    from ccops.checks import apis, health, host, services

    state = state or {}
    announced = state.get("announced", {})

    result = Evaluation()
    by_rule = {r.rule: r for r in FINDING_RULES}
    db_ok = False
    if cfg.enabled("database") or cfg.enabled("health") or _needs_db(cfg):
        try:
            found = health.health_findings(ctx.settings, ctx.as_of)
        except Exception as exc:  # noqa: BLE001 - e.g. no demo cluster to resolve: say so, cover nothing
            found = []
            result.notes.append(f"database: could not run: {describe(exc)}")
        db_ok = any(f.check == "health.database" and f.status == Status.OK for f in found)
        if cfg.enabled("database"):
            result.merge(from_findings([f for f in found if f.check == "health.database"], by_rule["database"]))
        if cfg.enabled("health"):
            result.merge(from_findings([f for f in found if by_rule["health"].matches(f.check)], by_rule["health"]))
    if cfg.enabled("system_down"):
        result.merge(_guarded("system_down", lambda: from_findings(
            [*services.service_status(ctx), *services.status_endpoint(ctx)], by_rule["system_down"])))
    if cfg.enabled("disk"):
        result.merge(_guarded("disk", lambda: from_findings(host.disk_space(ctx), by_rule["disk"])))
    if cfg.enabled("memory"):
        result.merge(_guarded("memory", lambda: from_findings(host.memory(ctx), by_rule["memory"])))
    if cfg.enabled("error_rate"):
        result.merge(_guarded("error_rate", lambda: from_findings([error_rate(ctx)], by_rule["error_rate"])))
    last_probe = parse_iso(state.get("probes", {}).get("api_rate_limit"))
    probe_due = last_probe is None or ctx.as_of - last_probe >= timedelta(minutes=cfg.api_probe_minutes) \
        or ctx.as_of < last_probe
    if cfg.enabled("api_rate_limit") and last_probe is not None and not probe_due:
        result.notes.append(f"api_rate_limit: probed at {iso(last_probe)}; next after {cfg.api_probe_minutes:g} min")
    elif cfg.enabled("api_rate_limit"):
        # each probe spends a request of the very quota it measures: at most every api_probe_minutes
        result.probed["api_rate_limit"] = iso(ctx.as_of)
        result.merge(_guarded("api_rate_limit", lambda: from_findings(
            [f for f in apis.live_rate_limits(ctx) if by_rule["api_rate_limit"].matches(f.check)
             or f.check == "apis.rate_limit"], by_rule["api_rate_limit"])))
    db_rules: list[tuple[str, Callable[[RunContext, AlertConfig], Evaluation]]] = [("no_content", no_content), ("high_engagement", high_engagement), ("ab_test", ab_tests),
                ("milestones", lambda c, g: milestones(c, g, announced))]
    for name, rule in db_rules:
        if not cfg.enabled(name):
            continue
        if not db_ok:
            result.notes.append(f"{name}: skipped: the database is not reachable")
            continue
        result.merge(_guarded(name, functools.partial(rule, ctx, cfg)))
    return result


def _needs_db(cfg: AlertConfig) -> bool:
    return any(cfg.enabled(r) for r in ("no_content", "high_engagement", "ab_test", "milestones"))


def error_rate(ctx: RunContext) -> Finding:
    """ERROR and CRITICAL records in the 60 minutes before as_of, counted by level (not by grep).

    A rolling hour rather than the worst clock hour: 6 errors at 10:55 and 6
    at 11:05 are 12 in an hour, and the alert should say so at 11:05.
    """
    from ccops import logs

    level = ctx.settings.thresholds.logs.errors_per_hour
    since = ctx.as_of - timedelta(hours=1)
    try:
        summary = logs.summary_for_settings(ctx.settings, since, ctx.as_of)
    except logs.LogSourceError as exc:
        return Finding("logs.errors_last_hour", Status.UNKNOWN, f"no logs to read: {exc}")
    count = int(summary.errors)
    status = level.grade(count)
    threshold = level.limit(status)
    return Finding("logs.errors_last_hour", status,
                   f"{count} error records (ERROR+CRITICAL) in the last hour, limit {threshold:g}/h", count, threshold)


# ---- direct queries ---------------------------------------------------------------------------

LAST_PUBLISHED_SQL = "SELECT max(published_at) FROM published_content WHERE published_at <= :until"


def no_content(ctx: RunContext, cfg: AlertConfig) -> Evaluation:
    """No post in the last N hours: one index probe on published_content(published_at)."""
    from ccops.core.db import scalar

    level = ctx.settings.thresholds.content.no_content_hours
    hours = level.first
    with ctx.db() as conn:
        last = scalar(conn, LAST_PUBLISHED_SQL, until=ctx.as_of)
    key = "content.none_recent"
    out = Evaluation(covered_keys={key})
    if last is not None and not level.beyond((ctx.as_of - last).total_seconds() / 3600):
        return out
    when = "nothing was ever published" if last is None else \
        f"the last post was {last:%Y-%m-%d %H:%M} UTC, {(ctx.as_of - last).total_seconds() / 3600:.1f} h ago"
    out.candidates.append(Candidate(key, "warning", "No content published",
                                    f"No content published in the last {hours:g} h: {when}", "alerts check",
                                    None if last is None else round((ctx.as_of - last).total_seconds() / 3600, 2),
                                    hours))
    return out


BASELINE_SQL = """
SELECT count(engagement_rate) AS n, avg(engagement_rate) AS mean, stddev_samp(engagement_rate) AS std,
       percentile_cont(:q) WITHIN GROUP (ORDER BY engagement_rate) AS quantile
FROM published_content
WHERE published_at > :since AND published_at <= :until AND engagement_rate IS NOT NULL
"""
HITS_SQL = """
SELECT id, platform, published_at, views, engagement_rate, left(content_text, 80) AS text
FROM published_content
WHERE published_at > :since AND published_at <= :until
  AND engagement_rate > :limit AND coalesce(views, 0) >= :min_views
ORDER BY engagement_rate DESC
LIMIT 20
"""


def engagement_limit(n: int, mean: float | None, std: float | None, quantile: float | None,
                     cfg: AlertConfig) -> float | None:
    """The rate above which a post is "far above" the baseline, or None when the baseline is too thin."""
    e = cfg.engagement
    if n < e.min_baseline_posts or mean is None:
        return None
    if e.method == "percentile":
        return None if quantile is None else float(quantile)
    spread = 0.0 if std is None or (isinstance(std, float) and math.isnan(std)) else float(std)
    return float(mean) + e.sigma * spread


def high_engagement(ctx: RunContext, cfg: AlertConfig) -> Evaluation:
    """Posts of the last window_hours whose engagement rate is far above the last 30 days' distribution."""
    from ccops.core.db import query_df

    e = cfg.engagement
    with ctx.db() as conn:
        base = query_df(conn, BASELINE_SQL, q=e.percentile, since=ctx.as_of - timedelta(days=e.baseline_days),
                        until=ctx.as_of).iloc[0]
        n = int(base["n"] or 0)
        limit = engagement_limit(n, _num(base["mean"]), _num(base["std"]), _num(base["quantile"]), cfg)
        out = Evaluation(covered_prefixes={"engagement.high:"})
        if limit is None:
            out.notes.append(f"high_engagement: only {n} posts with an engagement rate in the last "
                             f"{e.baseline_days:g} days (need {e.min_baseline_posts})")
            return out
        hits = query_df(conn, HITS_SQL, since=ctx.as_of - timedelta(hours=e.window_hours), until=ctx.as_of,
                        limit=limit, min_views=e.min_views)
    how = f"mean + {e.sigma:g} sd" if e.method == "sigma" else f"{e.percentile:.0%} percentile"
    for row in hits.itertuples():
        out.candidates.append(Candidate(
            f"engagement.high:{row.id}", "info", "High-engagement content",
            f"{row.platform} post {row.id} ({row.published_at:%Y-%m-%d %H:%M} UTC, {int(row.views or 0):,} views): "
            f"engagement rate {row.engagement_rate:.2%}, above {limit:.2%} ({how} of the last "
            f"{e.baseline_days:g} days); \"{row.text}\"", "alerts check", round(float(row.engagement_rate), 4),
            round(limit, 4)))
    return out


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def ab_tests(ctx: RunContext, cfg: AlertConfig) -> Evaluation:
    """Variants that differ significantly from their control, in tests running in the lookback window."""
    from ccops.analytics.abtests import confidence_setting, load_results

    level = confidence_setting(ctx.settings)
    with ctx.db() as conn:
        table = load_results(conn, ctx.as_of, level, since=ctx.as_of - timedelta(hours=cfg.ab_test_lookback_hours))
    out = Evaluation(covered_prefixes={"abtest.significant:"})
    if table.empty:
        return out
    for row in table[table["significant"]].itertuples():
        better = "better" if row.z > 0 else "worse"
        out.candidates.append(Candidate(
            f"abtest.significant:{row.test_id}:{row.variant_id}", "info", "A/B test result significant",
            f"A/B test {row.test_name!r}: variant {row.variant_name!r} is significantly {better} than the control "
            f"on {row.metric} ({row.rate:.2%} vs {row.control_rate:.2%}, p={row.p_value:.4g}, "
            f"{level:.0%} confidence)", "alerts check", round(float(row.p_value), 6), round(1 - level, 4)))
    return out


MILESTONE_SQL = {
    "subscribers": "SELECT count(*) FROM subscriptions WHERE status = 'active' AND created_at <= :until",
    "community": "SELECT count(*) FROM community_users WHERE first_seen IS NULL OR first_seen <= :until",
}


def milestones(ctx: RunContext, cfg: AlertConfig, announced: dict[str, Any]) -> Evaluation:
    """The highest milestone crossed and not yet announced; the lower ones are remembered silently."""
    from ccops.core.db import scalar

    out = Evaluation(covered_prefixes={"milestone:"})
    with ctx.db() as conn:
        for metric, levels in cfg.milestones.items():
            if not levels:
                continue
            count = int(scalar(conn, MILESTONE_SQL[metric], until=ctx.as_of) or 0)
            crossed = [m for m in levels if count >= m and f"milestone:{metric}:{m}" not in announced]
            if not crossed:
                continue
            top = crossed[-1]
            out.also_announced += [f"milestone:{metric}:{m}" for m in crossed[:-1]]
            noun = "active subscriptions" if metric == "subscribers" else "community members"
            out.candidates.append(Candidate(
                f"milestone:{metric}:{top}", "info", "Subscriber milestone" if metric == "subscribers"
                else "Community milestone", f"{count:,} {noun}: passed the {top:,} milestone", "alerts check",
                count, top))
    return out


def worst_severity(severities: Iterable[str]) -> str | None:
    ranked = sorted(severities, key=severity_rank)
    return ranked[-1] if ranked else None


def now_utc() -> datetime:
    from datetime import UTC

    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
