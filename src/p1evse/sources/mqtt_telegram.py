"""A whole DSMR telegram in one MQTT message, as DSMR-reader publishes on `dsmr/raw`.

Parsed exactly as the `p1` source parses a serial stream (framing.py, telegram.py): the
CRC is checked, bytes before the header are skipped, a message that ends inside a
telegram counts as truncated; one that ends right after the checksum (DSMR-reader's
`dsmr/raw`) is a whole telegram. A message longer than any telegram is refused unread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import field_validator

from p1evse.model import Rejection
from p1evse.settings import ReadTopic, Section
from p1evse.sources import listen
from p1evse.sources.framing import MAX_TELEGRAM_BYTES, TelegramStream
from p1evse.sources.telegram import DSMR_VERSIONS, DsmrVersionName, make_decoder

if TYPE_CHECKING:
    from p1evse.counts import Count
    from p1evse.mqtt import MqttPort, PayloadHandler
    from p1evse.sources import Intake


class MqttTelegramSettings(Section):
    type: Literal["mqtt_telegram"] = "mqtt_telegram"
    topic: ReadTopic = "dsmr/raw"
    dsmr_version: DsmrVersionName = "5"

    @field_validator("dsmr_version")
    @classmethod
    def _plain_text(cls, version: DsmrVersionName) -> DsmrVersionName:
        if DSMR_VERSIONS[version].encrypted:
            raise ValueError(
                "an MQTT topic carries the decrypted telegram text: use the meter's "
                "unencrypted layout (5L for a Smarty), or the p1 source with decryption_key"
            )
        return version

    def subscriptions(self) -> list[str]:
        return [self.topic]

    def describe(self) -> str:
        return f"mqtt_telegram {self.topic} (DSMR {self.dsmr_version})"


class MqttTelegramSource:
    def __init__(self, settings: MqttTelegramSettings, broker: MqttPort) -> None:
        self._settings = settings
        self._broker = broker
        self._stream: TelegramStream | None = None  # once it runs

    def counts(self) -> list[Count]:
        return self._stream.counts() if self._stream is not None else []

    def handler(self, intake: Intake, clock: Callable[[], float] | None = None) -> PayloadHandler:
        """What to do with a payload; `clock` defaults to the running loop's."""
        now = clock or asyncio.get_running_loop().time
        decoder = make_decoder(DSMR_VERSIONS[self._settings.dsmr_version])
        stream = self._stream = TelegramStream(decoder, intake, now)

        def on_payload(payload: bytes | bytearray) -> None:
            if len(payload) > MAX_TELEGRAM_BYTES:  # refused unread: no telegram is so long
                detail = f"{len(payload)} bytes, more than a telegram ({MAX_TELEGRAM_BYTES})"
                intake.reject(Rejection.OVERSIZED, detail)
                return
            # whatever ends the message after the checksum is not the meter's (the CRC
            # stops at '!'): a publisher that trimmed it, or added "\n", loses nothing
            payload = payload.rstrip(b"\r\n\t \x00")
            if b"\r\n" not in payload:
                # some publishers strip the CR: the CRC was computed over CR LF, so
                # putting it back restores the meter's bytes (or the CRC says no)
                payload = payload.replace(b"\n", b"\r\n")
            stream.feed(payload)
            # a message holds one telegram, maybe without a line end after its checksum;
            # the rest of a flood is dropped
            stream.end(whole_message=True)

        return on_payload

    def handlers(self, intake: Intake) -> dict[str, PayloadHandler]:
        """What to do with a payload on each subscribed topic."""
        return {self._settings.topic: self.handler(intake)}

    async def run(self, intake: Intake) -> None:
        await listen(self._broker, self.handlers(intake))
