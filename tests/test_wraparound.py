"""postgres.wraparound on a real database: the figure is psql's, it grows with every XID the server
hands out, a database-wide VACUUM (FREEZE) brings it back down, and ccops.toml moves its levels."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ccops.checks.postgres import wraparound
from ccops.core.context import RunContext
from ccops.core.findings import Finding, Status
from ccops.core.settings import Settings, load_settings
from tests.helpers import autocommit, row, scalar

AS_OF = datetime(2026, 11, 20, 18, 0, 0)
BY_HAND = "SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()"
# psql's figure and the horizon it is measured from; age + datfrozenxid is the next XID the age counts to
BY_HAND_WITH_HORIZON = ("SELECT age(datfrozenxid), datfrozenxid::text::bigint FROM pg_database "
                        "WHERE datname = current_database()")
WINDOWS = 10


def _check(settings: Settings):
    ctx = RunContext(runbook="weekly", settings=settings, as_of=AS_OF)
    return wraparound.transaction_id_age(ctx)[0]


def _check_between_readings(settings: Settings, url: str) -> tuple[Finding, int]:
    """The check's finding, proven to be psql's figure; and the database's datfrozenxid at the time.

    XIDs are handed out cluster-wide: while a test runs, autovacuum's ANALYZE in
    other databases on the test cluster (and other tests' leftovers) take them, so
    the age psql shows grows between any two reads. The check's figure is psql's
    when it lies between a reading just before it and one just after, with no
    freeze in between (the same datfrozenxid at both): equal on a quiet cluster.
    """
    for _ in range(WINDOWS):
        age_before, horizon_before = row(url, BY_HAND_WITH_HORIZON)
        finding = _check(settings)
        age_after, horizon_after = row(url, BY_HAND_WITH_HORIZON)
        if horizon_before == horizon_after:
            assert age_before <= finding.value <= age_after, "the figure an operator reads with psql"
            return finding, horizon_before
    pytest.fail(f"datfrozenxid moved in each of {WINDOWS} readings: something kept freezing this database")


def test_the_age_is_psqls_and_follows_the_xids_handed_out_and_a_freeze(make_database):
    url = make_database("ccops")
    settings = Settings(database_url=url)
    before, horizon = _check_between_readings(settings, url)
    assert before.status == Status.OK and before.threshold == 1_300_000_000
    oldest, own = row(url, "SELECT (SELECT max(age(relfrozenxid)) FROM pg_class WHERE relkind IN ('r','m','t')), "
                           "age(datfrozenxid) FROM pg_database WHERE datname = current_database()")
    assert oldest == own, "a database's age is its oldest table's (both read in one statement)"

    autocommit(url, *["SELECT txid_current()"] * 200)  # each in its own transaction: 200 XIDs
    grown, grown_horizon = _check_between_readings(settings, url)
    assert grown.value + grown_horizon >= before.value + horizon + 200, "the next XID moved past the 200 handed out"

    autocommit(url, "VACUUM (FREEZE)")
    frozen, frozen_horizon = _check_between_readings(settings, url)
    assert frozen_horizon > grown_horizon and frozen.value < grown.value
    assert "transactions old" in frozen.summary and "oldest table" in frozen.summary


def test_ccops_toml_moves_the_levels(make_database, tmp_path: Path, monkeypatch):
    url = make_database("ccops")
    age = scalar(url, BY_HAND)
    config = tmp_path / "ccops.toml"
    config.write_text(f'[database]\nurl = "{url}"\n\n[thresholds.postgres]\n'
                      f"xid_age = {{ warning = {max(age - 1, 0)}, critical = 2000000000 }}\n")
    monkeypatch.delenv("CCOPS_DATABASE_URL", raising=False)
    warned = _check(load_settings(str(config)))
    assert warned.status == Status.WARNING and warned.threshold == max(age - 1, 0)

    config.write_text(f'[database]\nurl = "{url}"\n\n[thresholds.postgres]\nxid_age = {{ warning = 0, critical = 0 }}\n')
    assert _check(load_settings(str(config))).status == Status.CRITICAL
