"""A month of Content Creator life, deterministic, with the incidents the runbooks must find.

Everything is derived from (seed, days, as_of): each part draws from its own
`random.Random(f"{seed}:{part}")`, ids follow time order, and every float is
rounded or computed the same way, so the same inputs give byte-identical
tables and log files (tests rely on it, and so does anyone comparing two
report runs). The data is built in memory first (`build`), then loaded with
COPY in one transaction (`load`): a month is ~250k rows and loads in a few
seconds, where row-by-row inserts would take minutes.

The story is told from the agents' runs outwards: the scheduler's runs become
agent_logs rows and log records; the scanner's runs carry market, sentiment and
news rows; the analysis runs carry insights; the publishing runs carry the
posts (and their content plans); the community reacts to the posts. So the
tables agree with each other and with the log files.

Injected incidents (see DemoFacts): a burst of X refusals ~5 h before as_of,
logged the way the app's twitter_api client logs them (`Failed to post tweet:
429 Too Many Requests`, `Failed to search tweets: ...`) while PublishingAgent's
and EngagementAgent's agent_logs rows say 'success' (the app writes 'success'
for runs whose client logged an ERROR); ImageGenerationAgent silent for the
last 36 h; a calendar day without content 4 days back; and an older
database-pool incident with CRITICAL log records. Everything else is healthy at
as_of, and CLEAN_DAYS_BEFORE_AS_OF days before as_of lies a day whose daily and
weekly reports are clean (`DemoFacts.clean_as_of`).
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from ccops.demo import catalog as cat
from ccops.demo.applog import LogRecord, run_records

MIN_DAYS = 5
LOAD_ORDER = (
    "market_data", "news_articles", "sentiment_data", "insights", "content_plans", "ab_tests",
    "ab_test_variants", "published_content", "agent_logs", "community_users", "subscriptions",
    "user_interactions", "conversion_attempts", "exclusive_content", "moderation_actions",
    "performance_snapshots",
)
BASELINE_ERRORS_24H_MAX = 3  # agent_logs errors in the last 24 h, under the health check's 10
BURST_RUNS = 5  # PublishingAgent runs refused by X in the burst hour
BURST_TWEETS = 2  # tweets each of them tries (and fails) to post
POOL_FAILURES = 6
CLIENT_ERROR_P = 0.004  # a client logs an ERROR during a run that still ends 'success'
# A day with nothing to report: no incident in its last 24 h nor in the week before (the pool
# incident is 9 days before as_of, so 12 days before as_of is clean for a weekly run too).
CLEAN_DAYS_BEFORE_AS_OF = 12


@dataclass
class Run:
    """One agent execution: becomes an agent_logs row and its log records."""

    agent: cat.AgentSpec
    ts: datetime
    status: str
    exec_s: float
    message: str | None = None
    traceback: bool = False
    tag: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    client_errors: list[tuple[str, str]] = field(default_factory=list)  # (where, message) logged at ERROR
    retried: bool = False


@dataclass
class DemoFacts:
    """What was generated, and where the injected incidents are, for tests and `demo up`."""

    seed: int
    days: int
    as_of: datetime
    start: datetime
    counts: dict[str, int]
    burst_agent: str
    burst_hour: datetime
    burst_log_errors: int
    burst_429_records: int
    burst_agent_log_errors: int
    agent_errors_24h: int
    stopped_agent: str
    stopped_last_seen: datetime
    no_content_day: date
    critical_at: datetime
    last_published: datetime
    last_agent_activity: datetime
    clean_as_of: datetime | None

    def anomalies(self) -> list[dict[str, Any]]:
        return [
            {
                "kind": "error_burst", "agent": self.burst_agent, "api": "X (HTTP 429)",
                "hour": _iso(self.burst_hour), "log_error_records": self.burst_log_errors,
                "records_429": self.burst_429_records,
                "agent_log_errors": self.burst_agent_log_errors,
                "agent_log_errors_24h": self.agent_errors_24h,
            },
            {"kind": "agent_stopped", "agent": self.stopped_agent, "last_seen": _iso(self.stopped_last_seen)},
            {"kind": "no_content_day", "date": self.no_content_day.isoformat()},
            {"kind": "critical_log", "message": "Database connection pool exhausted", "at": _iso(self.critical_at)},
        ]

    def to_dict(self) -> dict[str, Any]:
        plain = asdict(self)
        for key, value in plain.items():
            if isinstance(value, datetime):
                plain[key] = _iso(value)
            elif isinstance(value, date):
                plain[key] = value.isoformat()
        plain["anomalies"] = self.anomalies()
        return plain


@dataclass
class DemoData:
    facts: DemoFacts
    tables: dict[str, list[dict[str, Any]]]
    records: list[LogRecord]


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds") + "Z"


# ---- public API -------------------------------------------------------------------

def build(seed: int, days: int, as_of: datetime) -> DemoData:
    """The whole dataset in memory: rows per table, log records, facts. Pure and deterministic."""
    return _World(seed, days, as_of).build()


def load(url: str, data: DemoData) -> None:
    """Replace every Content Creator table's contents with the dataset, in one transaction."""
    import psycopg
    from psycopg import sql

    from ccops.core import schema
    from ccops.core.db import libpq_url

    def names(items: list[str]) -> sql.Composed:
        return sql.SQL(", ").join(map(sql.Identifier, items))

    with psycopg.connect(libpq_url(url), connect_timeout=10) as conn:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names(list(LOAD_ORDER))))
            for name in LOAD_ORDER:
                columns = [c.name for c in schema.metadata.tables[name].columns]
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(name), names(columns))) as copy:
                    for row in data.tables[name]:
                        copy.write_row([row.get(c) for c in columns])
            winners = [(t["_winner"]["id"], t["id"]) for t in data.tables["ab_tests"] if t.get("_winner")]
            if winners:
                cur.executemany("UPDATE ab_tests SET winning_variant_id = %s WHERE id = %s", winners)
            for name in LOAD_ORDER:
                cur.execute(sql.SQL("SELECT setval(pg_get_serial_sequence(%s, 'id'), coalesce(max(id), 1), "
                                    "max(id) IS NOT NULL) FROM {}").format(sql.Identifier(name)), (name,))


def generate(url: str, seed: int, days: int, as_of: datetime, log_dir: Path | None = None) -> DemoFacts:
    """Fill a database created from ccops.core.schema (and, given log_dir, write the app's logs)."""
    from ccops.demo.applog import write_logs

    data = build(seed, days, as_of)
    load(url, data)
    if log_dir is not None:
        write_logs(data.records, Path(log_dir), data.facts.as_of, data.facts.start)
    return data.facts


# ---- small helpers ----------------------------------------------------------------

def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _round_price(price: float) -> float:
    return round(price, 2) if price >= 1 else round(price, 6)


def _fmt_price(price: float) -> str:
    if price >= 100:
        return f"{price:,.0f}"
    if price >= 1:
        return f"{price:,.2f}"
    return f"{price:.4f}"


def _floor_hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def _secs(seconds: float) -> timedelta:
    return timedelta(microseconds=round(seconds * 1_000_000))


