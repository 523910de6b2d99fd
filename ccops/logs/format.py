"""The LogFormat seam: what one log format is, described once, and the registry of formats.

A format says four things, and every reader derives what it needs from them:

- its header, as the loguru format string the app configures
  (`{time:YYYY-MM-DD HH:mm:ss} | {level: <8} | {name}:{function} - {message}`). From that one
  string come the text parser (a regular expression per layout), the byte test the block
  reader uses, the byte needles of the prefilter and the word checks of the numpy path, so
  no encoding of the header is ever mirrored by hand;
- its file names (a `FileNames` rule, ccops.logs.files), which the disk clean-up and the demo use too;
- its time zone handling: loguru writes the host's local time with no zone, so a format with
  `local_time` has its times converted to UTC with the configured zone (logs.timezone);
- its rate-limit rules (`RateLimitRules`): what counts as a refused request.

Formats are modules of ccops.logs.formats, each defining `FORMAT = LogFormat(...)`; they are
found by pkgutil on first use, so adding a format is one new module (and its tests). The
setting logs.format picks one by name.

Why headers must start with `{time:YYYY-MM-DD HH:mm:ss[.S...]}`: every fast path compares
a line's text with the window's bounds as strings, and finds its local minute in its first
16 characters. That is time order only for ISO-ordered times at the start of the line.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from ccops.logs.clock import zone_named
from ccops.logs.errors import LogSourceError
from ccops.logs.files import FileNames

if TYPE_CHECKING:  # pragma: no cover
    from ccops.core.settings import Settings

LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")  # loguru's seven
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
DEFAULT_FORMAT = "contentcreator"
PADDED_LEVELS = {level.ljust(8): level for level in LEVELS}

_TOKEN_RE = re.compile(r"\{(\w+)(?::([^}]*))?\}")
_TIME_RE = re.compile(r"YYYY-MM-DD HH:mm:ss(?:\.(S{1,6}))?")
_LEVEL_SPEC_RE = re.compile(r"(?: ?<)?(\d+)")
# The time's fixed characters, and the digits the counters read (the hour): the rest of the
# time is left to fromisoformat, so an impossible date stays a header with an unreadable time.
_DATE_LITERALS = ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":"))
_HOUR_DIGITS = (11, 12)


@dataclass(frozen=True)
class RateLimitRules:
    """What a format's lines say when a request was refused, and what is only a quota figure.

    `levels`: the levels at which a matching line is an event (WARNING and above: a DEBUG
    line quoting `x-rate-limit-remaining` is a successful response). `needles` are
    lower-cased bytes every match of `event` contains (the reader's byte prefilter);
    `quota_needles` likewise for `quota`.
    """

    levels: frozenset[str]
    event: re.Pattern[str]
    needles: tuple[bytes, ...]
    quota: re.Pattern[str]
    quota_needles: tuple[bytes, ...]


class Layout:
    """One header layout, compiled from a loguru format string.

    Everything a reader needs about the header is derived here: the positions of its
    fixed characters, where the level starts, how long a header is at least, the regular
    expressions (text and bytes, from one source) and how the part after the level splits
    into name, function and message.
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        parts = _tokens(spec)
        if len(parts) < 5 or parts[0][0] != "time" or parts[2][0] != "level":
            raise ValueError(f"{spec!r}: a header must start with {{time:...}}, a separator and {{level: <N}}")
        time = _TIME_RE.fullmatch(parts[0][1])
        if time is None:
            raise ValueError(f"{spec!r}: the time must be YYYY-MM-DD HH:mm:ss, optionally with .S (up to 6)")
        width = _LEVEL_SPEC_RE.fullmatch(parts[2][1])
        if width is None or not 1 <= int(width.group(1)) <= 8:
            raise ValueError(f"{spec!r}: the level must be padded to a width of 1 to 8 ({{level: <8}})")
        self.fraction = len(time.group(1) or "")
        self.before_level, self.after_level = parts[1][1], parts[3][1]
        if parts[1][0] != "" or parts[3][0] != "" or not self.before_level or not self.after_level:
            raise ValueError(f"{spec!r}: the level must stand between two literal separators")
        self.level_width = int(width.group(1))
        self.where, self.where_sep, self.message_sep = _where(spec, parts[4:])
        self.time_width = 19 + (1 + self.fraction if self.fraction else 0)
        self.level_start = self.time_width + len(self.before_level)
        self.after_start = self.level_start + self.level_width
        self.header_min = self.after_start + len(self.after_level)
        literals = list(_DATE_LITERALS)
        if self.fraction:
            literals.append((19, "."))
        literals += [(self.time_width + i, c) for i, c in enumerate(self.before_level)]
        literals += [(self.after_start + i, c) for i, c in enumerate(self.after_level)]
        self.literals = tuple(literals)  # (position, character) every header of this layout has
        self.digits = _HOUR_DIGITS + tuple(range(20, 20 + self.fraction))  # positions that hold a digit
        time_re = "".join(
            "[0-9]" if i in self.digits else re.escape(dict(self.literals)[i]) if i in dict(self.literals) else "."
            for i in range(self.time_width)
        )
        self.prefix_source = f"(?=.{{{self.header_min}}})({time_re}){re.escape(self.before_level)}"
        after = re.escape(self.after_level)
        self.source = f"{self.prefix_source}(?:(.{{{self.level_width}}}){after}|(.*?){after})"
        self.prefix_bytes = re.compile(self.prefix_source.encode())

    def split(self, rest: str) -> tuple[str, str, str]:
        """The text after the header -> (name, function, message)."""
        cut = rest.find(self.message_sep)
        if cut < 0:
            return "", "", rest
        name, _, function = rest[:cut].partition(self.where_sep)
        if "line" in self.where:
            where, colon, line = function.rpartition(self.where_sep)
            if colon and line.isdigit():
                function = where
        return name, function, rest[cut + len(self.message_sep):]

    def needle(self, level: str) -> bytes:
        """The bytes around a level in this layout's header: b" | ERROR    | "."""
        return f"{self.before_level}{level.ljust(self.level_width)}{self.after_level}".encode()

    def header(self, time: str, level: str, name: str, function: str, message: str, line: int = 0) -> str:
        """A header line of this layout (time already as text): how the app writes one."""
        fields = {"name": name, "function": function, "line": str(line)}
        where = self.where_sep.join(fields[f] for f in self.where)
        return f"{time}{self.before_level}{level.ljust(self.level_width)}{self.after_level}{where}{self.message_sep}{message}"


def _tokens(spec: str) -> list[tuple[str, str]]:
    """A format string as (field, spec) and ("", literal) parts, in order."""
    parts: list[tuple[str, str]] = []
    at = 0
    for match in _TOKEN_RE.finditer(spec):
        if match.start() > at:
            parts.append(("", spec[at:match.start()]))
        parts.append((match.group(1), match.group(2) or ""))
        at = match.end()
    if at < len(spec):
        parts.append(("", spec[at:]))
    return parts


def _where(spec: str, parts: list[tuple[str, str]]) -> tuple[tuple[str, ...], str, str]:
    """`{name}:{function}[:{line}] - {message}` -> (fields, their separator, the message separator)."""
    if len(parts) < 3 or parts[-1] != ("message", "") or parts[-2][0] != "" or not parts[-2][1]:
        raise ValueError(f"{spec!r}: the header must end with a separator and {{message}}")
    fields = tuple(name for name, _ in parts[:-2:2])
    seps = {text for name, text in parts[1:-2:2]}
    if fields not in (("name", "function"), ("name", "function", "line")) or len(seps) != 1 \
            or any(name for name, _ in parts[1:-2:2]):
        raise ValueError(f"{spec!r}: expected {{name}}:{{function}}[:{{line}}] before the message")
    return fields, seps.pop(), parts[-2][1]


@dataclass(eq=False)
class LogFormat:
    """One log format: its header layouts, file names, time zone handling and rate-limit rules.

    `layouts` are loguru format strings; a format may read more than one (the app's own
    and loguru's default, say), as long as no line can be a header of two of them (a
    position where they differ in a fixed character or a digit): the counters count a
    line under the first layout it matches, the numpy path under every one.
    """

    name: str
    layouts: tuple[str, ...]
    files: FileNames
    ratelimit: RateLimitRules
    local_time: bool = True  # times are the host's local time with no zone (loguru's default)
    description: str = ""
    compiled: tuple[Layout, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.compiled = tuple(Layout(spec) for spec in self.layouts)
        if not self.compiled:
            raise ValueError(f"log format {self.name!r}: no header layout")
        for i, a in enumerate(self.compiled):
            for b in self.compiled[i + 1:]:
                if not _disjoint(a, b):
                    raise ValueError(f"log format {self.name!r}: {a.spec!r} and {b.spec!r} can match the same line")
        self.header_min = min(layout.header_min for layout in self.compiled)
        self.quick = self.compiled[0].literals[0]  # (position, character) every header has: a cheap first test
        # one expression for every layout: groups 3k+1 (time), 3k+2 (padded level), 3k+3 (longer level)
        self.header_re = re.compile("|".join(f"(?:{layout.source})" for layout in self.compiled))
        self.header_bytes_re = re.compile("|".join(f"(?:{layout.source})" for layout in self.compiled).encode())
        self.vector: Any = None  # the numpy plan, built by ccops.logs.fastcount on first use

    # ---- the text path
    def match(self, line: str) -> re.Match[str] | None:
        """The header match of a line (None: a continuation line)."""
        return self.header_re.match(line)

    def level_of(self, line: str, length: int) -> str | None:
        """The level of a header line, None when `line` is not one (`length`: without its newline)."""
        if length < self.header_min:
            return None
        match = self.header_re.match(line)
        return None if match is None else level_in(match)

    def layout_of(self, match: re.Match[str]) -> Layout:
        return self.compiled[((match.lastindex or 2) - 2) // 3]

    # ---- the byte path
    def header_at(self, buf: bytes | bytearray, start: int, end: int) -> bool:
        """Whether the line buf[start:end] (without its newline) starts with a header's time and separator."""
        return any(layout.prefix_bytes.match(buf, start, end) is not None for layout in self.compiled)

    def level_needles(self, level: str) -> tuple[bytes, ...]:
        """The bytes around `level` in a header of any layout (the prefilter's needles)."""
        return tuple(dict.fromkeys(layout.needle(level) for layout in self.compiled))

    # ---- time zone
    def zone_name(self, configured: str) -> str:
        """The zone the format's times are in: the configured one for local times, else UTC."""
        return configured if self.local_time else "UTC"


def level_in(match: re.Match[str]) -> str | None:
    """The level a header match found (None for a blank level field)."""
    index = match.lastindex or 0
    text = match.group(index)
    if index % 3 == 2:  # the padded field
        return PADDED_LEVELS.get(text) or text.rstrip() or None
    return text.strip() or None


def time_in(match: re.Match[str]) -> str:
    """The time text of a header match ("2025-11-23 15:23:43" or with its fraction)."""
    index = match.lastindex or 0
    return match.group(index - 1 if index % 3 == 2 else index - 2)


def _disjoint(a: Layout, b: Layout) -> bool:
    """Whether no line can be a header of both layouts."""
    fixed_a, fixed_b = dict(a.literals), dict(b.literals)
    for position, char in fixed_a.items():
        other = fixed_b.get(position)
        if (other is not None and other != char) or (position in b.digits and not char.isdigit()):
            return True
    return any(position in a.digits and not char.isdigit() for position, char in fixed_b.items())


# ---- the registry --------------------------------------------------------------------------

_REGISTRY: dict[str, LogFormat] = {}
_LOCK = threading.Lock()


def all_formats() -> dict[str, LogFormat]:
    """Every format, by name: the modules of ccops.logs.formats, imported on first use."""
    with _LOCK:
        if not _REGISTRY:
            package = importlib.import_module("ccops.logs.formats")
            found: dict[str, LogFormat] = {}
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
                module = importlib.import_module(f"{package.__name__}.{info.name}")
                fmt = getattr(module, "FORMAT", None)
                if not isinstance(fmt, LogFormat):
                    continue
                if fmt.name in found:
                    raise ValueError(f"two log formats named {fmt.name!r}")
                found[fmt.name] = fmt
            _REGISTRY.update(found)
        return dict(_REGISTRY)


def format_named(name: str | None) -> LogFormat:
    """The format called `name` ("" or None: the app's); LogSourceError naming the choices when unknown."""
    known = all_formats()
    fmt = known.get(name or DEFAULT_FORMAT)
    if fmt is None:
        raise LogSourceError(f"unknown log format {name!r} (logs.format): expected one of {', '.join(sorted(known))}")
    return fmt


def default_format() -> LogFormat:
    """The app's own format: what every reader uses when it is given none."""
    return format_named(DEFAULT_FORMAT)


def format_for(settings: Settings) -> LogFormat:
    """The format the setting logs.format names."""
    return format_named(getattr(settings, "logs_format", "") or DEFAULT_FORMAT)


def zone_for(settings: Settings) -> tzinfo:
    """The zone the app writes its log times in: the setting logs.timezone, for a format with local times."""
    return zone_named(format_for(settings).zone_name(getattr(settings, "logs_timezone", "") or ""))
