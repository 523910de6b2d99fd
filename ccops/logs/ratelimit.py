"""Rate limits in the app's log: refused requests (events), remaining quota, who and until when.

Two kinds of log lines mention rate limits, and they mean opposite things:

- a refused request - HTTP 429, "Too Many Requests", an API's rate-limit error
  (tweepy's TooManyRequests, anthropic's RateLimitError / rate_limit_error,
  Binance's -1003 "Too much request weight used") - logged at WARNING or above. That is a
  rate-limit EVENT. The real app logs it from its API client module, e.g.
  ``ERROR | src.api_integrations.twitter_api:post_tweet - Failed to post tweet:
  429 Too Many Requests``: the line names the client, not the agent, and
  carries no reset time.
- a quota figure in a successful response (``x-rate-limit-remaining=12`` in a
  DEBUG line of a 201 Created). That is REMAINING QUOTA: it may say "approaching
  the limit" (the guide's INFO alert), never that a limit was hit. Counting it
  as an event made a quiet day read "26 rate-limit events".

Which agent hit the limit can only be inferred: from agent_logs rows in the same
minute (+-1) as each 429, among the agents that use that client (setting
ratelimit.client_agents; twitter_api: PublishingAgent, EngagementAgent). Such an
agent is always labelled "inferred". When the limit resets: a live probe's
headers when one answered, else the API's window (ratelimit.window_minutes,
X's documented 15 minutes) after the last 429.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ccops.core.reader import ENVIRONMENT, ConfigError, config_error, settings_source
from ccops.logs.format import RateLimitRules, format_for
from ccops.logs.records import LogRecord, Selector, select_matching

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ccops.core.settings import Settings

EVENT_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
# A refused request. "\b429\b" is an HTTP status only when it stands alone (not "4290", "1.429").
EVENT_RE = re.compile(
    r"(?<![\d.])429(?![\d.])|too[ _-]?many[ _-]?requests|rate[ _-]?limit(?:ed\b|[ _-]?(?:exceeded|reached|hit|error))"
    r"|ratelimiterror"
    r"|too much request weight|code=-10(?:03|15)\b",  # Binance: -1003 TOO_MANY_REQUESTS, -1015 too many orders
    re.IGNORECASE,
)
# Every match of EVENT_RE contains one of these (lower-cased): the log reader's byte prefilter.
EVENT_NEEDLES = (b"429", b"manyrequests", b"many requests", b"many_requests", b"many-requests",
                 b"ratelimit", b"rate limit", b"rate_limit", b"rate-limit", b"request weight", b"code=-10")
QUOTA_RE = re.compile(
    r"(?P<name>x-rate-limit|anthropic-ratelimit-requests|ratelimit)-remaining['\"]?\s*[=:]\s*['\"]?(?P<remaining>\d+)",
    re.IGNORECASE,
)
QUOTA_LIMIT_RE = re.compile(
    r"(?:x-rate-limit|anthropic-ratelimit-requests|ratelimit)-limit['\"]?\s*[=:]\s*['\"]?(\d+)", re.IGNORECASE)
QUOTA_NEEDLES = (b"ratelimit-requests-remaining", b"rate-limit-remaining", b"ratelimit-remaining")
API_PATTERNS = (  # (api, pattern): the api named earliest in the message wins
    ("x", re.compile(r"x-rate-limit|twitter|tweepy|tweet|api\.x\.com|\bx[_ ]api\b", re.IGNORECASE)),
    ("x", re.compile(r"\bX\b")),  # the capital letter as a word: "X API", "posting to X"
    ("anthropic", re.compile(r"anthropic|claude", re.IGNORECASE)),
    ("binance", re.compile(r"binance|exchange_api", re.IGNORECASE)),
    ("telegram", re.compile(r"telegram", re.IGNORECASE)),
    ("stripe", re.compile(r"stripe", re.IGNORECASE)),
    ("discord", re.compile(r"discord", re.IGNORECASE)),
)
AGENT_RE = re.compile(r"\b([A-Z][A-Za-z0-9]*(?:Agent|Coordinator))\b")
RESET_AT_RE = re.compile(r"reset(?:s)? at (\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})", re.IGNORECASE)
X_RESET_RE = re.compile(r"x-rate-limit-reset['\"]?\s*[=:]\s*['\"]?(\d{9,11})", re.IGNORECASE)
ANTHROPIC_RESET_RE = re.compile(
    r"anthropic-ratelimit-requests-reset['\"]?\s*[=:]\s*['\"]?(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)",
    re.IGNORECASE,
)
RETRY_AFTER_RE = re.compile(r"retry[-_ ]after['\"]?\s*[=:]\s*['\"]?(\d+(?:\.\d+)?)", re.IGNORECASE)
EVENT_COLUMNS = ["time", "api", "client", "agent", "level", "remaining", "reset_at", "message"]
QUOTA_COLUMNS = ["time", "api", "remaining", "limit", "message"]
DEFAULT_CLIENT_AGENTS = {"twitter_api": ("PublishingAgent", "EngagementAgent"), "exchange_api": ("MarketScannerAgent",)}
ATTRIBUTION_SLACK = timedelta(minutes=1)
# The rules both loguru formats of ccops.logs.formats use (a format for another app brings its own):
# what counts as a refused request, and what is only a quota figure.
RULES = RateLimitRules(EVENT_LEVELS, EVENT_RE, EVENT_NEEDLES, QUOTA_RE, QUOTA_NEEDLES)


# ---- events and quota ---------------------------------------------------------------------

def rules_for(settings: Settings) -> RateLimitRules:
    """The rate-limit rules of the log format the setting logs.format names."""
    return format_for(settings).ratelimit


def is_event(level: str, message: str, rules: RateLimitRules = RULES) -> bool:
    """A refused request: a rate-limit error at WARNING or above (a DEBUG quota figure is not one)."""
    return level in rules.levels and rules.event.search(message) is not None


def select_events(rules: RateLimitRules = RULES) -> Selector:
    """The log reader's selection of events, with the byte prefilter that keeps it fast."""

    # every match of rules.event contains one of the needles (the reader's byte prefilter relies on it too):
    # a record holding none is no event, without running the pattern over each of its lines
    needles = tuple(n.decode("utf-8", "replace") for n in rules.needles)

    def select(level: str, lines: list[str]) -> bool:
        if level not in rules.levels:
            return False
        if needles:
            folded = "\n".join(lines).lower()
            if not any(n in folded for n in needles):
                return False
        return any(rules.event.search(line) for line in lines)

    return Selector(select, (), rules.needles,
                    key=("events", tuple(sorted(rules.levels)), rules.event.pattern, rules.event.flags))


