"""Content Creator's settings: the ccops demo's stand-in for the app's pydantic-settings class.

The real app declares `class Settings(BaseSettings)` with `env_file=".env"`,
case-insensitive names and pydantic's default of forbidding extra inputs: a
key in `.env` that the class does not define, or a value of the wrong type,
makes the import fail with a `ValidationError` ("Extra inputs are not
permitted"), and since main.py imports this module first, the app cannot
start. This module does the same with the standard library only, in the same
words, so `python -c "import src.config.settings"` in the app directory
validates a `.env` exactly as the app would.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_FILE = ".env"
PYDANTIC_DOCS = "https://errors.pydantic.dev/2.9/v"

# name -> (type, default): the fields of the app's Settings class (its .env.example, plus the backup key)
FIELDS: dict[str, tuple[type, object]] = {
    "database_url": (str, "postgresql://content_creator_user:password@localhost:5432/content_creator"),
    "anthropic_api_key": (str, ""), "google_api_key": (str, ""), "google_api_key_backup": (str, ""),
    "openai_api_key": (str, ""),
    "twitter_api_key": (str, ""), "twitter_api_secret": (str, ""), "twitter_access_token": (str, ""),
    "twitter_access_token_secret": (str, ""), "twitter_bearer_token": (str, ""),
    "telegram_bot_token": (str, ""), "telegram_channel_id": (str, ""),
    "binance_api_key": (str, ""), "binance_api_secret": (str, ""),
    "human_in_the_loop": (bool, False), "content_personality": (str, "analytical"), "log_level": (str, "INFO"),
    "stripe_api_key": (str, ""), "stripe_webhook_secret": (str, ""), "stripe_price_id_basic": (str, ""),
    "stripe_price_id_premium": (str, ""), "stripe_price_id_vip": (str, ""),
    "discord_bot_token": (str, ""), "discord_guild_id": (str, ""), "discord_role_id_basic": (str, ""),
    "discord_role_id_premium": (str, ""), "discord_role_id_vip": (str, ""),
    "conversion_min_engagement_score": (float, 60.0), "conversion_discount_percentage": (int, 20),
    "conversion_dm_cooldown_days": (int, 7),
    "ab_testing_min_sample_size": (int, 100), "ab_testing_confidence_threshold": (float, 0.95),
    "ab_testing_max_active_tests": (int, 3), "ab_testing_test_duration_days": (int, 7),
    "strategy_tuning_min_data_points": (int, 50), "strategy_tuning_confidence_level": (float, 0.9),
    "strategy_tuning_max_adjustments_per_run": (int, 3),
    "performance_analytics_snapshot_retention_days": (int, 365),
    "feedback_loop_optimization_cycle_hours": (int, 24), "feedback_loop_min_confidence_for_changes": (float, 0.8),
}
TRUE = {"1", "true", "t", "yes", "y", "on"}
FALSE = {"0", "false", "f", "no", "n", "off"}


class ValidationError(ValueError):
    """pydantic_core's ValidationError, named as the app's traceback names it."""


ValidationError.__module__ = "pydantic_core._pydantic_core"


def read_dotenv(path: str | os.PathLike[str]) -> dict[str, str]:
    """KEY=VALUE pairs as python-dotenv reads them: comments, `export`, quotes, inline ` #` comments."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or "=" not in stripped:
            continue
        key, _, value = stripped.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        pairs[key] = value
    return pairs


def _convert(kind: type, raw: str) -> tuple[object, tuple[str, str] | None]:
    """(value, None) or (None, (pydantic's message, error type)) for one raw string."""
    if kind is bool:
        folded = raw.strip().lower()
        if folded in TRUE or folded in FALSE:
            return folded in TRUE, None
        return None, ("Input should be a valid boolean, unable to interpret input", "bool_parsing")
    if kind is int:
        try:
            return int(raw), None
        except ValueError:
            return None, ("Input should be a valid integer, unable to parse string as an integer", "int_parsing")
    if kind is float:
        try:
            return float(raw), None
        except ValueError:
            return None, ("Input should be a valid number, unable to parse string as a number", "float_parsing")
    return raw, None


def _message(errors: list[tuple[str, str, str, str]]) -> str:
    """pydantic's text: the count, then per error the field, the message and the docs link."""
    lines = [f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} for Settings"]
    for name, message, kind, raw in errors:
        lines += [name, f"  {message} [type={kind}, input_value={raw!r}, input_type=str]",
                  f"    For further information visit {PYDANTIC_DOCS}/{kind}"]
    return "\n".join(lines)


class Settings:
    """The settings: the environment first, then `.env`, then the defaults; names case-insensitive."""

    def __init__(self, env_file: str | os.PathLike[str] = ENV_FILE) -> None:
        from_file = {key.lower(): value for key, value in read_dotenv(env_file).items()}
        from_env = {key.lower(): value for key, value in os.environ.items() if key.lower() in FIELDS}
        errors = [(name, "Extra inputs are not permitted", "extra_forbidden", raw)
                  for name, raw in from_file.items() if name not in FIELDS]
        for name, (kind, default) in FIELDS.items():
            raw = from_env.get(name, from_file.get(name))
            value, error = (default, None) if raw is None else _convert(kind, raw)
            if error:
                errors.append((name, error[0], error[1], raw))
            setattr(self, name, value)
        if errors:
            raise ValidationError(_message(errors))


settings = Settings()
