"""papermill's command line, started without the 1-second jsonschema format-grammar import.

nbformat validates notebooks with jsonschema, whose format checker imports
`rfc3987_syntax` when installed; that module compiles dozens of grammars at
import time (about 1 s here), and the notebook schema never uses that format.
Marking it absent makes jsonschema skip the format check, as it does when the
package is not installed. The runner and its papermill child both start this way.
"""

from __future__ import annotations

import sys


def skip_slow_format_grammars() -> None:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


if __name__ == "__main__":
    skip_slow_format_grammars()
    from papermill.cli import papermill

    sys.exit(papermill())
