"""What the demo's Content Creator is made of: agents, assets, and the words they use.

Kept apart from the generator so the numbers that make the demo realistic
(cadences, failure rates, message texts) can be read and tuned in one place,
and so the log writer and the generator agree on every agent's name, module
and action without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "claude-3-5-sonnet-20241022"


@dataclass(frozen=True)
class AgentSpec:
    """One agent as the app schedules it.

    interval: (min, max) minutes between runs (APScheduler interval job plus
    the app's own jitter). median_s/sigma: lognormal execution time.
    warn_p/err_p: per-run probability of a warning / an error.
    """

    name: str
    action: str
    module: str
    interval: tuple[float, float]
    median_s: float
    sigma: float
    warn_p: float
    err_p: float
    llm: bool = False


AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec("MarketScannerAgent", "scan_markets", "src.agents.market_scanner", (5, 5), 2.4, 0.35, 0.012, 0.0015),
    AgentSpec("AnalysisAgent", "analyze_market", "src.agents.analysis_agent", (15, 15), 8.5, 0.45, 0.02, 0.003, llm=True),
    AgentSpec("ContentStrategistAgent", "plan_content", "src.agents.content_strategist", (60, 60), 5.8, 0.4, 0.02, 0.003, llm=True),
    AgentSpec("ContentCreationAgent", "create_content", "src.agents.content_creation", (30, 30), 14.0, 0.5, 0.03, 0.004, llm=True),
    AgentSpec("PublishingAgent", "publish", "src.agents.publishing_agent", (30, 30), 1.9, 0.4, 0.02, 0.002),
    AgentSpec("EngagementAgent", "engage", "src.agents.engagement_agent", (20, 20), 3.1, 0.5, 0.015, 0.002, llm=True),
    AgentSpec("ImageGenerationAgent", "generate_image", "src.agents.image_generation", (30, 60), 19.0, 0.35, 0.03, 0.004),
    AgentSpec("AnalyticsAgent", "collect_metrics", "src.agents.analytics_agent", (60, 60), 4.2, 0.4, 0.01, 0.002),
    AgentSpec("ConversionAgent", "send_conversion_dms", "src.agents.conversion_agent", (120, 120), 5.5, 0.4, 0.02, 0.003, llm=True),
    AgentSpec("ExclusiveContentAgent", "publish_exclusive", "src.agents.exclusive_content", (180, 180), 7.2, 0.4, 0.02, 0.003, llm=True),
    AgentSpec("CommunityModeratorAgent", "moderate", "src.agents.community_moderator", (10, 10), 1.3, 0.45, 0.008, 0.001),
    AgentSpec("ABTestingAgent", "evaluate_tests", "src.agents.ab_testing_agent", (60, 60), 1.6, 0.35, 0.01, 0.002),
    AgentSpec("PerformanceAnalyticsAgent", "daily_snapshot", "src.agents.performance_analytics", (1440, 1440), 12.0, 0.3, 0.0, 0.0),
    AgentSpec("StrategyTuningAgent", "tune_strategy", "src.agents.strategy_tuning", (360, 360), 24.0, 0.4, 0.03, 0.0, llm=True),
    AgentSpec("FeedbackLoopCoordinator", "coordinate_feedback", "src.agents.feedback_loop", (240, 240), 9.0, 0.4, 0.02, 0.0, llm=True),
    AgentSpec("OnboardingAgent", "onboard_members", "src.agents.onboarding_agent", (120, 120), 2.2, 0.4, 0.01, 0.002, llm=True),
)
AGENT_BY_NAME = {a.name: a for a in AGENTS}

# asset -> (coingecko id, start price, circulating supply, median 24h volume in USD)
ASSETS: dict[str, tuple[str, float, float, float]] = {
    "BTC": ("bitcoin", 64250.0, 19.7e6, 28e9),
    "ETH": ("ethereum", 3380.0, 120.1e6, 14e9),
    "SOL": ("solana", 148.0, 462e6, 2.6e9),
    "BNB": ("binancecoin", 578.0, 147.6e6, 1.7e9),
    "XRP": ("ripple", 0.522, 55.6e9, 1.2e9),
    "ADA": ("cardano", 0.451, 35.4e9, 0.42e9),
    "DOGE": ("dogecoin", 0.128, 145e9, 0.95e9),
    "AVAX": ("avalanche-2", 34.6, 393e6, 0.48e9),
}
ASSET_WEIGHTS = {"BTC": 30, "ETH": 22, "SOL": 14, "BNB": 7, "XRP": 9, "ADA": 5, "DOGE": 8, "AVAX": 5}

INSIGHT_TYPES = {
    "BREAKOUT": 18, "BREAKDOWN": 12, "SENTIMENT_SHIFT": 20, "VOLUME_SPIKE": 16,
    "NEWS_IMPACT": 14, "TECHNICAL_PATTERN": 14, "CORRELATION": 6,
}

# mean posts per hour of day (UTC), relative; the audience is EU + US
HOUR_WEIGHTS = (
    0.35, 0.25, 0.2, 0.2, 0.25, 0.4, 0.6, 0.8, 1.0, 1.15, 1.25, 1.3,
    1.4, 1.55, 1.6, 1.55, 1.45, 1.4, 1.45, 1.5, 1.4, 1.1, 0.8, 0.55,
)

NEWS_SOURCES = ("CoinDesk", "The Block", "Decrypt", "Cointelegraph", "Blockworks", "Bloomberg Crypto")
NEWS_DOMAINS = {
    "CoinDesk": "www.coindesk.com/markets", "The Block": "www.theblock.co/post",
    "Decrypt": "decrypt.co/news", "Cointelegraph": "cointelegraph.com/news",
    "Blockworks": "blockworks.co/news", "Bloomberg Crypto": "www.bloomberg.com/news/articles",
}
NEWS_TITLES = (
    "{name} climbs {pct}% as ETF inflows pick up",
    "{name} slides {pct}% after liquidations sweep derivatives markets",
    "Traders eye {name} options expiry as open interest hits record",
    "{name} network activity jumps to a three-month high",
    "Whales move ${amount}M in {asset} to exchanges, on-chain data shows",
    "Analysts split on {name} after {pct}% weekly move",
    "{name} developers ship upgrade aimed at lower fees",
    "Funding rates flip negative for {asset} perpetuals",
)

THREAD_HOOKS = (
    "🧵 What the {asset} chart is telling us right now ({pct}% in 24h):",
    "🧵 {asset} at ${price}: 5 things every trader should know today",
    "🧵 Why {asset} {verb} matters more than the headlines suggest",
)
TWEETS = {
    "BREAKOUT": "${asset} breaking out above ${price} with volume up {vol}% 📈 Next resistance in sight. Not financial advice. #{tag} #Crypto",
    "BREAKDOWN": "${asset} lost support at ${price} ({pct}% in 24h) 📉 Watching the next level closely. #{tag} #Crypto",
    "SENTIMENT_SHIFT": "Sentiment on ${asset} just flipped {mood}: social score {score} vs yesterday. Price ${price}. #{tag}",
    "VOLUME_SPIKE": "Unusual volume on ${asset}: +{vol}% vs the 7d average at ${price}. Someone knows something? 👀 #{tag}",
    "NEWS_IMPACT": "News is moving ${asset}: {pct}% since the headline, now ${price}. Our take below 👇 #{tag} #CryptoNews",
    "TECHNICAL_PATTERN": "${asset} is printing a {pattern} on the 4h chart at ${price}. Confirmation needs a close above the neckline. #{tag}",
    "CORRELATION": "${asset} and $BTC decoupling? 30d correlation down to {corr}. ${asset} at ${price}. #{tag}",
}
TELEGRAM = (
    "📊 *{asset} update*\nPrice: ${price} ({pct}% 24h)\nSignal: {kind}\nConfidence: {conf}%\n\nFull analysis for members in the VIP channel.",
    "⚡ *{asset}: {kind}*\n• Price ${price}\n• 24h change {pct}%\n• Volume {vol}% vs 7d avg\n\nNot financial advice.",
)
PATTERNS = ("head and shoulders", "bull flag", "double bottom", "ascending triangle", "falling wedge")
TAGS = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "BNB": "BNB", "XRP": "XRP", "ADA": "Cardano", "DOGE": "Dogecoin", "AVAX": "Avalanche"}

WARNINGS = {
    "MarketScannerAgent": ("CoinGecko response slow ({secs}s), using cached price for {asset}",
                           "Partial scan: {asset} missing from provider response"),
    "AnalysisAgent": ("Low confidence insight discarded ({conf} < 0.60) for {asset}",
                      "Anthropic API slow response ({secs}s)"),
    "ContentStrategistAgent": ("Content calendar full for next 2h, plan deferred",),
    "ContentCreationAgent": ("Draft rejected by quality filter (score {conf}), regenerating",
                             "Draft exceeded 280 characters, shortened"),
    "PublishingAgent": ("Telegram flood control: waiting {secs}s before next message",),
    "EngagementAgent": ("Skipped {n} mentions from accounts flagged as bots",),
    "ImageGenerationAgent": ("Image generation slow ({secs}s), falling back to template image",),
    "AnalyticsAgent": ("X metrics endpoint returned partial data for {n} posts",),
    "ConversionAgent": ("{n} DMs not delivered: recipient does not accept DMs",),
    "ExclusiveContentAgent": ("No insight above confidence 0.70 in last 3h, nothing exclusive to post",),
    "CommunityModeratorAgent": ("Telegram getUpdates returned 0 updates after timeout",),
    "ABTestingAgent": ("Test {test} below minimum sample size, evaluation postponed",),
    "StrategyTuningAgent": ("Not enough data to tune posting schedule (need 7 days)",),
    "FeedbackLoopCoordinator": ("Feedback signal from AnalyticsAgent stale ({n} min)",),
    "OnboardingAgent": ("Welcome DM to {n} new members deferred: Telegram flood control ({secs}s)",),
}

ERRORS = {
    "MarketScannerAgent": ("requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api.coingecko.com', port=443): Read timed out. (read timeout=10)",),
    "AnalysisAgent": ("anthropic.APIStatusError: Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}",
                      "anthropic.APITimeoutError: Request timed out."),
    "ContentStrategistAgent": ("KeyError: 'confidence'",),
    "ContentCreationAgent": ("anthropic.APIStatusError: Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}",
                             "anthropic.APIConnectionError: Connection error."),
    "PublishingAgent": ("telegram.error.TimedOut: Timed out",
                        "tweepy.errors.TwitterServerError: 503 Service Unavailable"),
    "EngagementAgent": ("tweepy.errors.TwitterServerError: 503 Service Unavailable",),
    "ImageGenerationAgent": ("openai.APITimeoutError: Request timed out.",),
    "AnalyticsAgent": ("sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) server closed the connection unexpectedly",),
    "ConversionAgent": ("stripe.error.APIConnectionError: Could not connect to Stripe (https://api.stripe.com/v1/prices)",),
    "ExclusiveContentAgent": ("telegram.error.NetworkError: httpx.ConnectError: All connection attempts failed",),
    "CommunityModeratorAgent": ("telegram.error.TimedOut: Timed out",),
    "ABTestingAgent": ("ZeroDivisionError: division by zero",),
    "OnboardingAgent": ("telegram.error.TimedOut: Timed out",),
}

# API failures as the app's clients log them (FACTS.md): the client module, not the agent, and no
# rate-limit words or headers of the app's own. The agent that ran into them carries on: its
# agent_logs row says 'success'.
TWITTER_API = "src.api_integrations.twitter_api"
EXCHANGE_API = "src.api_integrations.exchange_api"
POST_TWEET_429 = (f"{TWITTER_API}:post_tweet", "Failed to post tweet: 429 Too Many Requests")
SEARCH_TWEETS_429 = (f"{TWITTER_API}:search_tweets", "Failed to search tweets: 429 Too Many Requests")
CLIENT_ERRORS = {  # (where, message) a client logs at ERROR while the agent's run still succeeds
    "MarketScannerAgent": (f"{EXCHANGE_API}:get_ticker_24h",
                           "Error fetching 24h ticker for {asset}USDT: HTTPSConnectionPool(host='api.binance.com', port=443): "
                           "Read timed out. (read timeout=10)"),
    "EngagementAgent": (f"{TWITTER_API}:search_tweets", "Failed to search tweets: 503 Service Unavailable"),
    "PublishingAgent": (f"{TWITTER_API}:post_tweet", "Failed to post tweet: 503 Service Unavailable"),
}
POOL_ERROR = "sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00"

# where each agent's work happens, for tracebacks: (file, function, call)
TRACE_FRAMES = {
    "MarketScannerAgent": ("src/agents/market_scanner.py", "execute", "prices = await self.coingecko.get_prices(self.assets)",
                           "src/api_integrations/coingecko_api.py", "get_prices", "resp = self.session.get(url, params=params, timeout=10)"),
    "AnalysisAgent": ("src/agents/analysis_agent.py", "execute", "analysis = await self.llm.analyze(snapshot)",
                      "src/api_integrations/anthropic_api.py", "create_message", "return self.client.messages.create(**kwargs)"),
    "ContentCreationAgent": ("src/agents/content_creation.py", "execute", "draft = await self.llm.write(plan)",
                             "src/api_integrations/anthropic_api.py", "create_message", "return self.client.messages.create(**kwargs)"),
    "PublishingAgent": ("src/agents/publishing_agent.py", "publish", "result = self.twitter.post_tweet(text, media_ids)",
                        "src/api_integrations/twitter_api.py", "post_tweet", "return self.client.create_tweet(text=text, media_ids=media_ids)"),
    "AnalyticsAgent": ("src/agents/analytics_agent.py", "execute", "rows = db.query(PublishedContent).filter(PublishedContent.published_at > since).all()",
                       "src/database/connection.py", "get_db", "yield session"),
}

DM_TEMPLATES = (
    "Hey {name}! You've been one of our most active followers 🙌 Members get real-time signals and the VIP channel. Use {code} for {pct}% off your first month.",
    "Hi {name}, thanks for engaging with our {asset} analyses! Want the full breakdowns before they go public? {code} gives you {pct}% off.",
    "{name}, our Premium members caught the last {asset} move early. Join with {code} ({pct}% off) — cancel anytime.",
)
DISCOUNTS = (("PULSE15", 15), ("WELCOME20", 20), ("VIP30", 30))

USER_WORDS_A = ("crypto", "sats", "moon", "degen", "chart", "hodl", "alpha", "defi", "block", "whale", "bull", "bear")
USER_WORDS_B = ("hunter", "maxi", "trader", "wizard", "nomad", "ape", "owl", "fox", "pilot", "sage", "jack", "lab")
EMAIL_DOMAINS = ("gmail.com", "proton.me", "outlook.com", "icloud.com", "yahoo.com", "hey.com")

SPAM_TEXTS = (
    "🚀🚀 100x gem presale live now, DM me for whitelist",
    "Claim your free airdrop before it ends: hxxps://claim-airdrop[.]xyz",
    "Admin here, send me your seed phrase to verify your wallet",
    "Join my signals group, 500% guaranteed returns 💰",
    "buy buy buy buy buy buy buy",
    "who wants to make $5k a day from home? DM",
)
MODERATION_REASONS = {"spam": 35, "scam_link": 25, "phishing_dm_request": 12, "flood": 14, "harassment": 6, "off_topic": 8}
MODERATION_ACTIONS = {"delete_message": 45, "warn": 25, "mute": 20, "ban": 10}

CANCEL_REASONS = ("too_expensive", "not_enough_value", "switched_service", "payment_failed", "other")
TIER_PRICES = {"BASIC": 9.99, "PREMIUM": 29.99, "VIP": 99.0}
