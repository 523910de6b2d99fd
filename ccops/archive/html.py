"""outputs/index.html: where a reviewer starts.

One self-contained page (inline CSS, inline SVG, a few lines of vanilla JS),
so it works opened from disk, offline, from a copied archive: the latest run
of each runbook at a glance, key figures across runs, and every run in a table
that a reviewer can filter by runbook and outcome. The table is complete HTML
without the script; the script only hides rows. Everything is built from the
index summaries (archive.summary), never from notebooks.
"""

from __future__ import annotations

import html
import posixpath
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ccops.archive.figures import charts_html

OUTCOMES = ("ok", "warning", "critical", "unknown", "failed", "timed-out", "killed")
COMPLETED = ("ok", "warning", "critical", "unknown")
OUTCOME_COLOURS = {
    "ok": "#d4edda",
    "warning": "#fff3cd",
    "critical": "#f8d7da",
    "unknown": "#e2e3e5",
    "failed": "#f5c6cb",
    "timed-out": "#ffe0b2",
    "killed": "#e1bee7",
}
STRIP_RUNS = 12  # the latest panel's row of recent outcomes
LINKS = (("report_html", "report"), ("html", "notebook (html)"), ("ipynb", "ipynb"))

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.6em}
table{border-collapse:collapse;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;white-space:nowrap}
.o{font-weight:bold;white-space:nowrap}.when{white-space:nowrap}
ul.worst{margin:0;padding-left:1.1em}ul.worst li{margin:0}
.s-CRITICAL{color:#a00}.s-WARNING{color:#8a6d00}.s-UNKNOWN{color:#555}
.strip span{display:inline-block;width:10px;height:10px;margin-right:2px;border:1px solid #999}
.err{color:#a00;max-width:40em}.muted{color:#666}
.charts{display:flex;flex-wrap:wrap;gap:12px}
svg.chart{border:1px solid #ddd;background:#fff}
svg .ct{font-size:13px;font-weight:bold}svg .ax{font-size:10px;fill:#444}svg .grid{stroke:#e5e5e5}
#filters{margin:.5em 0}#filters label{margin-right:1em}
.mark{font-weight:bold;padding:0 6px;border-radius:3px;white-space:nowrap}
.mark-LIVE{background:#a00;color:#fff}.mark-DRY{background:#1f5fa8;color:#fff}.mark-ro{color:#555}
tr.unreviewed td{border-top:2px solid #a00;border-bottom:2px solid #a00}
.unrev{background:#a00;color:#fff;font-weight:bold;padding:0 4px;white-space:nowrap}
.acked{color:#155724;white-space:nowrap}.chg{margin:0;padding-left:1.1em}.prev{margin-top:.3em;font-size:.95em}
"""
CSS += "".join(f".o-{name}{{background:{colour}}}" for name, colour in OUTCOME_COLOURS.items())

SCRIPT = """
(function(){
var f=document.getElementById('filters');if(!f)return;f.hidden=false;
var rb=document.getElementById('f-runbook'),oc=document.getElementById('f-outcome'),
shown=document.getElementById('shown'),rows=document.querySelectorAll('#runs tbody tr');
function apply(){var r=rb.value,o=oc.value,n=0;
for(var i=0;i<rows.length;i++){var t=rows[i],ok=(!r||t.getAttribute('data-runbook')===r)&&(!o||t.getAttribute('data-outcome')===o);
t.hidden=!ok;if(ok)n++;}shown.textContent=n;}
function fromHash(){var h=decodeURIComponent(location.hash.slice(1));if(h.indexOf('=')<0)return;
h.split('&').forEach(function(p){var kv=p.split('=');if(kv[0]==='runbook')rb.value=kv[1];if(kv[0]==='outcome')oc.value=kv[1];});
apply();}
rb.onchange=oc.onchange=apply;fromHash();
window.addEventListener('hashchange',function(){fromHash();var h=document.getElementById('runs-heading');if(h&&h.scrollIntoView)h.scrollIntoView();});
})();
"""


def render_index(records: list[dict[str, Any]], generated: datetime | None = None) -> str:
    """The whole page from summaries, newest first."""
    latest: dict[str, dict[str, Any]] = {}
    recent: dict[str, list[dict[str, Any]]] = {}
    completed: dict[str, dict[str, Any]] = {}
    for r in records:  # newest first: the first seen per runbook is its latest
        name = str(r.get("runbook"))
        latest.setdefault(name, r)
        if r.get("outcome") in COMPLETED:
            completed.setdefault(name, r)
        strip = recent.setdefault(name, [])
        if len(strip) < STRIP_RUNS:
            strip.append(r)
    by_outcome = Counter(str(r.get("outcome") or "") for r in records)
    when = f" Built {generated:%Y-%m-%d %H:%M} UTC." if generated else ""
    totals = ", ".join(f"{n} {name}" for name, n in sorted(by_outcome.items(), key=lambda kv: _outcome_order(kv[0])))
    charts = charts_html(records)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>ccops reports</title><style>{CSS}</style></head><body>",
        "<h1>ccops reports</h1>",
        f"<p class='muted'>{len(records)} runs archived{': ' + html.escape(totals) if totals else ''}.{when} "
        "Each run links its <b>report</b> (without code, for reviewers), the full <b>notebook (html)</b> "
        "and the executed <b>ipynb</b>.</p>",
        "<h2 id='latest-heading'>Latest run of each runbook</h2>",
        _unreviewed_note(records),
        latest_table([latest[k] for k in sorted(latest)], recent, completed),
        "<h2>Key figures across runs</h2>",
        f"<div class='charts'>{''.join(charts)}</div>" if charts
        else "<p class='muted'>No key figures recorded yet (they come from the daily and health-check runs).</p>",
        "<h2 id='runs-heading'>All runs, newest first</h2>",
        _filters(sorted(latest), records),
        runs_table(records),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "".join(parts)


def latest_table(latest: list[dict[str, Any]], recent: dict[str, list[dict[str, Any]]],
                 completed: dict[str, dict[str, Any]] | None = None) -> str:
    """One row per runbook: its latest run, and beside a failed one the latest completed run it would hide."""
    esc = html.escape
    rows = []
    completed = completed or {}
    for r in latest:
        name = str(r.get("runbook") or "")
        outcome = str(r.get("outcome") or "")
        worst = "".join(
            f"<li><span class='s-{esc(w.get('status', ''))}'>{esc(w.get('status', ''))}</span> "
            f"<code>{esc(w.get('check', ''))}</code>: {esc(w.get('summary', ''))}</li>"
            for w in r.get("worst") or [] if isinstance(w, dict)
        )
        error = f"<div class='err'>{esc(str(r['error']))}</div>" if r.get("error") else ""
        strip = "".join(
            f"<span class='o-{esc(str(x.get('outcome') or ''))}' title='{esc(_when(x))}: {esc(str(x.get('outcome') or ''))}'>"
            "</span>" for x in reversed(recent.get(name, []))
        )
        prev = completed.get(name)
        beside = previous_completed_html(prev) if prev is not None and prev is not r else ""
        rows.append(
            f"<tr data-runbook='{esc(name)}' data-outcome='{esc(outcome)}'{_row_class(r)}>"
            f"<td><a href='#runbook={quote(name, safe='/')}'>{esc(name)}</a></td>"
            f"<td class='o o-{esc(outcome)}'>{esc(outcome)}</td><td class='when'>{esc(_when(r))}</td>"
            f"<td class='num'>{_duration(r.get('duration_s'))}</td>"
            f"<td>{error}{notes_html(r)}{'<ul class=worst>' + worst + '</ul>' if worst else ''}"
            f"{'' if worst or error else esc(counts_text(r.get('counts')))}{beside}</td>"
            f"<td>{parameters_cell(r)}</td><td>{changes_html(r)}</td><td>{review_html(r)}</td>"
            f"<td>{_links(r)}</td><td class='strip'>{strip}</td></tr>"
        )
    head = ("<table id='latest'><thead><tr><th>runbook</th><th>outcome</th><th>when (UTC)</th><th>duration</th>"
            "<th>worst findings</th><th>parameters</th><th>changes since the previous run</th><th>review</th>"
            "<th>links</th><th>recent runs (oldest → newest)</th></tr></thead><tbody>")
    return head + "".join(rows) + "</tbody></table>"


def runs_table(records: list[dict[str, Any]]) -> str:
    """Every run, one row each; data-* attributes carry what the filters match."""
    esc = html.escape
    rows = []
    for r in records:
        name = esc(str(r.get("runbook") or ""))
        outcome = esc(str(r.get("outcome") or ""))
        rows.append(
            f"<tr data-runbook='{name}' data-outcome='{outcome}'{_row_class(r)}><td class='when'>{esc(_when(r))}</td>"
            f"<td>{name}</td><td class='o o-{outcome}'>{outcome}</td>"
            f"<td class='num'>{_duration(r.get('duration_s'))}</td>"
            f"<td>{esc(counts_text(r.get('counts')))}{notes_html(r)}</td><td>{parameters_cell(r)}</td>"
            f"<td>{changes_html(r)}</td>"
            f"<td>{review_html(r)}{recheck_html(r)}</td><td>{_links(r)}</td>"
            f"<td class='err'>{esc(str(r.get('error') or ''))}</td></tr>"
        )
    head = ("<table id='runs'><thead><tr><th>start (UTC)</th><th>runbook</th><th>outcome</th>"
            "<th>duration</th><th>findings</th><th>parameters</th><th>changes</th><th>review</th><th>links</th><th>error</th>"
            "</tr></thead><tbody>")
    return head + "".join(rows) + "</tbody></table>"


def mark_html(r: dict[str, Any]) -> str:
    """The LIVE / DRY RUN / read-only mark of a run."""
    mark = str(r.get("mark") or "")
    css = {"LIVE": "mark-LIVE", "DRY RUN": "mark-DRY"}.get(mark, "mark-ro")
    return f"<span class='mark {css}'>{html.escape(mark)}</span>" if mark else ""


def parameters_cell(r: dict[str, Any]) -> str:
    """The mark, then the parameters given (as_of aside: the start column says when)."""
    params = r.get("parameters") if isinstance(r.get("parameters"), dict) else {}
    shown = " ".join(f"<code>{html.escape(str(k))}={html.escape(str(v))}</code>"
                     for k, v in params.items() if k != "as_of")
    return f"{mark_html(r)} {shown}".strip()


def is_unreviewed_critical(r: dict[str, Any]) -> bool:
    return r.get("outcome") == "critical" and not r.get("acks")


def _row_class(r: dict[str, Any]) -> str:
    return " class='unreviewed'" if is_unreviewed_critical(r) else ""


def review_html(r: dict[str, Any]) -> str:
    """Who reviewed the run and when (with the note), or that nobody did a CRITICAL run yet."""
    acks = [a for a in r.get("acks") or [] if isinstance(a, dict)]
    if acks:
        return "".join(
            f"<div class='acked'>&#10003; {html.escape(str(a.get('by') or ''))} "
            f"{html.escape(str(a.get('at') or '').replace('T', ' ').removesuffix('Z'))}"
            f"{': ' + html.escape(str(a['note'])) if a.get('note') else ''}</div>" for a in acks)
    if is_unreviewed_critical(r):
        return "<span class='unrev'>UNREVIEWED</span>"
    return "<span class='muted'>not reviewed</span>"


def recheck_html(r: dict[str, Any]) -> str:
    """'rechecked 2026-12-03: reproduces' (or 'differs: 2 findings'), linking the recheck record ('' when never)."""
    from ccops.archive.rechecks import note

    latest = r.get("recheck")
    if not isinstance(latest, dict):
        return ""
    folder = posixpath.dirname(str((r.get("paths") or {}).get("json") or ""))
    href = html.escape(posixpath.join(folder, str(latest.get("file") or "")), quote=True)
    css = "recheck-ok" if latest.get("reproduces") else "recheck-differs"
    return f"<div class='{css}'><a href='{href}'>{html.escape(note(latest))}</a></div>"


def changes_html(r: dict[str, Any]) -> str:
    """Findings new, resolved, worse and better than the runbook's previous completed run."""
    changes = r.get("changes")
    if not isinstance(changes, dict):
        return "<span class='muted'>-</span>"
    items = []
    for kind in ("new", "worse", "better", "resolved"):
        for c in changes.get(kind) or []:
            items.append(f"<li class='chg-{kind}'>{kind}: <code>{html.escape(str(c.get('check')))}</code> "
                         f"{html.escape(str(c.get('from')))} → {html.escape(str(c.get('to')))}</li>")
    if not items:
        return "<span class='muted'>no change</span>"
    return f"<ul class='chg'>{''.join(items)}</ul>"


def previous_completed_html(r: dict[str, Any]) -> str:
    """The latest completed run, shown beside a newer run that failed, timed out or was killed."""
    esc = html.escape
    outcome = str(r.get("outcome") or "")
    worst = "; ".join(f"{w.get('status')} {w.get('check')}" for w in r.get("worst") or [] if isinstance(w, dict))
    return (f"<div class='prev'>latest completed run: <span class='o o-{esc(outcome)}'>{esc(outcome)}</span> "
            f"{esc(_when(r))}{' - ' + esc(worst) if worst else ''} {review_html(r)} {_links(r)}</div>")


def _unreviewed_note(records: list[dict[str, Any]]) -> str:
    n = sum(1 for r in records if is_unreviewed_critical(r))
    if not n:
        return ""
    return (f"<p id='unreviewed'><span class='unrev'>{n} CRITICAL run{'s' if n != 1 else ''} not reviewed</span> "
            "(acknowledge with <code>ccops reports ack RUN --note TEXT</code>)</p>")


def _filters(runbooks: list[str], records: list[dict[str, Any]]) -> str:
    """Two <select>s, hidden until the script shows them (without JS they could not work)."""
    esc = html.escape
    present = {str(r.get("outcome") or "") for r in records}
    outcomes = [o for o in OUTCOMES if o in present] + sorted(present - set(OUTCOMES) - {""})
    runbook_options = "".join(f"<option value='{esc(n)}'>{esc(n)}</option>" for n in runbooks)
    outcome_options = "".join(f"<option value='{esc(o)}'>{esc(o)}</option>" for o in outcomes)
    return ("<form id='filters' hidden onsubmit='return false'>"
            f"<label>runbook <select id='f-runbook'><option value=''>all</option>{runbook_options}</select></label>"
            f"<label>outcome <select id='f-outcome'><option value=''>all</option>{outcome_options}</select></label>"
            f"<span class='muted'><span id='shown'>{len(records)}</span> of {len(records)} runs shown</span></form>")


def _links(r: dict[str, Any]) -> str:
    paths = r.get("paths") or {}
    found = [f"<a href='{html.escape(quote(str(paths[key]), safe='/'))}'>{label}</a>"
             for key, label in LINKS if paths.get(key)]
    return " · ".join(found)


def _when(r: dict[str, Any]) -> str:
    start = str(r.get("start") or "")
    return start.replace("T", " ").removesuffix("Z")


def _duration(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f} min"


def notes_text(r: dict[str, Any]) -> list[str]:
    """What the counts alone hide: an incident the run repaired, steps that did nothing for want of a setting."""
    lines = []
    incident = r.get("incident")
    if isinstance(incident, dict):
        lines.append(f"incident resolved: [{incident.get('status')}] {incident.get('check')}: {incident.get('summary')}")
    missing = [i for i in r.get("not_configured") or [] if isinstance(i, dict)]
    if missing:
        keys = ", ".join(dict.fromkeys(str(i.get("setting")) for i in missing if i.get("setting")))
        lines.append(f"not configured ({len(missing)}): {', '.join(dict.fromkeys(str(i.get('check')) for i in missing))}"
                     + (f" - set {keys}" if keys else ""))
    return lines


def notes_html(r: dict[str, Any]) -> str:
    return "".join(f"<div class='note'>{html.escape(line)}</div>" for line in notes_text(r))


def counts_text(counts: Any) -> str:
    """"3 OK, 1 WARNING": the non-zero finding counts of a run."""
    if not isinstance(counts, dict):
        return ""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n)


def _outcome_order(outcome: str) -> int:
    return OUTCOMES.index(outcome) if outcome in OUTCOMES else len(OUTCOMES)
