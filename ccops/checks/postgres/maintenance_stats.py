"""Maintenance statistics: dead tuples and when (auto)vacuum and analyze last ran.

The guide runs `VACUUM ANALYZE` on everything every week. What an operator
needs to know first is which tables autovacuum is not keeping up with: a high
share of dead tuples on a table of any size, or a table where autovacuum was
switched off. ccops.actions.maintenance.vacuum_analyze then acts on exactly those.
"""

from __future__ import annotations

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import tagged

TABLE_STATS_SQL = tagged("""
SELECT s.schemaname AS schema,
       s.relname AS "table",
       s.n_live_tup,
       s.n_dead_tup,
       CASE WHEN s.n_live_tup + s.n_dead_tup > 0
            THEN s.n_dead_tup::float8 / (s.n_live_tup + s.n_dead_tup) ELSE 0 END AS dead_ratio,
       s.n_mod_since_analyze,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count,
       coalesce(array_to_string(c.reloptions, ',') ~* '(^|,)autovacuum_enabled=(false|off|no|0)(,|$)', false)
         AS autovacuum_disabled
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
ORDER BY s.n_dead_tup DESC, s.schemaname, s.relname
""")


@check("postgres.table_maintenance")
def table_maintenance(ctx: RunContext, dead_ratio_warning: float | None = None,
                      min_dead_tuples: int | None = None) -> Finding:
    """Per table live/dead tuples and last (auto)vacuum/analyze; WARNING where dead tuples pile up.

    A table counts when its dead share exceeds `dead_ratio_warning` AND it holds
    more than `min_dead_tuples` dead tuples: the ratio alone would flag every
    ten-row table after one update, the count alone every large healthy table. Both are
    thresholds.postgres.dead_ratio and .min_dead_tuples (the keyword arguments override them
    for one call).
    """
    limits = ctx.settings.thresholds.postgres
    level = limits.dead_ratio.override(dead_ratio_warning)
    dead_ratio_warning = level.first
    min_dead_tuples = limits.min_dead_tuples if min_dead_tuples is None else min_dead_tuples
    with ctx.db() as conn:
        frame = query_df(conn, TABLE_STATS_SQL)
    if frame.empty:
        return Finding("postgres.table_maintenance", Status.OK, "no data: this database has no user tables")
    frame["dead_ratio"] = frame["dead_ratio"].astype(float).round(4)
    frame["needs_vacuum"] = level.beyond(frame["dead_ratio"]) & (frame["n_dead_tup"] > min_dead_tuples)
    flagged = frame[frame["needs_vacuum"]]
    off = frame[frame["autovacuum_disabled"]]
    off_note = f"; autovacuum is disabled on {', '.join(off['table'])}" if not off.empty else ""
    if flagged.empty:
        summary = (f"{len(frame)} tables, {int(frame['n_dead_tup'].sum()):,} dead tuples in all; none above "
                   f"{dead_ratio_warning:.0%} dead with more than {min_dead_tuples:,} dead tuples{off_note}")
        return Finding("postgres.table_maintenance", Status.OK, summary, 0, dead_ratio_warning, data=frame)
    names = ", ".join(
        f"{row.table} ({row.n_dead_tup:,} dead, {row.dead_ratio:.0%})" for row in flagged.itertuples()
    )
    summary = f"{len(flagged)} table(s) need VACUUM: {names}{off_note}"
    return Finding("postgres.table_maintenance", Status.WARNING, summary, len(flagged), dead_ratio_warning, data=frame)
