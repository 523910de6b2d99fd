"""Editing the app's `.env` without ever breaking the app.

The guide says "Edit .env: ENABLE_MARKET_SCANNER=false". The real app has no
ENABLE_* keys, and its pydantic settings reject any key they do not define
("Extra inputs are not permitted"): one such line and the app cannot start, and
under `restart: unless-stopped` it crash-loops. So every edit here keeps three
promises:

- only keys the app defines are written (the list: setting app.env_keys, else
  the app's own `.env.example`, else the complete list in FACTS.md); anything
  else is refused, naming what the app does offer;
- the edit changes exactly the bytes of one line: every other line, comment,
  blank line and line ending stays; the new file is written beside the old one,
  fsynced and renamed over it (atomic); the previous version is kept as
  `.env.bak-<UTC stamp>`; a file we cannot parse is left untouched;
- after the edit the app's own settings load is run (app.validate_command;
  default: `python -c "import src.config.settings"` in the app's folder, or the
  same through `docker compose run --rm --no-deps`), and when it fails the file
  is put back byte for byte.

The file is the app's, not ccops': a byte that is not UTF-8 (a value pasted from
a latin-1 editor) must not stop an emergency step. It is read with
surrogateescape, so such bytes are carried through an edit unchanged.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ccops.core import fs
from ccops.core.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ccops.core.settings import Settings

LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)(?P<value>.*?)(?P<trail>\s*(?:#.*)?)$")
# FACTS.md: the keys the app's settings class defines (its .env.example, plus GOOGLE_API_KEY_BACKUP).
FACTS_KEYS = (
    "DATABASE_URL", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY", "TWITTER_API_KEY",
    "TWITTER_API_SECRET", "TWITTER_ACCESS_TOKEN", "TWITTER_ACCESS_TOKEN_SECRET", "TWITTER_BEARER_TOKEN",
    "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHANNEL_ID", "BINANCE_API_KEY", "BINANCE_API_SECRET", "HUMAN_IN_THE_LOOP",
    "CONTENT_PERSONALITY", "LOG_LEVEL", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_PRICE_ID_BASIC",
    "STRIPE_PRICE_ID_PREMIUM", "STRIPE_PRICE_ID_VIP", "DISCORD_BOT_TOKEN", "DISCORD_GUILD_ID",
    "DISCORD_ROLE_ID_BASIC", "DISCORD_ROLE_ID_PREMIUM", "DISCORD_ROLE_ID_VIP", "CONVERSION_MIN_ENGAGEMENT_SCORE",
    "CONVERSION_DISCOUNT_PERCENTAGE", "CONVERSION_DM_COOLDOWN_DAYS", "AB_TESTING_MIN_SAMPLE_SIZE",
    "AB_TESTING_CONFIDENCE_THRESHOLD", "AB_TESTING_MAX_ACTIVE_TESTS", "AB_TESTING_TEST_DURATION_DAYS",
    "STRATEGY_TUNING_MIN_DATA_POINTS", "STRATEGY_TUNING_CONFIDENCE_LEVEL", "STRATEGY_TUNING_MAX_ADJUSTMENTS_PER_RUN",
    "PERFORMANCE_ANALYTICS_SNAPSHOT_RETENTION_DAYS", "FEEDBACK_LOOP_OPTIMIZATION_CYCLE_HOURS",
    "FEEDBACK_LOOP_MIN_CONFIDENCE_FOR_CHANGES", "GOOGLE_API_KEY_BACKUP",
)
MECHANISMS = ("HUMAN_IN_THE_LOOP=true (content waits for approval, so nothing is published)",
              "stopping the whole app until the reset")
SETTINGS_IMPORT = "import src.config.settings"
VALIDATE_TIMEOUT_SECONDS = 120


class EnvFileError(UsageError):
    """The .env file cannot be edited safely; it was left untouched."""


class UnknownKeyError(EnvFileError):
    """The app does not define the key: writing it would stop the app from starting."""


class ValidationFailed(EnvFileError):
    """The app's settings did not load after the edit; the .env was put back byte for byte."""


@dataclass
class FlagChange:
    path: Path
    key: str
    old: str | None
    new: str | None
    changed: bool
    backup: Path | None
    added_separator: bool = False  # appended to a file without a final line ending: one was added first
    validated: str = ""  # the validation command that passed, "" when none ran

    def line(self) -> str:
        new = "(absent)" if self.new is None else self.new
        if not self.changed:
            return f"{self.key} already {new} in {self.path}: nothing to change"
        old = "(absent)" if self.old is None else self.old
        checked = f"; the app's settings load with it ({self.validated})" if self.validated else ""
        return f"{self.key}: {old} -> {new} in {self.path} (previous version kept as {self.backup}){checked}"


