"""Transaction ID wraparound: how old the database's oldest unfrozen transaction ID is.

PostgreSQL's transaction IDs are 32 bits: once the oldest unfrozen XID in a
database is about 2^31 transactions old, the server stops assigning new ones
(every write fails) until a VACUUM freezes the old rows. Autovacuum forces that
freeze from `autovacuum_freeze_max_age` (200 million by default), so an age far
past it means freezing cannot keep up: a long transaction, an abandoned
replication slot or prepared transaction, or a table autovacuum keeps skipping.
The age is `age(datfrozenxid)` of the current database, which is the age of its
oldest table; the table is named so the operator knows what to VACUUM (FREEZE).
A read-only SELECT assigns no XID, so the figure is the one psql shows.
"""

from __future__ import annotations

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding
from ccops.core.pgsql import tagged

WRAPAROUND_HORIZON = 2**31  # XIDs: PostgreSQL refuses new ones shortly before the oldest is this old

XID_AGE_SQL = tagged("""
SELECT age(d.datfrozenxid)::bigint AS xid_age,
       current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
       (SELECT format('%I.%I', n.nspname, c.relname)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'm', 't') AND c.relfrozenxid <> '0'::xid
         ORDER BY age(c.relfrozenxid) DESC LIMIT 1) AS oldest_table
FROM pg_database d
WHERE d.datname = current_database()
""")


@check("postgres.wraparound")
def transaction_id_age(ctx: RunContext) -> Finding:
    """The age of the oldest unfrozen XID, graded by thresholds.postgres.xid_age."""
    level = ctx.settings.thresholds.postgres.xid_age
    with ctx.db() as conn:
        row = query_df(conn, XID_AGE_SQL).iloc[0]
    age, freeze_max_age = int(row["xid_age"]), int(row["freeze_max_age"])
    status = level.grade(age)
    left = WRAPAROUND_HORIZON - age
    summary = (f"oldest unfrozen transaction ID is {age:,} transactions old ({100 * age / WRAPAROUND_HORIZON:.1f}% "
               f"of the way to wraparound, {left:,} left; oldest table {row['oldest_table']}); autovacuum "
               f"forces a freeze from {freeze_max_age:,}")
    if age > freeze_max_age:
        summary += ": freezing is behind, look for long transactions, prepared transactions or stale slots"
    return Finding("postgres.wraparound", status, summary, age, level.limit(status))
