"""One JSON message per reading: DSMR-reader's `dsmr/json`, Tasmota SML's
`tele/<topic>/SENSOR`, or anything else that puts the power in JSON fields.

Fields are named by dotted paths (`SML.pwr_imp`; a number picks a list item). Either an
import and an export field (each >= 0), or one signed `power_field` (+ import). Numbers
may come as JSON strings: DSMR-reader sends its decimals that way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from p1evse.errors import InputRejected
from p1evse.inputs import UNIT_FACTORS, load_json, lookup, number_at
from p1evse.model import Phases, Reading
from p1evse.settings import ReadTopic, Section
from p1evse.sources import listen
from p1evse.sources.mqtt_value import signed_reading
from p1evse.sources.units import KilowattsAsWatts

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.mqtt import MqttPort, PayloadHandler
    from p1evse.sources import Intake

MAX_JSON_BYTES = 65_536
MAX_TIMESTAMP_CHARS = 40


class MqttJsonSettings(Section):
    type: Literal["mqtt_json"] = "mqtt_json"
    topic: ReadTopic = "dsmr/json"
    import_field: str | None = Field("electricity_currently_delivered", min_length=1)
    export_field: str | None = Field("electricity_currently_returned", min_length=1)
    power_field: str | None = Field(None, min_length=1)  # signed: + import, - export
    invert: bool = False  # power_field is positive when the house exports
    unit: Literal["kW", "W"] = "kW"
    scale: float = Field(1.0, gt=0, le=1_000_000)  # applied before the unit
    # optional, L1 L2 L3 in order; voltages in V
    phase_import_fields: list[str] = Field(default_factory=list, max_length=3)
    phase_export_fields: list[str] = Field(default_factory=list, max_length=3)
    phase_voltage_fields: list[str] = Field(default_factory=list, max_length=3)
    # the meter's own time of the reading (ISO 8601 with its UTC offset), as DSMR-reader
    # sends it: a message whose time has not moved on and whose values have not changed
    # is a repeat, not a new reading
    timestamp_field: str | None = Field("timestamp", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _power_field_replaces_the_halves(cls, data: Any) -> Any:
        """With `power_field`, the import and export fields default to none instead of
        DSMR-reader's (given as well, they are refused below)."""
        if not isinstance(data, dict) or data.get("power_field") is None:
            return data
        return {"import_field": None, "export_field": None, **data}

    @model_validator(mode="after")
    def _one_way_to_read_power(self) -> MqttJsonSettings:
        if self.power_field is not None:
            if self.import_field is not None or self.export_field is not None:
                raise ValueError("set power_field or import_field/export_field, not both")
        elif self.import_field is None and self.export_field is None:
            raise ValueError("set import_field and export_field, or power_field")
        if self.invert and self.power_field is None:
            raise ValueError("invert applies to power_field only")
        return self

    def subscriptions(self) -> list[str]:
        return [self.topic]

    def describe(self) -> str:
        if self.power_field is not None:
            fields = f"{self.power_field}{' inverted' if self.invert else ''}"
        else:
            fields = " - ".join(f for f in (self.import_field, self.export_field) if f)
        scale = f" x{self.scale:g}" if self.scale != 1 else ""
        return f"mqtt_json {self.topic} {fields} ({self.unit}{scale})"


class MqttJsonSource:
    def __init__(self, settings: MqttJsonSettings, broker: MqttPort) -> None:
        self._settings = settings
        self._broker = broker

    def counts(self) -> list[Count]:
        """Nothing of its own: what it delivers, the pipeline counts."""
        return []

    def handler(self, intake: Intake, clock: Callable[[], float] | None = None) -> PayloadHandler:
        """What to do with a payload; `clock` defaults to the running loop's."""
        now = clock or asyncio.get_running_loop().time
        unit_watch = KilowattsAsWatts(self._settings.unit, "mqtt_json")

        def on_payload(payload: bytes | bytearray) -> None:
            try:
                reading = self.reading(payload, now())
            except InputRejected as exc:
                intake.reject(exc.reason, exc.detail)
                return
            unit_watch.observe(reading.import_w - reading.export_w)
            intake.reading(reading)

        return on_payload

    def reading(self, payload: bytes | bytearray, at: float) -> Reading:
        settings = self._settings
        document = load_json(payload, MAX_JSON_BYTES)
        factor = UNIT_FACTORS[settings.unit] * settings.scale
        if settings.power_field is not None:
            watts = number_at(document, settings.power_field) * factor
            reading = signed_reading(at, -watts if settings.invert else watts)
            import_w, export_w = reading.import_w, reading.export_w
        else:
            import_w = export_w = 0.0
            if settings.import_field is not None:
                import_w = number_at(document, settings.import_field) * factor
            if settings.export_field is not None:
                export_w = number_at(document, settings.export_field) * factor
        return Reading(
            at,
            import_w,
            export_w,
            _phases(document, settings.phase_import_fields, factor),
            _phases(document, settings.phase_export_fields, factor),
            _phases(document, settings.phase_voltage_fields, 1.0),
            _meter_time(document, settings.timestamp_field),
        )

    def handlers(self, intake: Intake) -> dict[str, PayloadHandler]:
        """What to do with a payload on each subscribed topic."""
        return {self._settings.topic: self.handler(intake)}

    async def run(self, intake: Intake) -> None:
        await listen(self._broker, self.handlers(intake))


def _meter_time(document: Any, path: str | None) -> datetime | None:
    """The meter's time, if the message says it with its offset from UTC; anything else
    (no such field, not a time, a time without an offset) is no time, not a rejection:
    the power values stand on their own."""
    value = lookup(document, path) if path is not None else None
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_CHARS:
        return None
    try:
        when = datetime.fromisoformat(value)
        return when.astimezone(UTC) if when.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved to UTC
        return None


def _phases(document: Any, paths: list[str], factor: float) -> Phases | None:
    """Per-phase values are extras: a missing or bad one is left out, not a rejection."""
    if not paths:
        return None
    values: list[float | None] = []
    for path in (*paths, "", "")[:3]:
        try:
            values.append(number_at(document, path) * factor if path else None)
        except InputRejected:
            values.append(None)
    return (values[0], values[1], values[2])
