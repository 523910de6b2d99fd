"""Connections: sessions by state, the oldest open transaction, and idle-in-transaction sessions.

A session idle in a transaction holds its locks and its snapshot: it blocks
VACUUM from removing dead tuples on every table and makes REINDEX
CONCURRENTLY wait. That is why the weekly review looks at it right before
maintenance runs. Ages are measured by the server's clock: this is live
state, not a window of history, so `as_of` does not apply.
"""

from __future__ import annotations

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import tagged
from ccops.core.scrub import scrub_query

BY_STATE_SQL = tagged("""
SELECT coalesce(state, 'unknown') AS state, count(*) AS sessions,
       round(max(extract(epoch FROM now() - xact_start))::numeric, 1)::float8 AS oldest_xact_s,
       round(max(extract(epoch FROM now() - state_change))::numeric, 1)::float8 AS longest_in_state_s
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY 1 ORDER BY 2 DESC, 1
""")

IDLE_IN_XACT_SQL = tagged("""
SELECT pid, usename AS "user", application_name, client_addr::text AS client, state,
       round(extract(epoch FROM now() - xact_start)::numeric, 1)::float8 AS xact_age_s,
       round(extract(epoch FROM now() - state_change)::numeric, 1)::float8 AS idle_s,
       left(query, 20000) AS last_query
FROM pg_stat_activity
WHERE datname = current_database() AND state LIKE 'idle in transaction%'
  AND now() - state_change > make_interval(secs => :limit_s)
ORDER BY state_change
""")

SERVER_USAGE_SQL = tagged("""
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS available
""")


@check("postgres.connections")
def connections(
    ctx: RunContext,
    idle_in_transaction_warning_s: float | None = None,
    usage_warning_pct: float | None = None,
    usage_critical_pct: float | None = None,
) -> list[Finding]:
    """Sessions of this database by state; WARNING for idle-in-transaction past
    thresholds.postgres.idle_in_transaction_s, WARNING/CRITICAL for a server past thresholds.postgres.connections_pct.

    The keyword arguments override those settings for one call (None: the setting).
    """
    limits = ctx.settings.thresholds.postgres
    usage_level = limits.connections_pct.override(usage_warning_pct, usage_critical_pct)
    usage_warning_pct = usage_level.first
    idle_in_transaction_warning_s = limits.idle_in_transaction_s.override(idle_in_transaction_warning_s).first
    with ctx.db() as conn:
        states = query_df(conn, BY_STATE_SQL)
        idle = query_df(conn, IDLE_IN_XACT_SQL, limit_s=float(idle_in_transaction_warning_s))
        usage = query_df(conn, SERVER_USAGE_SQL).iloc[0]
    if not idle.empty:  # masked before it is cut, so no cut leaves the start of a password behind
        idle["last_query"] = idle["last_query"].map(scrub_query)
    used, available = int(usage["used"]), max(int(usage["available"]), 1)
    pct = 100.0 * used / available
    status = usage_level.grade(pct)
    counts = ", ".join(f"{r.sessions} {r.state}" for r in states.itertuples()) or "no other sessions"
    oldest = states["oldest_xact_s"].max() if not states.empty else None
    oldest_text = f"; oldest open transaction {oldest:,.0f} s" if oldest is not None and oldest == oldest else ""
    found = [Finding(
        "postgres.connections", status,
        f"{counts} in this database{oldest_text}; server at {used} of {available} connections ({pct:.0f}%)",
        round(pct, 1), usage_warning_pct, data=states,
    )]
    if idle.empty:
        found.append(Finding("postgres.idle_in_transaction", Status.OK,
                             f"no session idle in a transaction for more than {idle_in_transaction_warning_s:,.0f} s",
                             0, idle_in_transaction_warning_s))
    else:
        worst = float(idle["idle_s"].max())
        found.append(Finding(
            "postgres.idle_in_transaction", Status.WARNING,
            f"{len(idle)} session(s) idle in a transaction for more than {idle_in_transaction_warning_s:,.0f} s "
            f"(longest {worst:,.0f} s, pid {int(idle['pid'].iloc[0])}): they hold locks and stop VACUUM",
            len(idle), idle_in_transaction_warning_s, data=idle,
        ))
    return found
