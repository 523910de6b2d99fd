"""The incremental index (issue 17.4): after every kind of change it says what a full read of the records says.

The oracle is archive.load_summaries, which reads every record; after each
change (a new run, an ack, a recheck, a run out of order, a retention delete,
a month emptied) the runs the index holds must equal it, summary for summary,
`changes` and acks included, while only the changed folder is read again.
Records are in the runner's layout and format (runbook/YYYY/MM/<stamp>-<name>.json,
findings, counts, paths). Files are dated an hour back once written, as they
are in an archive that is not being written to this second (a folder touched
within the last seconds is always looked at again: RACY_NS).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ccops import archive
from ccops.archive import indexstate
from ccops.archive.rechecks import RECHECK_KIND, recheck_path

STATUSES = ("OK", "WARNING", "CRITICAL", "OK", "UNKNOWN")


def write_run(root: Path, runbook: str, start: datetime, n: int, outcome: str | None = None) -> Path:
    """A run record as the runner writes it (the notebook and pages beside it), findings varying with n."""
    status = STATUSES[n % len(STATUSES)]
    outcome = outcome or {"OK": "ok", "WARNING": "warning", "CRITICAL": "critical", "UNKNOWN": "unknown"}[status]
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    stem = f"{runbook}/{start:%Y}/{start:%m}/{stamp}-{runbook.rsplit('/', 1)[-1]}"
    findings = [{"check": "health.database", "status": status, "summary": f"run {n}", "value": n, "threshold": 1},
                {"check": "health.agent_activity", "status": "OK", "summary": "ok", "value": 100 + n, "threshold": 1}]
    record = {
        "runbook": runbook, "run_id": f"{stamp}-{n:08x}", "target": None, "parameters": {"as_of": f"{start:%Y-%m-%dT%H:%M:%SZ}"},
        "parameter_defaults": {}, "as_of": f"{start:%Y-%m-%dT%H:%M:%SZ}", "start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
        "end": f"{start + timedelta(seconds=3):%Y-%m-%dT%H:%M:%SZ}", "duration_s": 3.0 + n % 7, "outcome": outcome,
        "exit_code": 0, "error": "cell 3 raised" if outcome == "failed" else None, "findings": findings,
        "counts": {s: sum(f["status"] == s for f in findings) for s in ("OK", "WARNING", "CRITICAL", "UNKNOWN")},
        "incident": None, "not_configured": [], "undecided": [], "actions": [], "mode": "scheduled",
        "user_host": "ops@host", "paths": {k: stem + s for k, s in (("ipynb", ".ipynb"), ("html", ".html"),
                                                                    ("report_html", ".report.html"), ("json", ".json"))},
    }
    path = root / record["paths"]["json"]
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".ipynb", ".html", ".report.html"):
        (root / (stem + suffix)).write_text("x")
    path.write_text(json.dumps(record, indent=1))
    return path


def age(root: Path, seconds: int = 3600) -> None:
    """Date every file and folder of the archive (not the index state) `seconds` back."""
    then = time.time() - seconds
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (then, then))
        os.utime(dirpath, (then, then))


def indexed(root: Path) -> list[dict]:
    return list(indexstate.all_runs(root))


def same_as_records(root: Path) -> None:
    assert indexed(root) == archive.load_summaries(root)


@pytest.fixture
def populated(tmp_path):
    """Three months of an hourly-ish health check and a daily with a failure, indexed once."""
    root = tmp_path / "outputs"
    start = datetime(2026, 9, 20)
    for n in range(0, 24 * 60, 7):  # every 7 hours for 60 days: runs in 2026-09, -10, -11
        write_run(root, "health_check", start + timedelta(hours=n), n)
    for d in range(60):
        write_run(root, "daily", start + timedelta(days=d, hours=8), d, outcome="failed" if d % 9 == 4 else None)
    write_run(root, "emergency/system_down", start + timedelta(days=3), 2)
    age(root)
    runs = archive.rebuild_index(root)
    assert runs.update.full and runs.update.reason == ""  # first build: from the records, nothing to distrust
    return root


def test_an_update_with_nothing_new_reads_no_record(populated):
    runs = archive.rebuild_index(populated)
    assert not runs.update.full and runs.update.runs_read == 0
    assert len(runs) == 206 + 60 + 1
    same_as_records(populated)


def test_a_new_run_is_read_alone_and_compared_with_the_run_before_it(populated):
    before = archive.rebuild_index(populated)
    path = write_run(populated, "health_check", datetime(2026, 11, 19, 3), 2)  # CRITICAL after the last one
    runs = archive.rebuild_index(populated)
    assert runs.update.runs_read == 1 and runs.update.folders_read <= 2  # its folder (and the root's pages)
    assert len(runs) == len(before) + 1
    newest = runs[0]
    assert newest["paths"]["json"] == path.relative_to(populated).as_posix()
    assert newest["changes"]["since_run"] == [r for r in archive.load_summaries(populated)
                                              if r["runbook"] == "health_check"][1]["run_id"]
    same_as_records(populated)
    page = (populated / "index.html").read_text()
    assert f"{len(runs)} runs archived" in page and newest["run_id"] in json.dumps(
        json.loads((populated / "index.json").read_text())[0])


def test_an_ack_after_the_run_updates_its_entry(populated):
    critical = next(r for r in archive.load_summaries(populated) if r["outcome"] == "critical")
    record = populated / critical["paths"]["json"]
    page = (populated / "index.html").read_text()
    assert "CRITICAL run" in page and "not reviewed" in page
    unreviewed = int(page.split("<p id='unreviewed'><span class='unrev'>")[1].split(" ")[0])
    archive.acknowledge(record, "alice@host", "seen")
    runs = archive.rebuild_index(populated)
    assert runs.update.runs_read == 0, "the record is unchanged; only its ack is read"
    entry = next(r for r in runs if r["run_id"] == critical["run_id"])
    assert [a["by"] for a in entry["acks"]] == ["alice@host"]
    same_as_records(populated)
    page = (populated / "index.html").read_text()
    assert f"{unreviewed - 1} CRITICAL run" in page
    month = (populated / f"index-{critical['start'][:7]}.html").read_text()
    assert "alice@host" in month and "seen" in month


def test_a_recheck_beside_a_record_shows(populated):
    first = archive.load_summaries(populated)[-1]
    record = populated / first["paths"]["json"]
    recheck_path(record).write_text(json.dumps({"kind": RECHECK_KIND, "rechecks": [
        {"rechecked_at": "2026-12-01T10:00:00Z", "reproduces": True, "verdict": "reproduces"}]}))
    runs = archive.rebuild_index(populated)
    entry = next(r for r in runs if r["run_id"] == first["run_id"])
    assert entry["recheck"]["verdict"] == "reproduces"
    same_as_records(populated)
    assert "rechecked 2026-12-01: reproduces" in (populated / f"index-{first['start'][:7]}.html").read_text()


def test_a_late_run_in_an_older_month_changes_the_comparisons_after_it(populated):
    """An interactive run finished late lands in September: October's first daily is now compared with it."""
    write_run(populated, "daily", datetime(2026, 9, 30, 23, 59), 2)
    archive.rebuild_index(populated)
    same_as_records(populated)


