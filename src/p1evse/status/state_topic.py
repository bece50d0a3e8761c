"""The site's state as one retained JSON message (`mqtt.state_topic`): the message other
tools consume. The same data as /api/state, so never a secret."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p1evse.clock import Clock, Timer
    from p1evse.mqtt import MqttPort
    from p1evse.status.state import SiteState

MIN_PERIOD_S = 1.0  # at most one state message a second, however fast the meter


class StateTopic:
    """Publishes after changes (coalesced to MIN_PERIOD_S) and on every (re)connect, off
    the publish path: a change only schedules the message."""

    def __init__(self, state: SiteState, broker: MqttPort, topic: str, clock: Clock) -> None:
        self._state = state
        self._broker = broker
        self._topic = topic
        self._clock = clock
        self._last = float("-inf")
        self._scheduled: Timer | None = None

    def connected(self) -> None:
        """The broker connection is (back) up: the state goes out at once."""
        self._publish()

    def changed(self) -> None:
        """The state changed: it goes out within MIN_PERIOD_S."""
        if self._scheduled is None:
            when = max(self._clock.time(), self._last + MIN_PERIOD_S)
            self._scheduled = self._clock.call_at(when, self._publish)

    def close(self) -> None:
        """No state message is left scheduled."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None

    def _publish(self) -> None:
        self.close()
        self._last = self._clock.time()
        payload = json.dumps(self._state.snapshot(), separators=(",", ":"), allow_nan=False)
        self._broker.publish(self._topic, payload, retain=True)
