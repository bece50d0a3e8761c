"""Log bad input at most once per period per kind, saying how much was suppressed."""

from __future__ import annotations

from collections.abc import Callable, Hashable


class RateLimiter:
    def __init__(self, period_s: float, clock: Callable[[], float]) -> None:
        self._period = period_s
        self._clock = clock
        self._next_allowed: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def note(self, key: Hashable) -> str | None:
        """None when this occurrence should stay quiet; otherwise what to add to its log
        line: how many were left out since the last one let through ("" for none)."""
        now = self._clock()
        if now < self._next_allowed.get(key, float("-inf")):
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._next_allowed[key] = now + self._period
        suppressed = self._suppressed.pop(key, 0)
        return f" ({suppressed} more since the last report)" if suppressed else ""
