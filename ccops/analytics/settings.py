"""The settings the analytics own ([analytics] confidence, [costs]), read without pandas or matplotlib.

`ccops config check` reads every section a module owns; these readers live here, apart
from the reports that use them (ccops.analytics.abtests, ccops.analytics.costs re-export
them), so that a check of the settings file does not import the plotting and data stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccops.core.reader import SectionReader
from ccops.core.settings import Settings

DEFAULT_CONFIDENCE = 0.95


def confidence_setting(settings: Settings) -> float:
    """[analytics] confidence, strictly between 0 and 1; ConfigError naming the key and file otherwise."""
    section = SectionReader.of(settings, "analytics")
    section.unknown({"confidence"})  # the section's only key: a typo must not silently keep 0.95
    return section.number("confidence", DEFAULT_CONFIDENCE, above=0, below=1)


DEFAULT_AGENT_APIS: dict[str, list[str]] = {
    "MarketScannerAgent": ["market_data"],
    "AnalysisAgent": ["anthropic"],
    "ContentStrategistAgent": ["anthropic"],
    "ContentCreationAgent": ["anthropic"],
    "PublishingAgent": ["x"],
    "EngagementAgent": ["anthropic", "x"],
    "ImageGenerationAgent": ["images"],
    "AnalyticsAgent": ["x"],
    "ConversionAgent": ["anthropic"],
    "ExclusiveContentAgent": ["anthropic"],
    "CommunityModeratorAgent": ["telegram"],
    "StrategyTuningAgent": ["anthropic"],
    "FeedbackLoopCoordinator": ["anthropic"],
}
DEFAULT_PRICES: dict[str, float] = {
    "anthropic": 0.01, "x": 0.0, "images": 0.04, "telegram": 0.0, "market_data": 0.0, "internal": 0.0,
}
INTERNAL = "internal"
BILLED = ("all", "successful")
KNOWN_KEYS = {"infrastructure_monthly", "billed_calls", "agent_apis", "prices", "token_prices"}
TOKEN_KEYS = ("input_per_million", "output_per_million")


@dataclass
class CostSettings:
    infrastructure_monthly: float = 0.0
    infrastructure_configured: bool = False
    billed_calls: str = "all"
    agent_apis: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_AGENT_APIS.items()})
    prices: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    token_prices: dict[str, dict[str, float]] = field(default_factory=dict)

    def apis_of(self, agent: str) -> list[str]:
        return self.agent_apis.get(agent) or [INTERNAL]


def cost_settings(settings: Settings) -> CostSettings:
    """The [costs] section over the defaults; ConfigError naming `costs.<key>` and the file on bad input."""
    section = SectionReader.of(settings, "costs")
    section.unknown(KNOWN_KEYS, f" (known: {', '.join(sorted(KNOWN_KEYS))})")
    result = CostSettings()
    if "infrastructure_monthly" in section:
        result.infrastructure_monthly = section.number("infrastructure_monthly", 0.0, minimum=0)
        result.infrastructure_configured = True
    result.billed_calls = section.choice("billed_calls", result.billed_calls, BILLED)
    agent_apis = section.section("agent_apis")
    for agent in agent_apis.table:
        names = agent_apis.strings(agent)
        if not names:
            raise agent_apis.fail(agent, f"expected an API name or a list of API names, got {names!r}")
        result.agent_apis[agent] = names
    prices = section.section("prices")
    for api in prices.table:
        result.prices[api] = prices.number(api, 0.0, minimum=0)
    token_prices = section.section("token_prices")
    for api in token_prices.table:
        table = token_prices.section(api)
        table.unknown(TOKEN_KEYS, f" (known: {', '.join(TOKEN_KEYS)})")
        result.token_prices[api] = {k: table.number(k, 0.0, minimum=0) for k in TOKEN_KEYS}
    for agent, apis in result.agent_apis.items():
        for api in apis:
            if api not in result.prices:
                raise prices.fail(api, f"no price for the API that costs.agent_apis.{agent} names "
                                       "(add it, 0.0 for a free API)")
    return result