def select_quota(rules: RateLimitRules = RULES) -> Selector:
    """Records that report remaining quota (any level: such figures are usually DEBUG)."""
    return select_matching(rules.quota, rules.quota_needles)


def client_of(module: str) -> str:
    """The API client module a record came from: `src.api_integrations.twitter_api` -> `twitter_api`."""
    parts = module.split(".")
    return parts[-1] if "api_integrations" in parts[:-1] or parts[-1].endswith("_api") else ""


def api_of(text: str, module: str = "") -> str:
    """Which API a message is about: the one named first, else the module's."""
    for candidate in (text, module):
        found = [(m.start(), api) for api, pattern in API_PATTERNS if (m := pattern.search(candidate))]
        if found:
            return min(found)[1]
    return "unknown"


def agent_named(text: str, module: str = "") -> str:
    """The agent a message itself names (CamelCase ...Agent/...Coordinator), else its agent module's class."""
    match = AGENT_RE.search(text)
    if match:
        return match.group(1)
    parts = module.split(".")
    last = parts[-1] if parts else ""
    if not last or last in ("base_agent", "__init__", "__main__") or "agents" not in parts[:-1]:
        return ""
    camel = "".join(word.capitalize() for word in last.split("_") if word)
    return camel if camel.endswith(("Agent", "Coordinator")) else camel + "Agent"


