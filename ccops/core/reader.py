"""One reader for every setting: ccops.toml, the home's deployment file, the environment, module sections.

Why one: the same mistake (a string where a number goes, a typo in a key) used
to be worded seven ways by seven hand-written validators. Every refusal now
reads `<file>: <section.key>: <problem>` (`environment CCOPS_X: <problem>` for
a variable) and is a ConfigError, which the CLI turns into one line and exit 64.
The problems themselves are worded here once: "expected a number, got 'x'",
"expected 0 or more, got -1", "unknown setting", ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccops.core.errors import UsageError

ENVIRONMENT = "environment"


class ConfigError(UsageError):
    """A settings file or value that cannot be used; the message is the one line shown."""


def config_error(source: str, key: str, problem: str) -> ConfigError:
    """The one wording: `<file>: <key>: <problem>`; a variable reads `environment <NAME>: <problem>`."""
    if not key:
        return ConfigError(f"{source}: {problem}")
    if source == ENVIRONMENT:
        return ConfigError(f"{ENVIRONMENT} {key}: {problem}")
    return ConfigError(f"{source}: {key}: {problem}")


class Problem(ValueError):
    """Why a raw value cannot be the setting; the reader adds where it came from."""


def _bounds(minimum: float | None, maximum: float | None, above: float | None, below: float | None) -> str:
    low = f"more than {above:g}" if above is not None else (f"{minimum:g}" if minimum is not None else "")
    high = f"less than {below:g}" if below is not None else (f"{maximum:g}" if maximum is not None else "")
    if above is not None or below is not None:
        return " and ".join(part for part in (low, high) if part)
    if low and high:
        return f"{low} to {high}"
    return f"{low} or more" if low else f"{high} or less"


def check_number(raw: Any, *, whole: bool = False, text: bool = False, minimum: float | None = None,
                 maximum: float | None = None, above: float | None = None, below: float | None = None) -> float:
    """`raw` as a finite number within its bounds, or Problem; text (an environment value) is parsed."""
    kind = "a whole number" if whole else "a number"
    value: Any = raw
    if text and isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise Problem(f"expected {kind}, got {raw!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Problem(f"expected {kind}, got {raw!r}")
    if not math.isfinite(value):
        raise Problem(f"expected a finite number, got {raw!r}")
    if whole and not float(value).is_integer():
        raise Problem(f"expected {kind}, got {raw!r}")
    shown = int(value) if whole else value
    if ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
            or (above is not None and value <= above) or (below is not None and value >= below)):
        raise Problem(f"expected {_bounds(minimum, maximum, above, below)}, got {shown!r}")
    return float(value)


def check_boolean(raw: Any, text: bool = False) -> bool:
    """true/false; text also takes 1/0, yes/no, on/off (what a variable says)."""
    if isinstance(raw, bool):
        return raw
    if text:
        word = str(raw).strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
    raise Problem(f"expected true or false, got {raw!r}")


def check_string(raw: Any, choices: Iterable[str] | None = None) -> str:
    if not isinstance(raw, str):
        raise Problem(f"expected a string, got {raw!r}")
    options = tuple(choices or ())
    if options and raw not in options:
        raise Problem(f"expected one of {', '.join(options)}, got {raw!r}")
    return raw


def check_strings(raw: Any, text: bool = False, one: bool = False) -> list[str]:
    """A list of non-empty strings; text is comma-separated, `one` takes a single string as a list of one."""
    if isinstance(raw, str) and text:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if isinstance(raw, str) and one and raw:
        return [raw]
    if not isinstance(raw, list) or not all(isinstance(v, str) and (v or text) for v in raw):
        raise Problem(f"expected a list of strings, got {raw!r}")
    return list(raw)


def check_path(raw: Any, base: Path) -> Path:
    """A path, `~` expanded, relative to `base` (the folder of the file that says it, or the working directory)."""
    if not isinstance(raw, str) or not raw:
        raise Problem(f"expected a path, got {raw!r}")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base / path


def check_timezone(raw: Any) -> str:
    import zoneinfo

    name = check_string(raw)
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise Problem(f"expected an IANA time zone name such as Europe/Amsterdam, got {raw!r}") from None
    return name


# ---- counts and durations: one rule for settings and runbook parameters -------------------

# Which numbers may not go below what, read from their names, so that a `*_keep_days` or a
# `*_limit` added tomorrow is covered the day it is added. A keep count (how many to keep
# whatever their age) below 1 lets retention delete the last verified backup; a negative number
# of days puts the cut-off in the future, and every file older than "tomorrow" - all of them,
# the live log included - is deleted. No count, limit or duration of ccops is meaningful below 0.
KEEP_COUNT = re.compile(r"keep_(?!\w*days$)\w+")
NON_NEGATIVE = re.compile(
    r"(\w+_)?(days|hours|minutes|seconds|ms|limit|lines|jobs|count|bytes|size|retries|threshold)"
    r"|(retention|keep|min|max)_\w+"
)
# Where a module needs more than the name says (dotted setting name -> least value).
LEAST_VALUE = {"archive.keep_days": 1, "run.timeout_seconds": 1}


def least_value(name: str) -> int | None:
    """The least value a number named `name` may take (a setting's dotted key or a parameter's name); None: no rule."""
    if name in LEAST_VALUE:
        return LEAST_VALUE[name]
    last = name.rsplit(".", 1)[-1]
    if KEEP_COUNT.fullmatch(last):
        return 1
    if NON_NEGATIVE.fullmatch(last):
        return 0
    return None


def bound_problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be the number named `name` (None when it can, or when no rule covers it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    least = least_value(name)
    if least is None:
        return None
    if not math.isfinite(value):
        return f"expected a finite number, got {value!r}"
    if value >= least:
        return None
    if KEEP_COUNT.fullmatch(name.rsplit(".", 1)[-1]):
        return f"expected at least {least} (a count of what to keep: 0 would keep nothing), got {value!r}"
    return f"expected {least} or more, got {value!r}"


@dataclass
class SectionReader:
    """Typed getters over one table, knowing its file and its dotted prefix, so every refusal names both.

    `text` marks values that may be text to parse: the environment, and the core
    sections of the settings file, which have always taken what a CCOPS_*
    variable could say (`retention_days = "30"`).
    """

    source: str
    table: Mapping[str, Any]
    prefix: str = ""
    base: Path = field(default_factory=Path.cwd)
    text: bool = False

    @classmethod
    def of(cls, settings: Any, section: str) -> SectionReader:
        """The module-owned `[section]` of the settings, named by the file it came from."""
        return cls(settings_source(settings), settings.section(section), f"{section}.", settings_base(settings))

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, problem: str) -> ConfigError:
        return config_error(self.source, self.key(key), problem)

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def _read(self, key: str, default: Any, check: Any) -> Any:
        if key not in self.table:
            return default
        try:
            return check(self.table[key])
        except Problem as exc:
            raise self.fail(key, str(exc)) from None

    def unknown(self, known: Iterable[str], hint: str = "") -> None:
        """Refuse a key the section does not have (a typo must not be silently ignored)."""
        allowed = set(known)
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown setting{hint}")

    def number(self, key: str, default: float, minimum: float | None = None, maximum: float | None = None,
               above: float | None = None, below: float | None = None, floor: bool = True) -> float:
        """A finite number within its bounds; `floor`: also the least value its name calls for (bound_problem)."""
        value = self._read(key, default, lambda raw: check_number(
            raw, text=self.text, minimum=minimum, maximum=maximum, above=above, below=below))
        return self._floor(key, value) if floor else value

    def integer(self, key: str, default: int, minimum: int | None = None, maximum: int | None = None,
                floor: bool = True) -> int:
        value = int(self._read(key, default, lambda raw: check_number(
            raw, whole=True, text=self.text, minimum=minimum, maximum=maximum)))
        return self._floor(key, value) if floor else value

    def _floor(self, key: str, value: Any) -> Any:
        problem = bound_problem(self.key(key), value) if key in self.table else None
        if problem:
            raise self.fail(key, problem)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._read(key, default, lambda raw: check_boolean(raw, self.text))

    def string(self, key: str, default: str = "", choices: Iterable[str] | None = None) -> str:
        return self._read(key, default, lambda raw: check_string(raw, choices))

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        return self.string(key, default, tuple(choices))

    def strings(self, key: str, default: Iterable[str] = ()) -> list[str]:
        return self._read(key, list(default), lambda raw: check_strings(raw, self.text, one=True))

    def path(self, key: str, default: Path | None = None) -> Path | None:
        return self._read(key, default, lambda raw: check_path(raw, self.base))

    def timezone(self, key: str, default: str = "") -> str:
        return self._read(key, default, check_timezone)

    def typed(self, key: str, kind: str) -> Any:
        """The value as the named kind (a dataclass field's type): path, list, int, float, bool or str."""
        readers = {"path": lambda: self.path(key), "list": lambda: self.strings(key), "int": lambda: self.integer(key, 0, floor=False),
                   "float": lambda: self.number(key, 0.0, floor=False), "bool": lambda: self.boolean(key, False),
                   "str": lambda: self.string(key)}
        return readers[kind]()

    def section(self, key: str) -> SectionReader:
        """The sub-table `key` (empty when absent), read with this one's file and base."""
        raw = self.table.get(key, {})
        if not isinstance(raw, dict):
            raise self.fail(key, f"expected a table, got {raw!r}")
        return SectionReader(self.source, raw, f"{self.key(key)}.", self.base, self.text)

    def sections(self, key: str, example: str = "") -> list[SectionReader]:
        """An array of tables ([[section.key]]), each reader named `key[1].`, `key[2].`, ..."""
        raw = self.table.get(key, [])
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise self.fail(key, f"expected an array of tables{f' ({example})' if example else ''}, got {raw!r}")
        return [SectionReader(self.source, item, f"{self.key(key)}[{index}].", self.base, self.text)
                for index, item in enumerate(raw, start=1)]


def settings_source(settings: Any) -> str:
    """The file the settings came from (ccops.toml, else the home's deployment file), for error lines."""
    for name in ("config_file", "deployment_file"):
        path = getattr(settings, name, None)
        if path:
            return str(path)
    return "settings"


def settings_base(settings: Any) -> Path:
    """Where a relative path in the settings is taken from: the folder of its file, else the working directory."""
    source = settings_source(settings)
    return Path(source).resolve().parent if source != "settings" else Path.cwd()
