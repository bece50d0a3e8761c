"""The state topic, the voltage feed and Home Assistant discovery, through a real broker;
discovery configs are checked against Home Assistant's MQTT discovery schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.fake_openevse import FakeOpenEvse
from tests.probe import Probe

JSON_TOPIC = "dsmr/json"
STATE = "p1evse/state"
PASSWORD = "st8-s3cret"

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
    await probe.subscribe("p1evse/status")
    await probe.wait_for_payload("p1evse/status", "online")


async def state_where(probe: Probe, check: Any) -> dict[str, Any]:
    """The next state message for which `check(state)` holds."""
    while True:
        state: dict[str, Any] = json.loads(await probe.next_payload(STATE))
        if check(state):
            return state


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_state_topic_is_retained_json_without_secrets(broker: BrokerProcess) -> None:
    settings = settings_for(
        broker,
        mqtt={"username": "evse", "password": PASSWORD},
        source=JSON_SOURCE,
        publish={"interval": 0},
    )
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(STATE)
        await ready(probe)
        probe.publish(JSON_TOPIC, TELEGRAM_JSON)
        state = await state_where(probe, lambda s: s["published"] is not None)
        raw = json.dumps(state)
    assert state["meter"]["net_w"] == -1200
    assert state["meter"]["phases"] == {
        "import_w": [300.0, None, None],
        "export_w": [None, 1500.0, None],
        "voltage_v": [229.0, 231.0, 233.0],
    }
    assert state["published"]["watts"] == -1200
    assert state["stale"] is None
    assert state["counters"]["readings"] == 1
    assert PASSWORD not in raw
    # retained: a newcomer gets the latest state at once
    async with Probe(broker.port) as newcomer:
        await newcomer.subscribe(STATE)
        message = await newcomer.next(STATE)
        assert message.retain


def strict_json(text: str) -> Any:
    """JSON as the standard has it: `Infinity` and `NaN` are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_implausible_phase_values_never_reach_the_states_json(broker: BrokerProcess) -> None:
    """1e308 kW is infinite watts and -230 V no voltage: refused like a bad total, and
    the state topic, /api/state and the page's stream stay JSON."""
    settings = settings_for(broker, source=JSON_SOURCE, publish={"interval": 0})
    broken = json.loads(TELEGRAM_JSON) | {
        "phase_currently_delivered_l1": "1e308",
        "phase_voltage_l2": "-230",
    }
    async with running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe(STATE)
        await ready(probe)
        probe.publish(JSON_TOPIC, json.dumps(broken))
        state = strict_json(await probe.next_payload(STATE))  # every message strict JSON
        while state["published"] is None:
            state = strict_json(await probe.next_payload(STATE))
        assert app.site.state is not None
        json.dumps(app.site.state.snapshot(), allow_nan=False)  # what /api/state and SSE send
    assert state["meter"]["phases"] == {
        "import_w": [None, None, None],
        "export_w": [None, 1500.0, None],
        "voltage_v": [229.0, None, 233.0],
    }
    assert state["published"]["watts"] == -1200  # the totals still count
    assert state["counters"]["rejected"] == {"non_finite": 1, "negative": 1}


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_voltage_feed_over_mqtt(broker: BrokerProcess) -> None:
    settings = settings_for(
        broker, source=JSON_SOURCE, publish={"interval": 0}, openevse={"voltage": True}
    )
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe("p1evse/vrms")
        await ready(probe)
        probe.publish(JSON_TOPIC, TELEGRAM_JSON)
        assert await probe.next_payload("p1evse/vrms") == "231"  # mean of the phases


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_voltage_feed_over_http(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        openevse = {"transport": "http", "url": charger.url, "voltage": True, "shaper": True}
        settings = settings_for(
            broker, source=JSON_SOURCE, publish={"interval": 0}, openevse=openevse
        )
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            probe.publish(JSON_TOPIC, TELEGRAM_JSON)
            while (request := await charger.next_request()).method != "POST":
                pass
    assert request.body == {"grid_ie": -1200, "shaper_live_pwr": -1200, "voltage": 231.0}


# Home Assistant's MQTT discovery: the keys p1evse uses, with their types, and the values
# HA accepts for the enumerations (homeassistant.components.mqtt, sensor/binary_sensor)
DISCOVERY_SCHEMA = {
    "name": str,
    "unique_id": str,
    "state_topic": str,
    "value_template": str,
    "availability_topic": str,
    "payload_available": str,
    "payload_not_available": str,
    "device": dict,
    "origin": dict,
    "unit_of_measurement": str,
    "device_class": str,
    "state_class": str,
}
SENSOR_DEVICE_CLASSES = {"power", "current", "voltage"}
BINARY_DEVICE_CLASSES = {"problem"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}


def check_discovery(topic: str, config: dict[str, Any]) -> None:
    prefix, component, node, object_id, last = topic.split("/")
    assert (prefix, node, last) == ("homeassistant", "p1evse", "config")
    assert component in ("sensor", "binary_sensor")
    assert set(config) <= set(DISCOVERY_SCHEMA), set(config) - set(DISCOVERY_SCHEMA)
    for key, value in config.items():
        assert isinstance(value, DISCOVERY_SCHEMA[key]), key
    for required in ("name", "unique_id", "state_topic", "value_template"):
        assert required in config
    assert config["state_topic"] == STATE
    assert config["availability_topic"] == "p1evse/status"
    assert config["unique_id"] == f"p1evse_{object_id}"
    assert config["device"]["identifiers"] == ["p1evse"]
    classes = SENSOR_DEVICE_CLASSES if component == "sensor" else BINARY_DEVICE_CLASSES
    if "device_class" in config:
        assert config["device_class"] in classes
    if "state_class" in config:
        assert component == "sensor"
        assert config["state_class"] in STATE_CLASSES
    if config.get("device_class") == "power":
        assert config["unit_of_measurement"] == "W"


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_discovery_announces_one_device_and_is_removed_when_turned_off(
    broker: BrokerProcess,
) -> None:
    discovery = "homeassistant/+/p1evse/+/config"
    settings = settings_for(
        broker,
        source=JSON_SOURCE,
        publish={"interval": 0},
        homeassistant={"discovery": True},
    )
    configs: dict[str, dict[str, Any]] = {}
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(discovery)
        await ready(probe)
        while len(configs) < 6:
            message = await probe.next(discovery)
            configs[message.topic] = json.loads(message.payload)
        probe.publish(JSON_TOPIC, TELEGRAM_JSON)  # phases become known
        while len(configs) < 6 + 5:  # import L1, export L2, voltage L1-L3
            message = await probe.next(discovery)
            configs[message.topic] = json.loads(message.payload)
    for topic, config in configs.items():
        check_discovery(topic, config)
    names = {config["name"] for config in configs.values()}
    assert {"Grid power", "Meter data stale", "Import L1", "Export L2", "Voltage L3"} <= names
    assert "homeassistant/binary_sensor/p1evse/stale/config" in configs

    # the next run has discovery off: the retained configs are cleared (the probe
    # subscribes first, so it sees the configs, then their removal)
    settings = settings_for(broker, source=JSON_SOURCE)
    async with Probe(broker.port) as probe:
        await probe.subscribe(discovery)
        async with running(settings):
            cleared: set[str] = set()
            while cleared != set(configs):  # every config, and nothing else
                message = await probe.next(discovery)
                if not message.payload:
                    cleared.add(message.topic)
    async with Probe(broker.port) as probe:
        await probe.subscribe(discovery, "p1evse/status")
        await probe.next("p1evse/status")  # retained offline: every retained message is in
        assert probe.pending(discovery) == []
