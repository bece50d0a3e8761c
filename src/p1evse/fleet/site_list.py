"""A fleet told its site ids (`fleet.sites`, `fleet.sites_file`): each process subscribes
to the exact topics of the listed sites it owns, instead of one pattern that brings every
site's messages to every process. With N processes each then reads 1/N of the messages
(bench/scale.py); the price is a subscription per topic of each site, and a site not on
the list is not served."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from p1evse.settings import fill_site

if TYPE_CHECKING:
    from p1evse.mqtt import Broker, PayloadHandler

Arrived = Callable[[str, str, bytes | bytearray], None]
"""(site, topic, payload): the first message of a listed site not made yet."""


class SiteList:
    def __init__(
        self, sites: list[str], patterns: list[str], broker: Broker, arrived: Arrived
    ) -> None:
        """`patterns`: the source's topics, a `+` level where the site id goes."""
        self.sites = sites
        self._patterns = patterns
        self._broker = broker
        self._arrived = arrived
        self.routes: dict[str, PayloadHandler] = {}  # topic -> its site's handler, once made
        self._site_of: dict[str, str] = {}  # each subscribed topic's site

    def topics(self, site: str) -> list[str]:
        return [fill_site(pattern, site) for pattern in self._patterns]

    def sync(self, owns: Callable[[str], bool]) -> None:
        """Subscribe to the topics of the listed sites this process owns now, and no
        longer to those of the sites it does not."""
        held = set(self._site_of.values())
        wanted = {site for site in self.sites if owns(site)}
        lost = [topic for site in held - wanted for topic in self.topics(site)]
        for topic in lost:
            del self._site_of[topic]
            self.routes.pop(topic, None)
        if lost:
            self._broker.unsubscribe(lost)
        new: dict[str, PayloadHandler] = {}
        for site in wanted - held:
            for topic in self.topics(site):
                self._site_of[topic] = site
                new[topic] = partial(self._message, topic)
        if new:
            self._broker.subscribe_many(new, retained=False)

    def forget(self, site: str) -> None:
        """The site was let go: its next message makes it anew."""
        for topic in self.topics(site):
            self.routes.pop(topic, None)

    def _message(self, topic: str, payload: bytes | bytearray) -> None:
        handler = self.routes.get(topic)
        if handler is not None:
            handler(payload)
            return
        site = self._site_of.get(topic)
        if site is not None:
            self._arrived(site, topic, payload)
