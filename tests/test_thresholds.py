"""Thresholds (issue 16.3): one home, one comparison rule, and a settings file that reaches every entry.

The scan keeps the home the only one: a threshold's default number written again
as a keyword default, a field default, a reader default or a comparison under a
threshold-like name anywhere else in ccops/ is the duplicate this issue removed
(bloat 0.3 in the check and the reindex action, 26 h in the backup check and the
alert engine, min_views 100 in the alerts and the analytics).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccops.checks import host
from ccops.core.findings import Status
from ccops.core.reader import ConfigError
from ccops.core.settings import load_settings
from ccops.core.thresholds import KEYS, LEGACY, Level, Thresholds, beyond, defaults, env_name, grade

PACKAGE = Path(__file__).resolve().parent.parent / "ccops"
HOME = PACKAGE / "core" / "thresholds.py"

# Words that say how a number is used, not what it measures: a name made of these alone
# ("warning_pct", "critical_days") is a level of whatever it sits next to.
def _stem(word: str) -> str:
    """Plural and singular alike (RESTART_WARNING and services.restarts)."""
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


GENERIC = {_stem(w) for w in ("warning", "critical", "threshold", "level", "limit", "max", "min", "pct", "percent",
                              "hours", "h", "days", "minutes", "s", "ms", "per", "of", "the", "usage", "used",
                              "value", "default")}
LEVEL_WORDS = {"warning", "critical", "threshold"}
# A number under a related name that is not that threshold, with why (none today).
NOT_A_DUPLICATE: dict[tuple[str, str, float], str] = {}


def tokens(name: str) -> set[str]:
    return {_stem(t) for t in re.split(r"[._]", name.lower()) if t}


def related(name: str, key: str) -> bool:
    """Whether a name in the code speaks of the threshold `key`: a word of its own in common
    (`warning_ratio` and postgres.bloat_ratio, `max_age_hours` and backup.max_age_hours), or a
    bare level word (`critical_pct`) next to the same number."""
    own = tokens(name) - GENERIC
    theirs = tokens(key) | {t for flat, dotted in LEGACY.items() if dotted == key for t in tokens(flat)}
    if own:
        return bool(own & (theirs - GENERIC))
    return bool(tokens(name) & LEVEL_WORDS)

_OPS = {ast.Mult: operator.mul, ast.Add: operator.add, ast.Sub: operator.sub, ast.Pow: operator.pow}


def _number(node: ast.AST | None) -> float | None:
    """A numeric literal, or a constant expression of literals (10 * 1024 * 1024); None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _number(node.left), _number(node.right)
        return None if left is None or right is None else float(_OPS[type(node.op)](left, right))
    return None


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.slice.value
    return ""


