"""The processes that run a runbook load nbformat without jsonschema's unused format checkers, and still validate.

papermill_entry, `ccops run`, the kernel's session and the git filter mark those modules absent
(ccops.runbook.papermill_entry.UNUSED_FORMAT_CHECKERS): rfc3987_syntax alone compiled grammars for a
second in every one of them. Checked in a fresh interpreter, since this test process has imported
nbformat long before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
from ccops.runbook.papermill_entry import UNUSED_FORMAT_CHECKERS, skip_unused_format_checkers
skip_unused_format_checkers()
import jsonschema, nbformat
loaded = [name for name in UNUSED_FORMAT_CHECKERS if sys.modules.get(name) is not None]
runbook = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(runbook)
runbook.cells[0]["cell_type"] = "no such cell type"
try:
    nbformat.validate(runbook)
    caught = False
except nbformat.ValidationError:
    caught = True
print(json.dumps({"loaded": loaded, "invalid_caught": caught,
                  "formats": sorted(jsonschema.FormatChecker().checkers)}))
"""


def test_unused_format_checkers_stay_unloaded_and_notebooks_are_still_validated():
    proc = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "runbooks" / "daily.ipynb")],
                          capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(proc.stdout)
    assert result["loaded"] == []
    assert result["invalid_caught"], "a broken notebook must still fail validation"
    # jsonschema skips exactly the formats whose checker is absent; the rest are still checked
    assert "iri" not in result["formats"] and "duration" not in result["formats"]
    assert {"date", "ipv4", "email", "regex"} <= set(result["formats"])
