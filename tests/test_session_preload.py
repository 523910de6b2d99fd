"""Opening a run starts importing what charts need in the background, so the first chart does not wait for it.

Only for a runbook that will draw: session.start() preloads the chart modules when the
runbook's import cell brought in ccops.core.charts (daily, weekly, quarterly); the others
(backup, recovery, monthly, the emergencies) must not pay 0.5 s of CPU for it, and the health
check imports matplotlib at its one chart. That rule holds only while every figure is made
through ccops.core.charts, which the last test checks in the source. Each case is a fresh
interpreter, as a kernel is.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys, time
from ccops.checks import logs  # as the daily runbook's import cell does: its error review draws a chart
from ccops.runbook.session import start
assert "matplotlib" not in sys.modules, "imported before the run opened"
ctx = start("daily", as_of="2026-11-20T18:00:00")
deadline = time.monotonic() + 60
while "matplotlib.backends.backend_agg" not in sys.modules or "matplotlib.dates" not in sys.modules:
    assert time.monotonic() < deadline, "matplotlib was not imported in the background"
    time.sleep(0.01)
import threading
for thread in threading.enumerate():
    if thread.name == "ccops-preload-charts":
        thread.join(60)
import gc
assert gc.isenabled(), "the garbage collector stayed paused after the import"
from ccops.core.charts import Chart
import pandas as pd
png = Chart(x="hour", y="errors", x_label="hour", y_label="errors").render(pd.DataFrame({"hour": [1, 2], "errors": [3, 4]}))
assert png.startswith(b"\\x89PNG"), png[:8]
print("ok")
"""


def test_start_imports_the_chart_modules_in_the_background(ccops_env: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


PROBE = """
import json, sys, threading
exec(sys.argv[1])
from ccops.runbook.session import _preload_charts
_preload_charts()
for thread in threading.enumerate():
    if thread.name == "ccops-preload-charts":
        thread.join(60)
print(json.dumps({"matplotlib": "matplotlib.backends.backend_agg" in sys.modules}))
"""


def import_cell(runbook: str) -> str:
    """The runbook's own import cell(s), as its kernel runs them before session.start()."""
    notebook = json.loads((REPO / "runbooks" / runbook).read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    return "\n".join(cell for cell in cells if cell.lstrip().startswith(("import ", "from ")))


@pytest.mark.parametrize(("runbook", "preloads"), [
    ("daily.ipynb", True),  # logs.error_review draws the errors per hour
    ("weekly.ipynb", True),
    ("health_check.ipynb", False),  # its hourly chart imports matplotlib when drawn (see session._preload_charts)
    ("emergency/system_down.ipynb", False),
])
def test_chart_modules_are_preloaded_only_for_runbooks_that_can_draw_a_chart(runbook: str, preloads: bool):
    cell = import_cell(runbook)
    assert cell, f"{runbook} has no import cell"
    proc = subprocess.run([sys.executable, "-c", PROBE, cell], capture_output=True, text=True, timeout=120,
                          check=True, cwd=REPO / "runbooks")
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"matplotlib": preloads}


def _matplotlib_imports(path: Path) -> list[int]:
    """Lines importing matplotlib outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    lines = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "matplotlib" or n.startswith("matplotlib.") for n in names):
            lines.append(node.lineno)
    return lines


def test_every_figure_is_made_through_the_charts_module():
    """A step drawing with matplotlib directly would draw in a runbook the preload rule counts as chart-free.

    ccops.core.findings only renders a figure a step made; everything else asks ccops.core.charts.
    """
    allowed = {"ccops/core/charts.py", "ccops/core/findings.py"}
    found = {str(p.relative_to(REPO)): lines for p in sorted((REPO / "ccops").rglob("*.py"))
             if (lines := _matplotlib_imports(p))}
    assert set(found) == allowed, {k: v for k, v in found.items() if k not in allowed}