def named_numbers(tree: ast.AST) -> Iterator[tuple[int, str, float]]:
    """(line, name, number) of every place a number is tied to a name: keyword and field defaults,
    assignments, comparisons, and reader calls such as `number("min_views", 100)`."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.posonlyargs + node.args.args
            pairs = list(zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d is not None]
            for arg, default in pairs:
                value = _number(default)
                if value is not None:
                    yield default.lineno, arg.arg, value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            value = _number(node.value)
            if value is not None:
                yield node.lineno, _name(node.target), value
        elif isinstance(node, ast.Assign):
            value = _number(node.value)
            if value is not None:
                for target in node.targets:
                    yield node.lineno, _name(target), value
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = [_name(o) for o in operands if _number(o) is None]
            for operand in operands:
                value = _number(operand)
                if value is not None:
                    for name in names:
                        yield node.lineno, name, value
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            for arg in node.args[1:2]:
                value = _number(arg)
                if value is not None:
                    yield node.lineno, node.args[0].value, value


def duplicates() -> list[str]:
    numbers = [(key, float(v)) for key, v in defaults().items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == HOME or "demo" in path.relative_to(PACKAGE).parts:
            continue  # the demo is a stand-in app with numbers of its own, not ccops' checks
        relative = str(path.relative_to(PACKAGE.parent))
        for line, name, value in named_numbers(ast.parse(path.read_text(), str(path))):
            keys = [key for key, default in numbers if default == value and name and related(name, key)]
            if keys and (relative, name, value) not in NOT_A_DUPLICATE:
                found.append(f"{relative}:{line}: {name} = {value:g} (thresholds.{keys[0]})")
    return found


def test_no_threshold_number_lives_outside_the_one_home() -> None:
    assert duplicates() == [], "read it from ctx.settings.thresholds.<section>.<entry> instead"


def test_the_scan_finds_a_duplicate_when_there_is_one() -> None:
    """The scanner itself: the duplicates of before are each caught by one of its rules."""
    code = '''
def bloat_estimate(ctx, warning_ratio: float = 0.3, limit: int = 10): ...
def backup_status(ctx, max_age_hours: float = 26): ...
class EngagementConfig:
    min_views: int = 100
cfg.backup_max_age_hours = top.number("backup_max_age_hours", 26.0, low=1)
def connections(ctx, usage_critical_pct: float = 95.0): ...
status = Status.CRITICAL if pct >= critical else Status.OK if sent > 95 else None
'''
    found = {(name, value) for _, name, value in named_numbers(ast.parse(code))}
    assert {("warning_ratio", 0.3), ("max_age_hours", 26.0), ("min_views", 100.0),
            ("backup_max_age_hours", 26.0), ("usage_critical_pct", 95.0), ("sent", 95.0)} <= found
    assert related("warning_ratio", "postgres.bloat_ratio.warning")
    assert related("backup_max_age_hours", "backup.max_age_hours.critical")
    assert related("min_views", "engagement.min_views") and related("critical_pct", "postgres.sequences_pct.critical")
    assert related("disk_free_warning_pct", "disk.free_pct.warning"), "a flat key of before"
    assert related("RESTART_WARNING", "services.restarts.warning")
    assert not related("limit", "logs.errors_per_hour.critical"), "a row limit is not a threshold"
    assert not related("keep_days", "agents.lookback_days") and not related("sent", "postgres.connections_pct.critical")


def test_every_entry_has_a_source_unit_and_an_environment_name() -> None:
    from dataclasses import fields

    fresh = Thresholds()
    for section in fields(fresh):
        for entry in fields(getattr(fresh, section.name)):
            assert entry.metadata.get("source") and entry.metadata.get("unit"), f"{section.name}.{entry.name}"
    assert len({env_name(key) for key in KEYS}) == len(KEYS), "two keys would share a variable"
    assert LEGACY["disk_free_warning_pct"] == "disk.free_pct.warning"


# ---- grade: one rule ------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (0, Status.OK), (5, Status.OK), (5.01, Status.WARNING), (10, Status.WARNING), (10.5, Status.CRITICAL),
    (float("nan"), Status.OK),
])
def test_grade_trips_a_level_only_past_it(value: float, expected: Status) -> None:
    assert grade(value, 5, 10) == expected


@pytest.mark.parametrize(("free", "expected"), [
    (20, Status.OK), (19.99, Status.WARNING), (10, Status.WARNING), (9.99, Status.CRITICAL),
])
def test_grade_lower_is_worse_mirrors_the_rule(free: float, expected: Status) -> None:
    assert grade(free, 20, 10, higher_is_worse=False) == expected
    assert Thresholds().disk.free_pct.grade(free) == expected


def test_single_levels_and_evidence() -> None:
    assert grade(27, None, 26) == Status.CRITICAL and grade(26, None, 26) == Status.OK
    assert grade(6, 5, None) == Status.WARNING and grade(60, 5, None) == Status.WARNING
    assert grade(3, 5, 10, below=Status.INFO) == Status.INFO
    level = Level(None, 26.0)
    assert level.first == 26.0 and level.limit(Status.OK) == 26.0 and level.sides() == ("critical",)
    assert Level(5, 10).limit(Status.CRITICAL) == 10 and Level(5, 10).limit(Status.WARNING) == 5
    assert Level(5, 10).override(critical=20) == Level(5, 20) and Level(5, 10).override() == Level(5, 10)


def test_a_deadline_level_trips_when_reached_and_only_capacity_is_one() -> None:
    """"Fills within 30 days": day 30 is within (tests/test_analytics_quarterly.py pins it)."""
    days = Thresholds().capacity.days_to_full
    assert (days.grade(30), days.grade(30.01), days.grade(90), days.grade(90.01)) == \
        (Status.CRITICAL, Status.WARNING, Status.WARNING, Status.OK)
    assert [(s, e) for s, e, level in Thresholds().levels() if level.within] == [("capacity", "days_to_full")]


def test_beyond_works_on_a_series_with_the_same_rule() -> None:
    import pandas as pd

    assert list(beyond(pd.Series([0.29, 0.3, 0.31]), 0.3)) == [False, False, True]
    assert list(Level(20, 10, higher_is_worse=False).beyond(pd.Series([21, 20, 19]))) == [False, False, True]


# ---- the settings file and the environment -------------------------------------------------

def test_dotted_and_flat_keys_both_read(ccops_env: Path) -> None:
    (ccops_env / "ccops.toml").write_text(
        "[thresholds]\nmemory_used_warning_pct = 70\n"
        "[thresholds.postgres]\nbloat_ratio = { warning = 0.4, critical = 0.7 }\n"
        "[thresholds.backup]\nmax_age_hours = 30\n"
        "[thresholds.agents]\nexpected = [\"AnalysisAgent\"]\n")
    t = load_settings().thresholds
    assert t.memory.used_pct == Level(70, 90, unit=t.memory.used_pct.unit)
    assert (t.postgres.bloat_ratio.warning, t.postgres.bloat_ratio.critical) == (0.4, 0.7)
    assert t.backup.max_age_hours.critical == 30 and t.agents.expected == ["AnalysisAgent"]
    assert t.memory_used_warning_pct == 70 and t.expected_agents == ["AnalysisAgent"], "the flat names of before"


def test_environment_wins_with_either_name(ccops_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ccops_env / "ccops.toml").write_text("[thresholds.postgres]\nsequences_pct = { warning = 60 }\n")
    monkeypatch.setenv("CCOPS_THRESHOLDS_POSTGRES_SEQUENCES_PCT_WARNING", "70")
    monkeypatch.setenv("CCOPS_THRESHOLDS_ERRORS_PER_HOUR_CRITICAL", "12")
    t = load_settings().thresholds
    assert t.postgres.sequences_pct.warning == 70 and t.logs.errors_per_hour.critical == 12


@pytest.mark.parametrize(("content", "message"), [
    ("[thresholds.postgres]\nbloat_ratio = 0.5\n", "thresholds.postgres.bloat_ratio: expected a table"),
    ("[thresholds.postgres]\nbloat_ratoi = { warning = 0.5 }\n", "thresholds.postgres.bloat_ratoi.warning: unknown setting"),
    ("[thresholds.postgres]\nsequences_pct = { warning = 90 }\n",
     "thresholds.postgres.sequences_pct.warning: must not exceed the critical level (80)"),
    ("[thresholds.capacity]\ndays_to_full = { critical = -1 }\n", "thresholds.capacity.days_to_full.critical: expected 0 or more"),
    ("[thresholds.memory]\nused_pct = { critical = 120 }\n", "thresholds.memory.used_pct.critical: expected 0 to 100"),
])
def test_a_bad_threshold_is_one_line_naming_the_key(ccops_env: Path, content: str, message: str) -> None:
    path = ccops_env / "ccops.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_overriding_one_pair_in_the_settings_file_changes_one_finding(ccops_env: Path) -> None:
    """The check reads the one home: raising the disk levels past the free space turns OK into CRITICAL."""
    from datetime import UTC, datetime

    from ccops.core.context import RunContext

    now = datetime.now(UTC)
    free = host.disk_usage(str(ccops_env))["free_pct"]
    context = RunContext(runbook="t", settings=load_settings(), as_of=now)
    [before] = host.disk_space(context, paths=[str(ccops_env)])
    (ccops_env / "ccops.toml").write_text(
        f"[thresholds.disk]\nfree_pct = {{ warning = 100, critical = {min(free + 0.5, 100):g} }}\n")
    context = RunContext(runbook="t", settings=load_settings(), as_of=now)
    [after] = host.disk_space(context, paths=[str(ccops_env)])
    if free > 20:
        assert before.status == Status.OK
    assert after.status == Status.CRITICAL and after.threshold == min(free + 0.5, 100)
