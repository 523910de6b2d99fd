"""How ccops shows a file's path to the operator.

A path under the directory the command was started in reads best relative to
it (`outputs/daily/...`, what a shell beside it can open); any other path stays
absolute, because `../../var/lib/...` says less than `/var/lib/...`. The
runner's one-line result and the archive's text listing both print report paths this way.
"""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies under it, else as given."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows): no relative form
        return str(path)
    return str(path) if relative.startswith("..") else relative
