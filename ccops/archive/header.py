"""The header every archived report starts with: who ran what, when, with what, and what changed.

A reviewer opens a report to answer five questions before reading any
finding: which runbook, how did it end, when and for which instant, run by
whom and how (cron, an operator, a script), and did it change anything. The
notebook cannot answer them at its top (the outcome is decided after its last
cell, the parameters live in hidden code), so the archive builds this block
from the run record and puts it first in both rendered pages, with the page
title saying the same in one line ("daily 2026-12-02 09:06 UTC - CRITICAL").

Everything here reads the record only; the runner applies its scrubber to the
pages afterwards, so nothing secret can enter through the header.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from ccops.core.findings import severity_rank

LIVE, DRY_RUN, READ_ONLY = "LIVE", "DRY RUN", "read-only"
STATUS_COLOURS = {"OK": "#d4edda", "INFO": "#d1ecf1", "WARNING": "#fff3cd", "CRITICAL": "#f8d7da",
                  "UNKNOWN": "#e2e3e5"}
OUTCOME_COLOURS = {"ok": "#d4edda", "warning": "#fff3cd", "critical": "#f8d7da", "unknown": "#e2e3e5",
                   "failed": "#f5c6cb", "timed-out": "#ffe0b2", "killed": "#e1bee7"}
# a check's first row in a findings table carries this id, so the header can link to it
ANCHOR_PREFIX = "finding-"

CSS = """
#run-header{font-family:system-ui,sans-serif;border:2px solid #999;border-radius:6px;padding:.6em 1em;
margin:1em auto;max-width:1100px;background:#fafafa;color:#222}
#run-header h1{margin:.1em 0 .4em;font-size:1.5em}#run-header h2{font-size:1.1em;margin:.8em 0 .3em}
#run-header table{border-collapse:collapse}#run-header th,#run-header td{border:1px solid #ccc;padding:2px 8px;
text-align:left;vertical-align:top}#run-header th{background:#f0f0f0;white-space:nowrap}
#run-header .mark{font-weight:bold;padding:1px 8px;border-radius:3px}
#run-header .mark-live{background:#a00;color:#fff}#run-header .mark-dry{background:#1f5fa8;color:#fff}
#run-header .mark-ro{background:#e2e3e5;color:#333}
#run-header .outcome{font-weight:bold;padding:1px 8px}#run-header .err{color:#a00}
"""


# ---- what the record says -------------------------------------------------------------------

def run_mark(record: dict[str, Any]) -> str:
    """LIVE when the run could change things (dry_run False and/or confirm True, or an action was done),
    DRY RUN when it had the switch and kept it off, read-only for runbooks without one."""
    params = effective_parameters(record)
    if any(a.get("done") for a in record.get("actions") or [] if isinstance(a, dict)):
        return LIVE
    if params.get("dry_run") is False or params.get("confirm") is True:
        return LIVE
    if "dry_run" in params or "confirm" in params:
        return DRY_RUN
    return READ_ONLY


def mapping_field(record: dict[str, Any], key: str) -> dict[str, Any]:
    """The record's `key` when it is a mapping, else {}: an archive may hold records of older versions."""
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def effective_parameters(record: dict[str, Any]) -> dict[str, Any]:
    """What the run used: the runbook's defaults (`parameter_defaults`), overridden by those given."""
    return {**mapping_field(record, "parameter_defaults"), **mapping_field(record, "parameters")}


def actions_of(findings: Any) -> list[dict[str, Any]]:
    """The changes a run made or described, from its findings: guarded actions and database maintenance.

    `done` is False for what was only described (a dry run, or nothing to do):
    actions.guarded words those "would ...", maintenance "dry run: ..." or
    "nothing to do: ...". The timeline's own summary line is not an action.
    """
    found = []
    for f in findings if isinstance(findings, list) else []:
        if not isinstance(f, dict):
            continue
        check, summary = str(f.get("check") or ""), str(f.get("summary") or "")
        if check.startswith("action.") and check != "action.timeline":
            done = not summary.startswith("would ")
        elif check.startswith("maintenance."):
            done = not summary.startswith(("dry run", "nothing to do"))
        else:
            continue
        found.append({"check": check, "status": f.get("status"), "summary": summary, "done": done})
    return found


