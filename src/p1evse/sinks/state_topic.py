"""The site's state as one retained JSON message (`mqtt.state_topic`): the message other
tools consume. The same data as /api/state, so never a secret."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p1evse.mqtt import Broker
    from p1evse.state import SiteState

MIN_PERIOD_S = 1.0  # at most one state message a second, however fast the meter


class StateTopic:
    """Publishes after changes (coalesced to MIN_PERIOD_S) and on every (re)connect, off
    the publish path: a change only schedules the message."""

    def __init__(
        self, state: SiteState, broker: Broker, topic: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._state = state
        self._broker = broker
        self._topic = topic
        self._loop = loop
        self._last = float("-inf")
        self._scheduled: asyncio.TimerHandle | None = None
        state.listeners.append(self._changed)
        broker.on_connected(self._publish)

    def _changed(self) -> None:
        if self._scheduled is None:
            delay = max(0.0, self._last + MIN_PERIOD_S - self._loop.time())
            self._scheduled = self._loop.call_later(delay, self._publish)

    def _publish(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._last = self._loop.time()
        payload = json.dumps(self._state.snapshot(), separators=(",", ":"), allow_nan=False)
        self._broker.publish(self._topic, payload, retain=True)
