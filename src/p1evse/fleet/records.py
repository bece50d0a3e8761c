"""What a fleet keeps of each site for its page: the last value sent, and the last hour
of values at 10 s resolution in 720 bytes, allocated with the site's first value. A
site's full status model (`SiteState`, with its hour at 1 s) is 130 kB: at ten thousand
sites, that is the difference between 15 MB and 1.3 GB."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from p1evse.model import Event, GridPower, StaleEntered, StaleLeft

HISTORY_STEP_S = 10.0
HISTORY_SLOTS = 360  # an hour
NO_VALUE = -(2**15)  # a slot with no value sent in it
# the history holds ±32.7 kW (a home's connection; the value sent itself is kept whole)
MAX_WATTS = 2**15 - 1


@dataclass
class Totals:
    """Of the sites a fleet serves, how many are stale and how many hold a pause: kept
    as the sites change, since counting ten thousand sites takes 10 ms of the loop."""

    stale: int = 0
    paused: int = 0


class SiteRecord:
    __slots__ = ("_history", "_last_slot", "_totals", "paused", "sent_at", "stale", "watts")

    def __init__(self, totals: Totals) -> None:
        self._totals = totals
        self.watts: int | None = None  # the last value sent, W
        self.sent_at: float | None = None  # its clock time
        self.stale = False
        self.paused = False  # the charger holds the site's pause claim
        self._history: array[int] | None = None  # the value sent last in each slot
        self._last_slot = 0

    def observe(self, event: Event) -> None:
        """A Bridge observer."""
        if type(event) is GridPower:
            self.sent(event.watts, event.at)
        elif type(event) is StaleEntered or type(event) is StaleLeft:
            self.set_stale(type(event) is StaleEntered)

    def set_stale(self, stale: bool) -> None:
        self._totals.stale += stale - self.stale
        self.stale = stale

    def pause_held(self, held: bool) -> None:
        """A pause listener of the site's."""
        self._totals.paused += held - self.paused
        self.paused = held

    def let_go(self) -> None:
        """The site is no longer served here: out of the totals."""
        self._totals.stale -= self.stale
        self._totals.paused -= self.paused

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
