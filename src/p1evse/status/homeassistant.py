"""Home Assistant MQTT discovery (`homeassistant.discovery: true`): p1evse's values as
one device, read from the state topic and tied to p1evse's availability topic.

Per-phase sensors are announced once the meter has reported phases. With discovery off,
configs a previous run left retained on the broker are removed once, at start-up: the
discovery topics are listened to only for the retained messages the broker holds, so
whatever anyone publishes there later is never read.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from p1evse import __version__
from p1evse.mqtt import OFFLINE, ONLINE
from p1evse.settings import Section, TopicPrefix
from p1evse.status.state import phases_json

if TYPE_CHECKING:
    from p1evse.mqtt import MqttPort, MqttSettings
    from p1evse.status.state import SiteState

log = logging.getLogger(__name__)


class HomeAssistantSettings(Section):
    """MQTT discovery: p1evse's values appear in Home Assistant as one device."""

    discovery: bool = False
    prefix: TopicPrefix = "homeassistant"


@dataclass(frozen=True, slots=True)
class Entity:
    object_id: str
    component: str  # sensor | binary_sensor
    name: str
    value_template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None


def _value(path: str, guard: str) -> str:
    """A template that renders None (Home Assistant: unknown) until the value exists."""
    return f"{{{{ value_json.{path} if value_json.{guard} else None }}}}"


def _power(object_id: str, name: str, path: str, guard: str) -> Entity:
    return Entity(object_id, "sensor", name, _value(path, guard), "W", "power", "measurement")


ENTITIES = [
    _power("grid_power", "Grid power", "meter.net_w", "meter"),
    _power("grid_import", "Grid import", "meter.import_w", "meter"),
    _power("grid_export", "Grid export", "meter.export_w", "meter"),
    _power("sent_to_openevse", "Sent to OpenEVSE", "published.watts", "published"),
    Entity(
        "charger_current",
        "sensor",
        "Charger current",
        _value("charger.current_a", "charger"),
        "A",
        "current",
        "measurement",
    ),
    Entity(
        "stale",
        "binary_sensor",
        "Meter data stale",
        "{{ 'ON' if value_json.stale else 'OFF' }}",
        device_class="problem",
    ),
]


PHASE_KINDS = [
    ("import_w", "import", "W", "power"),
    ("export_w", "export", "W", "power"),
    ("voltage_v", "voltage", "V", "voltage"),
]
PHASE_KEYS = [key for key, *_ in PHASE_KINDS]


def phase_entities(meter_phases: dict[str, Any]) -> list[Entity]:
    """Sensors for the per-phase values this meter reports."""
    entities = []
    for key, label, unit, device_class in PHASE_KINDS:
        for index, value in enumerate(meter_phases.get(key) or []):
            if value is None:
                continue
            phase = f"l{index + 1}"
            template = (
                f"{{{{ value_json.meter.phases.{key}[{index}] if value_json.meter and "
                "value_json.meter.phases else None }}"
            )
            name = f"{label.capitalize()} {phase.upper()}"
            entities.append(
                Entity(
                    f"{label}_{phase}", "sensor", name, template, unit, device_class, "measurement"
                )
            )
    return entities


class HomeAssistantDiscovery:
    """Announces p1evse's entities on every connect when discovery is on, and removes
    what an earlier run announced when it is off."""

    def __init__(
        self,
        settings: HomeAssistantSettings,
        mqtt: MqttSettings,
        broker: MqttPort,
        state: SiteState | None,
    ) -> None:
        self._discovery = settings.discovery
        self._mqtt = mqtt
        self._broker = broker
        self._state = state
        self._node = re.sub(r"[^A-Za-z0-9_-]", "_", mqtt.client_id)
        self._prefix = settings.prefix.rstrip("/")
        self._announced: set[str] = set()
        self._cleaned = False  # discovery off: the configs of an earlier run are removed

    def connected(self) -> None:
        """The broker connection is (back) up."""
        if self._discovery:
            self._announce_all()
        else:
            self._clean_up_once()

    def state_changed(self) -> None:
        """Phases the meter began to report get their entities."""
        if self._discovery:
            self._announce_phases()

    def config_topic(self, entity: Entity) -> str:
        return f"{self._prefix}/{entity.component}/{self._node}/{entity.object_id}/config"

    def config(self, entity: Entity) -> dict[str, Any]:
        mqtt = self._mqtt
        payload: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{self._node}_{entity.object_id}",
            "state_topic": mqtt.state_topic,
            "value_template": entity.value_template,
            "availability_topic": mqtt.availability_topic,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": {
                "identifiers": [self._node],
                "name": "p1evse",
                "manufacturer": "p1evse",
                "model": "P1 meter to OpenEVSE bridge",
                "sw_version": __version__,
            },
            "origin": {"name": "p1evse", "sw_version": __version__},
        }
        optional = {
            "unit_of_measurement": entity.unit,
            "device_class": entity.device_class,
            "state_class": entity.state_class,
        }
        payload.update({key: value for key, value in optional.items() if value is not None})
        return payload

    def _announce(self, entities: list[Entity]) -> None:
        for entity in entities:
            message = json.dumps(self.config(entity), separators=(",", ":"))
            if self._broker.publish(self.config_topic(entity), message, qos=1, retain=True):
                self._announced.add(entity.object_id)

    def _announce_all(self) -> None:
        self._announce(ENTITIES + self._phase_entities())

    def _announce_phases(self) -> None:
        new = [e for e in self._phase_entities() if e.object_id not in self._announced]
        if new and self._broker.connected:
            self._announce(new)

    def _phase_entities(self) -> list[Entity]:
        meter = self._state.meter if self._state is not None else None
        phases = phases_json(meter) if meter is not None else None
        return phase_entities(phases) if phases else []

    def _clean_up_once(self) -> None:
        """Remove configs a run with discovery on left retained: subscribe to every
        topic it may have used, and at once unsubscribe again; the broker sends the
        retained messages before it takes the unsubscription in."""
        if self._cleaned:
            return
        self._cleaned = True
        every_phase = phase_entities({key: (0.0, 0.0, 0.0) for key in PHASE_KEYS})
        topics = [self.config_topic(entity) for entity in ENTITIES + every_phase]
        for topic in topics:
            self._broker.subscribe(topic, partial(self._remove, topic))
        self._broker.unsubscribe(topics)

    def _remove(self, topic: str, payload: bytes | bytearray) -> None:
        if payload and self._broker.publish(topic, "", qos=1, retain=True):
            log.info("removed Home Assistant discovery config %s", topic)
