"""What the charger reports back, and the one rule it feeds: whether to pause.

Both transports fill a `ChargerState` (MQTT from `<base>/amp`, `pilot`, …; HTTP from
`GET /status`) with the same field names and units as the firmware's `/status`.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from p1evse.model import Reading

log = logging.getLogger(__name__)


class DivertMode(enum.IntEnum):
    NORMAL = 1
    ECO = 2


@dataclass(slots=True)
class ChargerState:
    amp: float | None = None  # mA the car draws
    pilot: float | None = None  # A offered to the car
    state: int | None = None  # the EVSE state code (1 ready, 3 charging, 254 sleeping, …)
    divertmode: DivertMode | None = None
    divert_active: bool | None = None
    charge_rate: float | None = None  # A that divert asks for
    updated_at: float | None = None  # loop time of the last report

    def update(self, field: str, raw: Any, at: float) -> bool:
        """Take one reported value (JSON or MQTT text); False if it made no sense."""
        value = _parse(field, raw)
        if value is None:
            return False
        setattr(self, field, value)
        self.updated_at = at
        return True

    def update_all(self, status: dict[str, Any], at: float) -> None:
        for field in READ_BACK_FIELDS:
            if field in status:
                self.update(field, status[field], at)

    def pause_allowed(self) -> bool:
        """The stale guard pauses an Eco charge, or one whose mode is unknown; a charger
        known to be in normal mode is someone's deliberate charge and is left alone."""
        return self.divertmode is not DivertMode.NORMAL


READ_BACK_FIELDS = ("amp", "pilot", "state", "divertmode", "divert_active", "charge_rate")


def _parse(field: str, raw: Any) -> Any:
    if isinstance(raw, bytes | bytearray):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if field == "divert_active":
        return bool(raw) if isinstance(raw, bool | int) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    if field == "divertmode":
        return DivertMode(int(raw)) if raw in (1, 2) else None
    if field == "state":
        return int(raw)
    return float(raw)


@dataclass(slots=True)
class PauseIntent:
    """Whether p1evse should hold its pause claim now: the stale guard fired with
    `on_stale: pause`, and the charger is not known to be in normal mode."""

    charger: ChargerState
    stale: bool = False
    _spared_logged: bool = False

    def wanted(self) -> bool:
        spared = self.stale and not self.charger.pause_allowed()
        if spared and not self._spared_logged:
            log.warning("no valid reading, but OpenEVSE is in normal mode: not pausing it")
        self._spared_logged = spared
        return self.stale and not spared


# OpenEVSE takes a fed voltage between these (else its configured one, else 240 V)
VOLTAGE_RANGE_V = (60.0, 300.0)


def feed_voltage(reading: Reading | None) -> float | None:
    """The voltage for OpenEVSE's divert maths: the mean of the phase voltages the meter
    reports, when OpenEVSE would accept it."""
    if reading is None or reading.phase_voltage_v is None:
        return None
    volts = [v for v in reading.phase_voltage_v if v is not None]
    if not volts:
        return None
    mean = sum(volts) / len(volts)
    low, high = VOLTAGE_RANGE_V
    return round(mean, 1) if low <= mean <= high else None
