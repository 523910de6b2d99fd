"""The numpy path: a block's header lines classified all at once, from the format's description.

Every check here is derived from the format's layouts (ccops.logs.format.Layout): their
fixed characters become 8-byte word comparisons at fixed offsets from each line start,
the level field one more word compared with the padded level names. A line whose fixed
prefix matches is a header candidate exactly as the text path decides it; a block holding
any candidate the vector form cannot classify exactly (a custom level, odd hour or minute
digits, a missing fraction digit) is handed back (None) for the per-line path, so both
paths always agree. numpy is imported on first use so `import ccops.logs` stays light.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ccops.logs.format import LEVELS, Layout, LogFormat

_LOCK = threading.Lock()


def _le(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


Word = tuple[int, Any, Any]  # (offset from the line start, mask, expected) over an unaligned 8-byte word


def _words(fixed: dict[int, str], min_len: int) -> list[tuple[int, int, int]]:
    """Word checks covering every (position, character) of `fixed`, none reading past min_len bytes."""
    checks = []
    left = sorted(fixed)
    while left:
        at = min(left[0], min_len - 8)
        mask = bytearray(8)
        want = bytearray(8)
        for position in [p for p in left if at <= p < at + 8]:
            mask[position - at] = 0xFF
            want[position - at] = ord(fixed[position])
            left.remove(position)
        checks.append((at, _le(bytes(mask)), _le(bytes(want))))
    return checks


@dataclass
class _LayoutPlan:
    layout: Layout
    prefix: list[Word]  # fixed characters before the level: which lines are header candidates
    after: list[Word]  # the separator after the padded level: part of "exact"
    longer: bool  # needs a length test beyond the format's shortest header


@dataclass
class VectorPlan:
    """The numpy constants of one format."""

    np: Any
    common: list[Word]  # fixed characters every layout has
    layouts: list[_LayoutPlan]
    lut: Any  # first byte of a level -> its code (len(LEVELS): none)
    codes: dict[int, tuple[Any, Any]]  # level width -> (padded level words by code, mask)


def plan_for(fmt: LogFormat) -> VectorPlan:
    """The format's plan, built once (before worker threads race to build it)."""
    with _LOCK:
        if fmt.vector is None:
            fmt.vector = _build(fmt)
        return fmt.vector


def _build(fmt: LogFormat) -> VectorPlan:
    import numpy as np

    def word(check: tuple[int, int, int]) -> Word:
        offset, mask, want = check
        return offset, np.uint64(mask), np.uint64(want)

    prefixes = [{p: c for p, c in layout.literals if p < layout.level_start} for layout in fmt.compiled]
    common = {p: c for p, c in prefixes[0].items() if all(other.get(p) == c for other in prefixes[1:])}
    plans = []
    for layout, prefix in zip(fmt.compiled, prefixes, strict=True):
        own = {p: c for p, c in prefix.items() if p not in common}
        after = {p: c for p, c in layout.literals if p >= layout.after_start}
        plans.append(_LayoutPlan(layout, [word(w) for w in _words(own, layout.header_min)],
                                 [word(w) for w in _words(after, layout.header_min)],
                                 layout.header_min > fmt.header_min))
    lut = np.full(256, len(LEVELS), dtype=np.intp)
    for code, level in enumerate(LEVELS):
        lut[ord(level[0])] = code  # first letters are unique among loguru's seven
    codes = {}
    for width in {layout.level_width for layout in fmt.compiled}:
        mask = _le(b"\xff" * width + b"\0" * (8 - width))
        padded = [_le(level.ljust(width).encode()[:8].ljust(8, b"\0")) & mask for level in LEVELS]
        codes[width] = (np.array(padded + [0], dtype=np.uint64), np.uint64(mask))  # 0: no level (8 NUL bytes)
    return VectorPlan(np, [word(w) for w in _words(common, fmt.header_min)], plans, lut, codes)


def classify(fmt: LogFormat, buf: bytearray, end: int) -> tuple[Any, Any, Any, Any, Any] | None:
    """(hour tens, hour ones, minute tens, minute ones, level code) of every header in buf[:end].

    buf[:end] ends with a newline. None when some header candidate is not exactly one of
    the seven levels in a well-formed time: the caller counts the block line by line.
    """
    plan = plan_for(fmt)
    np = plan.np
    from numpy.lib.stride_tricks import as_strided

    a = np.frombuffer(buf, dtype=np.uint8, count=end)
    ends = np.flatnonzero(a == 10)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    long_enough = lengths >= fmt.header_min
    s = starts[long_enough]
    lengths = lengths[long_enough]
    # every 8-byte word of the block, unaligned, without a copy: words[i] = buf[i:i+8]
    words = as_strided(np.frombuffer(buf, dtype="<u8", count=1), shape=(end - 7,), strides=(1,), writeable=False)

    def matches(at: Any, checks: list[Word]) -> Any:
        result = None
        for offset, mask, want in checks:
            hit = (words[at + offset] & mask) == want
            result = hit if result is None else result & hit
        return result

    ok = matches(s, plan.common)
    if ok is not None:
        s, lengths = s[ok], lengths[ok]
    found, exact = [], []
    for layout_plan in plan.layouts:
        layout = layout_plan.layout
        mine = matches(s, layout_plan.prefix)
        if layout_plan.longer:
            longer = lengths >= layout.header_min
            mine = longer if mine is None else mine & longer
        x = s if mine is None else s[mine]
        codes, mask = plan.codes[layout.level_width]
        code = plan.lut[a[x + layout.level_start]]
        level_word = words[x + layout.level_start]
        good = codes[code] == (level_word if layout.level_width == 8 else level_word & mask)
        after = matches(x, layout_plan.after)
        if after is not None:
            good &= after
        for position in layout.digits[2:]:  # the fraction's digits (the hour's are checked below)
            good &= (a[x + position] >= 48) & (a[x + position] <= 57)
        found.append((x, code))
        exact.append(good)
    x = np.concatenate([f[0] for f in found])
    code = np.concatenate([f[1] for f in found])
    good = np.concatenate(exact)
    tens = a[x + 11].astype(np.intp) - 48
    ones = a[x + 12].astype(np.intp) - 48
    minute_tens = a[x + 14].astype(np.intp) - 48
    minute_ones = a[x + 15].astype(np.intp) - 48
    good &= (tens >= 0) & (ones >= 0) & (ones <= 9) & (tens * 10 + ones < 24)
    good &= (minute_tens >= 0) & (minute_tens <= 5) & (minute_ones >= 0) & (minute_ones <= 9)
    if not bool(good.all()):
        return None
    return tens, ones, minute_tens, minute_ones, code
