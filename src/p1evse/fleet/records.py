"""What a fleet keeps of each site for its page: the last value sent, and the last hour
of values at 10 s resolution in 720 bytes, allocated with the site's first value. A
site's full status model (`SiteState`, with its hour at 1 s) is 130 kB: at ten thousand
sites, that is the difference between 15 MB and 1.3 GB."""

from __future__ import annotations

from array import array

from p1evse.model import Event, GridPower

HISTORY_STEP_S = 10.0
HISTORY_SLOTS = 360  # an hour
NO_VALUE = -(2**15)  # a slot with no value sent in it
# the history holds ±32.7 kW (a home's connection; the value sent itself is kept whole)
MAX_WATTS = 2**15 - 1


class SiteRecord:
    __slots__ = ("_history", "_last_slot", "sent_at", "watts")

    def __init__(self) -> None:
        self.watts: int | None = None  # the last value sent, W
        self.sent_at: float | None = None  # its clock time
        self._history: array[int] | None = None  # the value sent last in each slot
        self._last_slot = 0

    def observe(self, event: Event) -> None:
        """A Bridge observer."""
        if type(event) is GridPower:
            self.sent(event.watts, event.at)

    def sent(self, watts: int, at: float) -> None:
        self.watts, self.sent_at = watts, at
        slot = int(at // HISTORY_STEP_S)
        history = self._history
        if history is None:
            history = self._history = array("h", [NO_VALUE]) * HISTORY_SLOTS
        elif slot > self._last_slot:  # the slots passed over had no value
            for gap in range(self._last_slot + 1, min(slot, self._last_slot + HISTORY_SLOTS)):
                history[gap % HISTORY_SLOTS] = NO_VALUE
        if slot >= self._last_slot:
            history[slot % HISTORY_SLOTS] = max(-MAX_WATTS, min(MAX_WATTS, watts))
            self._last_slot = slot

    def history(self, now: float) -> list[tuple[float, int | None]]:
        """(slot start, value sent last in it or None) for the hour up to `now`."""
        current = int(now // HISTORY_STEP_S)
        rows: list[tuple[float, int | None]] = []
        history = self._history
        for slot in range(current - HISTORY_SLOTS + 1, current + 1):
            value = None
            if history is not None and self._last_slot - HISTORY_SLOTS < slot <= self._last_slot:
                stored = history[slot % HISTORY_SLOTS]
                value = None if stored == NO_VALUE else stored
            rows.append((slot * HISTORY_STEP_S, value))
        return rows
