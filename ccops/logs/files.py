"""Which files hold the app's records: the one file-name rule, and picking the files of a window.

The rule (FileNames) is the only description of the app's log file names: the reader,
the disk clean-up (ccops.deploy.diskspace) and the demo (ccops.demo.applog) all go
through it, so a file the clean-up writes is a file every log check reads. It takes
  content_creator_2026-12-02.log                                      the app's (loguru) file
  content_creator_2026-12-02.2026-12-02_09-20-33_298768.log.zip      loguru's rotation, zipped
  content_creator_2026-12-02.log.1, .log.gz, .log.1.zip              logrotate, gzip
  content_creator_2026-12-02.log.20261202T092033Z.gz                 ccops' archive of a live log
and never output.log / error.log: the plain-process deployment's stdout (every record
again, in colour) and stderr (crashes that never went through loguru).

The date in a name is the LOCAL day the file was opened; rotation at local midnight
means a file dated D holds records of day D only, so a window reads exactly the files
whose day it meets (files without a date are read too).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path

from ccops.logs.clock import naive, to_local
from ccops.logs.errors import LogSourceError

LOG_NAME_RE = re.compile(
    r"^(?P<stem>[^.].*?)"
    r"(?:\.(?P<rotated>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+))?"  # loguru: {time:YYYY-MM-DD_HH-mm-ss_SSSSSS}
    r"\.log"
    r"(?:\.(?P<n>\d+)|\.(?P<archived>\d{8}T\d{6}Z))?"  # logrotate's .N | ccops' archive of a live log
    r"(?:\.(?P<compression>zip|gz))?$"
)
NOT_RECORD_STEMS = frozenset({"output", "error"})
DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


@dataclass(frozen=True)
class LogName:
    """What an app log file's name says."""

    stem: str
    day: date | None  # the first YYYY-MM-DD of the stem: the day loguru opened the file
    rotated: str  # loguru's rotation time, ccops' archive time or logrotate's number ("" for the current file)
    compression: str  # "", "zip" or "gz"

    @property
    def current(self) -> bool:
        """A plain file as the app opened it (the one it may still be writing)."""
        return not self.rotated and not self.compression

    def order(self) -> tuple[int, str]:
        """Within a day: earlier parts (rotated, archived) before the current file."""
        return (1, "") if self.current else (0, re.sub(r"\D", "", self.rotated)[:14])


@dataclass(frozen=True)
class FileNames:
    """A format's file-name rule: what the app names its files (`stem`_YYYY-MM-DD.log) and what is read.

    Reading takes any name LOG_NAME_RE takes except output.log / error.log (a deployment may
    name its files otherwise); `stem` is what the app itself writes, what the demo writes and
    what a warning tells an operator to look for.
    """

    stem: str

    def parse(self, name: str) -> LogName | None:
        """The app log file `name` is, or None for any other file (output.log and error.log included)."""
        match = LOG_NAME_RE.match(name)
        if not match or match.group("stem").lower() in NOT_RECORD_STEMS:
            return None
        day = None
        found = DATE_RE.search(match.group("stem"))
        if found:
            try:
                day = date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
            except ValueError:
                day = None
        rotated = match.group("rotated") or match.group("archived") or match.group("n") or ""
        return LogName(match.group("stem"), day, rotated, match.group("compression") or "")

    def name(self, day: date) -> str:
        """The name loguru gives the app's file of `day`."""
        return f"{self.stem}_{day:%Y-%m-%d}.log"

    def rotated(self, day: date, created: datetime) -> str:
        """loguru's name for the zipped file of `day`: the stem, the file's creation time, `.log.zip`."""
        return f"{self.stem}_{day:%Y-%m-%d}.{created:%Y-%m-%d_%H-%M-%S_%f}.log.zip"

    def patterns(self) -> tuple[str, ...]:
        """The names, said the way an operator looks for them."""
        return (f"{self.stem}_YYYY-MM-DD.log", f"{self.stem}_YYYY-MM-DD.<rotation time>.log.zip", "*.log[.N][.gz|.zip]")

    def files(self, log_dir: Path) -> list[tuple[Path, LogName]]:
        """Every app log file in log_dir, in reading order: by day, a day's parts in the order
        written, undated ones last."""
        found = []
        try:
            entries = list(os.scandir(log_dir))
        except OSError:
            return []
        for entry in entries:
            parsed = self.parse(entry.name)
            if parsed is None or not entry.is_file():
                continue
            found.append(((parsed.day is None, parsed.day or date.min, *parsed.order(), entry.name),
                          Path(entry.path), parsed))
        found.sort(key=lambda item: item[0])
        return [(path, parsed) for _, path, parsed in found]


