"""`ccops reports recheck RUN` (issue 19: 2, 3): an archived report re-executed for its own as_of.

The demo's daily report, run at the demo's fixed as_of, must reproduce; after
the data behind one finding changes (the day before as_of loses its published
content, in a database of this test's own - never the shared session demo's),
the recheck names exactly that finding and exits 1.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ccops import cli
from ccops.archive import rechecks
from ccops.core.context import parse_as_of
from ccops.core.db import normalize_url
from ccops.core.settings import load_settings
from ccops.demo import generator
from ccops.runbook import recheck, runner
from tests.conftest import DEMO_AS_OF, DEMO_SEED

YESTERDAY_CHECK = "content.published_yesterday"


def make_run(name: str, *params: tuple[str, str]) -> dict:
    """One archived run through the runner, as `ccops run` makes it."""
    result = runner.run_runbook(load_settings(), name, [list(p) for p in params], timeout=300)
    assert result.record["outcome"] not in ("failed", "timed-out"), result.record.get("error")
    return result.record


def recheck_cli(spec: str, capsys) -> tuple[int, str]:
    code = cli.main(["reports", "recheck", spec])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def own_demo_database(demo_env: Path, make_database, monkeypatch: pytest.MonkeyPatch) -> str:
    """The demo's data (same seed, days, as_of) in a database of this test's own: safe to change.

    With a database URL set, ccops takes the demo for a deployment (no demo defaults), so the demo's
    logs, backups and .env are named too.
    """
    settings = load_settings()
    for var, value in (("CCOPS_LOG_DIR", settings.effective_log_dir), ("CCOPS_BACKUP_DIR", settings.effective_backup_dir),
                       ("CCOPS_APP_ENV_FILE", settings.effective_app_env_file), ("CCOPS_BACKEND", "none")):
        monkeypatch.setenv(var, str(value))
    url = make_database("ccops")
    generator.generate(url, seed=DEMO_SEED, days=30, as_of=parse_as_of(DEMO_AS_OF))
    monkeypatch.setenv("CCOPS_DATABASE_URL", url)
    return url


def delete_published_day_before(url: str, as_of: str) -> int:
    """Delete the content of the day before as_of published after as_of's time of day.

    content.published_yesterday counts that whole day; content.engagement_today compares today's first
    hours with the same hours of the past days, which these posts are not in; the day keeps its
    earlier posts, so it does not become a day without content. Exactly one finding depends on them.
    Interactions keep their rows, unlinked from the deleted posts (content_id is nullable).
    """
    moment = parse_as_of(as_of)
    day = datetime.combine(moment.date(), datetime.min.time())
    doomed = "SELECT id FROM published_content WHERE published_at >= :since AND published_at < :until"
    params = {"since": moment - timedelta(days=1), "until": day}
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE user_interactions SET content_id = NULL WHERE content_id IN ({doomed})"), params)
        gone = conn.execute(text(f"DELETE FROM published_content WHERE id IN ({doomed})"), params).rowcount
    engine.dispose()
    return gone


@pytest.mark.slow
def test_daily_recheck_reproduces_then_names_the_changed_finding(own_demo_database: str, demo_env: Path, capsys):
    record = make_run("daily", ("as_of", DEMO_AS_OF))
    stem = Path(record["paths"]["json"]).name.removesuffix(".json")
    spec = f"daily/{stem.split('-')[0]}"

    code, out = recheck_cli(spec, capsys)
    assert code == 0, out
    assert "reproduces" in out.splitlines()[0], out

    assert delete_published_day_before(own_demo_database, DEMO_AS_OF) > 0
    code, out = recheck_cli(spec, capsys)
    assert code == 1, out
    assert "differs: 1 finding" in out.splitlines()[0], out
    changed = [line for line in out.splitlines() if line.startswith("finding ")]
    assert len(changed) == 1 and changed[0].startswith(f"finding {YESTERDAY_CHECK}: "), out

    record_path = demo_env / "outputs" / record["paths"]["json"]
    history = rechecks.read_rechecks(record_path)
    assert [h["reproduces"] for h in history] == [True, False]
    assert [f["check"] for f in history[-1]["findings"]] == [YESTERDAY_CHECK]
    assert history[-1]["cells"], "the content table's cell differs too, by nbval's comparison"
    # nothing but the recheck record was written to the archive
    files = sorted(p.name for p in record_path.parent.iterdir())
    assert files == sorted([f"{stem}{s}" for s in (".html", ".ipynb", ".json", ".report.html", ".recheck.json")])
    index = json.loads((demo_env / "outputs" / "index.json").read_text())
    assert len(index) == 1, "a recheck is not a run"
    assert index[0]["recheck"]["verdict"] == "differs: 1 finding, " + f"{len(history[-1]['cells'])} cells"
    page = (demo_env / "outputs" / "index.html").read_text()
    assert f"rechecked {history[-1]['rechecked_at'][:10]}: differs: 1 finding" in page
    assert f"href='{Path(record['paths']['json']).parent.as_posix()}/{stem}.recheck.json'" in page


# ---- the pieces, on real files, without a kernel --------------------------------------------------

def finding(check: str, status: str = "OK", value=None, rows=None, summary: str = "s") -> dict:
    item = {"check": check, "status": status, "summary": summary, "value": value, "threshold": None}
    if rows is not None:
        item["rows"] = rows
    return item


def test_findings_compare_status_value_rows_and_live_checks_by_status_only():
    old = [finding("content.published_yesterday", value=31, rows=2), finding("host.memory", value=8.24),
           finding("logs.summary", value=13), finding("activity.agents", value=812)]
    new = [finding("content.published_yesterday", value=31, rows=1), finding("host.memory", value=7.77),
           finding("logs.summary", "WARNING", 13), finding("backup.daily", "CRITICAL")]
    changes = {c.check: c for c in recheck.compare_findings(old, new)}
    assert set(changes) == {"content.published_yesterday", "logs.summary", "activity.agents", "backup.daily"}
    assert changes["content.published_yesterday"].fields == {"rows": (2, 1)}
    assert changes["logs.summary"].fields == {"status": ("OK", "WARNING")}
    assert (changes["activity.agents"].change, changes["backup.daily"].change) == ("gone", "new")
    assert recheck.compare_findings(old, [dict(f) for f in old]) == []
    # floats as the record keeps them (12 significant digits) equal the fresh ones
    assert recheck.compare_findings([finding("x", value=27.1)], [finding("x", value=27.099999999999998)]) == []
    assert recheck.compare_findings([finding("host.disk:/", value=28.33)], [finding("host.disk:/", "WARNING", 3.0)])


def notebook_with(html_rows: str, plain: str):
    import nbformat

    cell = nbformat.v4.new_code_cell("ctx.summary()")
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/html": html_rows, "text/plain": plain},
                                           execution_count=1)]
    return nbformat.v4.new_notebook(cells=[cell])


def row(check: str, status: str, summary: str, value: str) -> str:
    return (f'<tr data-check="{check}" style="background:#d4edda"><td><b>{status}</b></td><td><code>{check}</code></td>'
            f'<td style="text-align:left">{summary}</td><td style="text-align:right">{value}</td><td>80</td></tr>')


def test_cells_compared_by_nbval_with_the_sanitiser_masking_live_figures():
    patterns = recheck.sanitize_patterns()
    plain = "[Finding(check='host.memory', status=<Status.OK: 'OK'>, summary='{}', value={}, resolves=())]"
    archived = notebook_with(row("host.memory", "OK", "8.2% in use", "8.24") + row("content.x", "OK", "31 items", "31")
                             + "<p>run 20261203T101500Z-1a2b3c4d took 1.25 s</p>", plain.format("8.2%", 8.24))
    same = notebook_with(row("host.memory", "OK", "7.8% in use", "7.77") + row("content.x", "OK", "31 items", "31")
                         + "<p>run 20261204T090000Z-99aa00bb took 0.4 s</p>", plain.format("7.8%", 7.77))
    assert recheck.compare_cells(archived, same, patterns) == []
    changed = notebook_with(row("host.memory", "OK", "7.8% in use", "7.77") + row("content.x", "OK", "19 items", "19"),
                            plain.format("7.8%", 7.77))
    diffs = recheck.compare_cells(archived, changed, patterns)
    assert [(d.cell, d.source) for d in diffs] == [(0, "ctx.summary()")]
    assert "mismatch 'text/html'" in diffs[0].diff and "19 items" in diffs[0].diff
    worse = notebook_with(row("host.memory", "WARNING", "97% in use", "97") + row("content.x", "OK", "31 items", "31")
                          + "<p>run 20261203T101500Z-1a2b3c4d took 1.25 s</p>", plain.format("97%", 97))
    assert "WARNING" in recheck.compare_cells(archived, worse, patterns)[0].diff, "a live check's status still counts"


def write_run(archive_dir: Path, stamp: str, parameters: dict, runbook: str = "daily") -> Path:
    rel = Path(runbook) / stamp[:4] / stamp[4:6] / f"{stamp}-{runbook}.json"
    record = {"runbook": runbook, "run_id": f"{stamp}-0a1b2c3d", "start": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T"
              f"{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z", "outcome": "ok", "parameters": parameters,
              "findings": [], "paths": {"json": rel.as_posix(), "ipynb": rel.with_suffix(".ipynb").as_posix()}}
    path = archive_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    path.with_suffix(".ipynb").write_text("{}")
    return path


def test_run_named_by_path_or_runbook_and_stamp_and_acting_runs_refused(ccops_env: Path):
    archive_dir = ccops_env / "outputs"
    path = write_run(archive_dir, "20261120T180000Z", {"as_of": DEMO_AS_OF})
    acted = write_run(archive_dir, "20261121T020000Z", {"as_of": "", "dry_run": False}, runbook="backup")
    assert recheck.resolve_run(archive_dir, "daily/20261120T180000Z") == path
    assert recheck.resolve_run(archive_dir, "daily/2026-11-20T18:00:00Z") == path
    assert recheck.resolve_run(archive_dir, str(path.with_suffix(".ipynb"))) == path
    assert recheck.archive_root_of(path, recheck.load_record(path)) == archive_dir.resolve()
    with pytest.raises(recheck.UsageError, match="no archived run matches"):
        recheck.resolve_run(archive_dir, "daily/20261119T180000Z")
    with pytest.raises(recheck.UsageError, match="dry_run=False"):
        recheck.rerun_parameters(recheck.load_record(acted))
    assert cli.main(["reports", "recheck", "backup/20261121T020000Z"]) == 64
    assert rechecks.note(None) == "" and rechecks.latest_for(path) is None
