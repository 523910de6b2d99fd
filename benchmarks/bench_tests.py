"""Target 6: `make test` under 10 minutes on this machine.

Runs what `make test` runs (ruff, then the whole pytest suite) and times
both; pytest's own --durations list names the slowest tests, so a miss says
where the time went. There is no baseline to divide by: the budget is the
target.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from benchmarks.harness import REPO, BenchEnv, Result, run_measured

BUDGET_S = 600.0


def run(env: BenchEnv) -> list[Result]:
    bin_dir = Path(sys.executable).parent
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CCOPS_") and k != "DATABASE_URL"}
    ruff = run_measured([str(bin_dir / "ruff"), "check", "ccops", "tests", "benchmarks"], environment, cwd=REPO)
    pytest = run_measured([str(bin_dir / "pytest"), "-q", "--durations=12", "-p", "no:cacheprovider"],
                          environment, cwd=REPO, timeout=3 * BUDGET_S)
    total = ruff.seconds + pytest.seconds
    tail = [line for line in pytest.stdout.strip().splitlines() if line.strip()]
    verdict = tail[-1] if tail else pytest.stderr.strip()[-200:]
    durations = _durations(pytest.stdout)
    notes = f"ruff {ruff.seconds:.1f} s (exit {ruff.returncode}), pytest {pytest.seconds:.1f} s: {verdict.strip('= ')}"
    return [Result("6", "make test (ruff + pytest -q)", total, "s", baseline=BUDGET_S, baseline_label="budget",
                   target_text="< 600 s", met=total < BUDGET_S, command="make test", notes=notes,
                   extra={"slowest": durations, "pytest_exit": pytest.returncode, "ruff_exit": ruff.returncode})]


def _durations(text: str) -> list[str]:
    """pytest's --durations lines ("12.34s call tests/test_x.py::test_y")."""
    return [line.strip() for line in text.splitlines() if re.match(r"^\d+\.\d+s (call|setup|teardown) ", line.strip())]
