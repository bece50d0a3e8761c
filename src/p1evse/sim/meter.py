"""The simulated meter's outputs: what the house's readings look like on the wire.

- `dsmr5_telegram`: the P1 port's DSMR 5 telegram (an Iskra AM550's layout, CR LF line
  ends, CRC16), for the `p1` and `mqtt_telegram` sources.
- `TelegramServer`: those telegrams over TCP, as a P1-to-WiFi gateway serves them.
- `DsmrReaderPublisher`: DSMR-reader's split topics in kW, per phase too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from p1evse.model import Reading
from p1evse.mqtt import Broker
from p1evse.sim.house import METER_ZONE, Metered
from p1evse.sources.telegram import crc16

CRLF = "\r\n"


def dsmr5_telegram(metered: Metered) -> bytes:
    reading = metered.reading
    meter_time = reading.meter_time
    if meter_time is None:
        raise ValueError("a DSMR 5 telegram states the meter's clock")
    delivered, returned = metered.delivered_kwh, metered.returned_kwh
    lines = [
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({_clock(meter_time)})",
        "0-0:96.1.1(4530303434303037333832323436303139)",
        f"1-0:1.8.1({delivered[0]:010.3f}*kWh)",
        f"1-0:1.8.2({delivered[1]:010.3f}*kWh)",
        f"1-0:2.8.1({returned[0]:010.3f}*kWh)",
        f"1-0:2.8.2({returned[1]:010.3f}*kWh)",
        f"0-0:96.14.0({metered.tariff:04d})",
        f"1-0:1.7.0({_kw(reading.import_w)})",
        f"1-0:2.7.0({_kw(reading.export_w)})",
        "0-0:96.7.21(00005)",
        "0-0:96.7.9(00003)",
        "1-0:99.97.0(0)(0-0:96.7.19)",
        *(f"1-0:{c}.32.0(00000)" for c in (32, 52, 72)),
        *(f"1-0:{c}.36.0(00000)" for c in (32, 52, 72)),
        "0-0:96.13.0()",
        *_phase_lines((32, 52, 72), reading.phase_voltage_v, lambda v: f"{v:05.1f}*V"),
        *_phase_lines((31, 51, 71), metered.phase_current_a, lambda a: f"{a:03.0f}*A"),
        *_phase_lines((21, 41, 61), reading.phase_import_w, _kw),
        *_phase_lines((22, 42, 62), reading.phase_export_w, _kw),
        "0-1:24.1.0(003)",
        "0-1:96.1.0(4730303339303031393336393930363139)",
        f"0-1:24.2.1({_clock(meter_time)})(00981.443*m3)",
    ]
    body = f"/ISK5\\2M550T-1012{CRLF}{CRLF}" + "".join(line + CRLF for line in lines) + "!"
    data = body.encode("ascii")
    return data + f"{crc16(data):04X}{CRLF}".encode("ascii")


def _kw(watts: float) -> str:
    return f"{watts / 1000:06.3f}*kW"


def _phase_lines(
    codes: tuple[int, int, int],
    values: Sequence[float | None] | None,
    show: Callable[[float], str],
) -> list[str]:
    """`1-0:C.7.0(value*unit)` for each phase the meter states."""
    return [
        f"1-0:{code}.7.0({show(value)})"
        for code, value in zip(codes, values or (None, None, None), strict=True)
        if value is not None
    ]


def _clock(utc: datetime) -> str:
    """YYMMDDhhmmss in the meter's local time, S in summer, W in winter."""
    local = utc.astimezone(METER_ZONE)
    return local.strftime("%y%m%d%H%M%S") + ("S" if local.dst() else "W")


class TelegramServer:
    """A loopback TCP server that sends every telegram given to it to every client, as
    a P1 gateway (ser2net, a P1-to-WiFi dongle) does."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connected(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)

    def send(self, telegram: bytes) -> None:
        for writer in list(self._clients):
            if writer.is_closing():
                self._clients.discard(writer)
            else:
                writer.write(telegram)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._clients:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self._clients.clear()
        if self._server is not None:
            await self._server.wait_closed()


DSMR_READER = "dsmr/reading/"
PHASE_DELIVERED_TOPICS = [f"{DSMR_READER}phase_currently_delivered_l{n}" for n in (1, 2, 3)]
PHASE_RETURNED_TOPICS = [f"{DSMR_READER}phase_currently_returned_l{n}" for n in (1, 2, 3)]
PHASE_VOLTAGE_TOPICS = [f"{DSMR_READER}phase_voltage_l{n}" for n in (1, 2, 3)]


@dataclass
class DsmrReaderPublisher:
    """Publishes like DSMR-reader: kW with three decimals on the split topics (and the
    per-phase ones), retained, and a payload identical to the previous one on its topic
    is not sent again."""

    broker: Broker
    delivered_topic: str = f"{DSMR_READER}electricity_currently_delivered"
    returned_topic: str = f"{DSMR_READER}electricity_currently_returned"
    _previous: dict[str, str] = field(default_factory=dict)

    def publish(self, reading: Reading) -> None:
        """The phases first: the reading made of the two halves then carries them."""
        payloads: dict[str, str] = {}
        for topics, values, scale, digits in (
            (PHASE_DELIVERED_TOPICS, reading.phase_import_w, 1000, 3),
            (PHASE_RETURNED_TOPICS, reading.phase_export_w, 1000, 3),
            (PHASE_VOLTAGE_TOPICS, reading.phase_voltage_v, 1, 1),
        ):
            for topic, value in zip(topics, values or (None, None, None), strict=True):
                if value is not None:
                    payloads[topic] = f"{value / scale:.{digits}f}"
        payloads[self.delivered_topic] = f"{reading.import_w / 1000:.3f}"
        payloads[self.returned_topic] = f"{reading.export_w / 1000:.3f}"
        for topic, payload in payloads.items():
            if self._previous.get(topic) != payload and self.broker.publish(
                topic, payload, retain=True
            ):
                self._previous[topic] = payload
