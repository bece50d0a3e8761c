"""A fleet site's view of the one broker connection (an `MqttPort`).

Its topics are routes: one pattern subscription of the fleet brings every site's
messages on it, and each is found by a dict lookup on its topic. That holds for the
source's topics, and for what else the site subscribes (its charger's reports) whenever
the site id is a whole level of the topic (`openevse/{site}/amp` is shared as
`openevse/+/amp`); a topic with the id inside a level is the site's own subscription.
The broker's comings and goings are told to the site by the fleet, so nothing of the
site stays behind on the connection when it is let go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from p1evse.fleet.dealt import FeedWatch
    from p1evse.mqtt import Broker, PayloadHandler


class SitePort:
    def __init__(self, broker: Broker, share: Callable[[str], bool]) -> None:
        """`share(topic)`: whether a pattern of the fleet's brings `topic`."""
        self._broker = broker
        self._share = share
        self.routes: dict[str, PayloadHandler] = {}  # the source's topics
        self._shared: list[str] = []  # topics a pattern of the fleet's brings
        self._subscribed: list[str] = []
        self.connected_listeners: list[Callable[[], None]] = []
        self.disconnected_listeners: list[Callable[[], None]] = []
        self.problem_listeners: list[Callable[[str, str | None], None]] = []
        self.watch: FeedWatch | None = None  # told what the site sends on its topic

    @property
    def connected(self) -> bool:
        return self._broker.connected

    def route(self, topic: str, handler: PayloadHandler) -> None:
        """Messages on `topic`, which the fleet's pattern brings, go to `handler`; live
        ones only (a reading must be news)."""
        self.routes[topic] = handler
        self._broker.route(topic, handler, retained=False)

    def subscribe(self, topic: str, handler: PayloadHandler, *, retained: bool = True) -> None:
        if self._share(topic):
            self._shared.append(topic)
            self._broker.route(topic, handler, retained=retained)
            return
        self._subscribed.append(topic)
        self._broker.subscribe(topic, handler, retained=retained)

    def unsubscribe(self, topics: list[str]) -> None:
        routed = [topic for topic in topics if self.routes.pop(topic, None) is not None]
        shared = [topic for topic in topics if topic in self._shared]
        self._shared = [topic for topic in self._shared if topic not in shared]
        self._broker.unroute([*routed, *shared])
        own = [topic for topic in topics if topic in self._subscribed]
        self._subscribed = [topic for topic in self._subscribed if topic not in own]
        if own:
            self._broker.unsubscribe(own)

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        watch = self.watch
        if watch is not None and topic == watch.topic:
            watch.sent(payload)
        return self._broker.publish(topic, payload, qos, retain)

    def on_connected(self, listener: Callable[[], None]) -> None:
        self.connected_listeners.append(listener)

    def on_disconnected(self, listener: Callable[[], None]) -> None:
        self.disconnected_listeners.append(listener)

    def on_problem(self, listener: Callable[[str, str | None], None]) -> None:
        self.problem_listeners.append(listener)

    def close(self) -> None:
        """Take the site's routes and subscriptions off the connection."""
        self._broker.unroute([*self.routes, *self._shared])
        self.routes.clear()
        self._shared = []
        if self._subscribed:
            self._broker.unsubscribe(self._subscribed)
            self._subscribed = []
