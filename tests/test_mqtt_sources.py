"""The MQTT sources beside the split topics: JSON, one signed value, whole telegrams, and
split topics with phases; with the payloads of the devices that publish them."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import Rejection
from p1evse.sources.mqtt_json import MqttJsonSettings, MqttJsonSource
from p1evse.sources.mqtt_split import MqttSplitSettings, MqttSplitSource
from p1evse.sources.mqtt_telegram import MqttTelegramSettings, MqttTelegramSource
from p1evse.sources.mqtt_value import MqttValueSettings, MqttValueSource
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.intakes import PipelineIntake
from tests.probe import Probe

GRID_IE = "p1evse/grid_ie"
STATUS = "p1evse/status"


def dsmr_reader_json(delivered: str = "0.321", returned: str = "0.000", second: int = 14) -> bytes:
    """DSMR-reader's `dsmr/json`: one telegram, decimals as strings, its default
    mapping's fields."""
    return json.dumps(
        {
            "id": 4711,
            "timestamp": f"2024-06-15T10:13:{second:02d}Z",
            "electricity_delivered_1": "1234.567",
            "electricity_returned_1": "12.345",
            "electricity_delivered_2": "2345.678",
            "electricity_returned_2": "23.456",
            "electricity_currently_delivered": delivered,
            "electricity_currently_returned": returned,
            "phase_currently_delivered_l1": delivered,
            "phase_currently_delivered_l2": "0.000",
            "phase_currently_delivered_l3": "0.000",
            "phase_currently_returned_l1": returned,
            "phase_currently_returned_l2": "0.000",
            "phase_currently_returned_l3": "0.000",
            "phase_voltage_l1": "231.0",
            "phase_voltage_l2": None,
            "phase_voltage_l3": None,
            "extra_device_timestamp": "2024-06-15T10:00:00Z",
            "extra_device_delivered": "3456.789",
        }
    ).encode()


def tasmota_sml(imported: float = 0.0, exported: float = 1.234) -> bytes:
    """Tasmota's SML driver on `tele/<topic>/SENSOR`, names from the user's script."""
    return json.dumps(
        {
            "Time": "2024-06-15T12:13:14",
            "SML": {
                "total_in": 1234.567,
                "total_out": 89.1,
                "pwr_imp": imported,
                "pwr_exp": exported,
            },
        }
    ).encode()


TASMOTA = {
    "topic": "tele/p1meter/SENSOR",
    "import_field": "SML.pwr_imp",
    "export_field": "SML.pwr_exp",
}


def json_source(**kwargs: Any) -> tuple[PipelineIntake, Callable[[bytes], None]]:
    intake = PipelineIntake.relaying(stale_after=3600)
    source = MqttJsonSource(MqttJsonSettings(**kwargs), None)  # type: ignore[arg-type]
    return intake, source.handler(intake, intake.clock)


def value_source(**kwargs: Any) -> tuple[PipelineIntake, Callable[[bytes], None]]:
    intake = PipelineIntake.relaying(stale_after=3600)
    source = MqttValueSource(MqttValueSettings(**kwargs), None)  # type: ignore[arg-type]
    return intake, source.handler(intake, intake.clock)


def telegram_source(**kwargs: Any) -> tuple[PipelineIntake, Callable[[bytes], None]]:
    intake = PipelineIntake.relaying(stale_after=3600)
    source = MqttTelegramSource(MqttTelegramSettings(**kwargs), None)  # type: ignore[arg-type]
    return intake, source.handler(intake, intake.clock)


def rejected(intake: PipelineIntake) -> dict[Rejection, int]:
    return intake.pipeline.counters.rejected