def reset_of(text: str, at: datetime) -> datetime | None:
    """When the limit resets, if the line says so (the real app's lines never do)."""
    match = RESET_AT_RE.search(text)
    if match:
        return datetime.fromisoformat(match.group(1).replace("T", " "))
    match = X_RESET_RE.search(text)
    if match:
        return datetime.fromtimestamp(int(match.group(1)), UTC).replace(tzinfo=None)
    match = ANTHROPIC_RESET_RE.search(text)
    if match:
        moment = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    match = RETRY_AFTER_RE.search(text)
    if match:
        return at + timedelta(seconds=float(match.group(1)))
    return None


def rate_limit_events(records: Iterable[LogRecord], rules: RateLimitRules = RULES) -> pd.DataFrame:
    """The refused requests among the records: when, which API and client, the agent if the line names one."""
    import pandas as pd

    rows = []
    for record in records:
        if not is_event(record.level, record.message, rules):
            continue
        quota = rules.quota.search(record.message)
        rows.append({
            "time": record.time, "api": api_of(record.message, record.name), "client": client_of(record.name),
            "agent": agent_named(record.message, record.name), "level": record.level,
            "remaining": int(quota.group("remaining")) if quota else None,
            "reset_at": reset_of(record.message, record.time), "message": record.first_line[:300],
        })
    frame = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"])
    frame["reset_at"] = pd.to_datetime(frame["reset_at"])
    frame["remaining"] = frame["remaining"].astype("Int64")
    return frame


