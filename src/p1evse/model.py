"""The values that flow from sources through the pipeline to sinks.

Times are seconds on the pipeline's clock (the event loop's monotonic clock in the
service, a virtual clock in tests and simulations). Power is in watts, always.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Side(enum.Enum):
    """Which half of a meter telegram a value belongs to."""

    IMPORT = "import"  # OBIS 1-0:1.7.0, DSMR-reader `electricity_currently_delivered`
    EXPORT = "export"  # OBIS 1-0:2.7.0, DSMR-reader `electricity_currently_returned`

    @property
    def other(self) -> Side:
        return Side.EXPORT if self is Side.IMPORT else Side.IMPORT


Phases = tuple[float | None, float | None, float | None]
"""One value per phase, L1, L2, L3; None where the meter does not say (single phase)."""


class PhaseKind(enum.Enum):
    """What a per-phase value measures."""

    IMPORT = "import"  # W, OBIS 21.7.0 / 41.7.0 / 61.7.0
    EXPORT = "export"  # W, OBIS 22.7.0 / 42.7.0 / 62.7.0
    VOLTAGE = "voltage"  # V, OBIS 32.7.0 / 52.7.0 / 72.7.0


@dataclass(frozen=True, slots=True)
class Reading:
    """One complete meter reading: import and export power, both >= 0.

    The per-phase values and the meter's own clock are carried for observers and sinks
    when the source knows them; the pipeline's rules use `at`, `import_w` and `export_w`.
    The pipeline emits each reading it accepts as an event (before the value it leads
    to), so observers see what the meter said.
    """

    at: float
    import_w: float
    export_w: float
    phase_import_w: Phases | None = None
    phase_export_w: Phases | None = None
    phase_voltage_v: Phases | None = None
    meter_time: datetime | None = None  # the telegram's timestamp (0-0:1.0.0), UTC

    @property
    def net_w(self) -> float:
        """Grid power: positive when the house imports, negative when it exports."""
        return self.import_w - self.export_w

    @property
    def mean_voltage_v(self) -> float | None:
        """The mean of the phase voltages the meter reports, if it reports any."""
        volts = [v for v in self.phase_voltage_v or () if v is not None]
        return sum(volts) / len(volts) if volts else None


class Rejection(enum.Enum):
    """Why an input value was refused. Each reason is counted and logged separately."""

    NOT_UTF8 = "not_utf8"
    TOO_LONG = "too_long"
    NOT_A_NUMBER = "not_a_number"
    NON_FINITE = "non_finite"
    NEGATIVE = "negative"
    IMPLAUSIBLE = "implausible"
    # telegrams (p1, mqtt_telegram)
    CRC = "crc"
    TRUNCATED = "truncated"
    OVERSIZED = "oversized"
    BAD_TELEGRAM = "bad_telegram"
    DECRYPTION = "decryption"
    # more bytes than the largest telegram and not one telegram in them: serial settings
    # that do not fit the meter
    NO_TELEGRAM = "no_telegram"
    # a telegram whose meter clock has not advanced and whose values have not changed:
    # re-sent, not a new reading
    METER_CLOCK_STUCK = "meter_clock_stuck"
    # JSON payloads and HTTP APIs (mqtt_json, homewizard)
    BAD_JSON = "bad_json"
    MISSING_FIELD = "missing_field"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class GridPower:
    """A value for OpenEVSE: whole watts, + import / - export, reserve included."""

    at: float
    watts: int
    readings: int  # how many readings the mean covers; 0 for a fail-safe value
    failsafe: bool = False
    # the meter's mean phase voltage in the latest reading, for a charger fed it
    voltage_v: float | None = None
    # `publish.mode: steady`: the value sent before, again, as the mean of the `readings`
    # since stayed close to it
    held: bool = False


class StaleAction(enum.Enum):
    PAUSE = "pause"
    IMPORT = "import"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class StaleEntered:
    """No valid reading for `stale_after` seconds (or none since start-up)."""

    at: float
    last_reading_at: float | None
    action: StaleAction


@dataclass(frozen=True, slots=True)
class StaleLeft:
    at: float
    gap_s: float | None  # None: it began before this pipeline (a pause taken over)


@dataclass(frozen=True, slots=True)
class Rejected:
    at: float
    reason: Rejection
    detail: str
    value: float | None = None  # a total the rules refused (W), for `check`'s unit hints


Event = Reading | GridPower | StaleEntered | StaleLeft | Rejected
