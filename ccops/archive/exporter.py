"""nbconvert's HTML exporter for the archive, its last step done on the page's tags instead of through BeautifulSoup.

nbconvert's HTMLExporter renders its template, then parses the whole page with
BeautifulSoup (html.parser) only to add three attributes, and serializes it
again: more than half of the CPU of rendering a run's two pages (0.26 s against
0.11 s for the daily runbook at production scale), plus 0.2 s in every new
process for soupsieve to compile its CSS grammar, for the three selectors. Every
`ccops run` renders two pages. The three changes are made here on the tags the
template writes, with the same result:

- an <img> without an alt attribute gets nbconvert's alt text (and the same
  warning in the log);
- inside the body (class jp-Notebook), each cell's input wrapper and each
  output div gets tabindex="0", so a keyboard reaches them.

tests/test_archive_exporter.py renders real notebooks both ways and compares
the two documents parsed. Whatever else nbconvert's exporter does (filters,
preprocessors, resources) is its own code, called as HTMLExporter calls it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from jinja2.bccache import Bucket, FileSystemBytecodeCache
from nbconvert import HTMLExporter
from nbconvert.exporters.templateexporter import TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

MISSING_ALT = "No description has been provided for this image"  # nbconvert's words
FOCUSABLE_CLASSES = ("jp-Cell-inputWrapper", "jp-OutputArea-output")
# a start tag, its attributes read with their quotes (a quoted value may hold ">")
_TAG = re.compile(r"""<(img|div|body)\b((?:[^>"']|"[^"]*"|'[^']*')*)>""", re.IGNORECASE)
_RAW_TEXT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")


class ArchiveExporter(HTMLExporter):
    """HTMLExporter whose page is finished by `accessible` instead of a BeautifulSoup round trip."""

    def _create_environment(self) -> Any:
        environment = super()._create_environment()
        environment.bytecode_cache = compiled_templates()
        return environment

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None,  # type: ignore[override]
                           **kw: Any) -> tuple[str, dict[str, Any]]:
        # HTMLExporter.from_notebook_node up to its template render, as nbconvert 7 writes it
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self,
                                                 resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        html, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
        return accessible(html, self.log), resources


class QuietBytecodeCache(FileSystemBytecodeCache):
    """Jinja's own cache of compiled templates, in its private per-user dir; it never fails a render.

    Why: every `ccops run` process compiled nbconvert's twenty templates again (0.05-0.1 s of CPU of
    its renderer's warm-up). Jinja keys each entry by the template's name and checks it against the
    source's checksum and its own version, so a changed template or jinja compiles afresh. A cache
    that cannot be read or written (a full disk: the out-of-disk runbook still archives) is skipped.
    """

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry is compiled afresh
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except Exception:  # noqa: BLE001 - the render goes on without the cache
            pass


def compiled_templates() -> QuietBytecodeCache | None:
    """The cache in jinja's private dir ($TMPDIR/_jinja2-cache-UID, 0700, the user's own), or None if that is unsafe."""
    try:
        return QuietBytecodeCache()
    except Exception:  # noqa: BLE001 - jinja refuses a dir another user owns or can write: no cache then
        return None


def accessible(html: str, log: logging.Logger | logging.LoggerAdapter | None = None) -> str:
    """The page with alt text on every <img> and tabindex="0" on the cells' input and output divs."""
    in_notebook = False
    missing_alt = 0

    def finish(match: re.Match[str]) -> str:
        nonlocal in_notebook, missing_alt
        name, attributes = match.group(1).lower(), match.group(2)
        names = {m.group(1).lower(): m for m in _ATTRIBUTE.finditer(attributes)}
        if name == "body":
            in_notebook = in_notebook or "jp-Notebook" in _classes(names)
            return match.group(0)
        if name == "img":
            if "alt" in names:
                return match.group(0)
            missing_alt += 1
            return _with_attribute(match, attributes, f'alt="{MISSING_ALT}"')
        if in_notebook and any(c in _classes(names) for c in FOCUSABLE_CLASSES):
            if "tabindex" in names:
                found = names["tabindex"]
                start, end = match.start(2) + found.start(), match.start(2) + found.end()
                return match.string[match.start():start] + 'tabindex="0"' + match.string[end:match.end()]
            return _with_attribute(match, attributes, 'tabindex="0"')
        return match.group(0)

    # a <script>'s or <style>'s text is no markup (to the browser, as to html.parser): left as it is
    page = "".join(part if raw else _TAG.sub(finish, part) for part, raw in _markup_and_raw_text(html))
    if missing_alt and log is not None:
        log.warning("Alternative text is missing on %s image(s).", missing_alt)
    return page


def _markup_and_raw_text(html: str) -> list[tuple[str, bool]]:
    parts: list[tuple[str, bool]] = []
    at = 0
    for block in _RAW_TEXT.finditer(html):
        parts += [(html[at:block.start()], False), (block.group(0), True)]
        at = block.end()
    return [*parts, (html[at:], False)]


def _classes(names: dict[str, re.Match[str]]) -> list[str]:
    found = names.get("class")
    if found is None or found.group(2) is None:
        return []
    return found.group(2).strip("\"'").split()


def _with_attribute(match: re.Match[str], attributes: str, attribute: str) -> str:
    """The start tag with one attribute added last (before a closing "/" of `<img ... />`)."""
    body = attributes.rstrip()
    closing = "/" if body.endswith("/") else ""
    body = body[:-1].rstrip() if closing else body
    return f"<{match.group(1)}{body} {attribute}{' /' if closing else ''}>"
