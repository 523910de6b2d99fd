"""Thresholds: the one home of every level ccops grades a number against.

Why one home: the same number used to live in two or three places (bloat 0.3 in
the bloat check and in the reindex action, the backup age in the backup check and
in the alert engine, `min_views` in the alerts and in the weekly analytics), and
a site that raised one copy silently kept the other. Here each threshold is one
entry of one section per concern: a `Level` (a warning/critical pair, or a single
level where the maintenance guide names one) or a plain number, each with its
default, its unit and the source of the number (the guide's section, or the
PostgreSQL documentation). A check reads `ctx.settings.thresholds.<section>.<entry>`
and grades with `Level.grade` (or `grade()`), so adding a threshold is one entry
here: the settings file and the environment reach it by its dotted key without
any edit to the settings reader.

In ccops.toml, either today's flat keys or the dotted ones::

    [thresholds]
    disk_free_warning_pct = 25                        # the keys of before, still read
    [thresholds.postgres]
    bloat_ratio = { warning = 0.4, critical = 0.7 }   # a pair
    [thresholds.backup]
    max_age_hours = 30                                # a single level: the number alone

and in the environment CCOPS_THRESHOLDS_<KEY> with the dots as underscores
(CCOPS_THRESHOLDS_POSTGRES_BLOAT_RATIO_WARNING, CCOPS_THRESHOLDS_DISK_FREE_WARNING_PCT).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

from ccops.core.findings import Status
from ccops.core.reader import (
    ENVIRONMENT,
    ConfigError,
    Problem,
    SectionReader,
    check_number,
    check_strings,
    config_error,
)

PARTS = ("warning", "critical")
ENV_PREFIX = "CCOPS_THRESHOLDS_"


# ---- the one comparison rule ------------------------------------------------------------------

def beyond(value: Any, level: float, higher_is_worse: bool = True, within: bool = False) -> Any:
    """Whether `value` has gone past `level`: strictly above it (or strictly below, when lower is worse).

    The one comparison rule of ccops: reaching a level exactly is still on the good
    side of it. Why strict: the maintenance guide words every alert that way
    ("Disk space <20%", "Memory usage >90%", "Error rate >10/hour", its health
    check's `error_logs > 10`), and the tests pin it at the guide's numbers: 20 %
    free is OK and 10 % free a WARNING, 5 errors in an hour OK and 6 a WARNING.
    Works element-wise on a pandas Series too, so table-wide gradings (bloat, dead
    tuples) follow the same rule as single values.

    The one exception, `within=True`, is for a level that is a deadline, not a
    measure: capacity.days_to_full says "WARNING when the disk fills within 90
    days", and a disk full on day 90 exactly is within them, so reaching the level
    trips it. tests/test_analytics_quarterly.py pins this at 30 and 90 days. An
    entry says so where it is defined (`pair(..., within=True)`), never a caller.
    """
    if within:
        return value >= level if higher_is_worse else value <= level
    return value > level if higher_is_worse else value < level


def grade(value: float, warning: float | None, critical: float | None = None, higher_is_worse: bool = True,
          below: Status = Status.OK, within: bool = False) -> Status:
    """CRITICAL past `critical`, else WARNING past `warning`, else `below` (OK, or INFO where a
    check reports evidence rather than health); either level may be None (a single level).

    "Past" is `beyond()`'s strict rule. A NaN value is past nothing: an unknown
    number is the caller's to report, not an alarm.
    """
    if critical is not None and beyond(value, critical, higher_is_worse, within):
        return Status.CRITICAL
    if warning is not None and beyond(value, warning, higher_is_worse, within):
        return Status.WARNING
    return below


@dataclass(frozen=True)
class Level:
    """A warning/critical pair (one of them None for a single level), its direction and unit."""

    warning: float | None = None
    critical: float | None = None
    higher_is_worse: bool = True
    unit: str = ""
    within: bool = False  # a deadline: reaching the level trips it (see beyond())

    def grade(self, value: float, below: Status = Status.OK) -> Status:
        return grade(value, self.warning, self.critical, self.higher_is_worse, below, self.within)

    @property
    def first(self) -> float:
        """The level a value trips first (the warning, else the critical one): the "limit" findings quote."""
        level = self.warning if self.warning is not None else self.critical
        assert level is not None  # noqa: S101 - every Level has a side: checked when it is defined
        return level

    def limit(self, status: Status) -> float:
        """The level a value graded `status` was compared with: the critical one for CRITICAL, else the first."""
        if status == Status.CRITICAL and self.critical is not None:
            return self.critical
        return self.first

    def beyond(self, value: Any, level: float | None = None) -> Any:
        """Whether value (or a Series) is past `level` (default: the first level), by the one rule."""
        return beyond(value, self.first if level is None else level, self.higher_is_worse, self.within)

    def override(self, warning: float | None = None, critical: float | None = None) -> Level:
        """This level with the sides given replaced, None keeping the setting's: how a step's keyword
        arguments (`warning_pct=None`, ...) override the one home for one call without a second default."""
        return dataclasses.replace(self, warning=self.warning if warning is None else warning,
                                   critical=self.critical if critical is None else critical)

    def sides(self) -> tuple[str, ...]:
        return tuple(p for p in PARTS if getattr(self, p) is not None)


def pair(warning: float | None, critical: float | None, unit: str, source: str, *, lower_is_worse: bool = False,
         within: bool = False, legacy: tuple[str, ...] = ()) -> Any:
    """One threshold entry: its Level default, unit and source; `legacy` the flat [thresholds] keys
    of before for (warning, critical) in that order ("" where a side had none), still read."""
    level = Level(warning, critical, not lower_is_worse, unit, within)
    if not level.sides():
        raise ValueError("a threshold needs a warning or a critical level")
    return field(default=level, metadata={"unit": unit, "source": source, "legacy": legacy})


def number(default: float | int, unit: str, source: str, *, legacy: str = "") -> Any:
    """A plain number that shapes a check (a factor, a look-back, a floor), not a level a value trips."""
    return field(default=default, metadata={"unit": unit, "source": source, "legacy": (legacy,) if legacy else ()})


def names(source: str, *, legacy: str = "") -> Any:
    """A list of names (empty by default)."""
    return field(default_factory=list, metadata={"unit": "names", "source": source,
                                                 "legacy": (legacy,) if legacy else ()})


GUIDE = "MAINTENANCE_GUIDE.md"
PG = "PostgreSQL docs"


# ---- the sections: one per concern ------------------------------------------------------------

@dataclass
class Disk:
    free_pct: Level = pair(20.0, 10.0, "% free", f"{GUIDE}, Monitoring Alerts: Disk space <20% / <10%",
                           lower_is_worse=True, legacy=("disk_free_warning_pct", "disk_free_critical_pct"))


@dataclass
class Memory:
    used_pct: Level = pair(80.0, 90.0, "% used", f"{GUIDE}, Monitoring Alerts: Memory usage >80% / >90%",
                           legacy=("memory_used_warning_pct", "memory_used_critical_pct"))


@dataclass
class Logs:
    errors_per_hour: Level = pair(5.0, 10.0, "error records/h", f"{GUIDE}, Monitoring Alerts: Error rate >5/hour / >10/hour",
                                  legacy=("errors_per_hour_warning", "errors_per_hour_critical"))


@dataclass
class Content:
    no_content_hours: Level = pair(6.0, None, "h since the last post",
                                   f"{GUIDE}, Warning Alerts: No content published in 6 hours",
                                   legacy=("no_content_warning_hours",))
    low_share: Level = pair(0.5, None, "of the usual daily volume",
                            "ccops: below half the usual volume is worth a look (Daily Maintenance, content review)",
                            lower_is_worse=True)


@dataclass
class Agents:
    errors_24h: Level = pair(10, None, "agent errors/24 h", f"{GUIDE}, Health Checks: `if error_logs > 10`",
                             legacy=("agent_errors_24h_max",))
    error_rate: Level = pair(0.10, None, "share of executions", "ccops: one execution in ten failing (Weekly "
                             "Maintenance, Check agent performance)")
    p95_growth: Level = pair(0.5, None, "share the p95 run time grew over the period before",
                             "ccops: half as slow again is a trend (Weekly Maintenance, Check agent performance)")
    silence_critical_days: Level = pair(None, 7.0, "days silent", "ccops: silent a week is stopped (Daily "
                                        "Maintenance, Check recent agent activity)",
                                        legacy=("", "agent_silence_critical_days"))
    silence_factor: float = number(4.0, "x the agent's usual interval", "ccops: silent 4 usual intervals is not jitter",
                                   legacy="agent_silence_factor")
    lookback_days: int = number(90, "days", "ccops: agents seen this far back are checked for silence",
                                legacy="agent_lookback_days")
    expected: list[str] = names("ccops: empty means the agent class names in FACTS.md", legacy="expected_agents")


@dataclass
class Services:
    restarts: Level = pair(3, None, "restarts", "ccops: a container restarting more than 3 times is crash-looping "
                           "(Daily Maintenance, Check if all services zijn running)")


@dataclass
class Backup:
    max_age_hours: Level = pair(None, 26.0, "h since the latest verified backup",
                                f"{GUIDE}, Backup & Recovery: daily at 2 AM, plus 2 h for a slow run")
    drill_slower_pct: Level = pair(50.0, None, "percent slower than the median earlier recovery drill",
                                   f"{GUIDE}, Quarterly Maintenance: Document time to recover")


@dataclass
class Apis:
    resumed_error_rate: Level = pair(0.2, None, "share of runs failing after a resume",
                                     f"{GUIDE}, Emergency Procedures (API rate limit): one run in five still "
                                     "failing means the limit is still hit")


@dataclass
class Postgres:
    connections_pct: Level = pair(80.0, 95.0, "% of max_connections - superuser_reserved_connections",
                                  f"{PG}: runtime-config-connection (max_connections)")
    xid_age: Level = pair(1_300_000_000, 1_400_000_000, "transactions since the oldest unfrozen XID",
                          f"{PG}: Routine Vacuuming, Preventing Transaction ID Wraparound Failures (new XIDs "
                          "stop at 2^31 - 3 million); check_postgres' txn_wraparound defaults")
    idle_in_transaction_s: Level = pair(300.0, None, "s idle in a transaction",
                                        f"{PG}: idle_in_transaction_session_timeout (holds locks, stops vacuum)")
    sequences_pct: Level = pair(50.0, 80.0, "% of the sequence's range", f"{PG}: CREATE SEQUENCE (MAXVALUE)")
    slow_query_mean_ms: Level = pair(1000.0, 10_000.0, "ms mean per call",
                                     f"{PG}: pg_stat_statements (mean_exec_time)")
    slow_query_min_calls: int = number(10, "calls", "ccops: one slow ad-hoc query is not a trend")
    bloat_ratio: Level = pair(0.3, 0.6, "share of the relation wasted",
                              f"{PG}: Routine Reindexing / pgstattuple (avg_leaf_density)")
    min_bloat_bytes: int = number(10 * 1024 * 1024, "bytes to gain", "ccops: a small relation half empty is "
                                  "not worth a rebuild")
    dead_ratio: Level = pair(0.2, None, "share of dead tuples",
                             f"{PG}: autovacuum_vacuum_scale_factor (default 0.2)")
    min_dead_tuples: int = number(1000, "dead tuples", f"{PG}: autovacuum_vacuum_threshold; ccops counts a table "
                                  "with fewer as healthy")
    vacuum_dead_ratio: float = number(0.05, "share of dead tuples", "ccops: the weekly VACUUM skips tables "
                                      "with less dead (Weekly Maintenance, Database Maintenance)")


@dataclass
class Capacity:
    days_to_full: Level = pair(90.0, 30.0, "days until the disk is full",
                               f"{GUIDE}, Quarterly Maintenance: a quarter's notice to plan capacity",
                               lower_is_worse=True, within=True)


@dataclass
class Trends:
    slower_pct: Level = pair(25.0, None, "percent slower than last quarter",
                             f"{GUIDE}, Quarterly Maintenance: performance review")


@dataclass
class Engagement:
    min_views: int = number(100, "views", "ccops: a post with 5 views and 3 likes is noise, not a hit "
                            f"({GUIDE}, Info Alerts: High engagement content detected)")


@dataclass
class Thresholds:
    """Every threshold, by concern; `ctx.settings.thresholds.disk.free_pct.grade(pct)`.

    The flat names of before (`disk_free_warning_pct`, `expected_agents`, ...) still
    read and write the same values, so settings files and code written for them
    keep working.
    """

    disk: Disk = field(default_factory=Disk)
    memory: Memory = field(default_factory=Memory)
    logs: Logs = field(default_factory=Logs)
    content: Content = field(default_factory=Content)
    agents: Agents = field(default_factory=Agents)
    services: Services = field(default_factory=Services)
    backup: Backup = field(default_factory=Backup)
    apis: Apis = field(default_factory=Apis)
    postgres: Postgres = field(default_factory=Postgres)
    capacity: Capacity = field(default_factory=Capacity)
    trends: Trends = field(default_factory=Trends)
    engagement: Engagement = field(default_factory=Engagement)

    def __post_init__(self) -> None:
        # dotted key -> (source, key as written) of each value a file or variable set, for error lines
        object.__setattr__(self, "_origins", {})

    # ---- the flat names of before -----------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name in LEGACY:
            return self.get(LEGACY[name])
        raise AttributeError(f"{type(self).__name__} has no threshold {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in LEGACY:
            self.put(LEGACY[name], value)
        else:
            object.__setattr__(self, name, value)

    # ---- by dotted key ----------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The value of a dotted key ('disk.free_pct.warning', 'agents.lookback_days')."""
        section, entry, part = KEYS[key]
        value = getattr(getattr(self, section), entry)
        return getattr(value, part) if part else value

    def put(self, key: str, value: Any) -> None:
        section, entry, part = KEYS[key]
        target = getattr(self, section)
        if part:
            value = dataclasses.replace(getattr(target, entry), **{part: value})
        setattr(target, entry, value)

    def with_values(self, values: Mapping[str, Any]) -> Thresholds:
        """A copy with some keys (dotted or flat) set, read and checked as a settings file's would be."""
        copy = Thresholds()
        for key in KEYS:
            copy.put(key, self.get(key))
        copy.apply_file(SectionReader("values", dict(values), "thresholds."))
        problem = copy.problem("values")
        if problem:
            raise problem
        return copy

    # ---- reading the settings file and environment -------------------------------------------
    def apply_file(self, table: SectionReader) -> None:
        """The [thresholds] table of a settings file: flat keys of before, dotted sections, or both."""
        for dotted, raw in _flatten(table.table):
            key = _resolve(dotted, raw, table)
            self._read(key, raw, table.source, f"{table.prefix}{dotted}", text=table.text)

    def apply_env(self, env: Mapping[str, str]) -> None:
        """CCOPS_THRESHOLDS_<KEY> for every key, dotted or flat, the environment winning over the file."""
        for key in KEYS:
            name = env_name(key)
            if env.get(name):
                self._read(key, env[name], ENVIRONMENT, name, text=True)

    def _read(self, key: str, raw: Any, source: str, label: str, text: bool) -> None:
        try:
            value = _coerce(raw, KINDS[key], text)
        except Problem as exc:
            raise config_error(source, label, str(exc)) from None
        self.put(key, value)
        self._origins[canonical(key)] = (source, label)

    def problem(self, source: str) -> ConfigError | None:
        """The first value no check can use (negative, a percent past 100, a critical level on the good
        side of its warning), as the error naming where it came from; None when all are usable."""
        for key in KEYS:
            if key != canonical(key) or KINDS[key] == "list":
                continue
            value = self.get(key)
            if value is None:
                continue
            if value < 0:
                return self._error(key, source, f"expected 0 or more, got {value!r}")
            unit = KINDS_UNIT[key]
            if unit.startswith("%") and value > 100:  # a share of a whole ("percent slower" may pass 100)
                return self._error(key, source, f"expected 0 to 100, got {value!r}")
        for section, entry, level in self.levels():
            if level.warning is None or level.critical is None:
                continue
            if beyond(level.warning, level.critical, level.higher_is_worse):
                base = f"{section}.{entry}"
                crit, warn = f"{base}.critical", f"{base}.warning"
                side = "below" if level.higher_is_worse else "exceed"
                if crit in self._origins or warn not in self._origins:
                    return self._error(crit, source, f"must not {side} the warning level ({level.warning:g})")
                other = "exceed" if level.higher_is_worse else "be below"
                return self._error(warn, source, f"must not {other} the critical level ({level.critical:g})")
        return None

    def _error(self, key: str, source: str, problem: str) -> ConfigError:
        where, label = self._origins.get(key) or (source, f"thresholds.{key}")
        return config_error(where, label, problem)

    def levels(self) -> Iterator[tuple[str, str, Level]]:
        """(section, entry, Level) of every pair and single level."""
        for section in fields(self):
            group = getattr(self, section.name)
            for entry in fields(group):
                value = getattr(group, entry.name)
                if isinstance(value, Level):
                    yield section.name, entry.name, value


# ---- the key table, derived from the sections ---------------------------------------------------

def _entries() -> Iterator[tuple[str, str, dataclasses.Field[Any], Any]]:
    for section in fields(Thresholds):
        group = cast(Callable[[], Any], section.default_factory)()  # each section is a default_factory field
        for entry in fields(group):
            yield section.name, entry.name, entry, getattr(group, entry.name)


def _key_table() -> tuple[dict[str, tuple[str, str, str | None]], dict[str, str], dict[str, str], dict[str, str]]:
    keys: dict[str, tuple[str, str, str | None]] = {}
    kinds: dict[str, str] = {}
    units: dict[str, str] = {}
    legacy: dict[str, str] = {}
    for section, entry, spec, default in _entries():
        old = spec.metadata.get("legacy", ())
        unit = spec.metadata.get("unit", "")
        if not spec.metadata.get("source"):
            raise ValueError(f"thresholds.{section}.{entry}: no source for the number")
        if isinstance(default, Level):
            kind = "int" if all(isinstance(getattr(default, p), int) for p in default.sides()) else "float"
            for index, part in enumerate(PARTS):
                if getattr(default, part) is None:
                    continue
                key = f"{section}.{entry}.{part}"
                keys[key], kinds[key], units[key] = (section, entry, part), kind, unit
                name = old[index] if index < len(old) else ""
                if name:
                    keys[name], kinds[name], units[name], legacy[name] = (section, entry, part), kind, unit, key
        else:
            kind = "list" if isinstance(default, list) else "int" if isinstance(default, int) else "float"
            key = f"{section}.{entry}"
            keys[key], kinds[key], units[key] = (section, entry, None), kind, unit
            if old:
                keys[old[0]], kinds[old[0]], units[old[0]], legacy[old[0]] = (section, entry, None), kind, unit, key
    return keys, kinds, units, legacy


KEYS, KINDS, KINDS_UNIT, _CANONICAL = _key_table()
LEGACY = dict(_CANONICAL)  # flat key of before -> dotted key


def canonical(key: str) -> str:
    """The dotted key of a flat key of before (the key itself when it is dotted already)."""
    return _CANONICAL.get(key, key)


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


def defaults() -> dict[str, Any]:
    """Every dotted key with its default value (what tests/test_thresholds.py scans the code for)."""
    fresh = Thresholds()
    return {key: fresh.get(key) for key in KEYS if key == canonical(key)}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _resolve(dotted: str, raw: Any, table: SectionReader) -> str:
    """The key a settings-file entry sets: itself, or the one side of a single level given as a bare number."""
    if dotted in KEYS:
        return dotted
    sides = [k for k in KEYS if k.rsplit(".", 1)[0] == dotted and k.rsplit(".", 1)[-1] in PARTS]
    if len(sides) == 1:
        return sides[0]
    if len(sides) == 2:
        raise table.fail(dotted, f"expected a table {{ warning = ..., critical = ... }}, got {raw!r}")
    raise table.fail(dotted, "unknown setting")


def _coerce(raw: Any, kind: str, text: bool) -> Any:
    """A TOML value or an environment string as the entry's type; Problem says what was expected."""
    if kind == "list":
        return check_strings(raw, text=text, one=True)
    value = check_number(raw, whole=kind == "int", text=text)
    return int(value) if kind == "int" else value
