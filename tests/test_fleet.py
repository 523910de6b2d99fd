"""The fleet overview (issue 17.1): every target's latest run of every runbook, problems first, from the index state.

Two synthetic target archives in the runner's layout and record format (see
tests/test_index_state.py), each indexed by rebuild_index as the runner does
after a run; the overview is then read back as HTML and as fleet.json.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

from ccops import archive
from ccops.archive import indexstate
from ccops.archive.fleet import write_fleet_index
from tests.test_index_state import write_run

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)> & \"q\""
T0 = datetime(2026, 11, 20, 8)


class Fleet(HTMLParser):
    """The fleet table's rows (attributes, cell texts, hrefs) and every start tag."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self._row: dict | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "tr" and "data-target" in a:
            self._row = {"attrs": a, "cells": [], "links": []}
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "a" and self._row is not None:
            self._row["links"].append(a.get("href"))

    def handle_endtag(self, tag):
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def two_targets(root: Path, own: Path) -> dict[str, Path]:
    """`a` under the project archive; `b` with an archive dir of its own, outside it."""
    a, b = root / "targets" / "a", own
    write_run(a, "health_check", T0, 0)  # ok
    write_run(a, "health_check", T0 + timedelta(hours=1), 2)  # critical, the latest: unreviewed
    write_run(a, "daily", T0, 0)  # ok
    write_run(b, "health_check", T0, 1)  # warning
    failed = write_run(b, "daily", T0 + timedelta(hours=2), 1, outcome="failed")
    archive.acknowledge(failed, "bob@ops", "known outage")
    for target in (a, b):
        archive.rebuild_index(target)
    return {"a": a, "b": b}


def test_problems_come_first_and_every_link_opens_a_file(tmp_path):
    root = tmp_path / "outputs"
    targets = two_targets(root, tmp_path / "elsewhere" / "b-archive")
    rows = write_fleet_index(root, targets)
    order = [(r["target"], r["runbook"], r["outcome"], r["acked"]) for r in rows]
    assert order == [("a", "health_check", "critical", False), ("b", "daily", "failed", True),
                     ("b", "health_check", "warning", False), ("a", "daily", "ok", False)]
    assert json.loads((root / "fleet.json").read_text())["runs"] == rows
    page = Fleet((root / "index.html").read_text())
    assert [(r["attrs"]["data-target"], r["attrs"]["data-runbook"]) for r in page.rows] == [o[:2] for o in order]
    assert page.rows[0]["attrs"].get("class") == "unreviewed" and "UNREVIEWED" in page.rows[0]["cells"][5]
    assert "bob@ops" in page.rows[1]["cells"][5] and page.rows[1]["attrs"].get("class") is None
    assert "1 CRITICAL or failed run not reviewed" in (root / "index.html").read_text()
    for row in page.rows:
        assert row["links"] and all((root / unquote(href)).resolve().is_file() for href in row["links"]), row
    assert any(href.startswith("../elsewhere/b-archive/daily/") for href in page.rows[1]["links"])
    assert page.rows[0]["links"][0].startswith("targets/a/health_check/2026/11/")


def test_an_ack_moves_a_run_down_once_its_target_is_indexed(tmp_path):
    root = tmp_path / "outputs"
    targets = two_targets(root, tmp_path / "b")
    critical = next(r for r in archive.load_summaries(targets["a"]) if r["outcome"] == "critical")
    archive.acknowledge(targets["a"] / critical["paths"]["json"], "alice@ops")
    archive.rebuild_index(targets["a"])  # what `reports ack` does for the target's archive
    rows = write_fleet_index(root, targets)
    assert [(r["target"], r["runbook"]) for r in rows[:2]] == [("b", "daily"), ("a", "health_check")]
    assert not any(r["unreviewed"] for r in rows) and rows[1]["acked_by"] == "alice@ops"


def test_the_overview_reads_the_index_state_not_the_records(tmp_path):
    root = tmp_path / "outputs"
    targets = two_targets(root, tmp_path / "b")
    before = write_fleet_index(root, targets, generated=T0)
    for target in targets.values():  # records overwritten in place: only a reader of records would notice
        for record in target.rglob("*.json"):
            if indexstate.STATE_DIR not in record.parts and not record.name.endswith(archive.SIDECARS):
                with open(record, "r+") as handle:
                    handle.write("{}" + " " * (len(handle.read()) - 2))
    assert write_fleet_index(root, targets, generated=T0) == before


def test_a_target_without_index_state_is_indexed_first_and_one_without_runs_is_listed(tmp_path, capsys):
    import shutil

    root = tmp_path / "outputs"
    targets = two_targets(root, tmp_path / "b")
    shutil.rmtree(targets["b"] / indexstate.STATE_DIR)
    targets["new"] = root / "targets" / "new"  # configured, never run
    rows = write_fleet_index(root, targets)
    assert {r["target"] for r in rows} == {"a", "b"} and (targets["b"] / indexstate.STATE_DIR).is_dir()
    assert "<li>new: <span class='muted'>no archived run yet</span></li>" in (root / "index.html").read_text()


def test_hostile_names_and_texts_render_inert(tmp_path):
    root = tmp_path / "outputs"
    target = root / "targets" / "evil"
    path = write_run(target, "health_check", T0, 2)
    record = json.loads(path.read_text())
    record["findings"][0]["summary"] = HOSTILE
    record["outcome"], record["error"] = "failed", HOSTILE
    path.write_text(json.dumps(record))
    archive.rebuild_index(target)
    rows = write_fleet_index(root, {HOSTILE: target})
    assert rows[0]["target"] == HOSTILE
    text = (root / "index.html").read_text()
    page = Fleet(text)
    assert not any(tag in ("script", "img") for tag, _ in page.tags), "no element from a name or a finding"
    assert not [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert page.rows[0]["attrs"]["data-target"] == HOSTILE and page.rows[0]["cells"][0] == HOSTILE
    assert HOSTILE in page.rows[0]["cells"][4], "the error shown as text, in full"
    assert all("<" not in href and " " not in href for href in page.rows[0]["links"])
