"""Fewer points for a picture, and the same picture: a day at 1 s is 86,400 samples a
series, a plot a thousand or two pixels wide. Per pixel column, a line through the
column's first and last sample, its lowest and its highest looks as the line through
all of them (M4 aggregation). For display only: a day's figures come from every sample.
"""

from __future__ import annotations

from collections.abc import Sequence


def extremes(xs: Sequence[float], ys: Sequence[float | None], columns: int) -> list[int]:
    """The indices of the samples (`xs` rising, `ys` their values, None a gap) to draw a
    line `columns` pixels wide: in each column, the first and the last sample, the
    lowest and the highest, and the first gap. In order; at most 5 per column, and all
    of them when that is not fewer."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} times for {len(ys)} values")
    if columns < 1:
        raise ValueError(f"columns {columns}: expected at least 1")
    if len(xs) <= 5 * columns:
        return list(range(len(xs)))
    kept: list[int] = []
    for start, end in _columns(xs, columns):
        low = high = gap = -1
        low_y = high_y = 0.0
        for i in range(start, end):
            y = ys[i]
            if y is None:
                gap = i if gap < 0 else gap
                continue
            if low < 0 or y < low_y:
                low, low_y = i, y
            if high < 0 or y > high_y:
                high, high_y = i, y
        picked = {start, end - 1, *(i for i in (low, high, gap) if i >= 0)}
        kept.extend(sorted(picked))
    return kept


def _columns(xs: Sequence[float], columns: int) -> list[tuple[int, int]]:
    """The samples in each pixel column that has any, as index ranges [start, end)."""
    first, span = xs[0], (xs[-1] - xs[0]) or 1.0
    ranges: list[tuple[int, int]] = []
    start, column = 0, 0
    for i, x in enumerate(xs):
        at = min(int((x - first) / span * columns), columns - 1)
        if at != column:
            if i > start:
                ranges.append((start, i))
            start, column = i, at
    ranges.append((start, len(xs)))
    return ranges
