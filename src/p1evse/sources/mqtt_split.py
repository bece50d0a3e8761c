"""DSMR-reader's split topics: import and export power as two plain-text payloads.

The original script's input and p1evse's default. Each message is one half of a meter
telegram; pairing the halves is the pipeline's job (rule 1). Optional per-phase topics
(DSMR-reader's `phase_currently_delivered_l1` ..., ESPHome's `power_delivered_l1` ...)
are carried on the readings for observers; they never change the net power.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from p1evse.errors import InputRejected
from p1evse.inputs import UNIT_FACTORS, parse_number
from p1evse.model import PhaseKind, Side
from p1evse.settings import ReadTopic, Section
from p1evse.sources import listen
from p1evse.sources.units import KilowattsAsWatts

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.mqtt import MqttPort, PayloadHandler
    from p1evse.sources import Intake


class MqttSplitSettings(Section):
    type: Literal["mqtt_split"] = "mqtt_split"
    delivered_topic: ReadTopic = "dsmr/reading/electricity_currently_delivered"
    returned_topic: ReadTopic = "dsmr/reading/electricity_currently_returned"
    unit: Literal["kW", "W"] = "kW"
    # optional, L1 L2 L3 in order; power in `unit`, voltage in V
    phase_delivered_topics: list[ReadTopic] = Field(default_factory=list, max_length=3)
    phase_returned_topics: list[ReadTopic] = Field(default_factory=list, max_length=3)
    phase_voltage_topics: list[ReadTopic] = Field(default_factory=list, max_length=3)

    @model_validator(mode="after")
    def _topics_differ(self) -> MqttSplitSettings:
        topics = [
            self.delivered_topic,
            self.returned_topic,
            *self.phase_delivered_topics,
            *self.phase_returned_topics,
            *self.phase_voltage_topics,
        ]
        repeated = sorted({topic for topic in topics if topics.count(topic) > 1})
        if repeated:
            raise ValueError(f"each topic carries one value; used more than once: {repeated}")
        return self

    def phase_topics(self) -> dict[str, tuple[PhaseKind, int]]:
        """topic -> (what it measures, phase index 0-2)"""
        lists = {
            PhaseKind.IMPORT: self.phase_delivered_topics,
            PhaseKind.EXPORT: self.phase_returned_topics,
            PhaseKind.VOLTAGE: self.phase_voltage_topics,
        }
        return {
            topic: (kind, phase)
            for kind, topics in lists.items()
            for phase, topic in enumerate(topics)
        }

    def subscriptions(self) -> list[str]:
        return [self.delivered_topic, self.returned_topic, *self.phase_topics()]

    def describe(self) -> str:
        return f"mqtt_split {self.delivered_topic}, {self.returned_topic} ({self.unit})"


class MqttSplitSource:
    def __init__(self, settings: MqttSplitSettings, broker: MqttPort) -> None:
        self._settings = settings
        self._broker = broker

    def counts(self) -> list[Count]:
        """Nothing of its own: what it delivers, the pipeline counts."""
        return []

    def handlers(self, intake: Intake) -> dict[str, PayloadHandler]:
        """What to do with a payload on each subscribed topic."""
        factor = UNIT_FACTORS[self._settings.unit]
        unit_watch = KilowattsAsWatts(self._settings.unit, "mqtt_split")

        def handler(side: Side) -> PayloadHandler:
            def on_payload(payload: bytes | bytearray) -> None:
                try:
                    value = parse_number(payload)
                except InputRejected as exc:
                    intake.reject(exc.reason, f"{side.value}: {exc.detail}", side)
                    return
                unit_watch.observe(value)
                intake.half(side, value * factor)

            return on_payload

        handlers = {
            self._settings.delivered_topic: handler(Side.IMPORT),
            self._settings.returned_topic: handler(Side.EXPORT),
        }
        handlers.update(self._phase_handlers(intake, factor))
        return handlers

    def _phase_handlers(self, intake: Intake, factor: float) -> dict[str, PayloadHandler]:
        def handler(kind: PhaseKind, phase: int) -> PayloadHandler:
            scale = 1.0 if kind is PhaseKind.VOLTAGE else factor

            def on_payload(payload: bytes | bytearray) -> None:
                try:
                    value = parse_number(payload)
                except InputRejected as exc:
                    intake.reject(exc.reason, f"L{phase + 1} {kind.value}: {exc.detail}")
                    return
                intake.phase(kind, phase, value * scale)

            return on_payload

        return {
            topic: handler(kind, phase)
            for topic, (kind, phase) in self._settings.phase_topics().items()
        }

    async def run(self, intake: Intake) -> None:
        await listen(self._broker, self.handlers(intake))
