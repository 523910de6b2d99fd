"""Backups that can be trusted: dump, verify, keep, restore, and prove it restores.

The guide's script calls a backup good when the file exists and deletes
everything older than 30 days, so a month of failed backups deletes the last
good one. Here (after Barman and pgBackRest) a backup is written under a
temporary name and renamed only once pg_dump succeeded, carries a manifest with
its checksum and exact row counts, counts as "verified" only when it reads
back, is kept by a retention that never goes below the newest verified ones,
and is restored into a scratch database that replaces the target only once its
row counts match.

This module is the engine's public face: callers write `from ccops import backup`
and `backup.create_backup(...)`. The work is in modules that import one way only,
bottom to top:

    errors    BackupError and how a failure is worded (one line, password masked)
    naming    THE backup-file naming rule (ccops' names and the app's backup.sh's)
    files     private dirs and files, fsync, checksums, manifests, the backup dir's lock
    sqlscan   plain SQL as pg_dump writes it (statements, COPY rows)
    toc       a custom archive's table of contents, and the data offsets a piped dump lacks
    verify    is a backup good: checksum, pg_restore, parse, .env and tarball reads
    store     the backups in a directory, newest first, with cached verification
    take      pg_dump + manifest + verification; the app's .env and logs copies
    prune     retention with the verified-backup floor
    offsite   the off-site copy, verified and pruned there too
    restore   restore and the monthly restore test, proved row for row
"""

from __future__ import annotations

from ccops.backup.errors import BackupBusy, BackupError
from ccops.backup.files import LOCK_NAME, backup_lock, read_manifest, sha256_of
from ccops.backup.naming import KINDS, MANIFEST_SUFFIX, NAME_RE, ORIGIN_APP, ORIGIN_CCOPS, manifest_path, parse_name
from ccops.backup.offsite import OffsiteResult, offsite_copy
from ccops.backup.prune import RetentionPlan, apply_retention, plan_retention, refuse_newest_verified
from ccops.backup.restore import (
    ExpectedCounts,
    RestoreResult,
    RestoreStep,
    RestoreTestResult,
    compare_counts,
    effective_jobs,
    expected_counts,
    load_dump,
    refuse_non_dump,
    restore_backup,
    restore_test,
    target_url,
)
from ccops.backup.store import SAFETY_DIR, BackupInfo, latest_verified, list_backups, safety_dir
from ccops.backup.take import BackupResult, create_backup, exact_row_counts, save_app_copies
from ccops.backup.verify import VerifyResult, verify_backup

# the names callers use (ccops, tests, benchmarks, runbooks); anything else is imported from its module
__all__ = [
    "KINDS", "LOCK_NAME", "MANIFEST_SUFFIX", "NAME_RE", "ORIGIN_APP", "ORIGIN_CCOPS", "SAFETY_DIR",
    "BackupBusy", "BackupError", "BackupInfo", "BackupResult", "ExpectedCounts", "OffsiteResult", "RestoreResult",
    "RestoreStep", "RestoreTestResult", "RetentionPlan", "VerifyResult",
    "apply_retention", "backup_lock", "compare_counts", "create_backup", "effective_jobs", "exact_row_counts",
    "expected_counts", "latest_verified", "list_backups", "load_dump", "manifest_path", "offsite_copy", "parse_name",
    "plan_retention", "read_manifest", "refuse_newest_verified", "refuse_non_dump", "restore_backup", "restore_test",
    "safety_dir", "save_app_copies", "sha256_of", "target_url", "verify_backup",
]
