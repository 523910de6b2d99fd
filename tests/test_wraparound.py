"""postgres.wraparound on a real database: the figure is psql's, it grows with every XID the server
hands out, a database-wide VACUUM (FREEZE) brings it back down, and ccops.toml moves its levels."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ccops.checks.postgres import wraparound
from ccops.core.context import RunContext
from ccops.core.findings import Status
from ccops.core.settings import Settings, load_settings
from tests.helpers import autocommit, scalar

AS_OF = datetime(2026, 11, 20, 18, 0, 0)
BY_HAND = "SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()"


def _check(settings: Settings):
    ctx = RunContext(runbook="weekly", settings=settings, as_of=AS_OF)
    return wraparound.transaction_id_age(ctx)[0]


def test_the_age_is_psqls_and_follows_the_xids_handed_out_and_a_freeze(make_database):
    url = make_database("ccops")
    settings = Settings(database_url=url)
    before = _check(settings)
    assert before.status == Status.OK and before.threshold == 1_300_000_000
    assert before.value == scalar(url, BY_HAND), "the figure an operator reads with psql"
    oldest = scalar(url, "SELECT max(age(relfrozenxid)) FROM pg_class WHERE relkind IN ('r','m','t')")
    assert oldest == before.value, "a database's age is its oldest table's"

    autocommit(url, *["SELECT txid_current()"] * 200)  # each in its own transaction: 200 XIDs
    grown = _check(settings)
    assert grown.value == scalar(url, BY_HAND) and grown.value >= before.value + 200

    autocommit(url, "VACUUM (FREEZE)")
    frozen = _check(settings)
    assert frozen.value == scalar(url, BY_HAND) and frozen.value < grown.value
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
