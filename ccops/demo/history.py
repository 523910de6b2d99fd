"""What the app's own `scripts/backup.sh` left in the backup dir before ccops took over.

Production had backups before it had ccops (FACTS.md, Backups already on disk):
`db_YYYYmmdd_HHMMSS.sql` (a plain pg_dump), `env_YYYYmmdd_HHMMSS` (a copy of
`.env`, secrets included) and `logs_YYYYmmdd_HHMMSS.tar.gz`, stamped with the
host's local time. The demo leaves one such set in the night before as_of and
one in the night before the clean day, so a check that must recognise, verify,
count or restore these files has real ones to work on. The dump is a real
`pg_dump` of the demo database, taken once and saved under each stamp. Existing
files are never overwritten, and nothing here deletes anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ccops.core import fs, localpg
from ccops.core.errors import CcopsError
from ccops.demo.applog import DEMO_TIMEZONE, demo_log_files, to_local
from ccops.demo.generator import DemoFacts
from ccops.logs import file_day

BACKUP_TIME = time(3, 0, 17)  # the app's cron ran backup.sh at 03:00 local time
PG_DUMP_TIMEOUT_SECONDS = 120


def backup_stamps(facts: DemoFacts, timezone: str = DEMO_TIMEZONE) -> list[datetime]:
    """The local times of backup.sh's runs: the last 03:00 before the clean day and before as_of."""
    zone = ZoneInfo(timezone)
    stamps = []
    for moment in (facts.clean_as_of, facts.as_of):
        if moment is None:
            continue
        local = to_local(moment, zone)
        stamp = datetime.combine(local.date(), BACKUP_TIME)
        stamps.append(stamp if stamp < local else stamp - timedelta(days=1))
    return stamps


def write_app_backups(cluster: localpg.Cluster, backup_dir: Path, env_file: Path, log_dir: Path,
                      facts: DemoFacts, timezone: str = DEMO_TIMEZONE) -> list[Path]:
    """Write backup.sh's three files per stamp (skipping names that exist); the paths, oldest first."""
    zone = ZoneInfo(timezone)
    backup_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    dump: Path | None = None
    try:
        for stamp in backup_stamps(facts, timezone):
            name = f"{stamp:%Y%m%d_%H%M%S}"
            when = stamp.replace(tzinfo=zone).timestamp()
            db_file, env_copy, logs_tar = (backup_dir / f"db_{name}.sql", backup_dir / f"env_{name}",
                                           backup_dir / f"logs_{name}.tar.gz")
            if not db_file.exists():
                dump = dump or _pg_dump(cluster, backup_dir)
                shutil.copyfile(dump, db_file)
                _touch(db_file, when + 41)
            if not env_copy.exists():
                shutil.copyfile(env_file, env_copy)
                os.chmod(env_copy, 0o600)
                _touch(env_copy, when + 41)
            if not logs_tar.exists():
                _logs_tarball(logs_tar, log_dir, stamp.date(), when + 43)
            written += [db_file, env_copy, logs_tar]
    finally:
        if dump is not None:
            dump.unlink(missing_ok=True)
    return written


def _pg_dump(cluster: localpg.Cluster, backup_dir: Path) -> Path:
    """A plain-SQL dump of the demo database, as backup.sh's `pg_dump ... content_creator > db_*.sql`."""
    target = backup_dir / ".demo-dump.sql.tmp"
    env = {**os.environ, **cluster.libpq_env(), "PGDATABASE": localpg.DEMO_DATABASE}
    with open(target, "wb") as out:
        proc = subprocess.run([str(cluster.bindir / "pg_dump")], stdout=out, stderr=subprocess.PIPE, env=env,
                              timeout=PG_DUMP_TIMEOUT_SECONDS)
    if proc.returncode != 0:
        target.unlink(missing_ok=True)
        raise CcopsError(f"pg_dump of the demo database failed: {proc.stderr.decode(errors='replace').strip()}")
    return target


def _logs_tarball(path: Path, log_dir: Path, last_day: date, when: float) -> None:
    """`tar -czf logs_*.tar.gz logs`: the loguru files of the days up to the backup's."""
    with fs.atomic_writer(path, None, durable=False) as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for log in demo_log_files(log_dir):
            day = file_day(log)
            if day is not None and day <= last_day:
                archive.add(log, arcname=f"logs/{log.name}")
    _touch(path, when)


def _touch(path: Path, when: float) -> None:
    os.utime(path, (when, when))
