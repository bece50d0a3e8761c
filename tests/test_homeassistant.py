"""Home Assistant's MQTT discovery through a real broker: one device announced, its
configs checked against Home Assistant's discovery schema, and removed when turned off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.payloads import JSON_SOURCE, JSON_TOPIC, STATE, TELEGRAM_JSON, ready
from tests.probe import Probe

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