APP_LOG_STEM = "content_creator"
APP_FILES = FileNames(APP_LOG_STEM)  # the Content Creator's names (FACTS.md, Logs)
LOG_PATTERNS = APP_FILES.patterns()


def parse_log_name(name: str, names: FileNames = APP_FILES) -> LogName | None:
    """The app log file `name` is, or None for any other file (output.log and error.log included)."""
    return names.parse(name)


def app_log_name(day: date, names: FileNames = APP_FILES) -> str:
    """The name loguru gives the app's file of `day`."""
    return names.name(day)


def rotated_log_name(day: date, created: datetime, names: FileNames = APP_FILES) -> str:
    """loguru's name for the zipped file of `day` created at `created`."""
    return names.rotated(day, created)


def archived_log_name(name: str, when: datetime) -> str:
    """ccops' name for an archive of the live log `name` taken at `when` (read like the rest)."""
    return f"{name}.{when:%Y%m%dT%H%M%SZ}.gz"


def compressed_log_name(name: str) -> str:
    """ccops' name for a rotated plain log it compressed."""
    return f"{name}.gz"


def file_day(path: Path, names: FileNames = APP_FILES) -> date | None:
    """The day a log file's name carries (the first YYYY-MM-DD in it), or None."""
    parsed = names.parse(Path(path).name)
    return parsed.day if parsed else None


def app_log_files(log_dir: Path, names: FileNames = APP_FILES) -> list[tuple[Path, LogName]]:
    """Every app log file in log_dir, in reading order (see FileNames.files)."""
    return names.files(Path(log_dir))


def log_files(log_dir: Path, since: datetime | None, until: datetime | None,
              zone: tzinfo | None = None, names: FileNames = APP_FILES) -> list[Path]:
    """The log files that can hold records of the UTC window [since, until), oldest first, undated last.

    A file dated D holds records of local [D 00:00, D+1 00:00) only (rotation at local
    midnight; the name's date is local too), so the window's ends are turned into the
    app's local time first: a UTC window crossing local midnight reads both days' files.
    A file is picked iff first <= D and D 00:00 < last, first and last being the earlier
    and later local end (in the repeated autumn hour the later UTC end can read earlier).
    A day's parts come in the order they were written (rotated parts before the current file).
    """
    ends = [to_local(naive(t), zone) for t in (since, until) if t is not None]
    first_day = min(ends).date() if since else None
    last = max(ends) if until else None
    picked = []
    for path, parsed in names.files(Path(log_dir)):
        day = parsed.day
        if day is not None:
            if first_day and day < first_day:
                continue
            if last and datetime.combine(day, datetime.min.time()) >= last:
                continue
        picked.append(path)
    return picked


def no_log_files_warning(log_dir: Path, names: FileNames = APP_FILES) -> str:
    """A warning when `log_dir` holds no app log file at all ("" when it holds one).

    Why: pointed at the wrong directory (the parent of the real one, say), a reader
    finds nothing and would report a clean day; output.log and error.log alone are not
    the app's records either.
    """
    if names.files(Path(log_dir)):
        return ""
    return (f"no app log file in {log_dir} (looked for {', '.join(names.patterns())}; "
            "output.log and error.log are not counted): is the log dir the app's logs/ folder?")


def require_dir(log_dir: Path) -> None:
    """LogSourceError (one line) unless log_dir is a directory."""
    if not log_dir.exists():
        raise LogSourceError(f"log dir {log_dir} does not exist")
    if not log_dir.is_dir():
        raise LogSourceError(f"log dir {log_dir} is not a directory")
