"""DSMR-reader's split topics: import and export power as two plain-text payloads.

The original script's input and p1evse's default. Each message is one half of a meter
telegram; pairing the halves is the pipeline's job (rule 1).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from p1evse.model import Side
from p1evse.sources.payload import UNIT_FACTORS, PayloadError, parse_number

if TYPE_CHECKING:
    from p1evse.mqtt import Broker, PayloadHandler
    from p1evse.sources import Intake


class MqttSplitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mqtt_split"] = "mqtt_split"
    delivered_topic: str = Field("dsmr/reading/electricity_currently_delivered", min_length=1)
    returned_topic: str = Field("dsmr/reading/electricity_currently_returned", min_length=1)
    unit: Literal["kW", "W"] = "kW"

    def subscriptions(self) -> list[str]:
        return [self.delivered_topic, self.returned_topic]


class MqttSplitSource:
    def __init__(self, settings: MqttSplitSettings, broker: Broker) -> None:
        self._settings = settings
        self._broker = broker

    def handlers(self, intake: Intake) -> dict[str, PayloadHandler]:
        """What to do with a payload on each subscribed topic."""
        factor = UNIT_FACTORS[self._settings.unit]

        def handler(side: Side) -> PayloadHandler:
            def on_payload(payload: bytes | bytearray) -> None:
                try:
                    value = parse_number(payload)
                except PayloadError as exc:
                    intake.reject(exc.reason, f"{side.value}: {exc.detail}")
                    return
                intake.half(side, value * factor)

            return on_payload

        return {
            self._settings.delivered_topic: handler(Side.IMPORT),
            self._settings.returned_topic: handler(Side.EXPORT),
        }

    async def run(self, intake: Intake) -> None:
        for topic, handler in self.handlers(intake).items():
            self._broker.subscribe(topic, handler)
        await asyncio.Event().wait()  # the broker delivers; nothing else to do
