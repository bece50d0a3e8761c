"""The `mqtt_json` source: DSMR-reader's JSON, Tasmota's SML, one signed field; with the
payloads of the devices that publish them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import Rejection
from p1evse.sources.mqtt_json import MqttJsonSettings
from tests.brokers import BrokerProcess
from tests.payloads import (
    TASMOTA,
    dsmr_reader_json,
    json_source,
    never_implausible,
    payloads,
    rejected,
    relayed,
    tasmota_sml,
)


def test_dsmr_reader_json_with_decimals_as_strings() -> None:
    intake, handle = json_source(
        phase_import_fields=[f"phase_currently_delivered_l{n}" for n in (1, 2, 3)],
        phase_voltage_fields=[f"phase_voltage_l{n}" for n in (1, 2, 3)],
    )
    handle(dsmr_reader_json("0.321", "0.000", second=14))
    handle(dsmr_reader_json("0.000", "1.500", second=15))
    assert intake.published == [321, -1500]
    last = intake.pipeline.last_reading
    assert last is not None
    assert last.phase_import_w == (0, 0, 0)
    assert last.phase_voltage_v == (231.0, None, None)


def test_a_dsmr_reader_json_message_sent_again_is_no_reading() -> None:
    intake, handle = json_source()
    for _ in range(3):  # the same message: the same meter time and values
        handle(dsmr_reader_json("0.321", "0.000", second=14))
    handle(dsmr_reader_json("0.600", "0.000", second=15))
    handle(dsmr_reader_json("0.500", "0.000", second=15))  # a clock that did not move
    assert intake.published == [321, 600, 500]
    assert rejected(intake) == {Rejection.METER_CLOCK_STUCK: 2}
    last = intake.pipeline.last_reading
    assert last is not None
    assert last.meter_time == datetime(2024, 6, 15, 10, 13, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-06-15T10:13:14",
        "yesterday",
        1718446394,
        None,
        "9" * 100,
        "0001-01-01T00:00:00+01:00",  # an OverflowError when moved to UTC
        "9999-12-31T23:59:59-01:00",
    ],
)
def test_a_timestamp_without_offset_or_not_a_time_is_no_meter_time(timestamp: Any) -> None:
    intake, handle = json_source()
    document = {"timestamp": timestamp, "electricity_currently_delivered": "0.1"}
    document["electricity_currently_returned"] = "0"
    for _ in range(2):
        handle(json.dumps(document).encode())
    assert intake.published == [100, 100]


def test_tasmota_sml_numbers_in_a_nested_object() -> None:
    intake, handle = json_source(**TASMOTA)
    handle(tasmota_sml(0.0, 1.234))
    handle(tasmota_sml(0.5, 0.0))
    assert intake.published == [-1234, 500]


def test_one_signed_field_in_watts_inverted_and_scaled() -> None:
    intake, handle = json_source(power_field="data.0.p", unit="W", invert=True, scale=10)
    handle(b'{"data": [{"p": 42.5}]}')
    handle(b'{"data": [{"p": "-3"}]}')
    assert intake.published == [-425, 30]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", Rejection.BAD_JSON),
        (b"\xff\xfe", Rejection.NOT_UTF8),
        (b'{"electricity_currently_delivered": "0.1"}', Rejection.MISSING_FIELD),
        (b"[1, 2]", Rejection.MISSING_FIELD),
        (
            b'{"electricity_currently_delivered": "abc", "electricity_currently_returned": "0"}',
            Rejection.NOT_A_NUMBER,
        ),
        (
            b'{"electricity_currently_delivered": true, "electricity_currently_returned": 0}',
            Rejection.NOT_A_NUMBER,
        ),
        (
            b'{"electricity_currently_delivered": NaN, "electricity_currently_returned": 0}',
            Rejection.NON_FINITE,
        ),
        (
            b'{"electricity_currently_delivered": 1'
            + b"0" * 400
            + b', "electricity_currently_returned": 0}',
            Rejection.NON_FINITE,
        ),
        (
            b'{"electricity_currently_delivered": "-0.5", "electricity_currently_returned": 0}',
            Rejection.NEGATIVE,
        ),
        (b"[" * 100_000, Rejection.TOO_LONG),
        (b"[" * 60_000, Rejection.BAD_JSON),  # nested too deeply to parse
        (
            b'{"electricity_currently_delivered": "0.1", "electricity_currently_returned": 0,'
            b' "electricity_currently_delivered": "0.9"}',
            Rejection.BAD_JSON,  # which of the two?
        ),
    ],
)
def test_bad_json_payloads_are_counted_not_published(payload: bytes, reason: Rejection) -> None:
    intake, handle = json_source()
    handle(payload)
    assert intake.published == []
    assert rejected(intake) == {reason: 1}


def test_json_settings_errors() -> None:
    with pytest.raises(ValueError, match="power_field or import_field/export_field, not both"):
        MqttJsonSettings(power_field="p", import_field="a")
    with pytest.raises(ValueError, match="set import_field and export_field, or power_field"):
        MqttJsonSettings(import_field=None, export_field=None)
    with pytest.raises(ValueError, match="invert applies to power_field only"):
        MqttJsonSettings(invert=True)
    assert MqttJsonSettings(power_field="p").import_field is None


@pytest.mark.parametrize(
    "settings_",
    [{}, TASMOTA, {"power_field": "SML.pwr_imp", "unit": "W"}],
    ids=["dsmr-reader", "tasmota", "signed"],
)
@settings(max_examples=150, deadline=None)
@given(messages=st.lists(payloads, max_size=20))
def test_arbitrary_payloads_never_crash_nor_publish_implausible_values(
    settings_: dict[str, Any], messages: list[bytes]
) -> None:
    never_implausible(lambda: json_source(**settings_), messages)


async def test_dsmr_reader_json_through_a_broker(broker: BrokerProcess) -> None:
    messages = [("dsmr/json", dsmr_reader_json("0.000", "0.750", 1)), ("dsmr/json", b"{")]
    messages.append(("dsmr/json", dsmr_reader_json("0.125", "0.000", 2)))
    await relayed(broker, {"type": "mqtt_json"}, messages, ["-750", "125"])


async def test_tasmota_sml_through_a_broker(broker: BrokerProcess) -> None:
    messages = [("tele/p1meter/SENSOR", tasmota_sml(0.0, 2.5))]
    await relayed(broker, {"type": "mqtt_json", **TASMOTA}, messages, ["-2500"])
