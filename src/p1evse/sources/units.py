"""A unit that does not fit the numbers: kilowatts read as watts pass every plausibility
rule (1.234 W is a power) and reach the charger as 1 W, so the run says so once, as
`check` does before it."""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

# below this, a value in W with a fraction is more likely kW (a house draws more than 50 W)
W_LOOKS_LIKE_KW = 50.0
# nonzero values looked at before the run says anything
UNIT_SAMPLE = 10


class KilowattsAsWatts:
    """Told the values of a source whose `unit` is W: once `UNIT_SAMPLE` nonzero ones
    were all below `W_LOOKS_LIKE_KW` and one had a fraction, it warns once. Any larger
    value ends the watch."""

    def __init__(self, unit: str, source: str) -> None:
        self._watching = unit == "W"
        self._source = source
        self._seen = 0
        self._fraction = False
        self._largest = 0.0

    def observe(self, value: float) -> None:
        if not self._watching or not value or not math.isfinite(value):
            return
        if abs(value) >= W_LOOKS_LIKE_KW:
            self._watching = False
            return
        self._fraction = self._fraction or value != int(value)
        self._largest = max(self._largest, abs(value))
        self._seen += 1
        if self._seen < UNIT_SAMPLE:
            return
        self._watching = False
        if self._fraction:
            log.warning(
                "%s: source.unit is W, but its first %d values were all below %g, with "
                "fractions (largest %g): it probably publishes kW, and the charger gets "
                "them as a few watts; set source.unit: kW",
                self._source,
                UNIT_SAMPLE,
                W_LOOKS_LIKE_KW,
                self._largest,
            )
