"""The index page is a jinja2 template (autoescape on; the all-runs table's values escaped before it): a run record's text can never become markup."""

from __future__ import annotations

from html.parser import HTMLParser
from importlib import resources

from ccops.archive.html import render_index

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)> & \"q\""


class Elements(HTMLParser):
    """Every start tag, and the page's text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_record_text_is_escaped_everywhere_it_appears() -> None:
    record = {"runbook": HOSTILE, "start": "2026-11-20T10:00:00Z", "outcome": "critical", "error": HOSTILE,
              "worst": [{"status": "CRITICAL", "check": HOSTILE, "summary": HOSTILE}],
              "parameters": {HOSTILE: HOSTILE}, "mark": HOSTILE, "changes": {"new": [{"check": HOSTILE}]},
              "acks": [{"by": HOSTILE, "note": HOSTILE}], "paths": {"html": HOSTILE},
              "incident": {"status": "CRITICAL", "check": "x", "summary": HOSTILE}}
    page = Elements(render_index([record]))
    assert [tag for tag, _ in page.tags].count("script") == 1, "only the page's own filter script"
    assert not any(tag == "img" for tag, _ in page.tags)
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == [("form", "onsubmit")], "no event handler but the filter form's own"
    assert sum(HOSTILE in text for text in page.text) >= 8, "shown as text, in full"
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and "data-runbook" in attrs]
    assert [row["data-runbook"] for row in rows] == [HOSTILE, HOSTILE], "attribute values come back intact"
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a" and attrs.get("href", "").startswith("%3C")]
    assert links and all("<" not in href and " " not in href for href in links), "paths are URL-quoted"


def test_the_templates_ship_inside_the_package() -> None:
    """package-data: an installed ccops finds its page, style and script next to ccops.archive."""
    folder = resources.files("ccops.archive") / "templates"
    assert {"index.html.j2", "index.css", "index.js"} <= {entry.name for entry in folder.iterdir()}
