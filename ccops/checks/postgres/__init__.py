"""PostgreSQL checks for the weekly and monthly runbooks, one module per concern (PgHero's layout).

Each check is one or two catalog queries returning plain rows, read-only,
through ctx.db() (statement_timeout and lock_timeout set), limited to the
current database, with warning and critical thresholds as arguments
(check_postgres' convention). The maintenance that acts on them lives in
ccops.actions.maintenance.
"""

from ccops.checks.postgres.bloat import bloat_estimate
from ccops.checks.postgres.connections import connections
from ccops.checks.postgres.indexes import duplicate_indexes, invalid_indexes, unused_indexes
from ccops.checks.postgres.maintenance_stats import table_maintenance
from ccops.checks.postgres.queries import slow_queries, top_queries_by_total_time
from ccops.checks.postgres.sequences import sequence_exhaustion
from ccops.checks.postgres.space import database_sizes, largest_tables
from ccops.checks.postgres.tables import sequential_scan_heavy_tables

WEEKLY = (database_sizes, largest_tables, table_maintenance, bloat_estimate, slow_queries, connections)
MONTHLY = (top_queries_by_total_time, unused_indexes, duplicate_indexes, invalid_indexes,
           sequential_scan_heavy_tables, sequence_exhaustion)

__all__ = [
    "MONTHLY", "WEEKLY", "bloat_estimate", "connections", "database_sizes", "duplicate_indexes",
    "invalid_indexes", "largest_tables", "sequence_exhaustion", "sequential_scan_heavy_tables",
    "slow_queries", "table_maintenance", "top_queries_by_total_time", "unused_indexes",
]
