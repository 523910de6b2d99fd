"""The [alerts] section: rules, repeat intervals, channels, each checked before anything runs.

Alerting is the part of ccops that runs unattended every five minutes, so a
typo must fail loudly at the first `ccops alerts check` with one line naming
the key and the file (exit 64), not silently drop every alert. Secrets (a
webhook URL carries its token; the SMTP password) are never values here: the
file names the environment variable that holds each, and a channel that
names a variable which is empty is reported when it is used, not here, so a
cron environment missing one variable still gets the other channels.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ccops.core.reader import SectionReader
from ccops.core.settings import Settings
from ccops.core.thresholds import Backup, Engagement

SEVERITIES = ("critical", "warning", "info")
CHANNEL_TYPES = ("log", "console", "webhook", "email", "command")
RULES = (
    "system_down", "database", "health", "disk", "memory", "error_rate", "no_content", "api_rate_limit",
    "backup_age", "deadman", "high_engagement", "ab_test", "milestones", "runs",
)
DEFAULT_REPEAT_MINUTES = {"critical": 60, "warning": 240, "info": 0}
DEFAULT_MILESTONES = {
    "subscribers": [10, 50, 100, 250, 500, 1000, 2500, 5000, 10000],
    "community": [100, 500, 1000, 5000, 10000, 25000, 50000, 100000],
}


@dataclass
class ChannelConfig:
    """One destination. `name` keys its queue and rate limit in the state file."""

    name: str
    type: str
    severities: tuple[str, ...] = ("critical", "warning")
    digest: bool = False
    # webhook
    url_env: str = ""
    format: str = "json"
    # email
    host: str = ""
    port: int = 587
    starttls: bool = True
    ssl: bool = False
    username: str = ""
    password_env: str = ""
    sender: str = ""
    to: tuple[str, ...] = ()
    ca_file: str = ""
    # command
    command: tuple[str, ...] = ()
    # log
    path: Path | None = None
    timeout_seconds: float = 10.0

    def wants(self, severity: str) -> bool:
        return severity in self.severities

    def describe(self) -> str:
        """Where it goes, without a secret (for `ccops alerts test` and logs)."""
        if self.type == "webhook":
            return f"{self.name}: webhook ({self.format}) at ${self.url_env}"
        if self.type == "email":
            mode = "SMTPS" if self.ssl else ("STARTTLS" if self.starttls else "plain")
            return f"{self.name}: email via {self.host}:{self.port} ({mode}) to {', '.join(self.to)}"
        if self.type == "command":
            return f"{self.name}: command {shlex.join(self.command)}"
        if self.type == "log":
            return f"{self.name}: log file {self.path}"
        return f"{self.name}: console"


@dataclass
class EngagementConfig:
    method: str = "sigma"  # "sigma": mean + k*std; "percentile": above the p-th quantile
    sigma: float = 3.0
    percentile: float = 0.99
    window_hours: float = 24.0  # posts this recent are candidates
    baseline_days: float = 30.0
    min_baseline_posts: int = 30
    min_views: int = Engagement.min_views  # default: thresholds.engagement.min_views (load() reads the setting)


@dataclass
class AlertConfig:
    repeat_minutes: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REPEAT_MINUTES))
    rules: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(RULES, True))
    channels: list[ChannelConfig] = field(default_factory=list)
    max_messages_per_hour: int = 20
    deadman_grace_minutes: float = 45.0
    backup_max_age_hours: float = Backup.max_age_hours.first  # default: thresholds.backup.max_age_hours
    ab_test_lookback_hours: float = 24.0
    api_probe_minutes: float = 60.0  # live rate-limit probes spend the quota they measure
    engagement: EngagementConfig = field(default_factory=EngagementConfig)
    milestones: dict[str, list[int]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_MILESTONES.items()})
    state_dir: Path = Path(".ccops/alerts")
    # the target ([targets.<name>]) these alerts belong to: every message names it beside the host,
    # so staging's CRITICAL can never be read as production's
    target: str = ""

    def enabled(self, rule: str) -> bool:
        return self.rules.get(rule, True)

    def repeat_after(self, severity: str) -> float:
        """Minutes between reminders of an open alert; 0 = never repeat."""
        return float(self.repeat_minutes.get(severity, 0) or 0)


TOP_KEYS = {"repeat_minutes", "rules", "channels", "max_messages_per_hour", "deadman_grace_minutes",
            "backup_max_age_hours", "ab_test_lookback_hours", "api_probe_minutes", "engagement", "milestones"}
CHANNEL_KEYS = {
    "log": {"path"}, "console": set(), "webhook": {"url_env", "format"},
    "email": {"host", "port", "starttls", "ssl", "username", "password_env", "from", "to", "ca_file"},
    "command": {"command"},
}
COMMON_CHANNEL_KEYS = {"type", "name", "severities", "digest", "timeout_seconds"}


def load(settings: Settings) -> AlertConfig:
    """The validated [alerts] section (defaults where absent); ConfigError naming the key otherwise."""
    top = SectionReader.of(settings, "alerts")
    top.unknown(TOP_KEYS)
    cfg = AlertConfig(state_dir=Path(settings.home) / "alerts", target=settings.target)

    repeat = top.section("repeat_minutes")
    repeat.unknown(SEVERITIES)
    for severity in SEVERITIES:
        cfg.repeat_minutes[severity] = repeat.number(severity, DEFAULT_REPEAT_MINUTES[severity], minimum=0)

    rules = top.section("rules")
    rules.unknown(RULES)
    for rule in RULES:
        cfg.rules[rule] = rules.boolean(rule, True)

    cfg.max_messages_per_hour = top.integer("max_messages_per_hour", 20, minimum=1)
    cfg.deadman_grace_minutes = top.number("deadman_grace_minutes", 45.0, minimum=0)
    # alerts.backup_max_age_hours still overrides the one home for the alert alone
    cfg.backup_max_age_hours = top.number("backup_max_age_hours", settings.thresholds.backup.max_age_hours.first,
                                           minimum=1)
    cfg.ab_test_lookback_hours = top.number("ab_test_lookback_hours", 24.0, minimum=1)
    cfg.api_probe_minutes = top.number("api_probe_minutes", 60.0, minimum=0)

    eng = top.section("engagement")
    eng.unknown({"method", "sigma", "percentile", "window_hours", "baseline_days", "min_baseline_posts", "min_views"})
    cfg.engagement = EngagementConfig(
        method=eng.choice("method", "sigma", ("sigma", "percentile")),
        sigma=eng.number("sigma", 3.0, minimum=0.5),
        percentile=eng.number("percentile", 0.99, minimum=0.5, maximum=0.9999),
        window_hours=eng.number("window_hours", 24.0, minimum=1),
        baseline_days=eng.number("baseline_days", 30.0, minimum=1),
        min_baseline_posts=eng.integer("min_baseline_posts", 30, minimum=2),
        min_views=eng.integer("min_views", settings.thresholds.engagement.min_views, minimum=0),
    )

    stones = top.section("milestones")
    stones.unknown(DEFAULT_MILESTONES)
    for metric in DEFAULT_MILESTONES:
        values = stones.get(metric, cfg.milestones[metric])
        if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                   for v in values):
            raise stones.fail(metric, f"expected a list of positive whole numbers, got {values!r}")
        cfg.milestones[metric] = sorted(set(values))

    names: set[str] = set()
    for index, table in enumerate(top.sections("channels", "[[alerts.channels]]"), start=1):
        channel = _channel(settings, table, index)
        if channel.name in names:
            raise table.fail("name", f"duplicate channel name {channel.name!r}")
        names.add(channel.name)
        cfg.channels.append(channel)
    if not cfg.channels:  # never drop an alert on the floor: without channels, they go to a log file
        cfg.channels.append(ChannelConfig(name="log", type="log", severities=SEVERITIES,
                                          path=cfg.state_dir / "alerts.log"))
    return cfg


def _channel(settings: Settings, r: SectionReader, index: int) -> ChannelConfig:
    if "type" not in r:
        raise r.fail("type", f"required: one of {', '.join(CHANNEL_TYPES)}")
    kind = r.choice("type", "", CHANNEL_TYPES)
    r.unknown(COMMON_CHANNEL_KEYS | CHANNEL_KEYS[kind] | ({"url"} if kind == "webhook" else set()))
    severities = tuple(r.strings("severities", ("critical", "warning")))
    for severity in severities:
        if severity not in SEVERITIES:
            raise r.fail("severities", f"expected some of {', '.join(SEVERITIES)}, got {severity!r}")
    channel = ChannelConfig(
        name=r.string("name", f"{kind}-{index}") or f"{kind}-{index}", type=kind, severities=severities,
        digest=r.boolean("digest", False), timeout_seconds=r.number("timeout_seconds", 10.0, minimum=1),
    )
    if kind == "webhook":
        if "url" in r:
            raise r.fail("url", "a webhook URL carries its token: put it in an environment variable and name "
                                "that variable with url_env")
        channel.url_env = r.string("url_env")
        if not channel.url_env:
            raise r.fail("url_env", "required: the environment variable holding the webhook URL")
        channel.format = r.choice("format", "json", ("json", "slack"))
    elif kind == "email":
        channel.host = r.string("host")
        if not channel.host:
            raise r.fail("host", "required: the SMTP server")
        channel.port = r.integer("port", 587, minimum=1, maximum=65535)
        channel.ssl = r.boolean("ssl", False)
        channel.starttls = r.boolean("starttls", not channel.ssl)
        if channel.ssl and channel.starttls:
            raise r.fail("starttls", "ssl = true already encrypts the connection; set starttls = false")
        channel.username = r.string("username")
        channel.password_env = r.string("password_env")
        if channel.username and not channel.password_env:
            raise r.fail("password_env", "required with username: the environment variable holding the password")
        channel.sender = r.string("from")
        if "@" not in channel.sender:
            raise r.fail("from", f"expected an e-mail address, got {channel.sender!r}")
        channel.to = tuple(r.strings("to"))
        if not channel.to or not all("@" in a for a in channel.to):
            raise r.fail("to", f"expected a list of e-mail addresses, got {r.get('to')!r}")
        channel.ca_file = r.string("ca_file")
    elif kind == "command":
        raw = r.get("command")
        if isinstance(raw, str) and raw.strip():
            channel.command = tuple(shlex.split(raw))
        elif isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
            channel.command = tuple(raw)
        else:
            raise r.fail("command", f"expected a command line or a list of arguments, got {raw!r}")
        channel.timeout_seconds = r.number("timeout_seconds", 30.0, minimum=1)
    elif kind == "log":  # a relative path is taken from the folder of the file that says it
        channel.path = (r.path("path") if r.string("path") else None) or Path(settings.home) / "alerts" / "alerts.log"
    return channel
