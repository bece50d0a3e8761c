"""DSMR-reader's split topics: import and export power as two plain-text payloads.

The original script's input and p1evse's default. Each message is one half of a meter
telegram; pairing the halves is the pipeline's job (rule 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from p1evse.model import Side
from p1evse.sources.payload import UNIT_FACTORS, PayloadError, parse_number

if TYPE_CHECKING:
    from p1evse.mqtt import Broker
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

    async def run(self, intake: Intake) -> None:
        factor = UNIT_FACTORS[self._settings.unit]

        def handler(side: Side) -> Callable[[bytes | bytearray], None]:
            def on_payload(payload: bytes | bytearray) -> None:
                try:
                    value = parse_number(payload)
                except PayloadError as exc:
                    intake.reject(exc.reason, f"{side.value}: {exc.detail}")
                    return
                intake.half(side, value * factor)

            return on_payload

        self._broker.subscribe(self._settings.delivered_topic, handler(Side.IMPORT))
        self._broker.subscribe(self._settings.returned_topic, handler(Side.EXPORT))
        await asyncio.Event().wait()  # the broker delivers; nothing else to do
