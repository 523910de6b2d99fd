"""The index answers a reviewer's questions (issue 15, item 6).

Three real runs of a small runbook through ccops.runbook.runner (a WARNING dry run,
a live CRITICAL run, a run killed at its time limit), then `ccops reports ack`
through the CLI; the index is parsed with html.parser.
"""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ccops import archive
from ccops.cli import main
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.helpers import write_notebook

CELLS = [
    ("parameters", 'as_of = ""  # ISO timestamp (UTC)\n'
                   'a = "WARNING"  # status of t.a\n'
                   'b = "OK"  # status of t.b\n'
                   "hang = False  # sleep past the time limit\n"
                   "dry_run = True  # describe only"),
    ("code", "import time\n\nfrom ccops.core.findings import Finding, record"),
    ("code", 'record([Finding("t.a", a, "check a"), Finding("t.b", b, "check b")])'),
    ("code", "time.sleep(60 if hang else 0)"),
]


def write_runbook(folder: Path) -> None:
    write_notebook(folder / "rev.ipynb", CELLS)


class Tables(HTMLParser):
    """Rows (attrs, cell texts, cell html-ish text) of the tables with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.ids: list[str] = []
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tr" and self._table is not None and "data-runbook" in attrs:
            self._row = {"attrs": attrs, "cells": [], "links": []}
            self._table.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = ""
            self._row["cells"].append("")
        elif tag == "a" and self._row is not None:
            self._row["links"].append(attrs.get("href"))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] += data


@pytest.fixture(scope="module")
def archive_with_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    books = root / "books"
    write_runbook(books)
    results = []
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("CCOPS_") or name == "DATABASE_URL":
                patch.delenv(name, raising=False)
        patch.chdir(root)
        patch.setenv("CCOPS_HOME", str(root / "home"))
        patch.setenv("CCOPS_ARCHIVE_DIR", str(root / "outputs"))
        patch.setenv("CCOPS_RUNBOOKS_DIR", str(books))
        settings = load_settings()
        for params, timeout in (
            ([], 120),
            ([["a", "CRITICAL"], ["b", "WARNING"], ["dry_run", "False"]], 120),
            ([["hang", "True"]], 5),  # killed in the hang cell: the kernel is up within 3 s
        ):
            results.append(runner.run_runbook(settings, "rev", params, timeout=timeout, runbooks_dir=books))
    return root, results


def index(root: Path) -> Tables:
    page = Tables()
    page.feed((root / "outputs" / "index.html").read_text())
    return page


def test_runs_carry_their_mark_and_what_changed(archive_with_runs):
    root, results = archive_with_runs
    assert [r.record["outcome"] for r in results] == ["warning", "critical", "timed-out"]
    runs = {row["attrs"]["data-outcome"]: row for row in index(root).tables["runs"]}
    critical, warning = runs["critical"], runs["warning"]
    assert "LIVE" in critical["cells"][5] and "dry_run=False" in critical["cells"][5]
    assert "DRY RUN" in warning["cells"][5]
    changes = critical["cells"][6]
    assert "worse: t.a WARNING → CRITICAL" in changes and "new: t.b OK → WARNING" in changes
    assert "-" == warning["cells"][6].strip(), "the first run has nothing to compare with"
    summaries = {s["outcome"]: s for s in archive.load_summaries(root / "outputs")}
    assert summaries["critical"]["changes"]["since_run"] == results[0].record["run_id"]
    assert summaries["timed-out"]["changes"] is None


def test_the_timed_out_run_does_not_hide_the_critical_one_before_it(archive_with_runs):
    root, results = archive_with_runs
    latest = index(root).tables["latest"]
    assert len(latest) == 1 and latest[0]["attrs"]["data-outcome"] == "timed-out"
    cell = latest[0]["cells"][4]
    assert "latest completed run: critical" in cell and "CRITICAL t.a" in cell
    critical_report = results[1].record["paths"]["report_html"]
    assert critical_report in latest[0]["links"], "the critical run's code-free report is one click away"


def test_reports_link_the_code_free_report(archive_with_runs):
    root, results = archive_with_runs
    for row in index(root).tables["runs"]:
        report = row["links"][0]
        assert report.endswith(".report.html") and (root / "outputs" / report).is_file()


def test_ack_is_recorded_beside_the_record_and_shown(archive_with_runs, capsys, monkeypatch):
    root, results = archive_with_runs
    monkeypatch.chdir(root)
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", str(root / "outputs"))
    monkeypatch.setenv("CCOPS_HOME", str(root / "home"))
    page = index(root)
    assert "unreviewed" in page.ids
    critical = next(r for r in page.tables["runs"] if r["attrs"]["data-outcome"] == "critical")
    assert critical["attrs"].get("class") == "unreviewed" and "UNREVIEWED" in critical["cells"][7]

    record_path = root / "outputs" / results[1].record["paths"]["json"]
    before = record_path.read_bytes()
    stamp = record_path.name.split("-")[0]
    assert main(["reports", "ack", "rev/" + stamp]) != 0, "no terminal, no --yes: nothing recorded"
    assert not archive.ack_path(record_path).exists()
    capsys.readouterr()
    assert main(["reports", "ack", "rev/" + stamp, "--note", "disk alert, handled", "--yes"]) == 0
    assert "reviewed by" in capsys.readouterr().out
    assert record_path.read_bytes() == before, "the run record is never rewritten"
    assert archive.ack_path(record_path).is_file()

    page = index(root)
    assert "unreviewed" not in page.ids
    critical = next(r for r in page.tables["runs"] if r["attrs"]["data-outcome"] == "critical")
    assert critical["attrs"].get("class") != "unreviewed"
    assert runner.user_at_host() in critical["cells"][7] and "disk alert, handled" in critical["cells"][7]
    # the ack belongs to its run: retention keeps or deletes them together
    run = next(r for r in archive.scan_runs(root / "outputs") if r.outcome == "critical")
    assert archive.ack_path(record_path) in run.files and run.files[0] == record_path
