"""Sequences: how close each serial/identity column is to the end of its type.

Production's primary keys are `integer` (max 2,147,483,647). At the planned
10M+ agent_logs rows a year that is far away, but a sequence that jumps (a
retried bulk insert, a cache of 1000 per session) gets there sooner, and when
it does every INSERT fails. The limit is the smaller of the column type's
maximum and the sequence's own MAXVALUE.
"""

from __future__ import annotations

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.db import query_df
from ccops.core.findings import Finding, Status
from ccops.core.pgsql import tagged, user_schemas

SEQUENCES_SQL = tagged(f"""
SELECT n.nspname AS schema, t.relname AS "table", a.attname AS "column",
       format_type(a.atttypid, a.atttypmod) AS column_type,
       format('%I.%I', sn.nspname, sc.relname) AS sequence,
       s.last_value,
       s.increment_by,
       least(s.max_value, CASE a.atttypid WHEN 'int2'::regtype THEN 32767
                                          WHEN 'int4'::regtype THEN 2147483647
                                          ELSE 9223372036854775807 END)::numeric AS max_value,
       greatest(s.min_value, CASE a.atttypid WHEN 'int2'::regtype THEN -32768
                                             WHEN 'int4'::regtype THEN -2147483648
                                             ELSE -9223372036854775808 END)::numeric AS min_value
FROM pg_depend d
JOIN pg_class sc ON sc.oid = d.objid AND sc.relkind = 'S'
JOIN pg_namespace sn ON sn.oid = sc.relnamespace
JOIN pg_class t ON t.oid = d.refobjid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
JOIN pg_sequences s ON s.schemaname = sn.nspname AND s.sequencename = sc.relname
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i') AND {user_schemas("n")}
ORDER BY n.nspname, t.relname, a.attname
""")  # nosec B608 # module constants only, no catalog data


@check("postgres.sequences")
def sequence_exhaustion(ctx: RunContext, warning_pct: float | None = None, critical_pct: float | None = None) -> Finding:
    """Percent of each serial/identity column's range used, graded by thresholds.postgres.sequences_pct
    (the keyword arguments override it for one call)."""
    level = ctx.settings.thresholds.postgres.sequences_pct.override(warning_pct, critical_pct)
    warning_pct = level.first
    with ctx.db() as conn:
        frame = query_df(conn, SEQUENCES_SQL)
    if frame.empty:
        return Finding("postgres.sequences", Status.OK, "no data: no serial or identity columns", 0)
    frame["max_value"] = frame["max_value"].astype("int64")
    frame["min_value"] = frame["min_value"].astype("int64")
    used: list[float] = []
    remaining: list[int | None] = []
    for row in frame.itertuples():
        last = row.last_value
        if last is None or last != last:  # never called, or no privilege on the sequence
            used.append(0.0)
            remaining.append(None)
        elif row.increment_by > 0:
            used.append(100.0 * float(last) / float(row.max_value))
            remaining.append(int(row.max_value) - int(last))
        else:
            used.append(100.0 * float(last) / float(row.min_value))
            remaining.append(int(last) - int(row.min_value))
    frame["pct_used"] = [round(value, 4) for value in used]
    frame["remaining"] = pd.array(remaining, dtype="Int64")
    frame = frame.sort_values("pct_used", ascending=False).reset_index(drop=True)
    top = frame.iloc[0]
    worst = float(top["pct_used"])
    status = level.grade(worst)
    label = f"{top['table']}.{top['column']} ({top['column_type']})"
    if status == Status.OK:
        summary = f"{len(frame)} sequence-backed columns; the fullest, {label}, has used {worst:.2f}% of its range"
    else:
        over = frame[level.beyond(frame["pct_used"])]
        names = ", ".join(f"{r.table}.{r.column} {r.pct_used:.1f}%" for r in over.itertuples())
        summary = (f"{len(over)} column(s) past {warning_pct:.0f}% of their range: {names}; "
                   f"plan ALTER COLUMN ... TYPE bigint before they run out")
    threshold = level.limit(status)
    return Finding("postgres.sequences", status, summary, round(worst, 2), threshold, data=frame)
