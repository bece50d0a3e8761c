"""One topic that already carries net power: positive import, negative export (or the
other way round with `invert`), in W or kW. For meters and systems that publish one
signed value."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from p1evse.errors import InputRejected
from p1evse.inputs import UNIT_FACTORS, parse_number
from p1evse.model import Reading
from p1evse.settings import ReadTopic, Section
from p1evse.sources import listen
from p1evse.sources.units import KilowattsAsWatts

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.mqtt import MqttPort, PayloadHandler
    from p1evse.sources import Intake


class MqttValueSettings(Section):
    type: Literal["mqtt_value"] = "mqtt_value"
    topic: ReadTopic
    unit: Literal["kW", "W"] = "W"
    invert: bool = False  # true: the topic says positive when the house exports

    def subscriptions(self) -> list[str]:
        return [self.topic]

    def describe(self) -> str:
        sign = ", inverted" if self.invert else ""
        return f"mqtt_value {self.topic} ({self.unit}{sign})"


class MqttValueSource:
    def __init__(self, settings: MqttValueSettings, broker: MqttPort) -> None:
        self._settings = settings
        self._broker = broker

    def counts(self) -> list[Count]:
        """Nothing of its own: what it delivers, the pipeline counts."""
        return []

    def handler(self, intake: Intake, clock: Callable[[], float] | None = None) -> PayloadHandler:
        """What to do with a payload; `clock` defaults to the running loop's."""
        now = clock or asyncio.get_running_loop().time
        factor = UNIT_FACTORS[self._settings.unit] * (-1.0 if self._settings.invert else 1.0)
        unit_watch = KilowattsAsWatts(self._settings.unit, "mqtt_value")

        def on_payload(payload: bytes | bytearray) -> None:
            try:
                value = parse_number(payload)
            except InputRejected as exc:
                intake.reject(exc.reason, exc.detail)
                return
            unit_watch.observe(value)
            intake.reading(signed_reading(now(), value * factor))

        return on_payload

    def handlers(self, intake: Intake) -> dict[str, PayloadHandler]:
        """What to do with a payload on each subscribed topic."""
        return {self._settings.topic: self.handler(intake)}

    async def run(self, intake: Intake) -> None:
        await listen(self._broker, self.handlers(intake))


def signed_reading(at: float, watts: float) -> Reading:
    """A reading from net power: positive is import, negative export. A non-finite value
    stays in both halves, so the pipeline rejects it."""
    if watts >= 0:
        return Reading(at, watts, 0.0)
    if watts < 0:
        return Reading(at, 0.0, -watts)
    return Reading(at, watts, watts)
