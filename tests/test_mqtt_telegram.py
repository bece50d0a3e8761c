"""The `mqtt_telegram` source: a whole P1 telegram per message (DSMR-reader's raw
telegram, a gateway's)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import Rejected, Rejection
from p1evse.sources.mqtt_telegram import MqttTelegramSettings
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.payloads import never_implausible, payloads, rejected, relayed, telegram_source


def test_a_raw_telegram_per_message() -> None:
    intake, handle = telegram_source()
    handle(telegrams.dsmr5(import_w=432, clock=telegrams.meter_clock(1)))
    cr_stripped = telegrams.dsmr5(import_w=0, export_w=100, clock=telegrams.meter_clock(2))
    handle(cr_stripped.replace(b"\r\n", b"\n"))
    handle(telegrams.corrupt(telegrams.dsmr5(clock=telegrams.meter_clock(3))))
    handle(telegrams.dsmr5(clock=telegrams.meter_clock(4))[:300])
    assert intake.published == [432, -100]
    assert rejected(intake) == {Rejection.CRC: 1, Rejection.TRUNCATED: 1}


def without_line_end(frame: bytes) -> bytes:
    """The telegram as DSMR-reader's `dsmr/raw` holds it: nothing after the checksum."""
    return frame.removesuffix(b"\r\n")


def lower_case_checksum(import_w: float) -> bytes:
    """A telegram whose checksum has letters, written in lower case."""
    for watts in range(int(import_w), int(import_w) + 100):
        frame = telegrams.dsmr5(import_w=watts, clock=telegrams.meter_clock(watts))
        lowered = frame[:-6] + frame[-6:].lower()
        if lowered != frame:
            return lowered
    raise AssertionError("no checksum with a letter in 100 telegrams")


DSMR_22 = ["1-0:1.7.0(0001.50*kW)", "1-0:2.7.0(0000.00*kW)"]


@pytest.mark.parametrize(
    ("payload", "version", "watts"),
    [
        (without_line_end(telegrams.dsmr5(import_w=432)), "5", 432),
        (without_line_end(telegrams.dsmr5(import_w=432)).replace(b"\r\n", b"\n"), "5", 432),
        (without_line_end(telegrams.telegram("ISk5MT382", DSMR_22, crc=False)), "2.2", 1500),
        (lower_case_checksum(700), "5", None),
        (without_line_end(lower_case_checksum(700)), "5", None),
        (without_line_end(telegrams.dsmr5(import_w=432)) + b"\n", "5", 432),
        (without_line_end(telegrams.dsmr5(import_w=432)) + b"\r", "5", 432),
        (without_line_end(telegrams.dsmr5(import_w=432)) + b" \n\r", "5", 432),
        (without_line_end(telegrams.dsmr5(import_w=432)) + b"\x00", "5", 432),
    ],
    ids=[
        "crc",
        "lf-only",
        "dsmr-2.2-bare-bang",
        "lower-case-crc",
        "lower-case-crc-no-line-end",
        "crlf-lines-lf-end",
        "crlf-lines-cr-end",
        "crlf-lines-odd-end",
        "nul-end",
    ],
)
def test_a_message_that_is_one_whole_telegram_is_one_telegram(
    payload: bytes, version: str, watts: int | None
) -> None:
    intake, handle = telegram_source(dsmr_version=version)
    handle(payload)
    assert rejected(intake) == {}
    assert len(intake.published) == 1
    assert watts is None or intake.published == [watts]


@pytest.mark.parametrize("end", [b"\r\n", b""], ids=["line-end", "no-line-end"])
def test_a_byte_that_is_not_ascii_is_said_to_be_one(end: bytes) -> None:
    intake, handle = telegram_source()
    frame = telegrams.dsmr5().replace(b"0-0:96.13.0()", b"0-0:96.13.0(\xb0C)")
    handle(frame.removesuffix(b"\r\n") + end)
    assert intake.published == []
    [rejection] = [event for event in intake.events if isinstance(event, Rejected)]
    assert (rejection.reason, rejection.detail) == (
        Rejection.BAD_TELEGRAM,
        "a byte that is not ASCII text",
    )


def test_a_meter_whose_clock_is_unset() -> None:
    intake, handle = telegram_source()
    for watts in (432, 500, 500, 0):
        handle(telegrams.dsmr5(import_w=watts, clock="000101010000W"))
    assert intake.published == [432, 500, 0]
    assert rejected(intake) == {Rejection.METER_CLOCK_STUCK: 1}  # the same telegram again


def test_an_easymeter_q3d_through_its_gateway() -> None:
    intake, handle = telegram_source(dsmr_version="Q3D")
    handle(telegrams.easymeter_q3d(import_w=1688.21) + telegrams.COM1_PADDING)
    handle(telegrams.easymeter_q3d(import_w=2124.86) + telegrams.COM1_PADDING)
    assert intake.published == [1688, 2125]
    assert rejected(intake) == {}


def test_an_easymeter_q3d_exporting() -> None:
    intake, handle = telegram_source(dsmr_version="Q3D")
    for power in ("-000997.90*W", "000012.10*W"):
        lines = ["1-0:2.8.0*255(00002345.6789012*kWh)", f"1-0:1.7.0*255({power})"]
        handle(telegrams.telegram("ESY5Q3DB1024 V3.04", lines, crc=False))
    assert intake.published == [-998, 12]
    assert rejected(intake) == {}


def test_mqtt_telegram_takes_plain_text_versions_only() -> None:
    with pytest.raises(ValueError, match="decrypted telegram text"):
        MqttTelegramSettings(dsmr_version="MSn")


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(payloads, max_size=20))
def test_arbitrary_payloads_never_crash_nor_publish_implausible_values(
    messages: list[bytes],
) -> None:
    never_implausible(telegram_source, messages)


async def test_a_raw_telegram_through_a_broker(broker: BrokerProcess) -> None:
    clock = telegrams.meter_clock
    messages = [("dsmr/raw", telegrams.fluvius(import_w=0, export_w=2222, clock=clock(1)))]
    messages.append(("dsmr/raw", telegrams.corrupt(telegrams.fluvius(clock=clock(2)))))
    messages.append(("dsmr/raw", telegrams.fluvius(import_w=111, export_w=0, clock=clock(3))))
    source = {"type": "mqtt_telegram", "dsmr_version": "5B"}
    await relayed(broker, source, messages, ["-2222", "111"])
