"""A fleet's sites on their state topics: each site's row of the fleet's page (what it
sent, its meter's and charger's state, whether it is paused), retained, after a change
at most every STATE_PERIOD_S with jitter. Ten thousand sites then cost a few hundred
messages a second, not ten thousand; after a reconnect they all go out again, spread
over the period rather than at once."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p1evse.clock import Clock, Timer
    from p1evse.mqtt import MqttPort

STATE_PERIOD_S = 30.0
JITTER = 0.1  # each site's period is 27-33 s, so sites made together drift apart
TICK_S = 1.0


class StateTopics:
    def __init__(
        self,
        broker: MqttPort,
        clock: Clock,
        render: Callable[[str], tuple[str, dict[str, Any]] | None],
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """`render(site)`: the site's state topic and state, None if it is gone."""
        self._broker = broker
        self._clock = clock
        self._render = render
        self._wall = wall
        self._rng = rng or random.Random()
        self._dirty: set[str] = set()
        self._next: dict[str, float] = {}  # site -> when its next message may go
        self._tick: Timer | None = None

    def changed(self, site: str) -> None:
        self._dirty.add(site)
        if self._tick is None:
            self._tick = self._clock.call_at(self._clock.time() + TICK_S, self._publish_due)

    def connected(self) -> None:
        """Everything again, each site at a random moment of the coming period."""
        now = self._clock.time()
        for site in self._next:
            self._next[site] = now + self._rng.uniform(0, STATE_PERIOD_S)
            self.changed(site)

    def forget(self, site: str) -> None:
        self._dirty.discard(site)
        self._next.pop(site, None)

    def close(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _publish_due(self) -> None:
        self._tick = None
        now = self._clock.time()
        due = [site for site in self._dirty if self._next.get(site, now) <= now]
        wall = self._wall()
        for site in due:
            self._dirty.discard(site)
            rendered = self._render(site)
            if rendered is None:
                self._next.pop(site, None)
                continue
            topic, state = rendered
            payload = json.dumps({**state, "at": round(wall, 1)}, separators=(",", ":"))
            self._broker.publish(topic, payload, retain=True)
            self._next[site] = now + STATE_PERIOD_S * self._rng.uniform(1 - JITTER, 1 + JITTER)
        if self._dirty:
            self._tick = self._clock.call_at(now + TICK_S, self._publish_due)