# ---- which keys the app defines -------------------------------------------------------------

def app_dir(settings: Settings) -> Path | None:
    """The app's folder: app.dir, else process.workdir, else the folder of the configured .env."""
    app = getattr(settings, "app", None)
    for raw in (getattr(app, "dir", ""), getattr(getattr(settings, "process", None), "workdir", "")):
        if raw:
            return Path(raw).expanduser()
    env_file = settings.optional("app_env_file")
    return Path(env_file).parent if env_file else None


def keys_in(path: Path) -> list[str]:
    """The keys a dotenv-style file sets (comments and blank lines skipped)."""
    keys = []
    for line in read_text(path).splitlines():
        match = LINE.match(line.strip())
        if match and not line.lstrip().startswith("#"):
            keys.append(match.group("key"))
    return keys


def known_keys(settings: Settings) -> tuple[frozenset[str], str]:
    """The keys the app defines (upper-cased: its settings are case-insensitive), and where the list came from."""
    configured = list(getattr(getattr(settings, "app", None), "env_keys", []) or [])
    if configured:
        return frozenset(k.upper() for k in configured), "setting app.env_keys"
    folder = app_dir(settings)
    example = folder / ".env.example" if folder else None
    if example is not None and example.is_file():
        return frozenset(k.upper() for k in keys_in(example)), str(example)
    return frozenset(FACTS_KEYS), "the app's settings class (FACTS.md)"


def unknown_keys(settings: Settings, path: Path | None = None) -> list[str]:
    """Keys the .env sets that the app does not define: each would stop the app from starting."""
    known, _ = known_keys(settings)
    return [k for k in keys_in(Path(path or settings.effective_app_env_file)) if k.upper() not in known]


def require_known(settings: Settings, key: str) -> None:
    """Refuse a key the app does not define, naming what the app does offer instead."""
    known, source = known_keys(settings)
    if key.upper() not in known:
        raise UnknownKeyError(
            f"refused: the app does not define {key} (keys from {source}); its settings reject unknown keys, "
            f"so writing it would stop the app from starting. What the app offers: {'; '.join(MECHANISMS)}")


def agent_key(template: str, agent: str) -> str:
    """A per-agent key from a template: {agent} the class name, {AGENT} its upper snake case without 'Agent'."""
    base = re.sub(r"(Agent|Coordinator)$", "", agent)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", base).upper()
    return template.replace("{AGENT}", snake).replace("{agent}", agent)


# ---- validation -----------------------------------------------------------------------------

def validate_command(settings: Settings) -> tuple[list[str], Path] | None:
    """The command that proves the app's settings load, and where to run it; None when none is known."""
    folder = app_dir(settings)
    configured = getattr(getattr(settings, "app", None), "validate_command", "")
    if configured:
        return ["/bin/sh", "-c", configured], folder or Path.cwd()
    if settings.effective_backend == "compose":
        from ccops.deploy.services import ComposeBackend

        backend = ComposeBackend(settings)
        command = [*backend.base(), "run", "--rm", "--no-deps", settings.compose.app_service,
                   "python", "-c", SETTINGS_IMPORT]
        return command, Path(settings.compose.project_dir or ".")
    if folder is None or not (folder / "src" / "config" / "settings.py").is_file():
        return None
    return [_app_python(folder), "-c", SETTINGS_IMPORT], folder


def _app_python(folder: Path) -> str:
    """The app's interpreter: its virtualenv's when it has one, else `python` on PATH (as its start script)."""
    for venv in ("venv", ".venv", "env"):
        candidate = folder / venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return shutil.which("python") or shutil.which("python3") or "python"


def run_validation(command: list[str], cwd: Path) -> tuple[bool, str]:
    """Run the validation; (passed, the last line of its output that says why not)."""
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, errors="replace",
                              timeout=VALIDATE_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not run: {exc}"
    if proc.returncode == 0:
        return True, ""
    lines = [line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()]
    reason = next((line for line in lines if "Extra inputs are not permitted" in line), "")
    return False, (reason or (lines[-1] if lines else "")) + f" (exit {proc.returncode})"


def edit_validated(settings: Settings, key: str, value: str | None, path: Path | None = None,
                   strip_final_newline: bool = False, now: datetime | None = None) -> FlagChange:
    """Set (or, with value None, remove) one key of the app's .env, then prove the app still loads it.

    Refuses keys the app does not define and edits it cannot validate; puts the
    file back byte for byte when the app's settings do not load after the edit.
    """
    path = Path(path or settings.effective_app_env_file)
    require_known(settings, key)
    validation = validate_command(settings)
    if validation is None:
        raise EnvFileError(f"refused: no way to check that the app still starts after editing {path}: "
                           "set app.validate_command (or app.dir to the app's folder, which holds src/config/settings.py)")
    original, _, _ = _lines_of(path)
    if value is None:
        change = remove_key(path, key, strip_final_newline=strip_final_newline, now=now)
    else:
        change = set_flag(path, key, value, now=now)
    if not change.changed:
        return change
    command, cwd = validation
    ok, reason = run_validation(command, cwd)
    if not ok:
        _atomic_write(path, original)
        raise ValidationFailed(f"the app's settings did not load after setting {key} "
                               f"(`{shlex.join(command)}` in {cwd}): {reason}; {path} was put back byte for byte")
    change.validated = shlex.join(command)
    return change


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