def test_retention_removes_runs_months_and_their_pages(populated):
    assert (populated / "index-2026-09.html").is_file()
    plan = archive.plan_retention(populated, datetime(2026, 12, 1), 45)
    assert plan.delete
    archive.apply_retention(plan)
    same_as_records(populated)
    left = archive.load_summaries(populated)
    september = [r for r in left if r["start"].startswith("2026-09")]
    assert [r["runbook"] for r in september] == ["emergency/system_down"], "only the protected latest run stays"
    page = (populated / "index-2026-09.html").read_text()
    assert page.split("<table id='runs'>")[1].count("<tr data-runbook=") == 1
    # a month emptied altogether loses its page and its link
    plan = archive.plan_retention(populated, datetime(2027, 3, 1), 1)
    archive.apply_retention(plan)
    same_as_records(populated)
    months = {r["start"][:7] for r in archive.load_summaries(populated)}
    assert "2026-10" not in months and not (populated / "index-2026-10.html").exists()
    page = (populated / "index.html").read_text()
    assert "index-2026-10.html" not in page and all(f"index-{m}.html" in page for m in months)
    index = json.loads((populated / "index.json").read_text())
    assert {r["run_id"] for r in index} <= {r["run_id"] for r in archive.load_summaries(populated)}


def test_the_front_page_holds_the_newest_runs_and_links_every_month(populated, monkeypatch):
    monkeypatch.setattr(indexstate, "RECENT_RUNS", 50)
    runs = archive.rebuild_index(populated, full=True)
    records = archive.load_summaries(populated)
    index = json.loads((populated / "index.json").read_text())
    assert [r["run_id"] for r in index] == [r["run_id"] for r in records[:50]]
    assert len(runs) == len(records) > 50
    page = (populated / "index.html").read_text()
    assert page.split("<table id='runs'>")[1].count("<tr data-runbook=") == 50
    latest = page.split("<table id='latest'>")[1].split("</table>")[0]
    assert latest.count("<tr data-runbook=") == 3, "every runbook, even one whose only run is weeks old"
    months = sorted({r["start"][:7] for r in records})
    rows = sum((populated / f"index-{m}.html").read_text().split("<table id='runs'>")[1].count("<tr data-runbook=")
               for m in months)
    assert rows == len(records)


