"""The monthly full backup verification: restore the latest backup and hold it against the live database.

The guide restores into `contentcreator_test`, counts one table and drops it.
ccops restores the latest verified backup into a scratch database (the backup
module's restore test: manifest counts, amcheck, drop), and puts each table's
restored count beside the live one, so an operator sees both that the backup is
whole and how much has changed since it was taken.
"""

from __future__ import annotations

import pandas as pd

from ccops.core.context import RunContext, check
from ccops.core.findings import Finding, Status


@check("backup.restore_test")
def restore_verification(ctx: RunContext) -> Finding:
    from ccops import backup

    result = backup.restore_test(ctx.settings)
    table = pd.DataFrame(result.counts, columns=["table", "expected", "restored", "ok"])
    with ctx.db() as conn:
        live = backup.exact_row_counts(conn)
    table["live"] = table["table"].map(live)
    table["live_minus_restored"] = table["live"] - table["restored"]
    bad = table[~table["ok"]]
    note = f"; {result.live_note}" if result.live_note else ""
    summary = (f"{result.restored_text}; {len(table) - len(bad)} of {len(table)} tables match {result.counts_source}"
               f"{note}; {result.amcheck_detail}; {int(table['live_minus_restored'].fillna(0).sum()):,} rows written "
               "since; scratch database dropped")
    return Finding("backup.restore_test", Status.OK if result.ok else Status.CRITICAL, summary,
                   round(result.restore_s, 2), data=table)
