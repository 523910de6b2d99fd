"""Archive retention: by age, never the latest completed or latest failed run of a runbook; all files of a run go."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from ccops import archive
from ccops.cli import main
from ccops.core.settings import ConfigError, load_settings

SUFFIXES = (".ipynb", ".html", ".report.html", ".json")
KEEP_DAYS = 30


def write_run(root: Path, runbook: str, start: datetime, outcome: str | None, torn: bool = False) -> str:
    """A run's four files as the runner lays them out; outcome None: killed before its record was written."""
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    stem = f"{runbook}/{start:%Y}/{start:%m}/{stamp}-{runbook.rsplit('/', 1)[-1]}"
    base = root / stem
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in SUFFIXES[:3]:
        base.with_name(base.name + suffix).write_text(f"{suffix} of {stem} " + "x" * 100)
    if torn:
        base.with_name(base.name + ".json").write_text('{"runbook": "da')
    elif outcome is not None:
        record = {"runbook": runbook, "run_id": stamp, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "outcome": outcome, "duration_s": 1.0, "findings": [],
                  "paths": {s.strip(".").replace(".", "_"): stem + s for s in SUFFIXES}}
        base.with_name(base.name + ".json").write_text(json.dumps(record))
    return stem


def files_of(root: Path, stem: str) -> list[Path]:
    return [p for s in SUFFIXES if (p := root / (stem + s)).exists()]


