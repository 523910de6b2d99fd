"""THE backup-file naming rule: which file names are backups, of what, by whom, from when.

One rule for every reader (listing, retention, the daily check, the dead man's
switch, restore, the off-site copy): ccops' own names and those of the app's
scripts/backup.sh (FACTS.md "Backups already on disk": `db_YYYYmmdd_HHMMSS.sql`,
`env_*`, `logs_*.tar.gz`). A second, looser copy elsewhere once took files for
backups that retention then counted towards its floor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

PREFIX = "contentcreator_"
ORIGIN_CCOPS = "ccops"
ORIGIN_APP = "app backup.sh"
KINDS = ("db", "env", "logs")
DB_KINDS = ("db",)


@dataclass(frozen=True)
class NameForm:
    """One way a backup file is named: its prefix, what it holds, who writes it, its endings."""

    prefix: str
    kind: str  # db: a database dump; env: a copy of the app's .env; logs: a tarball of the app's logs
    origin: str
    suffixes: tuple[str, ...]
    sequence: bool  # ccops adds _2, _3 when two backups fall in the same second


# THE backup-file naming rule (FACTS.md "Backups already on disk"): ccops' own names, and those
# of the app's scripts/backup.sh (`date +%Y%m%d_%H%M%S`). ccops' env and logs copies carry the
# contentcreator_ prefix, so the app's own names stay distinct from them.
NAME_FORMS = (
    NameForm("contentcreator_", "db", ORIGIN_CCOPS, (".dump", ".dump.zst", ".sql", ".sql.gz"), True),
    NameForm("contentcreator_env_", "env", ORIGIN_CCOPS, ("",), True),
    NameForm("contentcreator_logs_", "logs", ORIGIN_CCOPS, (".tar.gz",), True),
    NameForm("db_", "db", ORIGIN_APP, (".sql", ".sql.gz"), False),
    NameForm("env_", "env", ORIGIN_APP, ("",), False),
    NameForm("logs_", "logs", ORIGIN_APP, (".tar.gz",), False),
)


def form_pattern(form: NameForm) -> str:
    endings = "|".join(re.escape(s) for s in form.suffixes)
    sequence = r"(?:_\d+)?" if form.sequence else ""
    return rf"{re.escape(form.prefix)}(\d{{8}})_(\d{{6}}){sequence}(?:{endings})"


_FORM_RES = tuple((form, re.compile(f"^{form_pattern(form)}$")) for form in NAME_FORMS)
# any backup name of any kind and origin (for "is this file a backup?"); parse_name says which
NAME_RE = re.compile("^(?:" + "|".join(form_pattern(f) for f in NAME_FORMS) + ")$")


@dataclass(frozen=True)
class BackupName:
    kind: str
    origin: str
    created: datetime  # naive UTC


def _stamp_utc(stamp: str, origin: str, zone: str | None) -> datetime:
    """The name's time as naive UTC: ccops writes UTC; backup.sh's `date` writes the app host's local time.

    `zone`: that host's IANA zone (the app's logs.timezone: the same clock writes both);
    None: this machine's local zone.
    """
    moment = datetime.strptime(stamp, "%Y%m%d%H%M%S")
    if origin == ORIGIN_CCOPS:
        return moment
    if zone:
        from zoneinfo import ZoneInfo

        return moment.replace(tzinfo=ZoneInfo(zone)).astimezone(timezone.utc).replace(tzinfo=None)
    return moment.astimezone(timezone.utc).replace(tzinfo=None)  # a naive time is read as local


def parse_name(name: str, zone: str | None = None) -> BackupName | None:
    """What a file name says (kind, origin, time in UTC), or None when it is not a backup's name."""
    for form, pattern in _FORM_RES:
        match = pattern.match(name)
        if match:
            try:
                return BackupName(form.kind, form.origin,
                                  _stamp_utc(match.group(1) + match.group(2), form.origin, zone))
            except ValueError:  # 20261399: digits, but no date
                return None
    return None


MANIFEST_SUFFIX = ".manifest.json"
# what create_backup writes: a custom-format archive (pg_dump -Fc), as pg_dump compressed it (.dump),
# or uncompressed by pg_dump and compressed by zstd on all cores (.dump.zst, issue 18)
DUMP_SUFFIX = ".dump"
ZSTD_DUMP_SUFFIX = ".dump.zst"


def backup_name(moment: datetime, sequence: int = 1, suffix: str = DUMP_SUFFIX) -> str:
    """contentcreator_<UTC stamp>[_<n>]<suffix>: what create_backup writes (_2, _3 added within one second)."""
    counter = f"_{sequence}" if sequence > 1 else ""
    return f"{PREFIX}{moment:%Y%m%d_%H%M%S}{counter}{suffix}"


def app_copy_name(kind: str, moment: datetime) -> str:
    """contentcreator_env_<stamp> / contentcreator_logs_<stamp>.tar.gz: never the app's own env_/logs_ names."""
    return f"{PREFIX}{kind}_{moment:%Y%m%d_%H%M%S}" + (".tar.gz" if kind == "logs" else "")


def manifest_path(path: Path) -> Path:
    """The manifest beside a backup: <backup name>.manifest.json (never itself a backup's name)."""
    return path.with_name(path.name + MANIFEST_SUFFIX)
