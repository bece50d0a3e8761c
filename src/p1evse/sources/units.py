"""A unit that does not fit the numbers: kilowatts read as watts pass every plausibility
rule (1.234 W is a power) and reach the charger as 1 W, so the run says so once, as
`check` does before it."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

log = logging.getLogger(__name__)

# below this, a value in W with a fraction is more likely kW (a house draws more than 50 W)
W_LOOKS_LIKE_KW = 50.0
# nonzero values looked at before the run says anything
UNIT_SAMPLE = 10


def looks_like_kilowatts(values: Sequence[float]) -> bool:
    """Whether nonzero values in W are kW: all below `W_LOOKS_LIKE_KW`, one with a
    fraction (DSMR-reader's 1.234)."""
    return (
        bool(values)
        and max(abs(value) for value in values) < W_LOOKS_LIKE_KW
        and any(value != int(value) for value in values)
    )


class KilowattsAsWatts:
    """Told the values of a source whose `unit` is W: once `UNIT_SAMPLE` nonzero ones
    look like kW, it warns once. Any larger value ends the watch."""

    def __init__(self, unit: str, source: str) -> None:
        self._watching = unit == "W"
        self._source = source
        self._values: list[float] = []

    def observe(self, value: float) -> None:
        if not self._watching or not value or not math.isfinite(value):
            return
        if abs(value) >= W_LOOKS_LIKE_KW:
            self._watching = False
            return
        self._values.append(value)
        if len(self._values) < UNIT_SAMPLE:
            return
        self._watching = False
        if looks_like_kilowatts(self._values):
            log.warning(
                "%s: source.unit is W, but its first %d values were all below %g, with "
                "fractions (largest %g): it probably publishes kW, and the charger gets "
                "them as a few watts; set source.unit: kW",
                self._source,
                UNIT_SAMPLE,
                W_LOOKS_LIKE_KW,
                max(abs(value) for value in self._values),
            )