@pytest.mark.parametrize("damage", ["garbage manifest", "shard edited", "shard deleted", "shard flipped"])
def test_a_damaged_state_is_rebuilt_from_the_records_and_said_so(populated, damage, capsys):
    state = populated / indexstate.STATE_DIR
    manifest = json.loads((state / indexstate.MANIFEST).read_text())
    newest = max(manifest["folders"].values(), key=lambda e: e["last"])
    shard = state / indexstate.SHARDS / newest["shard"]
    if damage == "garbage manifest":
        (state / indexstate.MANIFEST).write_text('{"kind": "ccops-index-state", "version": 1, "dirs": {')
    elif damage == "shard edited":
        shard.write_text(shard.read_text().replace('"ok"', '"critical"', 1) + " ")
    elif damage == "shard deleted":
        shard.unlink()
    else:  # same size, same mtime: only its checksum tells, when it is read
        data = bytearray(shard.read_bytes())
        st = shard.stat()
        data[len(data) // 2] ^= 0x01
        shard.write_bytes(bytes(data))
        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    capsys.readouterr()
    runs = archive.rebuild_index(populated)
    err = capsys.readouterr().err
    assert runs.update.full and runs.update.reason, damage
    assert err.startswith("ccops: warning: archive index state not trusted: ") and "rebuilt it from the run records" in err
    assert runs.update.reason in (populated / "index.html").read_text().replace("&#39;", "'")
    same_as_records(populated)
    assert not archive.rebuild_index(populated).update.full, "trusted again once rebuilt"


def test_a_missing_state_is_rebuilt_quietly(populated, capsys):
    import shutil

    shutil.rmtree(populated / indexstate.STATE_DIR)
    capsys.readouterr()
    runs = archive.rebuild_index(populated)
    assert runs.update.full and capsys.readouterr().err == ""
    same_as_records(populated)


def test_state_files_live_in_the_archive_with_its_modes(populated):
    files = [p for p in (populated / indexstate.STATE_DIR).rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    assert (populated / indexstate.STATE_DIR).stat().st_mode & 0o777 == 0o700
    assert not [p for p in populated.rglob("*.tmp")], "no temporary file left behind"


def test_every_link_of_the_front_page_and_a_month_page_opens_a_file(populated):
    import re
    from urllib.parse import unquote

    for page in ("index.html", "index-2026-10.html"):
        text = (populated / page).read_text()
        hrefs = {h for h in re.findall(r"href='([^']*)'", text) if not h.startswith("#")}
        assert hrefs, page
        missing = [h for h in hrefs if not (populated / unquote(h)).is_file()]
        assert not missing, (page, missing[:5])