# -- mqtt_json ---------------------------------------------------------------------------


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
    for delivered in ("0.321", "0.400", "0.500"):  # the same meter time each time
        handle(dsmr_reader_json(delivered, "0.000", second=14))
    handle(dsmr_reader_json("0.600", "0.000", second=15))
    assert intake.published == [321, 600]
    assert rejected(intake) == {Rejection.METER_CLOCK_STUCK: 2}
    last = intake.pipeline.last_reading
    assert last is not None
    assert last.meter_time == datetime(2024, 6, 15, 10, 13, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "timestamp", ["2024-06-15T10:13:14", "yesterday", 1718446394, None, "9" * 100]
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


# -- mqtt_value --------------------------------------------------------------------------


def test_signed_value_in_kilowatts_and_inverted() -> None:
    intake, handle = value_source(topic="house/grid", unit="kW")
    handle(b"1.5")
    handle(b"-0.25")
    handle(b"0")
    assert intake.published == [1500, -250, 0]
    intake, handle = value_source(topic="house/grid", invert=True)
    handle(b"734")
    assert intake.published == [-734]


def test_bad_values_are_counted() -> None:
    intake, handle = value_source(topic="house/grid")
    for payload in (b"", b"nan", b"abc", b"99999999", b"\xff"):
        handle(payload)
    assert intake.published == []
    assert rejected(intake) == {
        Rejection.NOT_A_NUMBER: 2,
        Rejection.NON_FINITE: 1,
        Rejection.IMPLAUSIBLE: 1,
        Rejection.NOT_UTF8: 1,
    }


# -- mqtt_telegram -----------------------------------------------------------------------


def test_a_raw_telegram_per_message() -> None:
    intake, handle = telegram_source()
    handle(telegrams.dsmr5(import_w=432, clock=telegrams.meter_clock(1)))
    cr_stripped = telegrams.dsmr5(import_w=0, export_w=100, clock=telegrams.meter_clock(2))
    handle(cr_stripped.replace(b"\r\n", b"\n"))
    handle(telegrams.corrupt(telegrams.dsmr5(clock=telegrams.meter_clock(3))))
    handle(telegrams.dsmr5(clock=telegrams.meter_clock(4))[:300])
    assert intake.published == [432, -100]
    assert rejected(intake) == {Rejection.CRC: 1, Rejection.TRUNCATED: 1}


def test_an_easymeter_q3d_through_its_gateway() -> None:
    intake, handle = telegram_source(dsmr_version="Q3D")
    handle(telegrams.easymeter_q3d(import_w=1688.21) + telegrams.COM1_PADDING)
    handle(telegrams.easymeter_q3d(import_w=2124.86) + telegrams.COM1_PADDING)
    assert intake.published == [1688, 2125]
    assert rejected(intake) == {}


def test_mqtt_telegram_takes_plain_text_versions_only() -> None:
    with pytest.raises(ValueError, match="decrypted telegram text"):
        MqttTelegramSettings(dsmr_version="MSn")


# -- mqtt_split with phases --------------------------------------------------------------

ESPHOME = {
    "delivered_topic": "p1meter/sensor/power_delivered/state",
    "returned_topic": "p1meter/sensor/power_returned/state",
    "phase_delivered_topics": [f"p1meter/sensor/power_delivered_l{n}/state" for n in (1, 2, 3)],
    "phase_returned_topics": [f"p1meter/sensor/power_returned_l{n}/state" for n in (1, 2, 3)],
    "phase_voltage_topics": [f"p1meter/sensor/voltage_l{n}/state" for n in (1, 2, 3)],
}


def test_split_topics_with_phases_carry_them_on_the_reading() -> None:
    intake = PipelineIntake.relaying()
    source = MqttSplitSource(MqttSplitSettings(**ESPHOME), None)  # type: ignore[arg-type]
    handlers = source.handlers(intake)
    handlers["p1meter/sensor/power_delivered_l1/state"](b"0.800")
    handlers["p1meter/sensor/power_delivered_l3/state"](b"0.434")
    handlers["p1meter/sensor/voltage_l2/state"](b"229.5")
    handlers["p1meter/sensor/voltage_l2/state"](b"bad")
    handlers["p1meter/sensor/power_delivered/state"](b"1.234")
    assert intake.published == [1234]
    last = intake.pipeline.last_reading
    assert last is not None
    assert last.phase_import_w == (800, None, 434)
    assert last.phase_export_w is None
    assert last.phase_voltage_v == (None, 229.5, None)
    assert rejected(intake) == {Rejection.NOT_A_NUMBER: 1}


# -- arbitrary payloads: never a crash, never an implausible value -----------------------

payloads = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["SML", "pwr_imp", "pwr_exp", "electricity_currently_delivered"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=12,
    ).map(lambda document: json.dumps(document).encode()),
    st.sampled_from([telegrams.dsmr5(import_w=60_000), tasmota_sml(0, 99.0)]),
)

