"""Editing the app's `.env`: pausing and re-enabling an agent by its ENABLE_* flag.

The guide says "Edit .env: ENABLE_MARKET_SCANNER=false". Done by hand at 3 a.m.
that edit loses comments, breaks quoting or leaves a half-written file when the
disk is full. Here an edit changes exactly the bytes of one value: every other
line, comment, blank line and line ending stays as it was; the new file is
written beside the old one, fsynced and renamed over it (atomic); the previous
version is kept as `.env.bak-<UTC stamp>`; and a file we cannot parse is left
untouched with a one-line error naming the line.

The file is the app's, not ccops': a byte that is not UTF-8 (a value pasted from
a latin-1 editor) must not stop an emergency step. It is read with
surrogateescape, so such bytes are carried through an edit unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ccops.errors import UsageError

LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)(?P<value>.*?)(?P<trail>\s*(?:#.*)?)$")
AGENT_FLAGS = {
    "MarketScannerAgent": "ENABLE_MARKET_SCANNER",
    "AnalysisAgent": "ENABLE_ANALYSIS",
    "ContentStrategistAgent": "ENABLE_CONTENT_STRATEGIST",
    "ContentCreationAgent": "ENABLE_CONTENT_CREATION",
    "PublishingAgent": "ENABLE_PUBLISHING",
    "EngagementAgent": "ENABLE_ENGAGEMENT",
    "ImageGenerationAgent": "ENABLE_IMAGE_GENERATION",
    "AnalyticsAgent": "ENABLE_ANALYTICS",
    "ConversionAgent": "ENABLE_CONVERSION",
    "ExclusiveContentAgent": "ENABLE_EXCLUSIVE_CONTENT",
    "CommunityModeratorAgent": "ENABLE_COMMUNITY_MODERATOR",
    "ABTestingAgent": "ENABLE_AB_TESTING",
    "PerformanceAnalyticsAgent": "ENABLE_PERFORMANCE_ANALYTICS",
    "StrategyTuningAgent": "ENABLE_STRATEGY_TUNING",
    "FeedbackLoopCoordinator": "ENABLE_FEEDBACK_LOOP",
}


class EnvFileError(UsageError):
    """The .env file cannot be edited safely; it was left untouched."""


@dataclass
class FlagChange:
    path: Path
    key: str
    old: str | None
    new: str
    changed: bool
    backup: Path | None

    def line(self) -> str:
        if not self.changed:
            return f"{self.key} already {self.new} in {self.path}: nothing to change"
        return f"{self.key}: {self.old} -> {self.new} in {self.path} (previous version kept as {self.backup})"


def flag_for_agent(agent: str) -> str:
    """ENABLE_* flag of an agent class name (or a flag name passed through)."""
    if agent.startswith("ENABLE_"):
        return agent
    if agent in AGENT_FLAGS:
        return AGENT_FLAGS[agent]
    base = re.sub(r"(Agent|Coordinator)$", "", agent)
    return "ENABLE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", base).upper()


def parse_lines(text: str, path: Path) -> list[tuple[str, re.Match[str] | None]]:
    """Each line with its KEY=VALUE match (None for blank and comment lines); errors name the line."""
    parsed: list[tuple[str, re.Match[str] | None]] = []
    for number, raw in enumerate(text.splitlines(keepends=True), start=1):
        body = raw.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            parsed.append((raw, None))
            continue
        match = LINE.match(body)
        if not match:
            raise EnvFileError(f"{path}:{number}: not a KEY=VALUE line; left the file untouched")
        value = match.group("value")
        if value[:1] in "\"'" and (len(value) < 2 or value[-1] != value[0]):
            raise EnvFileError(f"{path}:{number}: unterminated quote in {match.group('key')}; left the file untouched")
        parsed.append((raw, match))
    return parsed


def read_text(path: Path | str) -> str:
    """The .env as text, whatever its bytes: those that are not UTF-8 survive as surrogate escapes."""
    return Path(path).read_bytes().decode("utf-8", errors="surrogateescape")


def read_flag(path: Path, key: str) -> str | None:
    for _, match in parse_lines(read_text(path), Path(path)):
        if match and match.group("key") == key:
            return _unquote(match.group("value"))
    return None


def set_flag(path: Path | str, key: str, value: str, now: datetime | None = None) -> FlagChange:
    """Set KEY=value in the .env, changing nothing else; idempotent; atomic with a backup copy."""
    path = Path(path)
    try:
        original = path.read_bytes()
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read the app's .env: {exc.strerror}") from None
    text = original.decode("utf-8", errors="surrogateescape")  # other lines' bytes are written back as they were
    lines = parse_lines(text, path)
    matches = [i for i, (_, m) in enumerate(lines) if m and m.group("key") == key]
    if len(matches) > 1:
        raise EnvFileError(f"{path}: {key} is set {len(matches)} times; fix it by hand")
    if matches:
        index = matches[0]
        raw, match = lines[index]
        assert match is not None
        old = _unquote(match.group("value"))
        if old == value:
            return FlagChange(path, key, old, value, changed=False, backup=None)
        ending = raw[len(raw.rstrip("\r\n")):]
        quote = match.group("value")[:1] if match.group("value")[:1] in "\"'" else ""
        new_line = f"{match.group('lead')}{key}{match.group('eq')}{quote}{value}{quote}{match.group('trail')}{ending}"
        pieces = [line for line, _ in lines]
        pieces[index] = new_line
        new_text = "".join(pieces)
    else:
        old = None
        ending = "\r\n" if "\r\n" in text else "\n"
        separator = "" if not text or text.endswith(("\n", "\r")) else ending
        new_text = f"{text}{separator}{key}={value}{ending}"
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while backup.exists():
        counter += 1
        backup = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
    shutil.copy2(path, backup)
    _atomic_write(path, new_text.encode("utf-8", errors="surrogateescape"))
    return FlagChange(path, key, old, value, changed=True, backup=backup)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename over: the old file or the new one, never half of either."""
    mode = path.stat().st_mode & 0o7777
    tmp = path.with_name(f".{path.name}.ccops-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        stat = path.stat()
        os.chown(tmp, stat.st_uid, stat.st_gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