def _lines_of(path: Path) -> tuple[bytes, str, list[tuple[str, re.Match[str] | None]]]:
    """The file's bytes, text and parsed lines; one-line EnvFileError when unreadable."""
    try:
        original = path.read_bytes()
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read the app's .env: {exc.strerror}") from None
    text = original.decode("utf-8", errors="surrogateescape")  # other lines' bytes are written back as they were
    return original, text, parse_lines(text, path)


def _index_of(lines: list[tuple[str, re.Match[str] | None]], key: str, path: Path) -> int | None:
    """The line setting `key` (case-insensitive, as the app's settings read it); None when absent."""
    matches = [i for i, (_, m) in enumerate(lines) if m and m.group("key").upper() == key.upper()]
    if len(matches) > 1:
        raise EnvFileError(f"{path}: {key} is set {len(matches)} times; fix it by hand")
    return matches[0] if matches else None


def read_flag(path: Path, key: str) -> str | None:
    """The value of `key` in the .env (unquoted), None when the file does not set it."""
    path = Path(path)
    _, _, lines = _lines_of(path)
    index = _index_of(lines, key, path)
    match = lines[index][1] if index is not None else None
    return _unquote(match.group("value")) if match else None


def _write_with_backup(path: Path, text: str, now: datetime | None) -> Path:
    """Keep the current file as .bak-<stamp> (same mode: it holds secrets), then write the new text atomically."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while backup.exists():
        counter += 1
        backup = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
    shutil.copy2(path, backup)
    _atomic_write(path, text.encode("utf-8", errors="surrogateescape"))
    return backup


def set_flag(path: Path | str, key: str, value: str, now: datetime | None = None) -> FlagChange:
    """Set KEY=value in the .env, changing nothing else; idempotent; atomic with a backup copy.

    Low level: it does not check that the app defines the key. Use edit_validated.
    """
    path = Path(path)
    _, text, lines = _lines_of(path)
    index = _index_of(lines, key, path)
    added_separator = False
    if index is not None:
        raw, match = lines[index]
        assert match is not None
        old: str | None = _unquote(match.group("value"))
        if old == value:
            return FlagChange(path, key, old, value, changed=False, backup=None)
        ending = raw[len(raw.rstrip("\r\n")):]
        quote = match.group("value")[:1] if match.group("value")[:1] in "\"'" else ""
        new_line = (f"{match.group('lead')}{match.group('key')}{match.group('eq')}{quote}{value}{quote}"
                    f"{match.group('trail')}{ending}")
        pieces = [line for line, _ in lines]
        pieces[index] = new_line
        new_text = "".join(pieces)
    else:
        old = None
        ending = "\r\n" if "\r\n" in text else "\n"
        added_separator = bool(text) and not text.endswith(("\n", "\r"))
        new_text = f"{text}{ending if added_separator else ''}{key}={value}{ending}"
    backup = _write_with_backup(path, new_text, now)
    return FlagChange(path, key, old, value, changed=True, backup=backup, added_separator=added_separator)


def remove_key(path: Path | str, key: str, strip_final_newline: bool = False, now: datetime | None = None) -> FlagChange:
    """Take `key`'s line out of the .env (restoring "absent"), changing nothing else.

    `strip_final_newline`: the key was appended to a file without a final line
    ending (set_flag added one before it); taking that away too gives back the
    file's bytes exactly.
    """
    path = Path(path)
    _, _, lines = _lines_of(path)
    index = _index_of(lines, key, path)
    if index is None:
        return FlagChange(path, key, None, None, changed=False, backup=None)
    match = lines[index][1]
    assert match is not None
    pieces = [line for line, _ in lines]
    del pieces[index]
    if strip_final_newline and index == len(pieces) and pieces:
        pieces[-1] = pieces[-1].rstrip("\r\n")
    backup = _write_with_backup(path, "".join(pieces), now)
    return FlagChange(path, key, _unquote(match.group("value")), None, changed=True, backup=backup)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename over: the old file or the new one, never half of either; same mode and owner."""
    stat = path.stat()
    fs.write_atomic(path, data, stat.st_mode & 0o7777, uid=stat.st_uid, gid=stat.st_gid)
