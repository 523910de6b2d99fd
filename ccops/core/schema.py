"""The Content Creator tables, as production has them.

The app defines its tables with SQLAlchemy models; production's schema is what
those models created (integer serial keys, `ix_<table>_<column>` indexes,
PostgreSQL enums holding the upper-case Python enum NAMES, naive UTC
timestamps). We mirror that here with SQLAlchemy Core so the demo and the test
databases have the same shape, indexes included: a check that is fast on the
demo is fast in production only if the same indexes exist, and a check that
filters on an unindexed column (published_content.created_at) would be slow
in both. tests/test_schema.py holds this against the real production dump.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
)

metadata = MetaData()

ContentFormat = Enum(
    "SINGLE_TWEET", "THREAD", "BLOG_POST", "TELEGRAM_MESSAGE", "IMAGE_POST", name="contentformat"
)
InsightType = Enum(
    "BREAKOUT", "BREAKDOWN", "SENTIMENT_SHIFT", "VOLUME_SPIKE", "NEWS_IMPACT",
    "TECHNICAL_PATTERN", "CORRELATION", name="insighttype",
)
TestStatus = Enum("ACTIVE", "COMPLETED", "PAUSED", "CANCELLED", name="teststatus")
UserTier = Enum("FREE", "BASIC", "PREMIUM", "VIP", name="usertier")


def _ts(name: str, **kw) -> Column:
    return Column(name, DateTime(timezone=False), **kw)


market_data = Table(
    "market_data", metadata,
    Column("id", Integer, primary_key=True),
    _ts("timestamp", index=True),
    Column("asset", String(20), nullable=False, index=True),
    Column("price", Float, nullable=False),
    Column("volume_24h", Float),
    Column("price_change_24h", Float),
    Column("market_cap", Float),
    Column("raw_data", JSON),
    _ts("created_at"),
)

news_articles = Table(
    "news_articles", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(500), nullable=False),
    Column("url", String(1000), unique=True),
    Column("source", String(100)),
    _ts("published_at", index=True),
    Column("content", Text),
    Column("summary", Text),
    Column("sentiment_score", Float),
    Column("mentioned_assets", JSON),
    _ts("created_at"),
)

sentiment_data = Table(
    "sentiment_data", metadata,
    Column("id", Integer, primary_key=True),
    _ts("timestamp", index=True),
    Column("platform", String(50)),
    Column("asset", String(20), index=True),
    Column("sentiment_score", Float),
    Column("volume", Integer),
    Column("influencer_sentiment", Float),
    Column("raw_data", JSON),
    _ts("created_at"),
)

insights = Table(
    "insights", metadata,
    Column("id", Integer, primary_key=True),
    _ts("timestamp", index=True),
    Column("type", InsightType, nullable=False, index=True),
    Column("asset", String(20), nullable=False, index=True),
    Column("confidence", Float, nullable=False),
    Column("details", JSON, nullable=False),
    Column("supporting_data_ids", JSON),
    Column("is_published", Boolean),
    Column("is_exclusive", Boolean),
    _ts("created_at"),
)

content_plans = Table(
    "content_plans", metadata,
    Column("id", Integer, primary_key=True),
    _ts("timestamp"),
    Column("insight_id", Integer, ForeignKey("insights.id"), nullable=False),
    Column("platform", String(50), nullable=False),
    Column("format", ContentFormat, nullable=False),
    Column("priority", String(20)),
    _ts("scheduled_for"),
    Column("status", String(20)),
    _ts("created_at"),
)

ab_tests = Table(
    "ab_tests", metadata,
    Column("id", Integer, primary_key=True),
    Column("test_name", String(200), nullable=False),
    Column("hypothesis", Text),
    Column("variable_being_tested", String(100), nullable=False),
    Column("insight_id", Integer, ForeignKey("insights.id")),
    Column("asset", String(20)),
    Column("platform", String(50)),
    Column("status", TestStatus),
    Column(
        "winning_variant_id", Integer,
        ForeignKey("ab_test_variants.id", use_alter=True, name="ab_tests_winning_variant_id_fkey"),
    ),
    Column("confidence_level", Float),
    Column("improvement_percentage", Float),
    _ts("started_at"),
    _ts("completed_at"),
    _ts("created_at"),
)

ab_test_variants = Table(
    "ab_test_variants", metadata,
    Column("id", Integer, primary_key=True),
    Column("test_id", Integer, ForeignKey("ab_tests.id"), nullable=False),
    Column("variant_name", String(50), nullable=False),
    Column("is_control", Boolean),
    Column("variant_config", JSON, nullable=False),
    Column("impressions", Integer),
    Column("clicks", Integer),
    Column("engagement_count", Integer),
    Column("conversion_count", Integer),
    Column("click_through_rate", Float),
    Column("engagement_rate", Float),
    Column("conversion_rate", Float),
    Column("sample_size", Integer),
    _ts("created_at"),
)

published_content = Table(
    "published_content", metadata,
    Column("id", Integer, primary_key=True),
    Column("content_plan_id", Integer, ForeignKey("content_plans.id"), nullable=False),
    Column("platform", String(50), nullable=False),
    Column("content_text", Text, nullable=False),
    Column("media_urls", JSON),
    Column("post_url", String(1000)),
    Column("post_id", String(100)),
    _ts("published_at", index=True),
    Column("views", Integer),
    Column("likes", Integer),
    Column("comments", Integer),
    Column("shares", Integer),
    Column("engagement_rate", Float),
    Column("ab_test_variant_id", Integer, ForeignKey("ab_test_variants.id")),
    _ts("created_at"),  # NOT indexed in production, although the guide filters on it
)

agent_logs = Table(
    "agent_logs", metadata,
    Column("id", Integer, primary_key=True),
    _ts("timestamp", index=True),
    Column("agent_name", String(100), nullable=False, index=True),
    Column("action", String(200), nullable=False),
    Column("status", String(20)),
    Column("details", JSON),
    Column("error_message", Text),
    Column("execution_time", Float),
    _ts("created_at"),
)

community_users = Table(
    "community_users", metadata,
    Column("id", Integer, primary_key=True),
    Column("twitter_id", String(100), unique=True, index=True),
    Column("twitter_username", String(100)),
    Column("telegram_id", String(100), unique=True, index=True),
    Column("telegram_username", String(100)),
    Column("discord_id", String(100), unique=True, index=True),
    Column("discord_username", String(100)),
    Column("email", String(255), unique=True, index=True),
    Column("tier", UserTier, nullable=False),
    Column("subscription_status", String(20)),
    Column("total_interactions", Integer),
    _ts("last_interaction"),
    Column("engagement_score", Float),
    Column("conversion_dm_sent", Boolean),
    _ts("conversion_dm_sent_at"),
    Column("conversion_dm_opened", Boolean),
    Column("conversion_dm_clicked", Boolean),
    _ts("first_seen"),
    _ts("converted_at"),
    _ts("created_at"),
    _ts("updated_at"),
)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("community_users.id"), nullable=False),
    Column("stripe_customer_id", String(100), unique=True),
    Column("stripe_subscription_id", String(100), unique=True),
    Column("stripe_payment_intent_id", String(100)),
    Column("tier", UserTier, nullable=False),
    Column("status", String(20)),
    Column("amount", Float, nullable=False),
    Column("currency", String(3)),
    _ts("current_period_start"),
    _ts("current_period_end"),
    _ts("trial_end"),
    Column("cancel_at_period_end", Boolean),
    _ts("cancelled_at"),
    Column("cancellation_reason", Text),
    _ts("created_at"),
    _ts("updated_at"),
)

user_interactions = Table(
    "user_interactions", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("community_users.id"), nullable=False),
    Column("interaction_type", String(50), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("content_id", Integer, ForeignKey("published_content.id")),
    Column("interaction_metadata", JSON),
    Column("engagement_value", Float),
    _ts("timestamp", index=True),
)

conversion_attempts = Table(
    "conversion_attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("community_users.id"), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("message_text", Text, nullable=False),
    Column("discount_code", String(50)),
    Column("discount_percentage", Integer),
    _ts("sent_at"),
    _ts("opened_at"),
    _ts("clicked_at"),
    _ts("converted_at"),
    Column("status", String(20)),
    _ts("created_at"),
)

exclusive_content = Table(
    "exclusive_content", metadata,
    Column("id", Integer, primary_key=True),
    Column("insight_id", Integer, ForeignKey("insights.id"), nullable=False),
    Column("content_text", Text, nullable=False),
    Column("platform", String(20), nullable=False),
    Column("min_tier_required", UserTier),
    _ts("published_at"),
    Column("channel_id", String(100)),
    Column("message_id", String(100)),
    Column("views", Integer),
    Column("reactions", Integer),
    _ts("created_at"),
)

moderation_actions = Table(
    "moderation_actions", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("community_users.id")),
    Column("platform_user_id", String(100), nullable=False),
    Column("action_type", String(50), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("platform", String(20), nullable=False),
    Column("message_content", Text),
    Column("channel_id", String(100)),
    Column("automated", Boolean),
    Column("agent_confidence", Float),
    Column("duration_minutes", Integer),
    _ts("expires_at"),
    _ts("timestamp", index=True),
    _ts("created_at"),
)

performance_snapshots = Table(
    "performance_snapshots", metadata,
    Column("id", Integer, primary_key=True),
    _ts("snapshot_date", index=True),
    Column("period_type", String(20)),
    Column("content_published_count", Integer),
    Column("avg_engagement_rate", Float),
    Column("total_impressions", Integer),
    Column("total_clicks", Integer),
    Column("new_followers", Integer),
    Column("total_followers", Integer),
    Column("follower_growth_rate", Float),
    Column("new_conversions", Integer),
    Column("total_paying_members", Integer),
    Column("revenue", Float),
    Column("conversion_rate", Float),
    Column("top_performing_format", String(50)),
    Column("top_performing_asset", String(20)),
    Column("top_performing_insight_type", String(50)),
    Column("avg_insight_confidence", Float),
    Column("insight_accuracy_rate", Float),
    _ts("created_at"),
)

TABLE_NAMES = sorted(metadata.tables)


def create_all(url: str) -> None:
    """Create the Content Creator tables in an empty database (as the app's init_db.py does)."""
    from ccops.core.db import normalize_url

    engine = create_engine(normalize_url(url))
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
