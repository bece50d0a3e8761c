"""The `p1` source on real transports: a pseudo-terminal pair as the serial port (the
source opens the slave's path like /dev/ttyUSB0) and a TCP gateway on loopback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from p1evse.model import Rejection
from p1evse.sources.framing import MAX_TELEGRAM_BYTES
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.gateways import HELLO_W, Gateway, SerialPort, listening, next_reading, source
from tests.probe import Probe


@pytest.fixture
def serial_port(tmp_path: Path) -> Any:
    port = SerialPort(tmp_path)
    port.plug()
    yield port
    port.unplug()


# -- serial ------------------------------------------------------------------------------


async def test_dsmr5_over_a_serial_port(serial_port: SerialPort) -> None:
    async with source(str(serial_port.path)) as (_, intake):
        await listening(serial_port.write, intake)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        serial_port.write(telegrams.dsmr5(import_w=1234, phases_import_w=(600, 400, 234)))
        reading = await next_reading(intake)
    assert (reading.import_w, reading.export_w) == (1234, 0)
    assert reading.phase_import_w == (600, 400, 234)
    assert reading.phase_voltage_v == (230.0, 230.0, 229.0)
    assert reading.meter_time is not None
    assert reading.meter_time.isoformat() == "2017-01-02T18:20:02+00:00"
    assert sent <= reading.at <= loop.time()  # the loop time of arrival
    assert intake.rejections == []


async def test_dsmr4_over_a_serial_port_at_7e1(serial_port: SerialPort) -> None:
    async with source(str(serial_port.path), dsmr_version="4") as (_, intake):
        await listening(lambda _: serial_port.write(telegrams.dsmr4(import_w=HELLO_W)), intake)
        serial_port.write(telegrams.dsmr4(import_w=2027))
        assert round((await next_reading(intake)).import_w) == 2027


async def test_bad_telegrams_over_a_serial_port(serial_port: SerialPort) -> None:
    async with source(str(serial_port.path)) as (_, intake):
        await listening(serial_port.write, intake)
        serial_port.write(telegrams.corrupt(telegrams.dsmr5(import_w=9999)))
        serial_port.write(telegrams.dsmr5(import_w=501))
        assert (await next_reading(intake)).import_w == 501
        serial_port.write(telegrams.dsmr5(import_w=9999)[:500])  # cut off by the next
        serial_port.write(b"\x00\xfe line noise \r\n" + telegrams.dsmr5(import_w=502))
        assert (await next_reading(intake)).import_w == 502
        huge = telegrams.telegram("ISk5MT382", ["0-0:96.13.0(" + "41" * 6000 + ")"])
        serial_port.write(huge + telegrams.dsmr5(import_w=503))
        assert (await next_reading(intake)).import_w == 503
    counts = {reason: intake.count(reason) for reason, _ in intake.rejections}
    assert counts == {Rejection.CRC: 1, Rejection.TRUNCATED: 1, Rejection.OVERSIZED: 1}
    assert all(r.import_w in (HELLO_W, 501, 502, 503) for r in intake.readings)


async def test_a_dsmr4_meter_read_at_8n1_says_which_settings_to_check(
    serial_port: SerialPort,
) -> None:
    async with source(str(serial_port.path)) as (_, intake):
        await listening(serial_port.write, intake)
        wrong = telegrams.read_at_8n1(telegrams.dsmr4())
        serial_port.write(wrong * (2 * MAX_TELEGRAM_BYTES // len(wrong)))
        await intake.rejected(Rejection.NO_TELEGRAM)
    [detail] = [detail for reason, detail in intake.rejections]
    assert "source.dsmr_version 5 reads the port at 115200 baud 8N1" in detail
    assert "DSMR 4: 115200 baud 7E1 (dsmr_version 4)" in detail


def burst(first_w: int) -> tuple[bytes, list[int]]:
    """Twenty small telegrams at once: more than one read of the source decodes."""
    watts = list(range(first_w, first_w + 20))
    frames = [telegrams.telegram("XYZ5", [f"1-0:1.7.0({w / 1000:06.3f}*kW)"]) for w in watts]
    return b"".join(frames), watts


async def test_a_burst_over_a_serial_port_is_read_whole(serial_port: SerialPort) -> None:
    async with source(str(serial_port.path)) as (_, intake):
        await listening(serial_port.write, intake)
        data, watts = burst(2000)
        serial_port.write(data)
        assert [round((await next_reading(intake)).import_w) for _ in watts] == watts
    assert intake.rejections == []


async def test_a_serial_port_unplugged_and_plugged_back(serial_port: SerialPort) -> None:
    async with source(str(serial_port.path)) as (p1_source, intake):
        await listening(serial_port.write, intake)
        serial_port.unplug()  # the source's reads fail; the path leads nowhere
        serial_port.plug()
        await listening(serial_port.write, intake)
        serial_port.write(telegrams.dsmr5(import_w=701))
        assert (await next_reading(intake)).import_w == 701
    assert p1_source.stats.connects == 2
    assert p1_source.stats.drops == 1


# -- TCP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "frame", "expected"),
    [
        ("5", telegrams.dsmr5(import_w=1234), (1234, 0)),
        ("4", telegrams.dsmr4(import_w=2500), (2500, 0)),
        ("5B", telegrams.fluvius(export_w=1234), (0, 1234)),
        ("5", telegrams.watts_meter(export_w=734), (0, 734)),
        ("5", telegrams.phases_only((1500, 0, 250), (0, 800, 0)), (1750, 800)),
    ],
    ids=["dsmr5", "dsmr4", "fluvius", "watts", "no-totals"],
)
async def test_meters_through_a_tcp_gateway(
    gateway: Gateway, version: str, frame: bytes, expected: tuple[float, float]
) -> None:
    async with source(gateway.url, dsmr_version=version) as (_, intake):
        connection = await gateway.connection()
        connection.write(frame)
        reading = await intake.next_reading()
    assert (round(reading.import_w), round(reading.export_w)) == expected
    assert intake.rejections == []


async def test_a_gateway_that_strips_the_crs_is_told_once(gateway: Gateway) -> None:
    """LF line ends, where DSMR has CR LF: refused once, as what they are."""
    async with source(gateway.url) as (_, intake):
        connection = await gateway.connection()
        for second in range(3):
            frame = telegrams.dsmr5(import_w=600, clock=telegrams.meter_clock(second))
            connection.write(frame.replace(b"\r\n", b"\n"))
        connection.write(telegrams.dsmr5(import_w=700, clock=telegrams.meter_clock(3)))
        assert (await intake.next_reading()).import_w == 700
    [(reason, detail)] = intake.rejections
    assert reason is Rejection.BAD_TELEGRAM
    assert detail.startswith("lines end in LF alone, not CR LF")


async def test_a_gateway_that_disconnects_mid_telegram_and_comes_back(gateway: Gateway) -> None:
    async with source(gateway.url) as (p1_source, intake):
        connection = await gateway.connection()
        connection.write(telegrams.dsmr5(import_w=800))
        assert (await intake.next_reading()).import_w == 800
        connection.write(telegrams.dsmr5(import_w=9999)[:600])
        await connection.drain()
        connection.close()
        await intake.rejected(Rejection.TRUNCATED)
        connection = await gateway.connection()  # the source is back
        connection.write(telegrams.dsmr5(import_w=801))
        assert (await intake.next_reading()).import_w == 801
    assert [r.import_w for r in intake.readings] == [800, 801]
    assert p1_source.stats.connects == 2


async def test_a_gateway_that_drops_every_connection_is_logged_once_a_minute(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """One telegram per connection, then closed: two log lines per reconnect before."""
    caplog.set_level(logging.INFO, logger="p1evse.sources.p1")
    async with source(gateway.url) as (p1_source, intake):
        for second in range(5):
            connection = await gateway.connection()
            connection.write(telegrams.dsmr5(import_w=800, clock=telegrams.meter_clock(second)))
            await intake.next_reading()
            connection.close()
        await gateway.connection()  # the fifth loss was logged, or left out, by now
    assert p1_source.stats.connects == 6
    lines = [record.getMessage() for record in caplog.records]
    assert len([line for line in lines if "p1: connected to" in line]) == 1
    assert len([line for line in lines if "connection lost" in line]) == 1


async def test_a_burst_through_a_tcp_gateway_is_read_whole(gateway: Gateway) -> None:
    async with source(gateway.url) as (_, intake):
        connection = await gateway.connection()
        data, watts = burst(3000)
        connection.write(data)
        assert [round((await intake.next_reading()).import_w) for _ in watts] == watts
    assert intake.rejections == []


async def test_a_gateway_that_is_down_at_start(gateway: Gateway) -> None:
    await gateway.stop()
    async with source(gateway.url) as (p1_source, intake):
        await gateway.start()  # same port
        connection = await gateway.connection()
        connection.write(telegrams.dsmr5(import_w=900))
        assert (await intake.next_reading()).import_w == 900
    assert p1_source.stats.failed_attempts >= 1


async def test_a_silent_connection_is_closed_and_opened_again(gateway: Gateway) -> None:
    async with source(gateway.url, idle_timeout=0.3) as (p1_source, intake):
        await gateway.connection()  # says nothing, like a half-open connection
        connection = await gateway.connection()
        connection.write(telegrams.dsmr5(import_w=950))
        assert (await intake.next_reading()).import_w == 950
    assert p1_source.stats.drops >= 1


async def test_the_service_publishes_from_a_tcp_gateway(
    broker: BrokerProcess, gateway: Gateway
) -> None:
    source_settings = {"type": "p1", "url": gateway.url}
    settings = settings_for(broker, source=source_settings, publish={"interval": 0})
    async with running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe("p1evse/grid_ie", "p1evse/status")
        await probe.wait_for_payload("p1evse/status", "online")  # it can publish
        connection = await gateway.connection()
        clock = telegrams.meter_clock
        for second, watts in enumerate((0, 1234)):
            connection.write(telegrams.dsmr5(import_w=0, export_w=watts, clock=clock(second)))
        assert await probe.next_payload("p1evse/grid_ie") == "0"
        assert await probe.next_payload("p1evse/grid_ie") == "-1234"
        connection.write(telegrams.corrupt(telegrams.dsmr5(import_w=5000, clock=clock(2))))
        connection.write(telegrams.fluvius(import_w=0, export_w=0, clock=clock(3))[:200])
        connection.write(telegrams.dsmr5(import_w=321, clock=clock(4)))
        assert await probe.next_payload("p1evse/grid_ie") == "321"
        assert probe.pending("p1evse/grid_ie") == []
        rejected = app.site.bridge.pipeline.counters.rejected
        assert rejected == {Rejection.CRC: 1, Rejection.TRUNCATED: 1}
        last = app.site.bridge.pipeline.last_reading
        assert last is not None
        assert last.phase_voltage_v == (230.0, 230.0, 229.0)


KEY = bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0")
SMARTY_AUTHENTICATION_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")  # public, fixed


@pytest.mark.parametrize(
    ("version", "authentication_key", "sent_with"),
    [
        ("MSn", None, SMARTY_AUTHENTICATION_KEY),  # the standard's key when none is set
        ("SAGEMCOM_T210_D_R", "A1" * 16, bytes.fromhex("A1" * 16)),
        ("SAGEMCOM_T210_D_R", None, bytes.fromhex("B2" * 16)),  # tag unchecked: CRC guards
    ],
)
async def test_encrypted_meters_through_a_tcp_gateway(
    gateway: Gateway, version: str, authentication_key: str | None, sent_with: bytes
) -> None:
    keys = {"decryption_key": KEY.hex()}
    if authentication_key is not None:
        keys["authentication_key"] = authentication_key
    async with source(gateway.url, dsmr_version=version, **keys) as (_, intake):
        connection = await gateway.connection()
        frame = telegrams.encrypted(telegrams.dsmr5(import_w=1111), KEY, sent_with)
        wrong_key = telegrams.encrypted(telegrams.dsmr5(import_w=9999), b"\x01" * 16, sent_with)
        connection.write(b"\x00noise" + frame[:40])
        connection.write(frame[40:] + wrong_key)
        connection.write(telegrams.encrypted(telegrams.dsmr5(import_w=2222), KEY, sent_with))
        assert (await intake.next_reading()).import_w == 1111
        assert (await intake.next_reading()).import_w == 2222
    # a wrong key fails the tag check, or (unchecked) gives no telegram text
    assert [reason for reason, _ in intake.rejections] == [Rejection.DECRYPTION]


async def test_an_encrypted_frame_that_is_cut_or_false_costs_only_itself(
    gateway: Gateway,
) -> None:
    """dsmr-parser's buffer took a frame's length as it came: a frame that lost bytes on
    the way took the start of the next one with it, and a false start (any 0xDB with
    0x82 where its length byte puts it) waited for up to 64 kB, swallowing the frames
    behind it. A false start that looks whole delayed every frame until its length had
    come, then sent them all at once, stale."""
    authentication_key = bytes.fromhex("A1" * 16)

    def frame(watts: int, second: int) -> bytes:
        plain = telegrams.dsmr5(import_w=watts, clock=telegrams.meter_clock(second))
        return telegrams.encrypted(plain, KEY, authentication_key, counter=second)

    def cut(whole: bytes) -> bytes:
        return whole[:200] + whole[220:]  # 20 bytes lost on the way

    def plausible(length: int) -> bytes:  # a header that could start a real frame
        return b"\xdb\x08SAGY\x00\x01\x02\x03\x82" + length.to_bytes(2, "big") + b"\x30"

    async with source(
        gateway.url,
        dsmr_version="SAGEMCOM_T210_D_R",
        decryption_key=KEY.hex(),
        authentication_key=authentication_key.hex(),
    ) as (_, intake):
        connection = await gateway.connection()
        connection.write(cut(frame(9999, 1)) + cut(frame(9998, 2)) + frame(1111, 3))
        assert (await intake.next_reading()).import_w == 1111
        connection.write(b"\xdb\x03abc\x82\xff\xf0" + frame(2222, 4))  # was 65,520 bytes
        assert (await intake.next_reading()).import_w == 2222
        connection.write(plausible(1500) + plausible(8000))
        for second, watts in enumerate((3333, 4444, 5555), start=5):
            connection.write(frame(watts, second))  # each read before the next is sent
            assert (await intake.next_reading()).import_w == watts
    reasons = [reason for reason, _ in intake.rejections]
    assert reasons == [Rejection.DECRYPTION, Rejection.DECRYPTION, Rejection.TRUNCATED]