def quota_readings(records: Iterable[LogRecord], rules: RateLimitRules = RULES) -> pd.DataFrame:
    """Remaining quota reported by successful responses: input for "approaching the limit", never an event."""
    import pandas as pd

    rows = []
    for record in records:
        quota = rules.quota.search(record.message)
        if quota is None or is_event(record.level, record.message, rules):
            continue
        limit = QUOTA_LIMIT_RE.search(record.message)
        rows.append({"time": record.time, "api": api_of(record.message, record.name),
                     "remaining": int(quota.group("remaining")), "limit": int(limit.group(1)) if limit else None,
                     "message": record.first_line[:300]})
    frame = pd.DataFrame(rows, columns=QUOTA_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"])
    return frame


def approaching(readings: pd.DataFrame, share: float) -> pd.DataFrame:
    """Each API's latest reading when it is below `share` of its limit (the guide: under 10 % left)."""
    if readings.empty:
        return readings
    latest = readings.sort_values("time").groupby("api", sort=False).tail(1)
    known = latest[latest["limit"].notna() & (latest["limit"] > 0)]
    return known[known["remaining"] < known["limit"] * share].reset_index(drop=True)


# ---- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class RateLimitConfig:
    """[ratelimit]: which agents use which client, and the window after which a limit resets."""

    client_agents: Mapping[str, tuple[str, ...]]
    window: timedelta
    agent_key_template: str = ""


def parse_client_agents(entries: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """`client=AgentA AgentB` entries (agents separated by spaces or '+'), as a mapping."""
    mapping: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        client, sep, agents = entry.partition("=")
        if not sep or not client.strip():
            raise ValueError(f"expected 'client=AgentA AgentB', got {entry!r}")
        mapping[client.strip()] = tuple(a for a in re.split(r"[\s+]+", agents.strip()) if a)
    return mapping


def config_of(settings: Settings) -> RateLimitConfig:
    """The rate-limit settings, with FACTS.md's defaults when there is no [ratelimit] section."""
    section = getattr(settings, "ratelimit", None)
    if section is None:
        return RateLimitConfig(DEFAULT_CLIENT_AGENTS, timedelta(minutes=15))
    try:
        mapping = parse_client_agents(section.client_agents)
    except ValueError as exc:
        raise _client_agents_error(settings, str(exc)) from None
    return RateLimitConfig(mapping, timedelta(minutes=section.window_minutes),
                           getattr(section, "agent_key_template", ""))


def _client_agents_error(settings: Settings, problem: str) -> ConfigError:
    """The one wording, naming where the list came from: CCOPS_RATELIMIT_CLIENT_AGENTS when set, else the file."""
    name = "CCOPS_RATELIMIT_CLIENT_AGENTS"
    if os.environ.get(name):
        return config_error(ENVIRONMENT, name, problem)
    return config_error(settings_source(settings), "ratelimit.client_agents", problem)


# ---- attribution and reset -------------------------------------------------------------------

ATTRIBUTION_SQL = """
SELECT agent_name, status, "timestamp" AS at
FROM agent_logs
WHERE "timestamp" >= :lo AND "timestamp" <= :hi
  AND (agent_name = ANY(:agents) OR (:any_error AND status = 'error'))
ORDER BY "timestamp"
"""


def agent_rows(conn: Any, events: pd.DataFrame, agents: Iterable[str]) -> pd.DataFrame:
    """agent_logs rows from a minute before the first event to a minute after the last (timestamp index)."""
    from ccops.core.db import query_df

    lo = events["time"].min().to_pydatetime() - ATTRIBUTION_SLACK
    hi = events["time"].max().to_pydatetime() + ATTRIBUTION_SLACK
    wanted = sorted(set(agents))
    return query_df(conn, ATTRIBUTION_SQL, lo=lo, hi=hi, agents=wanted, any_error=not wanted)


def infer_agent(event: Mapping[str, Any], rows: pd.DataFrame, cfg: RateLimitConfig) -> tuple[str, str]:
    """(agent, how we know) for one event: named in the line, else agent_logs in its minute, else the client map."""
    if event.get("agent"):
        return str(event["agent"]), "named in the log line"
    candidates = cfg.client_agents.get(str(event.get("client") or ""), ())
    at = event["time"].to_pydatetime() if hasattr(event["time"], "to_pydatetime") else event["time"]
    if rows is not None and not rows.empty:
        near = rows[(rows["at"] >= at - ATTRIBUTION_SLACK) & (rows["at"] <= at + ATTRIBUTION_SLACK)]
        if candidates:
            near = near[near["agent_name"].isin(candidates)]
        else:
            near = near[near["status"] == "error"]
        if not near.empty:
            errors = near[near["status"] == "error"]
            chosen = errors if not errors.empty else near
            names = sorted(set(chosen["agent_name"]))
            kind = "error" if not errors.empty else "run"
            return " / ".join(names), f"inferred: agent_logs {kind} within 1 min of the 429"
    if candidates:
        return " / ".join(candidates), f"inferred: {event.get('client')} is used by {', '.join(candidates)}"
    return "", "unknown: the line names no agent and no client -> agent mapping applies"


def attribute(events: pd.DataFrame, cfg: RateLimitConfig, conn: Any | None) -> tuple[pd.DataFrame, str]:
    """Events with `agent` and `attribution` filled; a note when agent_logs could not be read."""
    events = events.copy()
    if events.empty:
        events["attribution"] = []
        return events, ""
    note, rows = "", None
    if conn is not None:
        needed = {a for client in events["client"] for a in cfg.client_agents.get(client, ())}
        try:
            rows = agent_rows(conn, events, needed)
        except Exception as exc:  # noqa: BLE001 - attribution falls back to the client map
            from ccops.core.context import describe

            note = f"agent_logs not read ({describe(exc)}): agents inferred from the client map only"
    results = [infer_agent(row, rows, cfg) for row in events.to_dict("records")]
    events["agent"] = [agent for agent, _ in results]
    events["attribution"] = [how for _, how in results]
    return events, note


def reset_estimate(events: pd.DataFrame, api: str, cfg: RateLimitConfig,
                   probed: datetime | None = None) -> tuple[datetime | None, str]:
    """When `api`'s limit resets, and on what basis: a live probe, a reset in the log, else the window."""
    if probed is not None:
        return probed, "from the live probe's rate-limit headers"
    mine = events[events["api"] == api]
    if mine.empty:
        return None, "no event"
    logged = mine["reset_at"].dropna()
    if not logged.empty:
        return logged.max().to_pydatetime(), "as the log line announced"
    last = mine["time"].max().to_pydatetime()
    minutes = cfg.window.total_seconds() / 60
    who = "X's" if api == "x" else "the configured"
    return last + cfg.window, f"{who} {minutes:g}-minute window after the last 429 at {last:%H:%M:%S} UTC"
