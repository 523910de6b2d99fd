"""The out-of-disk runbook on a disk that is really full: a 3 MB tmpfs at 100 %.

ccops' home, its archive, the app's logs and the backups all live on that one
disk, as they do on a small server. The runbook must write nothing there before
it has freed space (the dry run's list and the compressed copies wait in the
system temp dir), free space in the order the runbook lists it, and then
archive its report. What it compressed must still be read by the log checks.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from ccops.cli import main
from ccops.deploy import diskspace
from ccops.runbook.parameters import declared_parameters

RUNBOOK = "emergency/out_of_disk_space"
NOTEBOOK = Path(__file__).resolve().parent.parent / "runbooks" / "emergency" / "out_of_disk_space.ipynb"
AS_OF = "2026-11-20T18:00:00Z"
ROTATED = ("2026-11-17", "2026-11-18", "2026-11-19")
LIVE = "2026-11-20"


def record(ts: str, level: str, message: str, where: str = "src.agents.base_agent:run") -> str:
    """One record in the app's loguru format (FACTS.md)."""
    return f"{ts} | {level:<8} | {where} - {message}\n"


def day_log(day: str, lines: int) -> str:
    """A day of the app's log: INFO noise, and 20 ERROR records between 02:00 and 03:00."""
    out = [record(f"{day} 02:{i * 3:02d}:00", "ERROR", f"Failed to post tweet: 429 Too Many Requests ({i})",
                  "src.api_integrations.twitter_api:post_tweet") for i in range(20)]
    for i in range(lines):
        out.append(record(f"{day} {4 + i * 19 // lines:02d}:{i % 60:02d}:{i * 7 % 60:02d}", "INFO",
                          f"MarketScannerAgent completed scan_markets in 1.{i % 100:02d}s"))
    return "".join(out)


@pytest.fixture
def full_disk(tmp_path, ccops_env, monkeypatch, make_database):
    """A 3 MB tmpfs holding home, archive, logs and backups, filled to 100 %."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount refused, no tmpfs to fill: {proc.stderr.strip() or proc.returncode}")
    try:
        for name, variable in (("home", "CCOPS_HOME"), ("outputs", "CCOPS_ARCHIVE_DIR"), ("logs", "CCOPS_LOG_DIR"),
                               ("backups", "CCOPS_BACKUP_DIR")):
            (disk / name).mkdir()
            monkeypatch.setenv(variable, str(disk / name))
        monkeypatch.setenv("CCOPS_BACKEND", "none")
        monkeypatch.setenv("CCOPS_DATABASE_URL", make_database("ccops"))
        logs = disk / "logs"
        for day in ROTATED:
            (logs / f"content_creator_{day}.log").write_text(day_log(day, 6000))
        (logs / f"content_creator_{LIVE}.log").write_text(day_log(LIVE, 1500))
        (logs / "output.log").write_text(day_log(LIVE, 200))  # stdout: a copy, never counted, never touched
        # a backup that never was one (cut short), long past retention
        (disk / "backups" / "contentcreator_20260801_020000.sql").write_bytes(b"-- pg_dump cut short\n" * 10000)
        with open(disk / "other-data", "ab") as filler:  # whatever else filled the disk
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        assert diskspace.filesystem_usage(disk)["free"] == 0
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
        if disk.is_mount():
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def errors_in_hour(day: str, capsys) -> int:
    assert main(["logs", "summary", "--since", f"{day}T02:00:00Z", "--until", f"{day}T03:00:00Z", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "output.log" not in data["files"]
    return data["by_level"]["ERROR"]


def assert_freed_in_order(disk: Path, before: dict[str, bytes], capsys) -> None:
    logs = disk / "logs"
    assert diskspace.filesystem_usage(disk)["free"] > 1_500_000
    assert not (disk / "backups" / "contentcreator_20260801_020000.sql").exists(), "the failed backup past retention went"
    names = sorted(p.name for p in logs.iterdir())
    assert names == sorted([f"content_creator_{day}.log.gz" for day in ROTATED]
                           + [f"content_creator_{LIVE}.log", "output.log"]
                           + [n for n in names if n.startswith(f"content_creator_{LIVE}.log.") and n.endswith("Z.gz")])
    for day in ROTATED:
        with gzip.open(logs / f"content_creator_{day}.log.gz", "rb") as handle:
            assert handle.read() == before[f"content_creator_{day}.log"]
    archived = [n for n in names if n.startswith(f"content_creator_{LIVE}.log.")]
    assert len(archived) == 1, "the live log was archived, then truncated"
    with gzip.open(logs / archived[0], "rb") as handle:
        assert handle.read() == before[f"content_creator_{LIVE}.log"]
    assert (logs / f"content_creator_{LIVE}.log").stat().st_size == 0
    assert not [p for p in disk.rglob("*") if p.name.endswith((".partial", ".tmp"))], "no half-written file"
    for day in (*ROTATED, LIVE):  # what the clean-up compressed, every log check still reads
        assert errors_in_hour(day, capsys) == 20, day


def run_cells(params: dict) -> dict:
    """The runbook's own code cells, run in this process with its parameters set (no runner)."""
    notebook = json.loads(NOTEBOOK.read_text())
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)  # noqa: S102 - our runbook
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace.update(params)
    return namespace


