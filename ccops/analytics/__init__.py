"""Reports for the weekly, monthly and quarterly runbooks: agents, content, A/B tests, money, capacity.

Runbooks call these as `analytics.<name>(ctx, ...)`; each returns Findings
with the table in `data` and a chart in `figure`. Every module reads the
Content Creator tables with plain SQL over bounded ranges of indexed
timestamp columns, measured back from ctx.as_of.
"""

from ccops.analytics.abtests import ab_test_results
from ccops.analytics.agents import agent_audit, agent_performance
from ccops.analytics.capacity import capacity_disk_projection, capacity_growth
from ccops.analytics.content import content_summary, engagement_breakdown, top_content
from ccops.analytics.costs import cost_analysis, cost_settings
from ccops.analytics.funnel import conversion_funnel
from ccops.analytics.stats import lift, two_proportion_z_test

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