def tidy_numbers(value: Any) -> Any:
    """Floats at 12 significant digits, recursively: 27.099999999999998 becomes 27.1 in the JSON record."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: tidy_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tidy_numbers(v) for v in value]
    return value


def report_time(record: dict[str, Any]) -> str:
    """'2026-12-02 09:06 UTC': the instant the report is about (as_of, else the start)."""
    moment = _parse(record.get("as_of")) or _parse(record.get("start"))
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""


def page_title(record: dict[str, Any]) -> str:
    """'daily 2026-12-02 09:06 UTC - CRITICAL'."""
    outcome = str(record.get("outcome") or "").upper()
    return " ".join(p for p in (str(record.get("runbook") or ""), report_time(record)) if p) + f" - {outcome}"


def findings_worst_first(findings: Any) -> list[dict[str, Any]]:
    """Every finding, the most severe first (the notebook's order within a status)."""
    found = [f for f in findings if isinstance(f, dict)] if isinstance(findings, list) else []
    return sorted(found, key=lambda f: -severity_rank(f.get("status"), missing=-1))  # other names last


def anchor(check: str) -> str:
    """The id of a check's first findings row: `finding-logs-recent_errors`."""
    return ANCHOR_PREFIX + re.sub(r"[^A-Za-z0-9_-]+", "-", check).strip("-")


# ---- the HTML ---------------------------------------------------------------------------------

def header_html(record: dict[str, Any], anchors: set[str] | frozenset[str] = frozenset()) -> str:
    """The header block (id run-header, findings summary id findings-summary); anchors: ids the page has."""
    esc = html.escape
    outcome = str(record.get("outcome") or "")
    rows = [
        ("runbook", f"<b>{esc(str(record.get('runbook') or ''))}</b>"),
        ("outcome", f"<span class='outcome' style='background:{OUTCOME_COLOURS.get(outcome, '#eee')}'>"
                    f"{esc(outcome.upper())}</span>" + _error(record)),
        ("as of", esc(_when(record.get("as_of")) or "-")),
        ("ran", esc(_span(record))),
        ("duration", esc(_duration(record.get("duration_s")))),
        ("mode", esc(str(record.get("mode") or "-"))),
        ("by", esc(str(record.get("user_host") or "-"))),
        ("parameters", parameters_html(record)),
        ("code", esc(_code(record))),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f"<style>{CSS}</style><section id='run-header' data-outcome='{esc(outcome)}'>"
            f"<h1>{esc(page_title(record))}</h1><table class='run-facts'>{table}</table>"
            f"{_notes(record)}{changes_html(record)}{summary_html(record, anchors)}</section>")


def parameters_html(record: dict[str, Any]) -> str:
    """The mark, then every parameter as name = value."""
    mark = run_mark(record)
    css = {LIVE: "mark-live", DRY_RUN: "mark-dry"}.get(mark, "mark-ro")
    given = mapping_field(record, "parameters")
    shown = ", ".join(
        f"<code>{html.escape(str(k))} = {html.escape(repr(v))}</code>" + ("" if k in given else " <i>(default)</i>")
        for k, v in effective_parameters(record).items())
    return f"<span class='mark {css}' id='run-mark'>{html.escape(mark)}</span> {shown or '(none)'}"


def changes_html(record: dict[str, Any]) -> str:
    """Every change the run made, then what it only described."""
    actions = [a for a in record.get("actions") or [] if isinstance(a, dict)]
    done = [a for a in actions if a.get("done")]
    described = [a for a in actions if not a.get("done")]
    parts = ["<div id='run-changes'><h2>Changes made</h2>"]
    if done:
        parts.append("<ul>" + "".join(_action_li(a) for a in done) + "</ul>")
    else:
        parts.append("<p>none: this run changed nothing.</p>")
    if described:
        parts.append(f"<details><summary>{len(described)} described, not done</summary><ul>"
                     + "".join(_action_li(a) for a in described) + "</ul></details>")
    return "".join(parts) + "</div>"


def summary_html(record: dict[str, Any], anchors: set[str] | frozenset[str] = frozenset()) -> str:
    """Findings worst first, each check linked to its row in the report when the page has it."""
    esc = html.escape
    rows = []
    for f in findings_worst_first(record.get("findings")):
        status, check = str(f.get("status") or ""), str(f.get("check") or "")
        target = anchor(check)
        name = f"<a href='#{target}'>{esc(check)}</a>" if target in anchors else esc(check)
        resolved = f" <i>(resolved by {esc(str(f['resolved_by']))})</i>" if f.get("resolved_by") else ""
        rows.append(f"<tr style='background:{STATUS_COLOURS.get(status, '#fff')}'><td><b>{esc(status)}</b></td>"
                    f"<td><code>{name}</code></td><td>{esc(str(f.get('summary') or ''))}{resolved}</td></tr>")
    body = ("<table><thead><tr><th>status</th><th>check</th><th>summary</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>") if rows else "<p>no findings recorded.</p>"
    return f"<div id='findings-summary'><h2>Findings, worst first</h2>{body}</div>"


def inject(page: str, record: dict[str, Any]) -> str:
    """The rendered page with the record's title, row anchors and header at the top of its body."""
    page, anchors = add_anchors(page)
    title = html.escape(page_title(record))
    page, n = re.subn(r"<title>.*?</title>", f"<title>{title}</title>", page, count=1, flags=re.S)
    if not n:
        page = page.replace("<head>", f"<head><title>{title}</title>", 1)
    block = header_html(record, anchors)
    match = re.search(r"<body[^>]*>", page)
    if match is None:
        return block + page
    return page[:match.end()] + block + page[match.end():]


def add_anchors(page: str) -> tuple[str, set[str]]:
    """An id on the first findings row of each check (`<tr data-check=...>`); the ids given."""
    seen: set[str] = set()

    def one(match: re.Match[str]) -> str:
        target = anchor(html.unescape(match.group(1)))
        if target in seen:
            return match.group(0)
        seen.add(target)
        return f"{match.group(0)} id=\"{target}\""

    return re.sub(r'<tr data-check="([^"]*)"', one, page), seen


# ---- small formatting helpers ----------------------------------------------------------------

def _action_li(a: dict[str, Any]) -> str:
    status = str(a.get("status") or "")
    return (f"<li><span style='background:{STATUS_COLOURS.get(status, '#fff')}'>{html.escape(status)}</span> "
            f"<code>{html.escape(str(a.get('check') or ''))}</code>: {html.escape(str(a.get('summary') or ''))}</li>")


def _error(record: dict[str, Any]) -> str:
    return f" <span class='err'>{html.escape(str(record['error']))}</span>" if record.get("error") else ""


def _notes(record: dict[str, Any]) -> str:
    from ccops.archive.html import notes_text

    lines = notes_text(record)
    return "".join(f"<p class='note'>{html.escape(line)}</p>" for line in lines)


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _when(text: Any) -> str:
    moment = _parse(text)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else ""


def _span(record: dict[str, Any]) -> str:
    start, end = _parse(record.get("start")), _parse(record.get("end"))
    if start and end:
        return f"{start:%Y-%m-%d %H:%M:%S} - {end:%H:%M:%S} UTC"
    return _when(record.get("start"))


def _duration(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    seconds = float(value)
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s"


def _code(record: dict[str, Any]) -> str:
    git = mapping_field(record, "git")
    commit = str(git.get("commit") or "")[:12] or "unknown commit"
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    sha = str(record.get("runbook_sha256") or "")[:12]
    return (f"ccops {record.get('ccops_version') or '?'}, commit {commit}{dirty}"
            + (f", runbook sha256 {sha}" if sha else ""))