@pytest.fixture
def populated(tmp_path):
    """Two runbooks, old and new runs, and which run stems retention must keep and delete."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    root = tmp_path / "outputs"
    old = now - timedelta(days=KEEP_DAYS + 100)
    keep, delete = set(), set()
    # daily: its latest completed run is old; newer runs all failed
    delete.add(write_run(root, "daily", old, "ok"))
    keep.add(write_run(root, "daily", old + timedelta(days=1), "critical"))  # latest completed, however old
    delete.add(write_run(root, "daily", old + timedelta(days=2), "failed"))  # an older failure
    delete.add(write_run(root, "daily", old + timedelta(days=3), None))  # killed mid-archive: no record
    delete.add(write_run(root, "daily", old + timedelta(days=4), "ok", torn=True))  # unreadable record
    keep.add(daily_recent := write_run(root, "daily", now - timedelta(days=10), "timed-out"))  # newer than keep_days
    keep.add(write_run(root, "daily", now - timedelta(days=1), "failed"))  # newer, and the latest failure
    # emergency/system_down: its latest failure is old, completed runs are new
    delete.add(write_run(root, "emergency/system_down", old - timedelta(days=30), "timed-out"))
    keep.add(write_run(root, "emergency/system_down", old, "failed"))  # latest failed, however old
    delete.add(write_run(root, "emergency/system_down", old + timedelta(days=1), "ok"))
    delete.add(write_run(root, "emergency/system_down", old + timedelta(days=2), "unknown"))
    keep.add(down_recent := write_run(root, "emergency/system_down", now - timedelta(days=KEEP_DAYS - 1), "warning"))
    keep.add(write_run(root, "emergency/system_down", now - timedelta(hours=1), "ok"))
    # not a run's file: never touched
    (root / "daily" / f"{old:%Y}" / f"{old:%m}" / "notes.txt").write_text("operator's notes")
    archive.rebuild_index(root)
    # with keep_days 5 these two go as well: neither is the latest of its kind
    return SimpleNamespace(root=root, now=now, keep=keep, delete=delete, shorter={daily_recent, down_recent})


def test_plan_keeps_the_latest_completed_and_failed_of_each_runbook_and_everything_new(populated):
    root, now, keep, delete = populated.root, populated.now, populated.keep, populated.delete
    plan = archive.plan_retention(root, now, KEEP_DAYS)
    relative = lambda runs: {r.stem.relative_to(root).as_posix() for r in runs}  # noqa: E731
    assert relative(plan.keep) == keep
    assert relative(plan.delete) == delete
    assert plan.bytes_freed == sum(p.stat().st_size for stem in delete for p in files_of(root, stem))
    assert sorted(plan.paths()) == sorted(p for stem in delete for p in files_of(root, stem))
    reasons = {r["run"]: r["reason"] for r in plan.rows()}
    assert any(r == "the latest completed run of daily" for r in reasons.values())
    assert any(r == "the latest failed run of emergency/system_down" for r in reasons.values())
    assert any("no run record" in r for r in reasons.values())
    # planning deletes nothing
    assert all(files_of(root, stem) for stem in keep | delete)


def test_apply_deletes_every_file_of_a_run_and_rebuilds_the_index(populated):
    root, now, keep, delete = populated.root, populated.now, populated.keep, populated.delete
    before = sum(p.stat().st_size for stem in delete for p in files_of(root, stem))
    plan = archive.plan_retention(root, now, KEEP_DAYS)
    assert archive.apply_retention(plan) == before
    assert not [p for stem in delete for p in files_of(root, stem)]
    assert all(len(files_of(root, stem)) == 4 for stem in keep)
    assert len(list(root.rglob("notes.txt"))) == 1, "files that are not a run's stay"
    index = json.loads((root / "index.json").read_text())
    assert {r["paths"]["json"].removesuffix(".json") for r in index} == keep
    # folders emptied by the prune are gone, the archive root stays
    assert not [d for d in root.rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert archive.plan_retention(root, now, KEEP_DAYS).delete == []
    assert archive.apply_retention(plan) == 0, "applying twice is harmless"


def test_cli_prune_is_a_dry_run_until_confirmed(populated, ccops_env, monkeypatch, capsys):
    root, keep, delete = populated.root, populated.keep, populated.delete
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", str(root))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal to ask on
    (ccops_env / "ccops.toml").write_text(f"[archive]\nkeep_days = {KEEP_DAYS}\n")
    assert main(["reports", "prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"{len(delete)} runs to delete, {len(keep)} kept" in out and "(dry run)" in out
    assert all(files_of(root, stem) for stem in delete)
    assert main(["reports", "prune"]) == 64, "no --yes, no terminal: nothing deleted"
    assert "not confirmed" in capsys.readouterr().err
    assert all(files_of(root, stem) for stem in delete)
    assert main(["reports", "prune", "--yes", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dry_run"] is False and result["keep_days"] == KEEP_DAYS and result["bytes_freed"] > 0
    assert {r["run"] for r in result["plan"] if r["action"] == "delete"} == delete
    assert not [p for stem in delete for p in files_of(root, stem)]
    # --keep-days overrides the file; a shorter window now deletes the older kept runs but never the latest two kinds
    assert main(["reports", "prune", "--keep-days", "5", "--yes"]) == 0
    capsys.readouterr()
    left = {r["paths"]["json"].removesuffix(".json") for r in archive.list_records(root)}
    assert left == keep - populated.shorter and len(left) == 4
    assert main(["reports", "prune", "--keep-days", "0"]) == 64
    assert "--keep-days" in capsys.readouterr().err
    (root / "index.html").unlink()
    assert main(["reports", "index"]) == 0 and "index of 4 runs" in capsys.readouterr().out
    assert (root / "index.html").is_file()


@pytest.mark.parametrize(("text", "problem"), [
    ("keep_days = 0", "archive.keep_days"),
    ("keep_days = '90'", "archive.keep_days"),
    ("keep_days = true", "archive.keep_days"),
    ("keep_days = 7.5", "archive.keep_days"),
    ("keep_dayz = 9", "archive.keep_dayz: unknown setting"),
])
def test_bad_keep_days_names_the_key_and_the_file(ccops_env, text, problem):
    path = ccops_env / "ccops.toml"
    path.write_text(f"[archive]\n{text}\n")
    with pytest.raises(ConfigError) as caught:
        archive.keep_days_setting(load_settings())
    assert problem in str(caught.value) and str(path.resolve()) in str(caught.value)


def test_keep_days_defaults_to_ninety(ccops_env):
    assert archive.keep_days_setting(load_settings()) == 90
    (ccops_env / "ccops.toml").write_text("[archive]\nkeep_days = 400\n")
    assert archive.keep_days_setting(load_settings()) == 400


def test_an_empty_or_missing_archive_has_nothing_to_prune(tmp_path):
    plan = archive.plan_retention(tmp_path / "missing", datetime(2026, 1, 1), 30)
    assert plan.delete == [] and plan.keep == [] and plan.bytes_freed == 0
