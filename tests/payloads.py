"""What the tests of the MQTT sources and of the running service share: the default
topics, the payloads of the devices that publish them, each source's handler into a real
pipeline, hostile payloads, and a run through a real broker."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from p1evse.model import Rejection
from p1evse.sources.mqtt_json import MqttJsonSettings, MqttJsonSource
from p1evse.sources.mqtt_telegram import MqttTelegramSettings, MqttTelegramSource
from p1evse.sources.mqtt_value import MqttValueSettings, MqttValueSource
from tests import telegrams
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.intakes import PipelineIntake
from tests.probe import Probe

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"
GRID_IE = "p1evse/grid_ie"
CLAIM = "openevse/claim/set"
STATUS = "p1evse/status"
STATE = "p1evse/state"
JSON_TOPIC = "dsmr/json"

# DSMR-reader's dsmr/json with phases: import on L1, export on L2, voltages on all three
TELEGRAM_JSON = json.dumps(
    {
        "electricity_currently_delivered": "0.000",
        "electricity_currently_returned": "1.200",
        "phase_currently_delivered_l1": "0.300",
        "phase_currently_returned_l2": "1.500",
        "phase_voltage_l1": "229.0",
        "phase_voltage_l2": "231.0",
        "phase_voltage_l3": "233.0",
    }
)
JSON_SOURCE = {
    "type": "mqtt_json",
    "topic": JSON_TOPIC,
    "phase_import_fields": ["phase_currently_delivered_l1"],
    "phase_export_fields": ["", "phase_currently_returned_l2"],
    "phase_voltage_fields": ["phase_voltage_l1", "phase_voltage_l2", "phase_voltage_l3"],
}


async def ready(probe: Probe) -> None:
    """The service's retained `online` follows its subscriptions on the same connection,
    so once it is seen, the service receives what the probe publishes."""
    await probe.subscribe(STATUS)
    await probe.wait_for_payload(STATUS, "online")


async def processes_ready(probe: Probe, *client_ids: str) -> None:
    """`ready` for the processes of a fleet of many that are no members (shards, a
    shared group's): each announced on a topic of its own."""
    for client_id in client_ids:
        topic = f"p1evse/fleet/processes/{client_id}"
        await probe.subscribe(topic)
        await probe.wait_for_payload(topic, "online")


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


ESPHOME = {
    "delivered_topic": "p1meter/sensor/power_delivered/state",
    "returned_topic": "p1meter/sensor/power_returned/state",
    "phase_delivered_topics": [f"p1meter/sensor/power_delivered_l{n}/state" for n in (1, 2, 3)],
    "phase_returned_topics": [f"p1meter/sensor/power_returned_l{n}/state" for n in (1, 2, 3)],
    "phase_voltage_topics": [f"p1meter/sensor/voltage_l{n}/state" for n in (1, 2, 3)],
}


# -- arbitrary payloads: never a crash, never an implausible value -----------------------


def json_documents(
    *keys: str, text_size: int = 12, list_size: int = 4, leaves: int = 12
) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values whose objects use `keys`: what a hostile or broken device
    may send where a reading is expected."""
    return st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=text_size),
        lambda inner: (
            st.lists(inner, max_size=list_size)
            | st.dictionaries(st.sampled_from(keys), inner, max_size=4)
        ),
        max_leaves=leaves,
    )


payloads = st.one_of(
    st.binary(max_size=300),
    json_documents("SML", "pwr_imp", "pwr_exp", "electricity_currently_delivered").map(
        lambda document: json.dumps(document).encode()
    ),
    st.sampled_from([telegrams.dsmr5(import_w=60_000), tasmota_sml(0, 99.0)]),
)


def never_implausible(
    make: Callable[[], tuple[PipelineIntake, Callable[[bytes], None]]], messages: list[bytes]
) -> None:
    """Whatever arrives, the source never raises and nothing implausible goes out."""
    intake, handle = make()
    for payload in messages:
        handle(payload)
    assert_plausible(intake)


def assert_plausible(intake: PipelineIntake) -> None:
    """Everything published is a finite value within the default max_power_w."""
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
