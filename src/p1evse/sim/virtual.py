"""The ports a simulated Site runs on: a clock that moves only when told, and an MQTT
broker inside the process. With them, `simulate` drives the same Site as the service:
the same sinks, with every rule they keep, talk to the simulated charger."""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from p1evse.mqtt import PayloadHandler


@dataclass(order=True)
class _Timer:
    at: float
    order: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def when(self) -> float:
        return self.at

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Virtual time: `advance` fires the timers that fall due, each at its own time."""

    def __init__(self, now: float) -> None:
        self._now = now
        self._timers: list[_Timer] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(when, next(self._order), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def advance(self, to: float) -> None:
        timers = self._timers
        while timers and timers[0].at <= to:
            timer = heapq.heappop(timers)
            if not timer.cancelled:
                self._now = max(self._now, timer.at)
                timer.callback()
        self._now = max(self._now, to)


class VirtualBroker:
    """MQTT inside the process: a message goes to every handler subscribed to its exact
    topic, in the order messages were published, before `publish` returns to the first
    publisher. A message published while one is being handled waits for it, as on a
    real broker (a charger that answers a claim is not heard inside the claim). Nothing
    is retained; it is connected once `connect` is called."""

    def __init__(self) -> None:
        self.connected = False
        self._handlers: dict[str, list[PayloadHandler]] = {}
        self._connected_listeners: list[Callable[[], None]] = []
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self._delivering = False

    def connect(self) -> None:
        self.connected = True
        for listener in self._connected_listeners:
            listener()

    def subscribe(self, topic: str, handler: PayloadHandler, *, retained: bool = True) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def unsubscribe(self, topics: list[str]) -> None:
        for topic in topics:
            self._handlers.pop(topic, None)

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        self._queue.append((topic, payload.encode()))
        if self._delivering:
            return True
        self._delivering = True
        try:
            while self._queue:
                topic, data = self._queue.popleft()
                for handler in self._handlers.get(topic, ()):
                    handler(data)
        finally:
            self._delivering = False
        return True

    def on_connected(self, listener: Callable[[], None]) -> None:
        self._connected_listeners.append(listener)

    def on_disconnected(self, listener: Callable[[], None]) -> None:
        """It never disconnects."""

    def on_problem(self, listener: Callable[[str, str | None], None]) -> None:
        """It never has one."""
