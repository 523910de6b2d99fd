"""outputs/index.html: where a reviewer starts.

One self-contained page (inline CSS, inline SVG, a few lines of vanilla JS),
so it works opened from disk, offline, from a copied archive: the latest run
of each runbook at a glance, key figures across runs, and every run in a table
that a reviewer can filter by runbook and outcome. The table is complete HTML
without the script; the script only hides rows. Everything is built from the
index summaries (archive.summary), never from notebooks.

The markup, style and script are templates (ccops/archive/templates: the page
in index.html.j2, index.css, index.js), rendered by jinja2 with autoescaping
on, so every value from a run record is escaped by default and the page's
layout reads as HTML. The one exception is a row of the all-runs table
(run_row): a page has one per run of its month, 10,000 of them in a full
rebuild, and written out here with each value escaped as it is inserted it
costs a fifth of the same row through the template. This module decides what the page says: which run is
the latest of each runbook, how a run's record reads as text; the charts are
inline SVG from ccops.archive.figures, passed in as ready markup.
"""

from __future__ import annotations

import functools
import posixpath
from collections import Counter
from datetime import datetime
from html import escape as html_escape
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

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


@functools.cache
def environment() -> jinja2.Environment:
    """The templates shipped in the package (package-data); autoescape on, for every template."""
    return jinja2.Environment(loader=jinja2.PackageLoader("ccops.archive", "templates"), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


class View:
    """What the template shows of one thing, read there by attribute (`run.outcome`).

    Why not a dict: jinja2 reads `run.outcome` with getattr first and falls back to
    the item only after an AttributeError; on dicts that exception came 300,000 times
    per page of 10,000 runs. Attributes in the instance dict are found at once.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value

    def items(self) -> Any:
        return self.__dict__.items()


def render_index(records: list[dict[str, Any]], generated: datetime | None = None, *,
                 latest_from: list[dict[str, Any]] | None = None, chart_summaries: list[dict[str, Any]] | None = None,
                 outcomes: dict[str, int] | None = None, unreviewed: int | None = None, total: int | None = None,
                 runbooks: list[str] | None = None, months: list[tuple[str, str, int]] | None = None,
                 month: str | None = None, note: str = "") -> str:
    """A page of the index from summaries, newest first: `records` are the rows of its runs table.

    Alone, `records` are the whole archive (a small one, or a test). The index
    state (ccops.archive.indexstate) pages a large one: the front page gets the
    newest runs as `records` and, for the rest of the archive, `latest_from` (each
    runbook's newest runs, for the latest panel), `chart_summaries`, the outcome
    counts, the unreviewed count, the total and the `months` (name, page, runs)
    to link; a month's page gets `month` and shows only its runs.
    """
    latest: dict[str, dict[str, Any]] = {}
    recent: dict[str, list[dict[str, Any]]] = {}
    completed: dict[str, dict[str, Any]] = {}
    for r in (records if latest_from is None else latest_from) if month is None else ():
        name = str(r.get("runbook"))  # newest first: the first seen per runbook is its latest
        latest.setdefault(name, r)
        if r.get("outcome") in COMPLETED:
            completed.setdefault(name, r)
        strip = recent.setdefault(name, [])
        if len(strip) < STRIP_RUNS:
            strip.append(r)
    by_outcome = Counter(outcomes) if outcomes is not None else Counter(str(r.get("outcome") or "") for r in records)
    totals = ", ".join(f"{n} {name}" for name, n in sorted(by_outcome.items(), key=lambda kv: _outcome_order(kv[0])))
    if unreviewed is None:
        unreviewed = sum(1 for r in records if is_unreviewed_critical(r))
    charts = [] if month is not None else charts_html(records if chart_summaries is None else chart_summaries)
    return environment().get_template("index.html.j2").render(
        outcome_colours=OUTCOME_COLOURS,
        generated=f"{generated:%Y-%m-%d %H:%M}" if generated else "",
        month=month,
        total=len(records) if total is None else total,
        totals=totals if month is None else "",
        note=note,
        months=[View({"name": name, "href": quote(href), "runs": n}) for name, href, n in months or []],
        unreviewed=unreviewed if month is None else 0,
        latest=[latest_view(latest[k], recent.get(k, []), completed.get(k)) for k in sorted(latest)],
        charts=[Markup(svg) for svg in charts],  # noqa: S704 - our own SVG, its text escaped by svgchart
        runbooks=sorted({str(r.get("runbook")) for r in records}) if runbooks is None else runbooks,
        outcomes=_outcomes_present(records),
        run_count=len(records),
        rows=Markup("".join(map(run_row, records))),  # noqa: S704 - run_row escapes every value it inserts
    )


_MARK_CSS = {"LIVE": "mark-LIVE", "DRY RUN": "mark-DRY"}
_CHANGE_KINDS = ("new", "worse", "better", "resolved")
_NO_CHANGES = "<span class='muted'>-</span>"
_UNREVIEWED_ROW = " class='unreviewed'"


def run_row(r: dict[str, Any]) -> str:
    """One row of the all-runs table: the markup the page's other tables get from the template, every
    value from the record passed through html.escape (`e` below) as it is inserted.

    Why not the template: a month page has a row per run (10,000 in a full rebuild)
    and jinja2 looks up each of a row's forty values through its getattr machinery;
    written out here, the rows of 10,000 runs cost about a tenth of a second.
    Keep every interpolation wrapped in e(): only our own fixed markup goes in bare, and the two values
    that cannot hold a character to escape (a URL-quoted path, a formatted duration).
    """
    e = html_escape
    runbook = e(str(r.get("runbook") or ""))
    outcome = e(str(r.get("outcome") or ""))
    unreviewed = is_unreviewed_critical(r)
    notes = "".join(f"<div class='note'>{e(line)}</div>" for line in notes_text(r))
    mark = str(r.get("mark") or "")
    given = r.get("parameters")
    params = " ".join(f"<code>{e(str(k))}={e(str(v))}</code>"
                      for k, v in (given.items() if isinstance(given, dict) else ()) if k != "as_of")
    if mark:
        params = f"<span class='mark {e(_MARK_CSS.get(mark, 'mark-ro'))}'>{e(mark)}</span>" + (" " + params if params
                                                                                              else "")
    changes = r.get("changes")
    if isinstance(changes, dict):
        items = "".join(f"<li class='chg-{kind}'>{kind}: <code>{e(str(c.get('check')))}</code> {e(str(c.get('from')))}"
                        f" → {e(str(c.get('to')))}</li>" for kind in _CHANGE_KINDS for c in changes.get(kind) or [])
        change_cell = f"<ul class='chg'>{items}</ul>" if items else "<span class='muted'>no change</span>"
    else:
        change_cell = _NO_CHANGES
    acks = "".join(
        f"<div class='acked'>&#10003; {e(str(a.get('by') or ''))} "
        f"{e(str(a.get('at') or '').replace('T', ' ').removesuffix('Z'))}"
        f"{': ' + e(str(a['note'])) if a.get('note') else ''}</div>"
        for a in r.get("acks") or [] if isinstance(a, dict))
    if not acks:
        acks = "<span class='unrev'>UNREVIEWED</span>" if unreviewed else "<span class='muted'>not reviewed</span>"
    recheck = _recheck(r)
    if recheck is not None:
        acks += f"<div class='{e(recheck['css'])}'><a href='{e(recheck['href'])}'>{e(recheck['text'])}</a></div>"
    paths = r.get("paths") or {}
    # quote() leaves letters, digits, "_.-~/" and %XX only: nothing html.escape would change
    links = " · ".join(f"<a href='{quote(str(paths[key]), safe='/')}'>{label}</a>" for key, label in LINKS if paths.get(key))
    return (f"<tr data-runbook='{runbook}' data-outcome='{outcome}'{_UNREVIEWED_ROW if unreviewed else ''}>\n"
            f"<td class='when'>{e(_when(r))}</td>\n<td>{runbook}</td>\n<td class='o o-{outcome}'>{outcome}</td>\n"
            f"<td class='num'>{_duration(r.get('duration_s'))}</td>\n<td>{e(counts_text(r.get('counts')))}{notes}</td>\n"
            f"<td>{params}</td>\n<td>{change_cell}</td>\n<td>{acks}</td>\n<td>{links}</td>\n"
            f"<td class='err'>{e(str(r.get('error') or ''))}</td>\n</tr>\n")


def run_view(r: dict[str, Any]) -> View:
    """What the page shows of one run, every value a plain string (the template escapes them)."""
    given = r.get("parameters")
    params: dict[str, Any] = given if isinstance(given, dict) else {}
    mark = str(r.get("mark") or "")
    paths = r.get("paths") or {}
    return View({
        "runbook": str(r.get("runbook") or ""),
        "anchor": quote(str(r.get("runbook") or ""), safe="/"),
        "outcome": str(r.get("outcome") or ""),
        "when": _when(r),
        "duration": _duration(r.get("duration_s")),
        "counts": counts_text(r.get("counts")),
        "notes": notes_text(r),
        "error": str(r.get("error") or ""),
        "mark": mark,
        "mark_css": {"LIVE": "mark-LIVE", "DRY RUN": "mark-DRY"}.get(mark, "mark-ro"),
        # as_of aside: the start column says when
        # (separator, name, value): the template needs no `loop.first` (jinja2 builds a loop object for it)
        "parameters": _separated([(str(k), str(v)) for k, v in params.items() if k != "as_of"], " "),
        "changes": _changes(r.get("changes")),
        "acks": [View({"by": str(a.get("by") or ""), "at": str(a.get("at") or "").replace("T", " ").removesuffix("Z"),
                       "note": str(a["note"]) if a.get("note") else ""})
                 for a in r.get("acks") or [] if isinstance(a, dict)],
        "unreviewed": is_unreviewed_critical(r),
        "recheck": _recheck(r),
        "links": _separated([(quote(str(paths[key]), safe="/"), label) for key, label in LINKS if paths.get(key)], " · "),
    })


def latest_view(r: dict[str, Any], recent: list[dict[str, Any]], completed: dict[str, Any] | None) -> View:
    """A runbook's latest run, with its worst findings, its recent outcomes (oldest first) and, beside a
    failed, timed-out or killed run, the latest completed run it would otherwise hide."""
    view = run_view(r)
    view["worst"] = [View({"status": str(w.get("status", "")), "check": str(w.get("check", "")),
                           "summary": str(w.get("summary", ""))}) for w in r.get("worst") or [] if isinstance(w, dict)]
    view["strip"] = [View({"outcome": str(x.get("outcome") or ""), "when": _when(x)}) for x in reversed(recent)]
    view["previous"] = None
    if completed is not None and completed is not r:
        previous = run_view(completed)
        previous["worst_line"] = "; ".join(f"{w.get('status')} {w.get('check')}"
                                           for w in completed.get("worst") or [] if isinstance(w, dict))
        view["previous"] = previous
    return view


def _separated(items: list[tuple[str, str]], separator: str) -> list[tuple[str, str, str]]:
    """Each pair with what goes before it: nothing for the first, `separator` for the others."""
    return [("" if i == 0 else separator, *item) for i, item in enumerate(items)]


def is_unreviewed_critical(r: dict[str, Any]) -> bool:
    return r.get("outcome") == "critical" and not r.get("acks")


def _changes(changes: Any) -> list[View] | None:
    """Findings new, worse, better and resolved against the runbook's previous completed run (None: not compared)."""
    if not isinstance(changes, dict):
        return None
    return [View({"kind": kind, "check": str(c.get("check")), "before": str(c.get("from")), "after": str(c.get("to"))})
            for kind in ("new", "worse", "better", "resolved") for c in changes.get(kind) or []]


def _recheck(r: dict[str, Any]) -> View | None:
    """'rechecked 2026-12-03: reproduces' (or 'differs: 2 findings'), linking the recheck record (None when never)."""
    from ccops.archive.rechecks import note

    latest = r.get("recheck")
    if not isinstance(latest, dict):
        return None
    folder = posixpath.dirname(str((r.get("paths") or {}).get("json") or ""))
    return View({"href": posixpath.join(folder, str(latest.get("file") or "")),
                 "css": "recheck-ok" if latest.get("reproduces") else "recheck-differs", "text": note(latest)})


def _outcomes_present(records: list[dict[str, Any]]) -> list[str]:
    """The outcome filter's choices: the known outcomes in their order, then any other, sorted."""
    present = {str(r.get("outcome") or "") for r in records}
    return [o for o in OUTCOMES if o in present] + sorted(present - set(OUTCOMES) - {""})


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


def counts_text(counts: Any) -> str:
    """"3 OK, 1 WARNING": the non-zero finding counts of a run."""
    if not isinstance(counts, dict):
        return ""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n)


def _outcome_order(outcome: str) -> int:
    return OUTCOMES.index(outcome) if outcome in OUTCOMES else len(OUTCOMES)