def test_runbook_parameters_are_what_the_tests_pass() -> None:
    declared = declared_parameters(NOTEBOOK)
    assert {"as_of", "dry_run", "confirm", "truncate_live_log"} <= set(declared)
    assert declared["dry_run"]["default"] == "True" and declared["confirm"]["default"] == "False"


def test_runbook_steps_free_a_full_disk_writing_nothing_first(full_disk: Path, capsys) -> None:
    before = snapshot(full_disk / "logs")
    home_before = snapshot(full_disk / "home")
    dry = run_cells({"as_of": AS_OF, "dry_run": True, "confirm": False, "truncate_live_log": True})
    found = {f.check: f for f in dry["ctx"].findings}
    assert found["disk.filesystems"].status.value == "CRITICAL"
    assert "compress rotated logs: 3 files" in found["disk.plan.compress_logs"].summary
    assert "disk.plan.compress_logs.review" not in found, "the dry run's list was kept (in the temp dir)"
    assert snapshot(full_disk / "logs") == before and snapshot(full_disk / "home") == home_before
    assert diskspace.filesystem_usage(full_disk)["free"] == 0, "the dry run wrote nothing to the full disk"

    confirmed = run_cells({"as_of": AS_OF, "dry_run": False, "confirm": True, "truncate_live_log": True})
    found = {f.check: f for f in confirmed["ctx"].findings}
    for step in ("free_backups", "compress_logs", "truncate_live_log"):
        assert found[f"action.{step}"].status.value == "OK", found[f"action.{step}"].summary
    timeline = [r.step for r in confirmed["ctx"].results.actions if r.executed]
    assert timeline == ["free_backups", "compress_logs", "truncate_live_log"], "freed in the runbook's order"
    assert found["disk.freed"].value > 1_500_000
    capsys.readouterr()
    assert_freed_in_order(full_disk, before, capsys)


def test_ccops_run_on_a_full_disk_frees_space_then_archives_the_report(full_disk: Path, capsys) -> None:
    before = snapshot(full_disk / "logs")
    code = main(["run", RUNBOOK, "-p", "as_of", AS_OF, "-p", "truncate_live_log", "True"])
    err = capsys.readouterr().err
    assert code == 3 and "ENOSPC" in err and "Traceback" not in err, err  # nothing freed: no room for its report
    assert snapshot(full_disk / "logs") == before, "the dry run changed nothing"
    assert diskspace.filesystem_usage(full_disk)["free"] == 0

    code = main(["run", RUNBOOK, "-p", "as_of", AS_OF, "-p", "truncate_live_log", "True",
                 "-p", "dry_run", "False", "-p", "confirm", "True"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2) and "Traceback" not in err, out + err
    records = list((full_disk / "outputs" / "emergency" / "out_of_disk_space").rglob("*.json"))
    assert len(records) == 1, "the confirmed run's report is archived on the disk it freed"
    archived = json.loads(records[0].read_text())
    assert archived["parameters"]["confirm"] is True and archived["outcome"] in ("ok", "warning", "critical")
    assert records[0].with_suffix(".ipynb").exists() and records[0].with_suffix(".html").exists()
    found = {f["check"]: f for f in archived["findings"]}
    for step in ("free_backups", "compress_logs", "truncate_live_log"):
        assert found[f"action.{step}"]["status"] == "OK", found[f"action.{step}"]["summary"]
    assert found["disk.freed"]["value"] > 1_500_000
    assert_freed_in_order(full_disk, before, capsys)