SOURCES = {
    "json": lambda: json_source(),
    "tasmota": lambda: json_source(**TASMOTA),
    "signed": lambda: json_source(power_field="SML.pwr_imp", unit="W"),
    "value": lambda: value_source(topic="t", unit="kW"),
    "telegram": lambda: telegram_source(),
}


@pytest.mark.parametrize("kind", SOURCES)
@settings(max_examples=150, deadline=None)
@given(messages=st.lists(payloads, max_size=20))
def test_arbitrary_payloads_never_crash_nor_publish_implausible_values(
    kind: str, messages: list[bytes]
) -> None:
    intake, handle = SOURCES[kind]()
    for payload in messages:
        handle(payload)
    for watts in intake.published:
        assert -50_000 <= watts <= 50_000
        assert math.isfinite(watts)


# -- through a real broker ---------------------------------------------------------------


async def relayed(
    broker: BrokerProcess,
    source: dict[str, Any],
    messages: list[tuple[str, bytes]],
    expected: list[str],
) -> None:
    settings = settings_for(broker, source=source, publish={"interval": 0})
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE, STATUS)
        await probe.wait_for_payload(STATUS, "online")
        for topic, payload in messages:
            probe.publish(topic, payload)
        for value in expected:
            assert await probe.next_payload(GRID_IE) == value


async def test_dsmr_reader_json_through_a_broker(broker: BrokerProcess) -> None:
    messages = [("dsmr/json", dsmr_reader_json("0.000", "0.750", 1)), ("dsmr/json", b"{")]
    messages.append(("dsmr/json", dsmr_reader_json("0.125", "0.000", 2)))
    await relayed(broker, {"type": "mqtt_json"}, messages, ["-750", "125"])


async def test_tasmota_sml_through_a_broker(broker: BrokerProcess) -> None:
    messages = [("tele/p1meter/SENSOR", tasmota_sml(0.0, 2.5))]
    await relayed(broker, {"type": "mqtt_json", **TASMOTA}, messages, ["-2500"])


async def test_a_signed_value_through_a_broker(broker: BrokerProcess) -> None:
    messages = [("house/grid_power", b"-1234"), ("house/grid_power", b"oops")]
    messages.append(("house/grid_power", b"56.7"))
    await relayed(
        broker, {"type": "mqtt_value", "topic": "house/grid_power"}, messages, ["-1234", "57"]
    )


async def test_a_raw_telegram_through_a_broker(broker: BrokerProcess) -> None:
    clock = telegrams.meter_clock
    messages = [("dsmr/raw", telegrams.fluvius(import_w=0, export_w=2222, clock=clock(1)))]
    messages.append(("dsmr/raw", telegrams.corrupt(telegrams.fluvius(clock=clock(2)))))
    messages.append(("dsmr/raw", telegrams.fluvius(import_w=111, export_w=0, clock=clock(3))))
    source = {"type": "mqtt_telegram", "dsmr_version": "5B"}
    await relayed(broker, source, messages, ["-2222", "111"])


async def test_esphome_dsmr_sensors_through_a_broker(broker: BrokerProcess) -> None:
    messages = [
        ("p1meter/sensor/voltage_l1/state", b"230.1"),
        ("p1meter/sensor/power_returned/state", b"0.000"),
        ("p1meter/sensor/power_delivered/state", b"0.654"),
    ]
    await relayed(broker, {"type": "mqtt_split", **ESPHOME}, messages, ["654"])
