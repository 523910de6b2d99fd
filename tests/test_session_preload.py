"""Opening a run starts importing what charts need in the background, so the first chart does not wait for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys, time
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
