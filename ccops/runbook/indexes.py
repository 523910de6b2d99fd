"""After anything changes the archive: the target's index, and with targets the fleet overview too.

One function for every caller that used to rebuild the index alone (a run,
an interactive run, `ccops reports index`, an acknowledgement), so a fleet
page can never lag behind the target index it summarises.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ccops import archive
from ccops.core.settings import Settings, fleet_archives


def refresh_indexes(settings: Settings, perms: archive.Permissions | None = None) -> Sequence[dict[str, Any]]:
    """Rebuild the archive's index (ArchiveError when it cannot be written), then the fleet page.

    The fleet page is a convenience over every target's own index, so a
    failure to write it is one warning line, never a failed run: the run and
    its target's index are already complete.
    """
    records = archive.rebuild_index(Path(settings.archive_dir), perms)
    if settings.targets and settings.fleet_archive_dir is not None:
        from ccops.archive.fleet import write_fleet_index

        try:
            write_fleet_index(Path(settings.fleet_archive_dir), fleet_archives(settings))
        except archive.ArchiveError as exc:
            print(f"ccops: warning: the fleet overview was not rewritten: {exc}", file=sys.stderr)
    return records
