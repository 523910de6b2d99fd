"""Every archived report starts with who ran what, when, with what, and what changed (issue 15, item 4).

Real runs: a small runbook written to tmp_path, executed by papermill through
ccops.runbook.runner, once as a dry run and once live (dry_run False, confirm True),
whose guarded action really creates a file. The pages are parsed with
html.parser.
"""

from __future__ import annotations

import ast
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from ccops.archive.header import actions_of, page_title, run_mark, tidy_numbers
from ccops.core.settings import load_settings
from ccops.runbook import runner
from tests.conftest import stored_runbooks
from tests.helpers import write_notebook

RUNBOOK = [
    ("markdown", "# Header test\n\nA guarded step, two findings."),
    ("parameters", 'as_of = ""  # ISO timestamp (UTC); empty means now\n'
                   "dry_run = True  # True: describe the change only\n"
                   "confirm = False  # also needed to make it\n"
                   'marker = ""  # the file the live run creates'),
    ("code", "from pathlib import Path\n\nfrom ccops import actions\n"
             "from ccops.runbook.session import start\nfrom ccops.core.findings import Finding"),
    ("code", 'ctx = start("hdr", as_of=as_of)'),
    ("markdown", "## Checks"),
    ("code", 'ctx.record([Finding("t.load", "WARNING", "load high", value=27.099999999999998, threshold=5.0),\n'
             '            Finding("t.disk", "CRITICAL", "disk full", value=99)])'),
    ("markdown", "## The change"),
    ("code", 'actions.guarded(ctx, "touch", "create the marker file", lambda: Path(marker).touch() or "created",\n'
             "                dry_run=dry_run, confirm=confirm)"),
    ("code", "ctx.summary()"),
]


def write_runbook(folder: Path) -> Path:
    return write_notebook(folder / "hdr.ipynb", RUNBOOK)


class Page(HTMLParser):
    """Ids, the title, and the text inside the element with id run-header."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.title = ""
        self.header_text = ""
        self.links: list[str] = []
        self._in_title = False
        self._depth = 0  # >0 while inside #run-header
        self.first_id = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "title":
            self._in_title = True
        if self._depth:
            self._depth += 1
            if tag == "a" and attrs.get("href"):
                self.links.append(attrs["href"])
        elif attrs.get("id") == "run-header":
            self._depth = 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._depth:
            self.header_text += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A dry run, then a live run, of the same runbook in one archive."""
    root = tmp_path_factory.mktemp("hdr")
    books = root / "books"
    write_runbook(books)
    marker = root / "marker"
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        for name in list(__import__("os").environ):
            if name.startswith("CCOPS_") or name == "DATABASE_URL":
                patch.delenv(name, raising=False)
        patch.chdir(root)
        patch.setenv("CCOPS_HOME", str(root / "home"))
        patch.setenv("CCOPS_ARCHIVE_DIR", str(root / "outputs"))
        patch.setenv("CCOPS_RUN_MODE", "scheduled")
        params = [["as_of", "2026-12-02T09:06:43Z"], ["marker", str(marker)]]
        results["dry"] = runner.run_runbook(load_settings(), "hdr", params, timeout=120, runbooks_dir=books)
        results["live"] = runner.run_runbook(load_settings(), "hdr", [*params, ["dry_run", "False"],
                                                                      ["confirm", "True"]],
                                             timeout=120, runbooks_dir=books)
    return root, results, marker


def files(root: Path, result) -> dict[str, Path]:
    return {k: root / "outputs" / v for k, v in result.record["paths"].items()}


def test_both_pages_start_with_the_header_and_the_title_says_it_in_one_line(runs):
    root, results, _ = runs
    result = results["dry"]
    for key in ("report_html", "html"):
        path = files(root, result)[key]
        page = parse(path)
        assert page.title == "hdr 2026-12-02 09:06 UTC - CRITICAL"
        text = path.read_text()
        body = text.index("<body")
        assert text.index("id='run-header'") > body
        # the header comes before any notebook cell
        assert text.index("id='run-header'") < text.index("class=\"jp-Cell")
        header = page.header_text
        for expected in ("hdr", "CRITICAL", "2026-12-02 09:06:43 UTC", "scheduled", runner.user_at_host(),
                         "DRY RUN", "dry_run = True", "confirm = False", "ccops 0.", "commit"):
            assert expected in header, expected
        assert re.search(r"\d+\.\d s", header), "the duration"
        assert "none: this run changed nothing" in header
        assert "would create the marker file" in header


