"""Reports for the weekly, monthly and quarterly runbooks: agents, content, A/B tests, money, capacity.

Runbooks call these as `analytics.<name>(ctx, ...)`; each returns Findings
with the table in `data` and a chart in `figure`. Every module reads the
Content Creator tables with plain SQL over bounded ranges of indexed
timestamp columns, measured back from ctx.as_of.

The reports are imported when first named (`analytics.top_content` imports
ccops.analytics.content), not with the package: pandas and matplotlib cost
about 0.65 s, and `ccops config check` reads the analytics' settings
(ccops.analytics.settings) without needing either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccops.analytics.abtests import ab_test_results
    from ccops.analytics.agents import agent_audit, agent_performance
    from ccops.analytics.capacity import capacity_disk_projection, capacity_growth
    from ccops.analytics.content import content_summary, engagement_breakdown, top_content
    from ccops.analytics.costs import cost_analysis
    from ccops.analytics.funnel import conversion_funnel
    from ccops.analytics.settings import cost_settings
    from ccops.analytics.stats import lift, two_proportion_z_test

# name -> the module of this package that defines it
_HOMES = {
    "ab_test_results": "abtests",
    "agent_audit": "agents",
    "agent_performance": "agents",
    "capacity_disk_projection": "capacity",
    "capacity_growth": "capacity",
    "content_summary": "content",
    "engagement_breakdown": "content",
    "top_content": "content",
    "cost_analysis": "costs",
    "cost_settings": "settings",
    "conversion_funnel": "funnel",
    "lift": "stats",
    "two_proportion_z_test": "stats",
}

__all__ = [
    "ab_test_results",
    "agent_audit",
    "agent_performance",
    "capacity_disk_projection",
    "capacity_growth",
    "content_summary",
    "conversion_funnel",
    "cost_analysis",
    "cost_settings",
    "engagement_breakdown",
    "lift",
    "top_content",
    "two_proportion_z_test",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
