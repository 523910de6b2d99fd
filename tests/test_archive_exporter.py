"""The archive's HTML pages are nbconvert's, without its BeautifulSoup round trip (ccops.archive.exporter).

Each notebook is rendered by stock nbconvert (HTMLExporter, the archive's options) and by the
archive's exporter, in both modes (full page, code-free report); the two pages, parsed by
BeautifulSoup, must be the same document: same tags, same attributes, same text. The notebooks:
one holding every kind of output the template turns into an <img>, a <script>'s and a <style>'s
text that only look like tags, and markup in code and outputs; and the daily runbook as the
runbook tests execute it on the demo (tests/test_runbooks.py calls the helper).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from bs4 import BeautifulSoup

from ccops import archive
from ccops.archive.exporter import MISSING_ALT, accessible

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2"
    "21bc330000000049454e44ae426082")).decode()
RANDOM_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'


def stock_page(notebook: Any, exclude_input: bool) -> str:
    """The page as nbconvert's own HTMLExporter makes it, with the archive's template and options."""
    from nbconvert import HTMLExporter

    archived = archive._exporter(exclude_input)
    stock = HTMLExporter(exclude_input=exclude_input, exclude_input_prompt=exclude_input,
                         exclude_output_prompt=exclude_input, extra_loaders=archived.extra_loaders,
                         template_file=archived.template_file)
    return stock.from_notebook_node(notebook)[0]


def assert_renders_as_nbconvert(notebook: Any) -> None:
    """Both pages the same document as nbconvert's (the template's random uuid4 ids of JavaScript outputs aside)."""
    def parsed(page: str) -> BeautifulSoup:
        return BeautifulSoup(RANDOM_ID.sub("uuid4", page), "html.parser")

    for exclude_input in (False, True):
        ours, theirs = archive.render_html(notebook, exclude_input), stock_page(notebook, exclude_input)
        assert parsed(ours) == parsed(theirs), exclude_input


def outputs_notebook() -> Any:
    new = nbformat.v4
    image = new.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})
    sized = new.new_output("display_data", data={"image/png": PNG}, metadata={"image/png": {"width": 40}})
    svg = new.new_output("display_data", data={"image/svg+xml": SVG})
    html = new.new_output("display_data", data={"text/html": (
        '<figure><img alt="errors per hour: 3 > 2" src="data:image/png;base64,' + PNG + '"/></figure>'
        "<img src='data:image/png;base64," + PNG + "' />"
        '<IMG SRC="data:image/png;base64,' + PNG + '">'
        '<img alt="" src="x.png"><div class="jp-OutputArea-output" tabindex="-1">nested</div>'
        "<table><tr><td>1 &lt; 2</td></tr></table>")})
    script = new.new_output("display_data", data={"application/javascript": 'var s = "<img src=x.png>";'})
    styled = new.new_output("display_data", data={"text/html": (
        '<style>div.x > img { border: 0 } /* <img src="y.png"> */</style><script>let t = "<div class=\\"'
        'jp-Cell-inputWrapper\\">";</script><p>after</p>')})
    failed = new.new_output("error", ename="ValueError", evalue="bad <img> value",
                            traceback=["\x1b[0;31mValueError\x1b[0m: bad <img> value"])
    cells = [
        new.new_markdown_cell('# Title\n\n![a chart](data:image/png;base64,' + PNG + ')\n\n<img src="z.png">'),
        new.new_code_cell('print("<div class=\\"jp-Cell-inputWrapper\\">")', outputs=[
            new.new_output("stream", name="stdout", text='<div class="jp-Cell-inputWrapper">\n')]),
        new.new_code_cell("show()", outputs=[image, sized, svg, html, script, styled]),
        new.new_code_cell("raise ValueError", outputs=[failed]),
        new.new_raw_cell("<img src=raw.png>"),
    ]
    notebook = new.new_notebook(cells=cells)
    notebook.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}
    return notebook


def test_every_output_renders_as_nbconvert_renders_it():
    assert_renders_as_nbconvert(outputs_notebook())


def test_each_image_without_alt_gets_nbconverts_words_and_the_cells_their_tabindex(caplog):
    page = archive.render_html(outputs_notebook())
    soup = BeautifulSoup(page, "html.parser")
    images = soup.find_all("img")
    assert images and all(img.has_attr("alt") for img in images)
    assert sum(img["alt"] == MISSING_ALT for img in images) == 6  # png, sized png, svg, ' />', <IMG>, markdown <img>
    assert {img["alt"] for img in images} >= {"errors per hour: 3 > 2", "", "a chart"}
    wrappers = soup.select(".jp-Notebook div.jp-Cell-inputWrapper")
    assert len(wrappers) == 4 and all(w["tabindex"] == "0" for w in wrappers)
    outputs = soup.select(".jp-Notebook div.jp-OutputArea-output")
    assert len(outputs) > 6 and all(o["tabindex"] == "0" for o in outputs), "including the one an output wrote"
    assert 'var s = "<img src=x.png>";' in page and "/* <img src=\"y.png\"> */" in page, "script and style text kept"


@pytest.mark.parametrize("page", [
    '<body class="jp-Notebook"><div class="jp-Cell-inputWrapper" data-x="a>b">x</div></body>',
    '<head><div class="jp-Cell-inputWrapper">outside the notebook</div></head><body class="jp-Notebook"></body>',
    '<body class="other"><div class="jp-OutputArea-output">not a notebook</div><img/></body>',
])
def test_tags_are_read_with_their_quotes_and_only_the_notebook_body_changes(page):
    from bs4 import BeautifulSoup as Soup

    stock = Soup(page, "html.parser")  # nbconvert's three changes, as HTMLExporter makes them
    for elem in stock.select("img:not([alt])"):
        elem.attrs["alt"] = MISSING_ALT
    for elem in stock.select(".jp-Notebook div.jp-Cell-inputWrapper") + stock.select(
            ".jp-Notebook div.jp-OutputArea-output"):
        elem.attrs["tabindex"] = "0"
    assert Soup(accessible(page), "html.parser") == stock


def test_a_missing_alt_is_logged_as_nbconvert_logs_it(caplog):
    log = logging.getLogger("test-exporter")
    with caplog.at_level(logging.WARNING, logger="test-exporter"):
        accessible('<body class="jp-Notebook"><img src="a.png"><img alt="b" src="b.png"></body>', log)
    assert [r.getMessage() for r in caplog.records] == ["Alternative text is missing on 1 image(s)."]


RENDER_IN_A_NEW_PROCESS = (
    "import sys; from ccops.runbook.papermill_entry import skip_unused_format_checkers; "
    "skip_unused_format_checkers(); import nbformat; from ccops import archive; "
    "notebook = nbformat.read(sys.argv[1], as_version=4); "
    "sys.stdout.write(archive.render_html(notebook) + archive.render_html(notebook, True))"
)


def _render_in_a_new_process(tmpdir) -> str:
    repo = Path(__file__).resolve().parent.parent
    notebook = Path(tmpdir).parent / "outputs.ipynb"  # one file: every process renders the same cell ids
    if not notebook.exists():
        nbformat.write(outputs_notebook(), str(notebook))
    proc = subprocess.run([sys.executable, "-c", RENDER_IN_A_NEW_PROCESS, str(notebook)], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "TMPDIR": str(tmpdir)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return RANDOM_ID.sub("uuid4", proc.stdout)


def test_compiled_templates_are_kept_between_processes_and_a_damaged_entry_changes_no_page(tmp_path):
    """The first process compiles the templates into jinja's private dir, the next loads them (it writes
    nothing: jinja writes only what it had to compile), and entries damaged on disk are compiled again."""
    (tmp_path / "tmp").mkdir()
    first = _render_in_a_new_process(tmp_path / "tmp")
    cache = tmp_path / "tmp" / f"_jinja2-cache-{os.getuid()}"
    entries = sorted(cache.glob("__jinja2_*.cache"))
    assert len(entries) >= 10, "nbconvert's templates, compiled"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    written = {entry: entry.stat().st_mtime_ns for entry in entries}
    assert _render_in_a_new_process(tmp_path / "tmp") == first
    assert {entry: entry.stat().st_mtime_ns for entry in entries} == written, "the second process loaded them"
    for entry in entries:
        entry.write_bytes(b"not jinja bytecode")
    assert _render_in_a_new_process(tmp_path / "tmp") == first
    assert all(entry.read_bytes() != b"not jinja bytecode" for entry in entries), "damaged entries compiled again"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the cache dir to another user")
def test_a_cache_dir_another_user_owns_is_not_used_and_the_page_is_the_same(tmp_path):
    """jinja refuses a cache dir that is not the user's own (its bytecode is executed): the page renders without it."""
    (tmp_path / "own").mkdir()
    first = _render_in_a_new_process(tmp_path / "own")
    foreign = tmp_path / "foreign" / f"_jinja2-cache-{os.getuid()}"
    foreign.mkdir(parents=True, mode=0o700)
    shutil.chown(foreign, "nobody", "nogroup")
    assert _render_in_a_new_process(tmp_path / "foreign") == first
    assert not list(foreign.iterdir()), "nothing written into a dir another user owns"