def _base62(rng: random.Random, n: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _assign_ids(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    rows.sort(key=lambda r: r[key])
    for number, row in enumerate(rows, 1):
        row["id"] = number
    return rows


HOUR_MEAN = sum(cat.HOUR_WEIGHTS) / 24


# ---- the world ----------------------------------------------------------------------

class _World:
    def __init__(self, seed: int, days: int, as_of: datetime) -> None:
        if days < MIN_DAYS:
            raise ValueError(f"days must be at least {MIN_DAYS} (the incidents reach 4 days back), got {days}")
        self.seed = seed
        self.days = days
        if as_of.tzinfo is not None:  # the app stores naive UTC
            as_of = as_of.astimezone(timezone.utc).replace(tzinfo=None)
        self.as_of = as_of
        self.start = self.as_of - timedelta(days=days)
        self.burst_hour = _floor_hour(self.as_of - timedelta(hours=5))
        self.image_stop = self.as_of - timedelta(hours=36)
        self.gap_day = (self.as_of - timedelta(days=4)).date()
        crit_days = 9 if days >= 12 else 3
        self.crit_at = datetime.combine(self.as_of.date() - timedelta(days=crit_days), time(3, 12, 41))
        self.tables: dict[str, list[dict[str, Any]]] = {name: [] for name in LOAD_ORDER}
        self.records: list[LogRecord] = []
        self.runs: list[Run] = []

    def rng(self, part: str) -> random.Random:
        return random.Random(f"{self.seed}:{part}")

    def progress(self, ts: datetime) -> float:
        return max(0.0, min(1.0, (ts - self.start) / (self.as_of - self.start)))

    def runs_of(self, name: str, statuses: tuple[str, ...] = ("success", "warning", "error")) -> list[Run]:
        return [r for r in self.runs if r.agent.name == name and r.status in statuses]

    def build(self) -> DemoData:
        self.schedule()
        self.incidents()
        self.market()
        self.insights()
        self.define_tests()
        self.content()
        self.users()
        self.interactions()
        self.conversions()
        self.moderation()
        self.exclusive()
        self.finish_tests()
        self.finish_users()
        self.snapshots()
        self.agent_logs()
        self.log_records()
        return DemoData(facts=self.facts(), tables=self.tables, records=self.records)

    # ---- the scheduler ------------------------------------------------------------
    def schedule(self) -> None:
        rng = self.rng("schedule")
        for agent in cat.AGENTS:
            for ts in self._times(agent, rng):
                self.runs.append(self._draw(agent, ts, rng))
        self.runs.sort(key=lambda r: r.ts)

    def _times(self, agent: cat.AgentSpec, rng: random.Random) -> list[datetime]:
        if agent.interval[0] >= 1440:  # daily job at 00:05
            out: list[datetime] = []
            day = self.start.date() + timedelta(days=1)
            while True:
                ts = datetime.combine(day, time(0, 5)) + _secs(rng.uniform(2, 40))
                if ts > self.as_of:
                    return out
                out.append(ts)
                day += timedelta(days=1)
        lo, hi = agent.interval
        ts = self.start + timedelta(minutes=rng.uniform(2, lo + 2))
        out = []
        while ts <= self.as_of:
            out.append(ts)
            ts += timedelta(minutes=rng.uniform(lo, hi)) + _secs(rng.uniform(-6, 10))
        return out

    def _draw(self, agent: cat.AgentSpec, ts: datetime, rng: random.Random) -> Run:
        exec_s = round(min(120.0, max(0.05, agent.median_s * math.exp(agent.sigma * rng.gauss(0, 1)))), 3)
        roll = rng.random()
        if roll < agent.err_p:
            message = rng.choice(cat.ERRORS[agent.name])
            if "timed out" in message.lower() or "Timed out" in message:
                exec_s = round(10.0 + rng.uniform(0.01, 0.4), 3)
            return Run(agent, ts, "error", exec_s, message, traceback=rng.random() < 0.6)
        if roll < agent.err_p + agent.warn_p:
            return Run(agent, ts, "warning", exec_s, self._warning_text(agent, rng))
        run = Run(agent, ts, "success", exec_s)
        if agent.name in cat.CLIENT_ERRORS and rng.random() < CLIENT_ERROR_P:
            where, message = cat.CLIENT_ERRORS[agent.name]
            run.client_errors = [(where, message.format(asset=_weighted(rng, cat.ASSET_WEIGHTS)))]
        elif agent.name in ("MarketScannerAgent", "EngagementAgent", "CommunityModeratorAgent") and rng.random() < 0.012:
            run.retried = True
        return run

    def _warning_text(self, agent: cat.AgentSpec, rng: random.Random) -> str:
        template = rng.choice(cat.WARNINGS[agent.name])
        return template.format(
            secs=f"{rng.uniform(4, 14):.1f}", asset=_weighted(rng, cat.ASSET_WEIGHTS),
            conf=f"{rng.uniform(0.35, 0.59):.2f}", n=rng.randint(2, 9), test=f"#{rng.randint(1, 8)}",
        )

    # ---- incidents ------------------------------------------------------------------
    def incidents(self) -> None:
        rng = self.rng("incidents")
        runs = [r for r in self.runs if not (r.agent.name == "ImageGenerationAgent" and r.ts > self.image_stop)]
        runs = self._pool_incident(runs, rng)
        runs = self._burst(runs, rng)
        day_from = datetime.combine(self.gap_day, time())
        day_to = day_from + timedelta(days=1)
        for run in runs:
            if not (day_from <= run.ts < day_to):
                continue
            if run.agent.name == "ContentCreationAgent":
                run.status, run.traceback, run.client_errors = "warning", False, []
                run.message = "Skipping generation: Anthropic credit balance too low (HTTP 400 invalid_request_error)"
            elif run.agent.name == "PublishingAgent" and run.status != "error":
                run.status, run.tag, run.message = "success", "gap", None
        # the baseline must leave room for the burst under the health check's threshold
        window_from = self.as_of - timedelta(hours=24)
        baseline = [r for r in runs if r.status == "error" and r.tag != "burst" and r.ts > window_from]
        for run in baseline[BASELINE_ERRORS_24H_MAX:]:
            run.status, run.traceback = "warning", False
            run.message = self._warning_text(run.agent, rng)
        # healthy at as_of: publishing works in the last two hours
        for run in runs:
            if run.agent.name == "PublishingAgent" and run.ts > self.as_of - timedelta(hours=2):
                run.status, run.message, run.traceback = "success", None, False
        self.runs = sorted(runs, key=lambda r: r.ts)

    def _pool_incident(self, runs: list[Run], rng: random.Random) -> list[Run]:
        """The pool ran dry: a handful of DB-heavy runs time out, the app is restarted."""
        heavy = {"AnalyticsAgent", "AnalysisAgent", "ContentStrategistAgent", "ContentCreationAgent",
                 "PublishingAgent", "EngagementAgent", "CommunityModeratorAgent", "MarketScannerAgent"}
        failing = [r for r in runs if r.agent.name in heavy and self.crit_at - timedelta(minutes=14) <= r.ts <= self.crit_at]
        for number, run in enumerate(failing[-POOL_FAILURES:]):
            run.status, run.message, run.tag = "error", cat.POOL_ERROR, "pool"
            run.exec_s = round(30.0 + rng.uniform(0.01, 0.2), 3)
            run.traceback = number < 2
            run.client_errors, run.retried = [], False
        restart_done = self.crit_at + timedelta(minutes=4)
        return [r for r in runs if not (self.crit_at < r.ts < restart_done)]

    def _burst(self, runs: list[Run], rng: random.Random) -> list[Run]:
        """X refuses for an hour: 5 PublishingAgent runs fail to post 2 tweets each (429), and every
        EngagementAgent run of that hour fails to search; their client logs ERROR, their rows say 'success'."""
        agent = cat.AGENT_BY_NAME["PublishingAgent"]
        hour = self.burst_hour
        lo, hi = hour - timedelta(minutes=15), hour + timedelta(minutes=75)
        runs = [r for r in runs if not (r.agent is agent and lo <= r.ts < hi)]
        for number in range(BURST_RUNS):
            ts = hour + timedelta(minutes=6 + 9 * number) + _secs(rng.uniform(0, 50))
            run = Run(agent, ts, "success", round(1.2 + rng.uniform(0.3, 1.5), 3), tag="burst",
                      client_errors=[cat.POST_TWEET_429] * BURST_TWEETS)
            run.details = {"published": 0, "failed": BURST_TWEETS}
            runs.append(run)
        for run in runs:
            if run.agent.name == "EngagementAgent" and hour <= run.ts < hour + timedelta(hours=1):
                run.status, run.message, run.traceback, run.tag = "success", None, False, "burst"
                run.client_errors = [cat.SEARCH_TWEETS_429]
        recovery = hour + timedelta(minutes=64) + _secs(rng.uniform(0, 40))
        runs.append(Run(agent, recovery, "success", round(3.2 + rng.uniform(0, 1), 3), tag="recovery"))
        return runs

    # ---- market, sentiment, news --------------------------------------------------------
    def market(self) -> None:
        rng = self.rng("market")
        vol = {"BTC": 0.028, "ETH": 0.035, "SOL": 0.05, "DOGE": 0.06}
        price = {a: spec[1] * rng.uniform(0.9, 1.1) for a, spec in cat.ASSETS.items()}
        anchor = dict(price)  # weak mean reversion keeps a long window's prices plausible
        reference = {a: p * (1 - rng.uniform(-0.04, 0.04)) for a, p in price.items()}
        self.market_times: dict[str, list[datetime]] = {a: [] for a in cat.ASSETS}
        self.market_rows: dict[str, list[dict[str, Any]]] = {a: [] for a in cat.ASSETS}
        rows, sentiment, news = self.tables["market_data"], self.tables["sentiment_data"], self.tables["news_articles"]
        last_ts = self.start
        for scan, run in enumerate(r for r in self.runs if r.agent.name == "MarketScannerAgent"):
            if run.status == "error":
                continue
            dt = max((run.ts - last_ts).total_seconds() / 86400, 1e-6)
            last_ts = run.ts
            common = rng.gauss(0, 1)
            for asset, (coin, _p0, supply, volume) in cat.ASSETS.items():
                shock = 0.6 * common + 0.8 * rng.gauss(0, 1)
                pull = -0.05 * dt * math.log(price[asset] / anchor[asset])
                price[asset] *= math.exp(vol.get(asset, 0.045) * math.sqrt(dt) * shock + pull)
                times = self.market_times[asset]
                back = bisect.bisect_left(times, run.ts - timedelta(hours=24))
                before = self.market_rows[asset][back]["price"] if back < len(times) and times else reference[asset]
                change = round((price[asset] / before - 1) * 100, 2)
                row = {
                    "id": len(rows) + 1, "timestamp": run.ts, "asset": asset, "price": _round_price(price[asset]),
                    "volume_24h": round(volume * math.exp(0.25 * rng.gauss(0, 1)) * (1 + abs(change) / 10), 0),
                    "price_change_24h": change, "market_cap": round(price[asset] * supply, 0),
                    "raw_data": f'{{"source": "coingecko", "coin_id": "{coin}"}}', "created_at": run.ts,
                }
                rows.append(row)
                times.append(run.ts)
                self.market_rows[asset].append(row)
                if scan % 6 == 0 or scan % 12 == 1:
                    platform = "twitter" if scan % 6 == 0 else "reddit"
                    score = math.tanh(change / 6 + 0.35 * rng.gauss(0, 1))
                    size = int(cat.ASSET_WEIGHTS[asset] * 40 * math.exp(0.4 * rng.gauss(0, 1)))
                    sentiment.append({
                        "id": len(sentiment) + 1, "timestamp": run.ts, "platform": platform, "asset": asset,
                        "sentiment_score": round(score, 3), "volume": size,
                        "influencer_sentiment": round(max(-1.0, min(1.0, score + 0.2 * rng.gauss(0, 1))), 3),
                        "raw_data": f'{{"sample_size": {size}, "model": "finbert-crypto"}}', "created_at": run.ts,
                    })
            if rng.random() < 0.1:
                news.append(self._news(rng, run.ts, len(news) + 1))

    def _news(self, rng: random.Random, ts: datetime, number: int) -> dict[str, Any]:
        asset = _weighted(rng, cat.ASSET_WEIGHTS)
        name = cat.TAGS[asset]
        source = rng.choice(cat.NEWS_SOURCES)
        title = rng.choice(cat.NEWS_TITLES).format(
            name=name, asset=asset, pct=f"{rng.uniform(1.5, 12):.1f}", amount=rng.randint(40, 900)
        )
        published = ts - timedelta(minutes=rng.uniform(3, 90))
        slug = "-".join(w.strip("$%,").lower() for w in title.split()[:7])
        mentioned = [asset] + (["BTC"] if asset != "BTC" and rng.random() < 0.4 else [])
        score = round(rng.uniform(-0.8, 0.9), 3)
        return {
            "id": number, "title": title,
            "url": f"https://{cat.NEWS_DOMAINS[source]}/{published:%Y/%m/%d}/{slug}-{number}",
            "source": source, "published_at": published,
            "content": f"{title}. {name} traders reacted as the market digested the move; analysts pointed to "
                       f"derivatives positioning and spot flows. ({source})",
            "summary": f"{name}: {title.lower()}.", "sentiment_score": score,
            "mentioned_assets": _dumps(mentioned), "created_at": ts,
        }

    def price_at(self, asset: str, ts: datetime) -> dict[str, Any] | None:
        times = self.market_times[asset]
        index = bisect.bisect_right(times, ts) - 1
        return self.market_rows[asset][index] if index >= 0 else None

    # ---- insights ------------------------------------------------------------------------
    def insights(self) -> None:
        rng = self.rng("insights")
        rows = self.tables["insights"]
        for run in self.runs_of("AnalysisAgent", ("success",)):
            made = 0
            if rng.random() < 0.45:
                asset = _weighted(rng, cat.ASSET_WEIGHTS)
                market = self.price_at(asset, run.ts)
                if market is not None:
                    kind = _weighted(rng, cat.INSIGHT_TYPES)
                    upto = bisect.bisect_right(self.market_times[asset], run.ts)
                    ids = [r["id"] for r in self.market_rows[asset][max(0, upto - 3):upto]]  # the last three scans
                    details = {
                        "summary": f"{asset} {kind.lower().replace('_', ' ')} at {_fmt_price(market['price'])}",
                        "price": market["price"], "change_24h": market["price_change_24h"], "timeframe": rng.choice(("1h", "4h", "1d")),
                        "rsi": round(rng.uniform(22, 78), 1), "volume_ratio": round(rng.uniform(0.6, 3.2), 2), "model": cat.MODEL,
                    }
                    rows.append({
                        "id": len(rows) + 1, "timestamp": run.ts, "type": kind, "asset": asset,
                        "confidence": round(rng.uniform(0.55, 0.96), 3), "details": _dumps(details),
                        "supporting_data_ids": _dumps(ids), "is_published": False, "is_exclusive": False,
                        "created_at": run.ts, "_details": details,
                    })
                    made = 1
            run.details = {"insights": made, "assets_analyzed": len(cat.ASSETS), **self._tokens(rng, 2400, 600)}
        self.insight_times = [r["timestamp"] for r in rows]

    def _tokens(self, rng: random.Random, tokens_in: int, tokens_out: int) -> dict[str, Any]:
        return {
            "model": cat.MODEL, "tokens_input": int(tokens_in * rng.uniform(0.7, 1.4)),
            "tokens_output": int(tokens_out * rng.uniform(0.6, 1.5)),
        }

    def insight_before(self, ts: datetime) -> dict[str, Any] | None:
        index = bisect.bisect_right(self.insight_times, ts) - 1
        return self.tables["insights"][index] if index >= 0 else None

    # ---- A/B tests -----------------------------------------------------------------------
    def define_tests(self) -> None:
        """Eight experiments; T1 clearly significant, T5 far too small to call."""
        rng = self.rng("abtests")
        span = timedelta(days=self.days)
        a = self.as_of
        defs: list[tuple[Any, ...]] = [
            ("Hook style: question vs statement", "hook_style", "twitter", "COMPLETED", a - span * 0.9, a - span * 0.45,
             [("control", {"hook": "statement"}, 0.021), ("question_hook", {"hook": "question"}, 0.034)], "posts"),
            ("Thread length: 3 vs 6 tweets", "thread_length", "twitter", "COMPLETED", a - span * 0.8, a - span * 0.35,
             [("control", {"tweets": 3}, 0.027), ("six_tweets", {"tweets": 6}, 0.028)], "posts"),
            ("Telegram format: narrative vs bullets", "message_format", "telegram", "COMPLETED", a - span * 0.7, a - span * 0.25,
             [("control", {"format": "narrative"}, 0.041), ("bullets", {"format": "bullets"}, 0.053)], "posts"),
            ("Posting time: 13:00 vs 19:00 UTC", "posting_time", "twitter", "ACTIVE", a - min(timedelta(days=6), span * 0.3), None,
             [("control", {"slot": "13:00"}, 0.024), ("evening", {"slot": "19:00"}, 0.031)], "posts"),
            ("Emoji density in hooks", "emoji_density", "twitter", "ACTIVE", a - timedelta(hours=20), None,
             [("control", {"emojis": 0}, 0.04), ("two_emojis", {"emojis": 2}, 0.08)], (46, 51)),
            ("Conversion DM: discount vs free week", "cta_offer", "telegram", "ACTIVE", a - min(timedelta(days=10), span * 0.4), None,
             [("control", {"offer": "20% off"}, 0.0), ("free_week", {"offer": "7 days free"}, 0.0),
              ("vip_preview", {"offer": "VIP channel preview"}, 0.0)], "dms"),
            ("Image vs text-only", "media", "twitter", "PAUSED", a - min(timedelta(days=4), span * 0.25), self.image_stop,
             [("control", {"media": "none"}, 0.025), ("with_image", {"media": "generated"}, 0.030)], "posts"),
            ("Hashtag count: 1 vs 3", "hashtags", "twitter", "CANCELLED", a - span * 0.6, a - span * 0.55,
             [("control", {"hashtags": 1}, 0.026), ("three_hashtags", {"hashtags": 3}, 0.024)], (310, 296)),
        ]
        tests, variants = self.tables["ab_tests"], self.tables["ab_test_variants"]
        for name, variable, platform, status, started, ended, arms, source in sorted(defs, key=lambda d: d[4]):
            started = max(started, self.start + timedelta(hours=1))
            created = started - timedelta(minutes=rng.uniform(2, 30))
            insight = self.insight_before(started)
            test = {
                "id": len(tests) + 1, "test_name": name, "variable_being_tested": variable,
                "hypothesis": f"Changing {variable.replace('_', ' ')} improves click-through on {platform}",
                "insight_id": insight["id"] if insight else None, "asset": insight["asset"] if insight else None,
                "platform": platform, "status": status, "winning_variant_id": None, "confidence_level": None,
                "improvement_percentage": None, "started_at": started,
                "completed_at": ended if status in ("COMPLETED", "CANCELLED") else None, "created_at": created,
                "_end": ended or self.as_of, "_source": source, "_variants": [],
            }
            tests.append(test)
            for arm, (label, config, ctr) in enumerate(arms):
                variant = {
                    "id": len(variants) + 1, "test_id": test["id"], "variant_name": label, "is_control": arm == 0,
                    "variant_config": _dumps(config), "created_at": created, "_ctr": ctr, "_linked": [],
                }
                variants.append(variant)
                test["_variants"].append(variant)

    def finish_tests(self) -> None:
        rng = self.rng("abresults")
        for test in self.tables["ab_tests"]:
            source = test["_source"]
            for index, variant in enumerate(test["_variants"]):
                if source == "posts":
                    linked = variant["_linked"]
                    impressions = sum(p["views"] for p in linked)
                    clicks = int(round(impressions * variant["_ctr"] * rng.uniform(0.97, 1.03)))
                    engagement = sum(p["likes"] + p["comments"] + p["shares"] for p in linked)
                    conversions = int(round(clicks * rng.uniform(0.015, 0.03)))
                elif source == "dms":
                    attempts = [c for c in self.tables["conversion_attempts"]
                                if c["sent_at"] >= test["started_at"] and c["id"] % 3 == index]
                    impressions = len(attempts)
                    clicks = sum(1 for c in attempts if c["clicked_at"])
                    engagement = sum(1 for c in attempts if c["opened_at"])
                    conversions = sum(1 for c in attempts if c["converted_at"])
                else:
                    impressions = source[index]
                    clicks = int(round(impressions * variant["_ctr"]))
                    engagement = clicks + rng.randint(0, 3)
                    conversions = 0
                variant.update({
                    "impressions": impressions, "clicks": clicks, "engagement_count": engagement,
                    "conversion_count": conversions, "sample_size": impressions,
                    "click_through_rate": clicks / impressions if impressions else 0.0,
                    "engagement_rate": engagement / impressions if impressions else 0.0,
                    "conversion_rate": conversions / impressions if impressions else 0.0,
                })
            control, *others = test["_variants"]
            best = max(others, key=lambda v: v["click_through_rate"])
            confidence = _two_proportion_confidence(control["clicks"], control["impressions"], best["clicks"], best["impressions"])
            test["confidence_level"] = min(0.9999, round(confidence, 4))
            if control["click_through_rate"] > 0:
                test["improvement_percentage"] = round((best["click_through_rate"] / control["click_through_rate"] - 1) * 100, 2)
            if test["status"] == "COMPLETED" and confidence >= 0.95:
                test["_winner"] = best if best["click_through_rate"] > control["click_through_rate"] else control

    # ---- content: plans and posts -----------------------------------------------------------
    def content(self) -> None:
        rng = self.rng("content")
        strategist = [r.ts for r in self.runs_of("ContentStrategistAgent", ("success", "warning"))]
        image_runs = [r.ts for r in self.runs_of("ImageGenerationAgent", ("success", "warning"))]
        plans: list[dict[str, Any]] = []
        posts: list[dict[str, Any]] = []
        self.plan_counts: dict[datetime, int] = {}
        publishing = self.runs_of("PublishingAgent", ("success",))
        for run in publishing:
            if run.tag == "gap":
                run.details = {"published": 0, "queue": 0}
                continue
            if run.tag == "burst":  # X refused every post
                continue
            hour_factor = cat.HOUR_WEIGHTS[run.ts.hour] / HOUR_MEAN
            weekend = 0.85 if run.ts.weekday() >= 5 else 1.0
            lam = 0.6 * hour_factor * weekend * (1 + 0.15 * self.progress(run.ts))
            count = 2 if run.tag == "recovery" else _poisson(rng, lam)
            drafted = [self._post(rng, run, n, count, strategist, image_runs, plans) for n in range(count)]
            made = [p for p in drafted if p is not None]
            posts.extend(made)
            run.details = {"published": len(made), "platforms": sorted({p["platform"] for p in made})}
        if not any(p["published_at"] > self.as_of - timedelta(hours=3) for p in posts):
            run = publishing[-1]
            last = self._post(rng, run, 0, 1, strategist, image_runs, plans)
            if last:
                posts.append(last)
                run.details = {"published": 1, "platforms": [last["platform"]]}
        self._extra_plans(rng, plans)
        for plan in _assign_ids(plans, "timestamp"):
            if plan["status"] == "published":
                self.tables["insights"][plan["insight_id"] - 1]["is_published"] = True
        telegram_message = 4810
        for post in _assign_ids(posts, "published_at"):
            post["content_plan_id"] = post["_plan"]["id"]
            if post["platform"] == "telegram":
                telegram_message += rng.randint(1, 3)
                post["post_id"] = str(telegram_message)
                post["post_url"] = f"https://t.me/cryptopulse_signals/{telegram_message}"
        self.tables["content_plans"] = plans
        self.tables["published_content"] = posts

    def _post(self, rng: random.Random, run: Run, number: int, count: int, strategist: list[datetime],
              image_runs: list[datetime], plans: list[dict[str, Any]]) -> dict[str, Any] | None:
        published = run.ts - _secs(run.exec_s * (count - number) / (count + 1) + 0.05)
        if published.date() == self.gap_day or published < self.start:
            return None
        index = bisect.bisect_right(strategist, published - timedelta(minutes=20)) - 1
        planned = strategist[index] if index >= 0 else published - timedelta(minutes=rng.uniform(25, 90))
        if index >= 0:
            self.plan_counts[planned] = self.plan_counts.get(planned, 0) + 1
        planned = max(planned, self.start) + _secs(rng.uniform(0.2, 3))
        insight = self.insight_before(planned)
        if insight is None:
            return None
        platform = "twitter" if rng.random() < 0.65 else "telegram"
        images_live = published <= self.image_stop and bisect.bisect_right(image_runs, published) > 0
        if platform == "twitter":
            formats = {"SINGLE_TWEET": 58, "THREAD": 24, "IMAGE_POST": 18 if images_live else 0}
        else:
            formats = {"TELEGRAM_MESSAGE": 85, "IMAGE_POST": 15 if images_live else 0}
        fmt = _weighted(rng, formats)
        confidence = insight["confidence"]
        plan = {
            "timestamp": planned, "insight_id": insight["id"], "platform": platform, "format": fmt,
            "priority": "high" if confidence >= 0.85 else "medium" if confidence >= 0.7 else "low",
            "scheduled_for": published.replace(second=0, microsecond=0), "status": "published", "created_at": planned,
        }
        plans.append(plan)
        views, likes, comments, shares = self._reach(rng, platform, fmt, published)
        ms = int((published - datetime(1970, 1, 1)).total_seconds() * 1000)
        snowflake = ((ms - 1288834974657) << 22) | rng.getrandbits(22)
        post = {
            "_plan": plan, "platform": platform, "content_text": self._text(rng, insight, platform, fmt),
            "media_urls": _dumps([f"https://cdn.cryptopulse.ai/img/{published:%Y%m%d}/{rng.getrandbits(48):012x}.png"])
            if fmt == "IMAGE_POST" else None,
            "post_url": f"https://x.com/cryptopulse_ai/status/{snowflake}", "post_id": str(snowflake),
            "published_at": published, "views": views, "likes": likes, "comments": comments, "shares": shares,
            "engagement_rate": (likes + comments + shares) / views, "ab_test_variant_id": None,
            "created_at": min(self.as_of, published + _secs(rng.uniform(0.05, 0.6))),
        }
        self._link_variant(rng, post)
        return post

    def _reach(self, rng: random.Random, platform: str, fmt: str, published: datetime) -> tuple[int, int, int, int]:
        age_h = (self.as_of - published).total_seconds() / 3600
        maturity = 1 - math.exp(-max(age_h, 0.02) / 5)
        base = 1900 if platform == "twitter" else 1100
        factor = {"THREAD": 1.4, "IMAGE_POST": 1.25}.get(fmt, 1.0)
        hour = math.sqrt(cat.HOUR_WEIGHTS[published.hour] / HOUR_MEAN)
        viral = 7.0 if rng.random() < 0.012 else 1.0
        views = base * math.exp(0.55 * rng.gauss(0, 1)) * factor * hour * viral * (1 + 0.3 * self.progress(published))
        views = max(3, int(views * maturity))
        rates = (0.026, 0.0032, 0.0041) if platform == "twitter" else (0.031, 0.0018, 0.0085)
        boost = 1.4 if viral > 1 else 1.0
        likes, comments, shares = (int(views * r * boost * math.exp(0.35 * rng.gauss(0, 1)) + rng.random()) for r in rates)
        return views, likes, comments, shares

    def _text(self, rng: random.Random, insight: dict[str, Any], platform: str, fmt: str) -> str:
        details = insight["_details"]
        asset, kind = insight["asset"], insight["type"]
        values = {
            "asset": asset, "price": _fmt_price(details["price"]), "pct": f"{details['change_24h']:+.1f}",
            "vol": int((details["volume_ratio"] - 1) * 100) if details["volume_ratio"] > 1 else rng.randint(20, 90),
            "tag": cat.TAGS[asset], "mood": "bullish" if details["change_24h"] >= 0 else "bearish",
            "score": f"{rng.uniform(-0.9, 0.9):+.2f}", "pattern": rng.choice(cat.PATTERNS),
            "corr": f"{rng.uniform(0.2, 0.6):.2f}", "kind": kind.replace("_", " ").title(),
            "conf": int(insight["confidence"] * 100), "verb": "breaking out" if details["change_24h"] >= 0 else "bleeding",
        }
        if platform == "telegram":
            return rng.choice(cat.TELEGRAM).format(**values)
        tweet = cat.TWEETS[kind].format(**values)
        if fmt == "THREAD":
            parts = rng.randint(3, 6)
            return f"{rng.choice(cat.THREAD_HOOKS).format(**values)}\n\n1/{parts} {tweet}"
        return tweet

    def _link_variant(self, rng: random.Random, post: dict[str, Any]) -> None:
        when = post["published_at"]
        eligible = [t for t in self.tables["ab_tests"]
                    if t["_source"] == "posts" and t["platform"] == post["platform"] and t["started_at"] <= when <= t["_end"]]
        if eligible and rng.random() < 0.4:
            variant = rng.choice(rng.choice(eligible)["_variants"])
            variant["_linked"].append(post)
            post["ab_test_variant_id"] = variant["id"]

    def _extra_plans(self, rng: random.Random, plans: list[dict[str, Any]]) -> None:
        """Plans that never became posts: cancelled, failed, expired, still pending."""
        for run in self.runs_of("ContentStrategistAgent", ("success",)):
            gap = run.ts.date() == self.gap_day
            extra = _poisson(rng, 1.5 if gap else 0.4)
            if run.ts > self.image_stop and rng.random() < 0.5:
                extra += 1
            for number in range(extra):
                insight = self.insight_before(run.ts)
                if insight is None:
                    continue
                waiting_image = run.ts > self.image_stop and number == extra - 1
                scheduled = run.ts + timedelta(minutes=rng.uniform(30, 240))
                if waiting_image:
                    fmt, status = "IMAGE_POST", "pending"
                else:
                    fmt = rng.choice(("SINGLE_TWEET", "THREAD", "TELEGRAM_MESSAGE", "BLOG_POST"))
                    status = "expired" if gap else "pending" if scheduled > self.as_of else rng.choice(("cancelled", "cancelled", "failed", "expired"))
                plans.append({
                    "timestamp": run.ts + _secs(rng.uniform(0.2, 3)), "insight_id": insight["id"],
                    "platform": "telegram" if fmt == "TELEGRAM_MESSAGE" else "twitter", "format": fmt,
                    "priority": rng.choice(("low", "medium", "high")), "scheduled_for": scheduled.replace(second=0, microsecond=0),
                    "status": status, "created_at": run.ts + _secs(rng.uniform(0.2, 3)),
                })
            run.details = {"plans_created": extra + self.plan_counts.get(run.ts, 0), **self._tokens(rng, 1800, 400)}

    # ---- community ---------------------------------------------------------------------------
    def users(self) -> None:
        rng = self.rng("users")
        seen: list[datetime] = []
        for _ in range(1500 + rng.randrange(250)):
            seen.append(self.start - timedelta(days=240 * rng.random() ** 1.6, seconds=rng.uniform(60, 86400)))
        day = datetime.combine(self.start.date(), time())
        hours = list(range(24))
        while day <= self.as_of:
            weekend = 0.8 if day.weekday() >= 5 else 1.0
            for _ in range(_poisson(rng, 42 * weekend * (1 + 0.5 * self.progress(day)))):
                ts = day + timedelta(hours=rng.choices(hours, weights=cat.HOUR_WEIGHTS)[0], seconds=rng.uniform(0, 3600))
                if self.start <= ts <= self.as_of:
                    seen.append(ts)
            day += timedelta(days=1)
        seen.sort()
        users = self.tables["community_users"]
        for number, first in enumerate(seen, 1):
            roll = rng.random()
            twitter = roll < 0.78
            telegram = roll >= 0.45
            discord = rng.random() < 0.12 or not (twitter or telegram)
            handle = f"{rng.choice(cat.USER_WORDS_A)}{rng.choice(('', '_', '.'))}{rng.choice(cat.USER_WORDS_B)}{rng.randint(1, 999)}"
            users.append({
                "id": number, "first_seen": first, "created_at": first,
                "twitter_id": str(1_400_000_000_000_000_000 + number * 982_451 + rng.randrange(982_451)) if twitter else None,
                "twitter_username": handle.replace(".", "_") if twitter else None,
                "telegram_id": str(5_000_000_000 + number * 1_013 + rng.randrange(1_013)) if telegram else None,
                "telegram_username": handle.replace(".", "") if telegram else None,
                "discord_id": str(900_000_000_000_000_000 + number * 7_919 + rng.randrange(7_919)) if discord else None,
                "discord_username": handle if discord else None,
                "email": f"{handle.replace('_', '.')}.{number}@{rng.choice(cat.EMAIL_DOMAINS)}" if rng.random() < 0.06 else None,
                "tier": "FREE", "subscription_status": "inactive", "conversion_dm_sent": False,
                "conversion_dm_opened": False, "conversion_dm_clicked": False,
                "_prior": int(rng.paretovariate(1.3) * 4) if first < self.start else 0, "_count": 0, "_last": None,
                "_handle": handle,
            })
        self.user_seen = seen

    def pick_user(self, rng: random.Random, ts: datetime, platform: str | None = None, skew: float = 1.8) -> dict[str, Any] | None:
        known = bisect.bisect_right(self.user_seen, ts)
        if known == 0:
            return None
        users = self.tables["community_users"]
        key = {"twitter": "twitter_id", "telegram": "telegram_id", "discord": "discord_id"}.get(platform or "")
        for _ in range(4):
            user = users[int(known * rng.random() ** skew)]
            if key is None or user[key]:
                return user
        return None

    def interactions(self) -> None:
        rng = self.rng("interactions")
        rows: list[dict[str, Any]] = []
        kinds = {"twitter": ("like", "reply", "retweet"), "telegram": ("reaction", "comment", "forward")}
        values = {"like": 1.0, "reaction": 1.0, "reply": 3.0, "comment": 3.0, "retweet": 2.0, "forward": 2.0,
                  "link_click": 1.5, "message": 0.5, "mention": 2.0}
        for post in self.tables["published_content"]:
            platform = post["platform"]
            counts = (post["likes"], post["comments"], post["shares"])
            total = sum(counts)
            picks = int(total * 0.3 + rng.random())
            events = [rng.choices(kinds[platform], weights=counts)[0] for _ in range(picks)] if total else []
            events += ["link_click"] * int(post["views"] * 0.0035 + rng.random())
            for kind in events:
                ts = post["published_at"] + _secs(rng.expovariate(1 / 9000) + 5)
                if ts > self.as_of:
                    continue
                user = self.pick_user(rng, ts, platform)
                if user is not None:
                    rows.append(self._interaction(user, kind, platform, post, ts, values[kind]))
        day = datetime.combine(self.start.date(), time())
        hours = list(range(24))
        while day <= self.as_of:
            for platform, kind, lam in (("telegram", "message", 60), ("twitter", "mention", 18), ("discord", "message", 10)):
                for _ in range(_poisson(rng, lam)):
                    ts = day + timedelta(hours=rng.choices(hours, weights=cat.HOUR_WEIGHTS)[0], seconds=rng.uniform(0, 3600))
                    user = self.pick_user(rng, ts, platform) if self.start <= ts <= self.as_of else None
                    if user is not None:
                        rows.append(self._interaction(user, kind, platform, None, ts, values[kind]))
            day += timedelta(days=1)
        self.tables["user_interactions"] = _assign_ids(rows, "timestamp")

    def _interaction(self, user: dict[str, Any], kind: str, platform: str, post: dict[str, Any] | None,
                     ts: datetime, value: float) -> dict[str, Any]:
        user["_count"] += 1
        if user["_last"] is None or ts > user["_last"]:
            user["_last"] = ts
        return {
            "user_id": user["id"], "interaction_type": kind, "platform": platform,
            "content_id": post["id"] if post else None,
            "interaction_metadata": f'{{"post_id": "{post["post_id"]}"}}' if post else '{"source": "chat"}',
            "engagement_value": value, "timestamp": ts,
        }

    def conversions(self) -> None:
        rng = self.rng("conversions")
        attempts: list[dict[str, Any]] = []
        subs: list[dict[str, Any]] = []
        users = self.tables["community_users"]
        contacted: set[int] = set()
        for user in users:  # members who joined before the window
            if user["first_seen"] < self.start and rng.random() < 0.085:
                joined = user["first_seen"] + timedelta(days=rng.uniform(1, 90))
                if joined < self.start:
                    subs.append(self._subscription(rng, user, joined, in_window=False))
        for run in self.runs_of("ConversionAgent", ("success", "warning")):
            sent = 0
            for _ in range(rng.randint(2, 5)):
                target: dict[str, Any] | None = None
                for _try in range(8):
                    candidate = self.pick_user(rng, run.ts - timedelta(days=2), skew=1.5)
                    if candidate and candidate["id"] not in contacted and "_sub" not in candidate:
                        target = candidate
                        break
                if target is None:
                    continue
                contacted.add(target["id"])
                attempts.append(self._attempt(rng, target, run.ts - _secs(run.exec_s * rng.uniform(0.1, 0.9)), subs))
                sent += 1
            run.details = {"dms_sent": sent, **self._tokens(rng, 900, 250)}
        day = datetime.combine(self.start.date(), time())
        while day <= self.as_of:  # organic sign-ups, no DM involved
            for _ in range(_poisson(rng, 0.7)):
                ts = day + timedelta(seconds=rng.uniform(0, 86400))
                organic = self.pick_user(rng, ts, skew=1.4) if self.start <= ts <= self.as_of else None
                if organic is not None and "_sub" not in organic and organic["first_seen"] < ts:
                    subs.append(self._subscription(rng, organic, ts + _secs(rng.uniform(5, 120)), in_window=True))
            day += timedelta(days=1)
        self.tables["conversion_attempts"] = _assign_ids(attempts, "sent_at")
        self.tables["subscriptions"] = _assign_ids(subs, "created_at")

    def _attempt(self, rng: random.Random, user: dict[str, Any], sent: datetime, subs: list[dict[str, Any]]) -> dict[str, Any]:
        platform = "telegram" if user["telegram_id"] and (rng.random() < 0.6 or not user["twitter_id"]) else "twitter"
        code, pct = rng.choice(cat.DISCOUNTS)
        name = user["telegram_username"] if platform == "telegram" else user["twitter_username"]
        text = rng.choice(cat.DM_TEMPLATES).format(name=name or "there", code=code, pct=pct, asset=_weighted(rng, cat.ASSET_WEIGHTS))
        opened = clicked = converted = None
        delivered = "failed" if rng.random() < 0.03 else "sent"
        if delivered == "sent" and rng.random() < 0.42:
            opened = sent + _secs(rng.expovariate(1 / 10800) + 30)
            if rng.random() < 0.28:
                clicked = opened + _secs(rng.expovariate(1 / 1200) + 10)
                if rng.random() < 0.2:
                    converted = clicked + _secs(rng.expovariate(1 / 2400) + 60)
        # a stage after as_of has not happened yet (nor has anything after it)
        if opened and opened > self.as_of:
            opened = clicked = converted = None
        if clicked and clicked > self.as_of:
            clicked = converted = None
        if converted and converted > self.as_of:
            converted = None
        status = "converted" if converted else "clicked" if clicked else "opened" if opened else delivered
        user.update({"conversion_dm_sent": True, "conversion_dm_sent_at": sent,
                     "conversion_dm_opened": opened is not None, "conversion_dm_clicked": clicked is not None})
        if converted:
            subs.append(self._subscription(rng, user, converted + _secs(rng.uniform(5, 90)), in_window=True))
        return {
            "user_id": user["id"], "platform": platform, "message_text": text, "discount_code": code,
            "discount_percentage": pct, "sent_at": sent, "opened_at": opened, "clicked_at": clicked,
            "converted_at": converted, "status": status, "created_at": sent,
        }

    def _subscription(self, rng: random.Random, user: dict[str, Any], created: datetime, in_window: bool) -> dict[str, Any]:
        created = min(created, self.as_of)
        tier = _weighted(rng, {"BASIC": 60, "PREMIUM": 30, "VIP": 10})
        weights = {"active": 86, "cancelled": 8, "past_due": 4, "unpaid": 2} if in_window else \
            {"active": 72, "cancelled": 18, "past_due": 6, "unpaid": 4}
        status = _weighted(rng, weights)
        if status in ("past_due", "unpaid") and created > self.as_of - timedelta(days=31):
            status = "active"  # payment can only fail at a renewal
        cancelled_at = None
        if status == "cancelled":
            cancelled_at = created + timedelta(days=rng.uniform(3, 60))
            if cancelled_at > self.as_of:
                status, cancelled_at = "active", None
        periods = int(((cancelled_at or self.as_of) - created).days // 30)
        period_start = created + timedelta(days=30 * periods)
        sub = {
            "user_id": user["id"], "stripe_customer_id": f"cus_{_base62(rng, 14)}",
            "stripe_subscription_id": f"sub_1{_base62(rng, 23)}", "stripe_payment_intent_id": f"pi_3{_base62(rng, 23)}",
            "tier": tier, "status": status, "amount": cat.TIER_PRICES[tier], "currency": "eur",
            "current_period_start": period_start, "current_period_end": period_start + timedelta(days=30),
            "trial_end": created + timedelta(days=7) if rng.random() < 0.25 else None,
            "cancel_at_period_end": status == "active" and rng.random() < 0.05,
            "cancelled_at": cancelled_at,
            "cancellation_reason": rng.choice(cat.CANCEL_REASONS) if cancelled_at else None,
            "created_at": created, "updated_at": max(created, cancelled_at or created, period_start),
        }
        user["_sub"] = sub
        user["converted_at"] = created
        if not user["email"]:
            user["email"] = f"{user['_handle'].replace('_', '.')}.{user['id']}@{rng.choice(cat.EMAIL_DOMAINS)}"
        if status in ("active", "past_due"):
            user["tier"], user["subscription_status"] = tier, "active"
        else:
            user["subscription_status"] = "cancelled" if status == "cancelled" else "inactive"
        return sub

    def moderation(self) -> None:
        rng = self.rng("moderation")
        rows: list[dict[str, Any]] = []
        for run in self.runs_of("CommunityModeratorAgent", ("success",)):
            actions = 1 if rng.random() < 0.035 else 0
            run.details = {"messages_scanned": rng.randint(5, 160), "actions": actions}
            if not actions:
                continue
            platform = "telegram" if rng.random() < 0.75 else "discord"
            user = self.pick_user(rng, run.ts, platform, skew=1.0) if rng.random() < 0.7 else None
            kind = _weighted(rng, cat.MODERATION_ACTIONS)
            duration = rng.choice((60, 360, 1440)) if kind == "mute" else (10080 if kind == "ban" and rng.random() < 0.5 else None)
            platform_id = (user["telegram_id"] if platform == "telegram" else user["discord_id"]) if user else None
            rows.append({
                "user_id": user["id"] if user else None,
                "platform_user_id": platform_id or str(rng.randrange(6_000_000_000, 7_999_999_999)),
                "action_type": kind, "reason": _weighted(rng, cat.MODERATION_REASONS), "platform": platform,
                "message_content": rng.choice(cat.SPAM_TEXTS),
                "channel_id": "-1001849302716" if platform == "telegram" else "1187334551208472616",
                "automated": rng.random() < 0.9, "agent_confidence": round(rng.uniform(0.7, 0.99), 3),
                "duration_minutes": duration, "expires_at": run.ts + timedelta(minutes=duration) if duration else None,
                "timestamp": run.ts, "created_at": run.ts,
            })
        self.tables["moderation_actions"] = _assign_ids(rows, "timestamp")

    def exclusive(self) -> None:
        rng = self.rng("exclusive")
        rows = self.tables["exclusive_content"]
        message = 912
        for run in self.runs_of("ExclusiveContentAgent", ("success",)):
            insight = self.insight_before(run.ts)
            published = 0
            if insight is not None and rng.random() < 0.65:
                insight["is_exclusive"] = True
                platform = "telegram" if rng.random() < 0.7 else "discord"
                message += rng.randint(1, 4)
                details = insight["_details"]
                rows.append({
                    "id": len(rows) + 1, "insight_id": insight["id"], "platform": platform,
                    "content_text": f"🔒 Members only: {insight['asset']} {insight['type'].replace('_', ' ').lower()} — "
                                    f"entry zone around ${_fmt_price(details['price'])}, RSI {details['rsi']}, "
                                    f"confidence {int(insight['confidence'] * 100)}%.",
                    "min_tier_required": _weighted(rng, {"BASIC": 50, "PREMIUM": 35, "VIP": 15}), "published_at": run.ts,
                    "channel_id": "-1002011874522" if platform == "telegram" else "1187334551208472999",
                    "message_id": str(message), "views": rng.randint(40, 260), "reactions": rng.randint(2, 40),
                    "created_at": run.ts,
                })
                published = 1
            run.details = {"published": published, **self._tokens(rng, 1500, 500)}

    def finish_users(self) -> None:
        rng = self.rng("finish_users")
        for user in self.tables["community_users"]:
            total = user["_prior"] + user["_count"]
            last = user["_last"]
            if last is None and user["_prior"]:
                last = min(self.start, user["first_seen"] + timedelta(days=rng.uniform(0, 30)))
            events = [t for t in (user["first_seen"], last, user.get("conversion_dm_sent_at"), user.get("converted_at")) if t]
            user.update({
                "total_interactions": total, "last_interaction": last,
                "engagement_score": round(max(0.0, min(100.0, 14 * math.log1p(total) + rng.uniform(-3, 3))), 1),
                "conversion_dm_sent_at": user.get("conversion_dm_sent_at"), "converted_at": user.get("converted_at"),
                "updated_at": max(events),
            })

    # ---- daily / weekly / monthly snapshots ---------------------------------------------------
    def snapshots(self) -> None:
        rng = self.rng("snapshots")
        posts_by_day: dict[date, list[dict[str, Any]]] = {}
        for post in self.tables["published_content"]:
            posts_by_day.setdefault(post["published_at"].date(), []).append(post)
        rows = self.tables["performance_snapshots"]
        for run in self.runs_of("PerformanceAnalyticsAgent", ("success",)):
            day = run.ts.date() - timedelta(days=1)
            periods = [("daily", day, day)]
            if run.ts.weekday() == 0:
                periods.append(("weekly", day - timedelta(days=6), day))
            if run.ts.day == 1:
                periods.append(("monthly", day.replace(day=1), day))
            for period, first, last in periods:
                first = max(first, self.start.date())
                posts = [p for d in _days(first, last) for p in posts_by_day.get(d, [])]
                rows.append(self._snapshot(rng, run.ts, period, first, last, posts))
            run.details = {"snapshot_date": day.isoformat(), "periods": [p[0] for p in periods]}

    def _snapshot(self, rng: random.Random, created: datetime, period: str, first: date, last: date,
                  posts: list[dict[str, Any]]) -> dict[str, Any]:
        lo = datetime.combine(first, time())
        hi = datetime.combine(last + timedelta(days=1), time())
        seen = self.user_seen
        new_followers = bisect.bisect_left(seen, hi) - bisect.bisect_left(seen, lo)
        total_followers = bisect.bisect_left(seen, hi)
        subs = self.tables["subscriptions"]
        new_conversions = [s for s in subs if lo <= s["created_at"] < hi]
        paying = [s for s in subs if s["created_at"] < hi and s["status"] != "unpaid"
                  and (s["cancelled_at"] is None or s["cancelled_at"] >= hi)]
        renewals = [s for s in paying if s["created_at"] < lo and any(
            lo <= s["created_at"] + timedelta(days=30 * k) < hi for k in range(1, 40))]
        dms = sum(1 for c in self.tables["conversion_attempts"] if lo <= c["sent_at"] < hi)
        impressions = sum(p["views"] for p in posts)
        insights = [i for i in self.tables["insights"] if lo <= i["timestamp"] < hi]
        best = max(posts, key=lambda p: p["engagement_rate"]) if posts else None
        best_insight = self.tables["insights"][best["_plan"]["insight_id"] - 1] if best else None
        return {
            "id": len(self.tables["performance_snapshots"]) + 1, "snapshot_date": lo, "period_type": period,
            "content_published_count": len(posts),
            "avg_engagement_rate": round(sum(p["engagement_rate"] for p in posts) / len(posts), 6) if posts else 0.0,
            "total_impressions": impressions, "total_clicks": int(impressions * rng.uniform(0.018, 0.026)),
            "new_followers": new_followers, "total_followers": total_followers,
            "follower_growth_rate": round(new_followers / max(1, total_followers - new_followers) * 100, 3),
            "new_conversions": len(new_conversions), "total_paying_members": len(paying),
            "revenue": round(sum(s["amount"] for s in new_conversions + renewals), 2),
            "conversion_rate": round(len(new_conversions) / dms, 4) if dms else 0.0,
            "top_performing_format": best["_plan"]["format"] if best else None,
            "top_performing_asset": best_insight["asset"] if best_insight else None,
            "top_performing_insight_type": best_insight["type"] if best_insight else None,
            "avg_insight_confidence": round(sum(i["confidence"] for i in insights) / len(insights), 4) if insights else None,
            "insight_accuracy_rate": round(rng.uniform(0.58, 0.74), 4), "created_at": created,
        }

    # ---- agent_logs -------------------------------------------------------------------------
    def agent_logs(self) -> None:
        rng = self.rng("details")
        rows = self.tables["agent_logs"]
        for number, run in enumerate(self.runs, 1):
            details = dict(run.details) or self._default_details(rng, run)
            if run.status == "error":
                details = {"error_type": (run.message or "").split(":")[0], "attempts": 1}
            rows.append({
                "id": number, "timestamp": run.ts, "agent_name": run.agent.name, "action": run.agent.action,
                "status": run.status, "details": _dumps(details), "error_message": run.message,
                "execution_time": run.exec_s, "created_at": run.ts,
            })

    def _default_details(self, rng: random.Random, run: Run) -> dict[str, Any]:
        name = run.agent.name
        if name == "MarketScannerAgent":
            return {"assets": len(cat.ASSETS), "source": "coingecko"}
        if name == "ContentCreationAgent":
            return {"drafts": rng.randint(1, 3), **self._tokens(rng, 3200, 900)}
        if name == "EngagementAgent":
            return {"mentions_checked": rng.randint(3, 60), "replies_sent": rng.randint(0, 4), **self._tokens(rng, 700, 150)}
        if name == "ImageGenerationAgent":
            return {"images": 1, "model": "dall-e-3", "size": "1024x1024"}
        if name == "AnalyticsAgent":
            return {"posts_updated": rng.randint(10, 80)}
        if name == "ABTestingAgent":
            return {"tests_evaluated": rng.randint(1, 4)}
        if name == "StrategyTuningAgent":
            return {"adjustments": rng.randint(0, 3), **self._tokens(rng, 6000, 1200)}
        if name == "FeedbackLoopCoordinator":
            return {"signals": rng.randint(2, 12), **self._tokens(rng, 2500, 500)}
        return {}

    # ---- the log file ---------------------------------------------------------------------------
    def log_records(self) -> None:
        rng = self.rng("applog")
        out = self.records
        out.append(LogRecord(self.start, "INFO", "src.main:main", f"Content Creator starting (scheduled mode), {len(cat.AGENTS)} agents enabled"))
        out.append(LogRecord(self.start + _secs(0.4), "INFO", "src.scheduler:start", f"Scheduler started with {len(cat.AGENTS)} jobs"))
        errors_by_hour: dict[datetime, int] = {}
        runs_by_hour: dict[datetime, int] = {}
        for run in self.runs:
            hour = _floor_hour(run.ts)
            runs_by_hour[hour] = runs_by_hour.get(hour, 0) + 1
            errors_by_hour[hour] = errors_by_hour.get(hour, 0) + (run.status == "error")
        for run in self.runs:
            out.extend(run_records(run.agent, run.ts, run.status, run.exec_s, run.message, run.traceback))
            self._run_extras(rng, run, errors_by_hour, runs_by_hour)
        for post in self.tables["published_content"]:
            at = post["published_at"]
            if post["platform"] == "twitter":
                out.append(LogRecord(at - _secs(0.2), "INFO", f"{cat.TWITTER_API}:post_tweet",
                                     f"Tweet posted successfully: {post['post_id']}"))
            out.append(LogRecord(at, "INFO", "src.agents.publishing_agent:publish",
                                 f"Published to {post['platform']}: post_id={post['post_id']} (content_plan_id={post['content_plan_id']})"))
        self._incident_records(rng)
        out.sort(key=lambda r: r.ts)

    def _run_extras(self, rng: random.Random, run: Run, errors_by_hour: dict[datetime, int], runs_by_hour: dict[datetime, int]) -> None:
        out, name = self.records, run.agent.name
        started = run.ts - _secs(run.exec_s)
        if name == "MarketScannerAgent" and run.status != "error":
            out.append(LogRecord(run.ts - _secs(0.3), "DEBUG", "src.api_integrations.coingecko_api:get_prices",
                                 f"Fetched {len(cat.ASSETS)} prices in {rng.randint(180, 900)}ms"))
        for number, (where, message) in enumerate(run.client_errors):
            out.append(LogRecord(started + _secs(0.3 + 0.2 * number + run.exec_s * number / (len(run.client_errors) + 1)),
                                 "ERROR", where, message))
        if run.retried:
            out.append(LogRecord(run.ts - _secs(0.1), "INFO", "src.utils.retry:wrapper",
                                 "Recovered from transient error, retry succeeded (attempt 2/3)"))
        if run.tag == "gap":
            out.append(LogRecord(run.ts - _secs(0.1), "DEBUG", "src.agents.publishing_agent:publish", "No approved content in queue"))
        if name == "AnalyticsAgent" and run.status == "success":
            hour = _floor_hour(run.ts) - timedelta(hours=1)
            rate = errors_by_hour.get(hour, 0) / max(1, runs_by_hour.get(hour, 1))
            verdict = "within bounds" if rate <= 0.05 else "ABOVE bound 0.05"
            out.append(LogRecord(run.ts + _secs(0.01), "INFO", "src.utils.metrics_collector:collect",
                                 f"Hourly metrics: executions={runs_by_hour.get(hour, 0)} error_rate={rate:.3f} {verdict}"))
        if name == "PerformanceAnalyticsAgent" and run.status == "success":
            out.append(LogRecord(run.ts + _secs(0.01), "SUCCESS", "src.agents.performance_analytics:run",
                                 f"Daily snapshot stored for {run.details.get('snapshot_date')}"))

    def _incident_records(self, rng: random.Random) -> None:
        out, crit = self.records, self.crit_at
        out.append(LogRecord(crit, "CRITICAL", "src.main:main", "Database connection pool exhausted"))
        out.append(LogRecord(crit + _secs(0.8), "CRITICAL", "src.scheduler:_on_job_error",
                             f"Scheduler halted: {POOL_FAILURES} jobs failed within 15 minutes, restarting app"))
        out.append(LogRecord(crit + _secs(3.1), "INFO", "src.main:main", "Shutting down (signal SIGTERM)"))
        back = crit + timedelta(minutes=3, seconds=31)
        out.append(LogRecord(back, "INFO", "src.main:main", f"Content Creator starting (scheduled mode), {len(cat.AGENTS)} agents enabled"))
        out.append(LogRecord(back + _secs(0.4), "INFO", "src.scheduler:start", f"Scheduler started with {len(cat.AGENTS)} jobs"))
        # the image job hung after its last run: APScheduler skips every later execution
        last = max(r.ts for r in self.runs if r.agent.name == "ImageGenerationAgent")
        agent = cat.AGENT_BY_NAME["ImageGenerationAgent"]
        hung = last + timedelta(minutes=rng.uniform(30, 60))
        out.append(LogRecord(hung, "DEBUG", "src.agents.base_agent:run", f"{agent.name} starting {agent.action}"))
        skipped = hung + timedelta(minutes=45)
        while skipped <= self.as_of:
            next_run = skipped + timedelta(minutes=45)
            out.append(LogRecord(skipped, "WARNING", "apscheduler.scheduler:_process_jobs",
                                 f'Execution of job "ImageGenerationAgent.run (trigger: interval[0:45:00], next run at: '
                                 f'{next_run:%Y-%m-%d %H:%M:%S} UTC)" skipped: maximum number of running instances reached (1)'))
            skipped = next_run

    # ---- facts ------------------------------------------------------------------------------------
    def facts(self) -> DemoFacts:
        hour_end = self.burst_hour + timedelta(hours=1)
        in_hour = [r for r in self.records if self.burst_hour <= r.ts < hour_end]
        window_from = self.as_of - timedelta(hours=24)
        return DemoFacts(
            seed=self.seed, days=self.days, as_of=self.as_of, start=self.start,
            counts={name: len(rows) for name, rows in self.tables.items()},
            burst_agent="PublishingAgent", burst_hour=self.burst_hour,
            burst_log_errors=sum(1 for r in in_hour if r.level == "ERROR"),
            burst_429_records=sum(1 for r in in_hour if r.level == "ERROR" and "429 Too Many Requests" in r.message),
            burst_agent_log_errors=sum(1 for r in self.runs if r.tag == "burst" and r.status == "error"),
            agent_errors_24h=sum(1 for r in self.runs if r.status == "error" and window_from < r.ts <= self.as_of),
            stopped_agent="ImageGenerationAgent",
            stopped_last_seen=max(r.ts for r in self.runs if r.agent.name == "ImageGenerationAgent"),
            no_content_day=self.gap_day, critical_at=self.crit_at,
            last_published=max(p["published_at"] for p in self.tables["published_content"]),
            last_agent_activity=self.runs[-1].ts,
            clean_as_of=clean_as_of(self.as_of, self.days),
        )


def clean_as_of(as_of: datetime, days: int) -> datetime | None:
    """The instant, CLEAN_DAYS_BEFORE_AS_OF days back, whose daily and weekly reports find nothing;
    None when the history is too short to hold a full week before it."""
    if days >= CLEAN_DAYS_BEFORE_AS_OF + 8:
        return as_of - timedelta(days=CLEAN_DAYS_BEFORE_AS_OF)
    return None


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _two_proportion_confidence(clicks_a: int, n_a: int, clicks_b: int, n_b: int) -> float:
    """1 - two-sided p of a two-proportion z-test (what the app's ABTestingAgent reports)."""
    if n_a == 0 or n_b == 0:
        return 0.0
    pooled = (clicks_a + clicks_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 0.0
    z = abs(clicks_b / n_b - clicks_a / n_a) / spread
    return math.erf(z / math.sqrt(2))