def test_findings_summary_is_worst_first_and_links_to_the_rows(runs):
    root, results, _ = runs
    path = files(root, results["dry"])["report_html"]
    page = parse(path)
    summary = path.read_text().split("id='findings-summary'")[1].split("</table>")[0]
    assert summary.index("t.disk") < summary.index("t.load") < summary.index("action.touch")
    assert "#finding-t-disk" in page.links and "#finding-t-load" in page.links
    for link in page.links:
        assert link.lstrip("#") in page.ids, f"{link} resolves"


def test_a_live_run_is_marked_live_and_lists_its_change(runs):
    root, results, marker = runs
    result = results["live"]
    assert marker.exists(), "the live run really made its change"
    assert result.record["actions"] == [
        {"check": "action.touch", "status": "OK", "summary": "create the marker file: created", "done": True}]
    header = parse(files(root, result)["report_html"]).header_text
    assert "LIVE" in header and "DRY RUN" not in header
    assert "create the marker file: created" in header
    assert "none: this run changed nothing" not in header
    assert "dry_run = False" in header and "confirm = True" in header


def test_no_stray_values_and_no_float_noise(runs):
    root, results, _ = runs
    paths = files(root, results["dry"])
    assert "datetime.datetime(" not in paths["report_html"].read_text()
    raw = paths["json"].read_text()
    assert "27.099999999999998" not in raw
    record = json.loads(raw)
    assert [f["value"] for f in record["findings"] if f["check"] == "t.load"] == [27.1]


def stray_values(source: str) -> bool:
    """True when a cell ends in a bare name or attribute (`ctx.as_of`): its repr lands in the report."""
    tree = ast.parse(source)
    last = tree.body[-1] if tree.body else None
    return isinstance(last, ast.Expr) and isinstance(last.value, (ast.Attribute, ast.Constant))


def test_no_runbook_cell_prints_a_stray_value():
    repo = Path(__file__).resolve().parent.parent
    offenders = []
    for path in stored_runbooks(repo / "runbooks"):
        for cell in nbformat.read(str(path), as_version=4).cells:
            if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []) \
                    and stray_values(cell.source):
                offenders.append(f"{path.name}: {cell.source.splitlines()[-1]}")
    assert not offenders
    assert stray_values('ctx = start("daily")\nctx.as_of')


def test_marks_and_titles_from_records():
    assert run_mark({"parameters": {"dry_run": True, "confirm": False}}) == "DRY RUN"
    assert run_mark({"parameters": {"dry_run": False}}) == "LIVE"
    assert run_mark({"parameters": {"dry_run": True, "confirm": True}}) == "LIVE"
    assert run_mark({"parameters": {"as_of": ""}}) == "read-only"
    assert run_mark({"parameters": {}, "actions": [{"done": True}]}) == "LIVE"
    assert page_title({"runbook": "daily", "as_of": "2026-12-02T09:06:43Z", "outcome": "critical"}) == \
        "daily 2026-12-02 09:06 UTC - CRITICAL"
    assert tidy_numbers({"a": [0.1 + 0.2, 1, "x"]}) == {"a": [0.3, 1, "x"]}
    assert actions_of([{"check": "maintenance.vacuum", "status": "INFO", "summary": "dry run: would VACUUM"},
                       {"check": "maintenance.reindex", "status": "OK", "summary": "REINDEX on 1 of 1"},
                       {"check": "action.timeline", "status": "OK", "summary": "1 of 1 run"}]) == [
        {"check": "maintenance.vacuum", "status": "INFO", "summary": "dry run: would VACUUM", "done": False},
        {"check": "maintenance.reindex", "status": "OK", "summary": "REINDEX on 1 of 1", "done": True}]


def test_findings_show_for_people_one_table_per_step():
    import pandas as pd

    from ccops.core.findings import Finding, Findings, format_frame, format_number, human_bytes

    frame = pd.DataFrame({"at": pd.to_datetime(["2026-12-02 09:06:43.123456"]), "ratio": [5.0],
                          "load": [27.099999999999998], "size_bytes": [1_500_000_000]})
    shown = format_frame(frame).iloc[0].to_dict()
    assert shown == {"at": "2026-12-02 09:06:43", "ratio": "5", "load": "27.1", "size_bytes": "1.5 GB"}
    assert format_number(12345.0) == "12,345" and format_number(0.25) == "0.25" and human_bytes(512) == "512 B"
    disks = Findings([Finding(f"host.disk:{m}", "OK", f"{m} fine", value=5.0,
                              data=pd.DataFrame({"mount": [m], "used_bytes": [2_000_000]})) for m in ("/", "/var")])
    page = disks._repr_html_()
    assert page.count("<details") == 1, "the two mounts' tables are one"
    assert "2 MB" in page and "5.0000" not in page and "5.00" not in page
    assert 'text-align:left' in page
