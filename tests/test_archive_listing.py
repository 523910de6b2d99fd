"""`ccops reports list`, the dead man's switch and `reports ack RUNBOOK/STAMP` read the runs from the index state.

archive.list_records used to read every run record (seconds at 100,000 runs);
it now takes the summaries from the index state's shards, reading only what
changed since the last index update (as the update would, writing nothing),
and falls back to the records when the state is missing or distrusted. The
oracle is archive.load_summaries, which reads every record: after acks, a
recheck, a late run (not yet indexed), a retention prune, a damaged or missing
state, both must say the same, summary for summary.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ccops import archive
from ccops.archive import indexstate, records
from ccops.archive.html import render_index
from ccops.archive.rechecks import RECHECK_KIND, recheck_path
from tests.test_index_state import age, write_run
from tests.test_index_template import HOSTILE, Elements


@pytest.fixture
def reviewed(tmp_path):
    """Two months of a health check every 5 hours and a daily with failures, indexed, then reviewed:
    two critical runs acknowledged, one rechecked."""
    root = tmp_path / "outputs"
    start = datetime(2026, 9, 25)
    for n in range(0, 24 * 45, 5):
        write_run(root, "health_check", start + timedelta(hours=n), n)
    for d in range(45):
        write_run(root, "daily", start + timedelta(days=d, hours=8), d, outcome="failed" if d % 9 == 4 else None)
    age(root)
    archive.rebuild_index(root)
    critical = [r for r in archive.load_summaries(root) if r["outcome"] == "critical"]
    archive.acknowledge(root / critical[0]["paths"]["json"], "alice@ops-1", "disk cleaned")
    archive.acknowledge(root / critical[-1]["paths"]["json"], "bob@ops-1")
    recheck_path(root / critical[-1]["paths"]["json"]).write_text(json.dumps({"kind": RECHECK_KIND, "rechecks": [
        {"rechecked_at": "2026-11-10T09:00:00Z", "reproduces": False, "verdict": "differs"}]}))
    archive.rebuild_index(root)
    return root


def counting_reads(monkeypatch) -> Callable[[], int]:
    """How many run records were read since: read_run is where every record is opened."""
    calls = []
    real = records.read_run

    def read_run(path: Path, siblings: Any) -> Any:
        calls.append(path)
        return real(path, siblings)

    monkeypatch.setattr(indexstate, "read_run", read_run)
    monkeypatch.setattr(records, "read_run", read_run)
    return lambda: len(calls)


def same_listings(root: Path) -> list[dict[str, Any]]:
    """list_records and its filters give what a read of every record gives."""
    everything = archive.load_summaries(root)
    assert archive.list_records(root) == everything
    for runbook in ("health_check", "daily", "daily.ipynb", "nothing"):
        mine = [r for r in everything if r["runbook"] == runbook.removesuffix(".ipynb")]
        assert archive.list_records(root, runbook=runbook) == mine
        for newest in (1, 7, 60, 400):  # within one folder, across a month's folders, more than there are
            assert archive.list_records(root, runbook=runbook, newest=newest) == mine[:newest]
    assert archive.list_records(root, outcome="failed") == [r for r in everything if r["outcome"] == "failed"]
    assert archive.list_records(root, runbook="daily", outcome="ok", newest=3) == [
        r for r in everything if r["runbook"] == "daily" and r["outcome"] == "ok"][:3]
    assert archive.list_records(root, newest=25) == everything[:25]
    return everything


def test_reviewed_runs_are_listed_from_the_state_without_reading_a_record(reviewed, monkeypatch):
    reads = counting_reads(monkeypatch)
    listed = archive.list_records(reviewed)
    assert reads() == 0, "every summary from the shards"
    monkeypatch.undo()
    assert listed == same_listings(reviewed)
    acked = [r for r in listed if r["acks"]]
    assert [[a["by"] for a in r["acks"]] for r in acked] == [["alice@ops-1"], ["bob@ops-1"]]
    assert [r["recheck"]["verdict"] for r in listed if r["recheck"]] == ["differs"]
    assert all(r["changes"] is not None for r in listed if r["outcome"] in archive.COMPLETED and r is not
               next(x for x in reversed(listed) if x["runbook"] == r["runbook"] and x["outcome"] in archive.COMPLETED))


def test_a_run_not_yet_indexed_is_listed_with_its_changes_and_nothing_is_written(reviewed, monkeypatch):
    """A late run lands in an older month and the index is not updated (a full disk, a crash): the listing
    still has it, and the next run of its runbook is compared with it, as a read of the records says."""
    state = reviewed / indexstate.STATE_DIR
    before = {p: p.stat().st_mtime_ns for p in [*state.rglob("*"), reviewed / "index.html"]}
    write_run(reviewed, "daily", datetime(2026, 9, 30, 23, 59), 2)  # CRITICAL, after September's last daily
    reads = counting_reads(monkeypatch)
    listed = archive.list_records(reviewed, runbook="daily")
    assert reads() == 1, "only the new record"
    monkeypatch.undo()
    late = next(r for r in listed if r["start"] == "2026-09-30T23:59:00Z")
    after = listed[listed.index(late) - 1]
    assert after["outcome"] in archive.COMPLETED and after["changes"]["since_run"] == late["run_id"]
    same_listings(reviewed)
    assert {p: p.stat().st_mtime_ns for p in before} == before, "listing writes nothing"
    assert {p for p in state.rglob("*")} == set(before) - {reviewed / "index.html"}


def test_pruned_runs_leave_the_listing(reviewed):
    plan = archive.plan_retention(reviewed, datetime(2026, 12, 1), 40)
    assert plan.delete
    archive.apply_retention(plan)
    listed = same_listings(reviewed)
    gone = {run.stem.name for run in plan.delete}
    assert gone and not gone & {Path(r["paths"]["json"]).name.removesuffix(".json") for r in listed}
    # pruned again without an index update (the files deleted by hand): still the records' answer
    for run in archive.plan_retention(reviewed, datetime(2026, 12, 20), 30).delete:
        for path in run.files:
            path.unlink()
    same_listings(reviewed)


@pytest.mark.parametrize("damage", ["garbage manifest", "shard deleted", "no state", "no index at all"])
def test_a_missing_or_damaged_state_lists_from_the_records(reviewed, damage, monkeypatch):
    state = reviewed / indexstate.STATE_DIR
    if damage == "garbage manifest":
        (state / indexstate.MANIFEST).write_text('{"kind": "ccops-index-state", "version": 1, "dirs": {')
    elif damage == "shard deleted":
        next((state / indexstate.SHARDS).iterdir()).unlink()
    else:
        shutil.rmtree(state)
        if damage == "no index at all":
            (reviewed / "index.html").unlink()
            (reviewed / "index.json").unlink()
    files = {p: p.read_bytes() for p in reviewed.rglob("*") if p.is_file()}
    reads = counting_reads(monkeypatch)
    listed = archive.list_records(reviewed)
    assert reads() == len(listed) > 0, "read from the records"
    monkeypatch.undo()
    same_listings(reviewed)
    assert {p: p.read_bytes() for p in reviewed.rglob("*") if p.is_file()} == files, "a listing repairs nothing"


def test_a_run_named_by_its_stamp_is_found_from_the_state(reviewed, monkeypatch):
    target = archive.load_summaries(reviewed)[3]
    stamp = Path(target["paths"]["json"]).name.split("-")[0]
    reads = counting_reads(monkeypatch)
    found = archive.resolve_record(reviewed, f"{target['runbook']}/{stamp}")
    assert found == reviewed / target["paths"]["json"] and reads() == 0


def test_the_rows_of_the_all_runs_table_escape_every_value():
    """html.run_row writes the rows without the template: every value from a record is text there."""
    record = {"runbook": HOSTILE, "start": HOSTILE, "outcome": HOSTILE, "duration_s": 3.0, "error": HOSTILE,
              "counts": {HOSTILE: 2}, "mark": HOSTILE, "parameters": {HOSTILE: HOSTILE},
              "not_configured": [{"check": HOSTILE, "setting": HOSTILE}],
              "incident": {"status": HOSTILE, "check": HOSTILE, "summary": HOSTILE},
              "changes": {"new": [{"check": HOSTILE, "from": HOSTILE, "to": HOSTILE}]},
              "acks": [{"by": HOSTILE, "at": HOSTILE, "note": HOSTILE}],
              "recheck": {"file": HOSTILE, "reproduces": False, "rechecked_at": HOSTILE, "verdict": HOSTILE},
              "paths": {"json": f"{HOSTILE}/x.json", "html": HOSTILE, "report_html": HOSTILE, "ipynb": HOSTILE}}
    page = render_index([record], month="2026-11")
    table = Elements(page.split("<table id='runs'>")[1].split("</table>")[0])
    assert not {tag for tag, _ in table.tags} - {"thead", "tr", "th", "tbody", "td", "div", "span", "code", "ul",
                                                  "li", "a"}, "no element from a record"
    assert not [name for _, attrs in table.tags for name in attrs if name.startswith("on")]
    assert sum(HOSTILE in text for text in table.text) >= 12, "each value shown as text, in full"
    [row] = [attrs for tag, attrs in table.tags if tag == "tr" and "data-runbook" in attrs]
    assert row["data-runbook"] == row["data-outcome"] == HOSTILE, "attribute values come back intact"
    links = [attrs["href"] for tag, attrs in table.tags if tag == "a"]
    assert len(links) == 4 and all("<" not in href and " " not in href for href in links[1:]), "paths URL-quoted"
