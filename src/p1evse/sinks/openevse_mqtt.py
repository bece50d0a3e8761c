"""OpenEVSE over MQTT: the grid feed, and the pause claim of the stale guard."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from p1evse.model import GridPower, StaleAction, StaleEntered, StaleLeft

if TYPE_CHECKING:
    from p1evse.config import OpenevseSettings
    from p1evse.mqtt import Broker

log = logging.getLogger(__name__)

PAUSE_CLAIM = json.dumps({"state": "disabled"}, separators=(",", ":"))
RELEASE = "release"


class OpenEvseMqttSink:
    """Publishes grid_ie as integer watts (QoS 0, not retained: rule 7).

    Every MQTT client shares OpenEVSE's one MQTT claim slot, so p1evse releases only a
    claim it has sent itself; a claim or release that could not be sent while the
    broker was away is sent on reconnect.
    """

    def __init__(self, settings: OpenevseSettings, broker: Broker) -> None:
        self._value_topics = [settings.grid_ie_topic]
        if settings.shaper:
            self._value_topics.append(settings.live_pwr_topic)
        self._claim_topic = settings.claim_topic
        self._broker = broker
        self._want_claim = False
        self.claim_sent = False
        broker.on_connected(self._sync_claim)

    def grid_power(self, value: GridPower) -> None:
        payload = str(value.watts)
        for topic in self._value_topics:
            self._broker.publish(topic, payload)

    def stale_entered(self, event: StaleEntered) -> None:
        if event.action is StaleAction.PAUSE:
            self._want_claim = True
            self._sync_claim()

    def stale_left(self, event: StaleLeft) -> None:
        self._want_claim = False
        self._sync_claim()

    async def run(self) -> None:
        """Nothing of its own to run: the broker connection carries everything."""

    async def close(self) -> None:
        self._want_claim = False
        self._sync_claim()

    def _sync_claim(self) -> None:
        topic = self._claim_topic
        if self._want_claim == self.claim_sent:
            return
        payload = PAUSE_CLAIM if self._want_claim else RELEASE
        if self._broker.publish(topic, payload, qos=1):
            self.claim_sent = self._want_claim
            if self.claim_sent:
                log.warning("paused charging: claimed %s %s", topic, payload)
            else:
                log.info("released the pause claim on %s", topic)
