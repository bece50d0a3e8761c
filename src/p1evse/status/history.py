"""A site's power values over time, for the status page's chart, in fixed memory.

Time is cut into buckets of `step_s`. Each bucket holds the mean of the meter's readings
in it, the last value sent to the charger in it, and the charger's current as last
reported; a ring of `span_s / step_s` buckets, in flat arrays of 28 bytes a bucket,
keeps the last `span_s` whatever the input rate. A site keeps two: the last hour at 1 s
(a DSMR 5 meter's own period, so its every reading stays visible; about 100 kB) and the
last day at 60 s for "today" (about 40 kB).

`Intervals` keeps the last few periods of something (stale, paused) in fixed memory.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

NO_BUCKET = -(2**63)  # no bucket has this number: an empty slot


@dataclass(frozen=True, slots=True)
class Row:
    """One bucket: its start time (the pipeline's clock) and its values, or None."""

    at: float
    meter_w: float | None
    published_w: float | None
    charger_a: float | None = None


class History:
    def __init__(self, span_s: float = 3600.0, step_s: float = 1.0) -> None:
        if step_s <= 0 or span_s < step_s:
            raise ValueError(f"need 0 < step_s <= span_s, got {step_s=}, {span_s=}")
        self.step_s = step_s
        self.size = math.ceil(span_s / step_s)
        self._bucket = array("q", [NO_BUCKET]) * self.size  # which bucket a slot holds
        self._meter_sum = array("d", [0.0]) * self.size
        self._meter_count = array("I", [0]) * self.size
        # single precision: whole watts and amps to 0.1 A are exact enough in it
        self._published = array("f", [math.nan]) * self.size
        self._charger = array("f", [math.nan]) * self.size
        self.latest = NO_BUCKET  # the newest bucket that holds a value

    def bucket(self, at: float) -> int:
        return math.floor(at / self.step_s)

    def add_meter(self, at: float, watts: float) -> None:
        slot = self._slot(at)
        if slot is not None:
            self._meter_sum[slot] += watts
            self._meter_count[slot] += 1

    def add_published(self, at: float, watts: float) -> None:
        slot = self._slot(at)
        if slot is not None:
            self._published[slot] = watts

    def add_charger(self, at: float, amps: float) -> None:
        slot = self._slot(at)
        if slot is not None:
            self._charger[slot] = amps

    def rows(self, since: int | None = None) -> list[Row]:
        """The buckets that hold a value, oldest first; from bucket `since` on if given."""
        if self.latest == NO_BUCKET:
            return []
        first = self.latest - self.size + 1
        if since is not None:
            first = max(first, since)
        rows = []
        for bucket in range(first, self.latest + 1):
            slot = bucket % self.size
            if self._bucket[slot] != bucket:
                continue
            count = self._meter_count[slot]
            rows.append(
                Row(
                    bucket * self.step_s,
                    self._meter_sum[slot] / count if count else None,
                    _value(self._published[slot]),
                    _value(self._charger[slot]),
                )
            )
        return rows

    def _slot(self, at: float) -> int | None:
        """The slot for time `at`, cleared if it held an older bucket; None when `at` is
        older than the span (it would overwrite newer values)."""
        bucket = self.bucket(at)
        if bucket <= self.latest - self.size:
            return None
        slot = bucket % self.size
        if self._bucket[slot] != bucket:
            self._bucket[slot] = bucket
            self._meter_sum[slot] = 0.0
            self._meter_count[slot] = 0
            self._published[slot] = math.nan
            self._charger[slot] = math.nan
        self.latest = max(self.latest, bucket)
        return slot


def _value(stored: float) -> float | None:
    return None if math.isnan(stored) else stored


class Intervals:
    """The last `keep` periods of something, each from its start to its end (NaN while
    it lasts), in one flat ring of floats."""

    def __init__(self, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"need keep >= 1, got {keep}")
        self._ends = array("d", [math.nan]) * (2 * keep)  # start, end, start, end, ...
        self._keep = keep
        self._count = 0  # periods begun, ever

    @property
    def open(self) -> bool:
        """Whether the latest period lasts."""
        return self._count > 0 and math.isnan(self._ends[self._slot(self._count - 1) + 1])

    def begin(self, at: float) -> None:
        if self.open:
            return
        slot = self._slot(self._count)
        self._ends[slot], self._ends[slot + 1] = at, math.nan
        self._count += 1

    def end(self, at: float) -> None:
        if self.open:
            self._ends[self._slot(self._count - 1) + 1] = at

    def periods(self) -> list[tuple[float, float | None]]:
        """Oldest first: (start, end), end None while the period lasts."""
        first = max(0, self._count - self._keep)
        return [
            (self._ends[self._slot(n)], _value(self._ends[self._slot(n) + 1]))
            for n in range(first, self._count)
        ]

    def _slot(self, n: int) -> int:
        return 2 * (n % self._keep)
