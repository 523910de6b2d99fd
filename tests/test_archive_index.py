"""The reviewers' index, from real runs: ok, warning, failed and timed-out, run the way cron runs them.

Four `ccops run` processes start at once (different runbooks, so no lock
stops them) and each rebuilds the index when it finishes; the index left at
the end must still list all four. The page is then read the way a browser
would: its tables, links, filters, and nothing fetched from elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest

from ccops.cli import main
from tests.helpers import clean_env

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
RUNS = {  # runbook -> (exit code, outcome, extra CLI arguments)
    "clean": (0, "ok", []),
    "ok": (1, "warning", []),
    "raise": (3, "failed", []),
    "emergency/hang": (3, "timed-out", ["--timeout", "6"]),
}


class Page(HTMLParser):
    """Tables by id (rows: attributes, cell texts, links), selects by id, forms, scripts and svg ids."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self.selects: dict[str, list[str]] = {}
        self.forms: list[dict] = []
        self.scripts = 0
        self.svgs: list[str] = []
        self._table: str | None = None
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self._link: list | None = None
        self._select: str | None = None
        self._in_head = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table is not None and not self._in_head:
            self._row = {"attrs": a, "cells": [], "links": []}
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "a" and self._row is not None:
            self._link = [a.get("href"), ""]
        elif tag == "select":
            self._select = a.get("id")
            self.selects[self._select] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append(a.get("value"))
        elif tag == "form":
            self.forms.append(a)
        elif tag == "script":
            self.scripts += 1
        elif tag == "svg":
            self.svgs.append(a.get("id", ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "td" and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "a" and self._link is not None:
            self._row["links"].append(tuple(self._link))
            self._link = None
        elif tag == "select":
            self._select = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._link is not None:
            self._link[1] += data


def clean_notebook(path: Path) -> None:
    """A runbook whose only finding is OK: the "ok" outcome (tests/notebooks/ok.ipynb records a WARNING)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Archive test: a clean run"),
        nbformat.v4.new_code_cell('from ccops.core.findings import Finding, record\n\n'
                                  'record([Finding("t.clean", "OK", "all good", value=1)])'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive-index")
    books = root / "runbooks"
    (books / "emergency").mkdir(parents=True)
    clean_notebook(books / "clean.ipynb")
    shutil.copy(NOTEBOOKS / "ok.ipynb", books / "ok.ipynb")
    shutil.copy(NOTEBOOKS / "raise.ipynb", books / "raise.ipynb")
    shutil.copy(NOTEBOOKS / "hang.ipynb", books / "emergency" / "hang.ipynb")
    env = clean_env(CCOPS_HOME=str(root / "home"), CCOPS_ARCHIVE_DIR=str(root / "outputs"),
                    CCOPS_RUNBOOKS_DIR=str(books), PYTHONPATH=str(REPO))
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", "import sys; from ccops.cli import main; sys.exit(main())",
             "run", name, "--json", *extra],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (_, _, extra) in RUNS.items()
    }
    results = {}
    deadline = time.monotonic() + 150
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        results[name] = (proc.returncode, json.loads(out) if out.strip() else None, err)
    return root, root / "outputs", results


def test_each_run_finished_with_its_outcome(runs):
    _, _, results = runs
    for name, (code, outcome, _) in RUNS.items():
        got_code, record, err = results[name]
        assert (got_code, record and record["outcome"]) == (code, outcome), f"{name}: {err}"


def test_concurrent_runs_all_reach_the_index(runs):
    _, outputs, results = runs
    index = json.loads((outputs / "index.json").read_text())
    assert sorted(r["run_id"] for r in index) == sorted(rec["run_id"] for _, rec, _ in results.values())
    assert [r["start"] for r in index] == sorted((r["start"] for r in index), reverse=True)
    assert "findings" not in index[0]


def test_every_run_is_in_the_table_with_links_that_resolve(runs):
    _, outputs, results = runs
    page = Page((outputs / "index.html").read_text())
    rows = page.tables["runs"]
    assert sorted((r["attrs"]["data-runbook"], r["attrs"]["data-outcome"]) for r in rows) == sorted(
        (name, outcome) for name, (_, outcome, _) in RUNS.items())
    for row in rows:
        name = row["attrs"]["data-runbook"]
        record = results[name][1]
        assert row["cells"][1] == name and row["cells"][2] == record["outcome"]
        links = dict((label, href) for href, label in row["links"])
        assert links == {"report": record["paths"]["report_html"], "notebook (html)": record["paths"]["html"],
                         "ipynb": record["paths"]["ipynb"]}
        for href in links.values():
            assert (outputs / unquote(href)).is_file(), href
    errors = {r["attrs"]["data-runbook"]: r["cells"][-1] for r in rows}
    assert "ValueError: boom" in errors["raise"]
    assert "timed out after 6 s" in errors["emergency/hang"]
    assert errors["clean"] == "" and errors["ok"] == ""


def test_the_report_link_is_the_copy_without_code(runs):
    _, outputs, results = runs
    paths = results["clean"][1]["paths"]
    code = '<span class="n">record</span>'
    assert code in (outputs / paths["html"]).read_text()
    report = (outputs / paths["report_html"]).read_text()
    assert code not in report and "Archive test: a clean run" in report


def test_latest_panel_shows_each_runbook_once_with_its_outcome_and_worst_findings(runs):
    _, outputs, results = runs
    page = Page((outputs / "index.html").read_text())
    latest = {r["attrs"]["data-runbook"]: r for r in page.tables["latest"]}
    assert sorted(latest) == sorted(RUNS)
    for name, row in latest.items():
        assert row["attrs"]["data-outcome"] == RUNS[name][1]
        assert row["cells"][2] == results[name][1]["start"].replace("T", " ").removesuffix("Z")
        assert {label for _, label in row["links"]} >= {"report", "notebook (html)", "ipynb"}
    assert "WARNING t.ok: a warning" in latest["ok"]["cells"][4]
    assert "ValueError: boom" in latest["raise"]["cells"][4]
    assert "timed out after 6 s" in latest["emergency/hang"]["cells"][4]
    assert latest["clean"]["cells"][4] == "1 OK"


def test_filters_are_there_and_the_table_reads_without_them(runs):
    _, outputs, _ = runs
    text = (outputs / "index.html").read_text()
    page = Page(text)
    assert page.selects["f-runbook"] == ["", *sorted(RUNS)]
    assert page.selects["f-outcome"] == ["", "ok", "warning", "failed", "timed-out"]
    assert any(f.get("id") == "filters" and "hidden" in f for f in page.forms), "filters only appear with JS"
    assert page.scripts == 1 and "data-outcome" in text
    assert not any("hidden" in r["attrs"] for r in page.tables["runs"]), "every row shows without JS"
    # self-contained: nothing to fetch, so it opens from disk and offline
    assert "<link" not in text and " src=" not in text and "https://" not in text and "@import" not in text


DOM_STANDIN = """
const rows = attrs.map(a => ({hidden: false, getAttribute: k => a[k]}));
const el = {filters: {hidden: true}, 'f-runbook': {value: ''}, 'f-outcome': {value: ''}, shown: {textContent: ''},
            'runs-heading': {scrollIntoView: () => {}}};
let onhash = null;
global.location = {hash: '#outcome=failed'};
global.window = {addEventListener: (name, f) => { onhash = f; }};
global.document = {getElementById: id => el[id], querySelectorAll: q => rows};
"""
FILTER_STEPS = """
const shown = () => rows.filter(r => !r.hidden).map(r => r.getAttribute('data-runbook')).sort().join(',')
                    + ' ' + el.shown.textContent;
const out = [el.filters.hidden, shown()];
el['f-outcome'].value = ''; el['f-outcome'].onchange(); out.push(shown());
el['f-runbook'].value = 'emergency/hang'; el['f-runbook'].onchange(); out.push(shown());
location.hash = '#runbook=clean&outcome=ok'; onhash(); out.push(shown());
location.hash = '#runbook=clean&outcome=failed'; onhash(); out.push(shown());
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="no JavaScript engine (node) on this machine")
def test_the_filter_script_shows_only_matching_rows(runs):
    """The page's own script, run by node against the page's rows (a stand-in DOM of just what it touches)."""
    _, outputs, _ = runs
    text = (outputs / "index.html").read_text()
    script = text.split("<script>")[1].split("</script>")[0]
    rows = [r["attrs"] for r in Page(text).tables["runs"]]
    harness = f"const attrs = {json.dumps(rows)};\n" + DOM_STANDIN + script + FILTER_STEPS
    done = subprocess.run(["node", "-e", harness], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        False,  # the filters appear once the script runs
        "raise 1",  # from the address: #outcome=failed
        "clean,emergency/hang,ok,raise 4",
        "emergency/hang 1",
        "clean 1",
        " 0",
    ]


def test_reports_list_prints_the_latest_then_every_run(runs, capsys, monkeypatch):
    root, outputs, _ = runs
    for name in list(os.environ):
        if name.startswith("CCOPS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(root)
    monkeypatch.setenv("CCOPS_ARCHIVE_DIR", str(outputs))
    assert main(["reports", "list"]) == 0
    text = capsys.readouterr().out
    latest, every = text.split("All runs, newest first (4)")
    assert latest.startswith("Latest run of each runbook\nrunbook")
    for name, (_, outcome, _) in RUNS.items():
        line = next(line for line in latest.splitlines() if line.startswith(name + " "))
        assert line.split()[1] == outcome
        assert line.endswith(".report.html") and Path(line.split()[-1]).is_file()
    assert len([line for line in every.splitlines() if line.strip()]) == 1 + 4
    assert main(["reports", "list", "--outcome", "timed-out", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["runbook"] for r in listed] == ["emergency/hang"]
