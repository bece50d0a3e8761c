"""The service: one broker connection, one Site, the status page, in one TaskGroup.
Leaving the TaskGroup is shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from p1evse import __version__
from p1evse.config import Settings
from p1evse.model import Event
from p1evse.mqtt import Broker
from p1evse.site import Ports, Role, build_site
from p1evse.supervise import Supervisor

if TYPE_CHECKING:
    from p1evse.web.server import WebServer

log = logging.getLogger(__name__)


class App:
    """The service: one broker connection, one Site, the status page, supervised."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        observers: list[Callable[[Event], None]] | None = None,
    ) -> None:
        """`observers` see every event of the site (as the demo shows them)."""
        self.settings = settings
        self.broker = Broker(settings.mqtt)
        # the status model is kept only when something reads it: the page and /metrics,
        # the state topic, discovery; without them the relay path stays as lean as it was
        role = Role(status=settings.web.listen is not None)
        self.site = build_site(settings, Ports(loop, self.broker), role, observers=observers)
        self.supervisor = Supervisor(loop, self.site.state.problem if self.site.state else None)
        self.web: WebServer | None = None
        address = settings.web.address
        if address is not None and self.site.state is not None:
            from p1evse.web.server import WebServer  # aiohttp only when it is wanted

            self.web = WebServer(
                settings.web, address, self.site.state, self.broker, self.supervisor, loop
            )
            self.site.state.listeners.append(self.web.push.changed)
            self.site.bridge.observers.append(self.web.metrics.observe)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then release claims, say offline and return."""
        log.info("p1evse %s: %s", __version__, describe(self.settings))
        work: dict[str, Callable[[], Awaitable[None]]] = {
            "mqtt": self.broker.run,
            **self.site.work(),
        }
        if self.web is not None:  # a port it cannot have yet does not stop the bridge
            work["web"] = self.web.run
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.supervisor.keep(name, task), name=name)
                    for name, task in work.items()
                ]
                self.site.start()
                await stop.wait()
                log.info("stopping")
                await self.site.close()
                await self.broker.close()
                for task in tasks:
                    task.cancel()
        finally:
            if self.web is not None:
                await self.web.close()


def describe(settings: Settings) -> str:
    """One line that says what this configuration does."""
    source = settings.source
    publish = settings.publish
    cadence = f"every {publish.interval:g} s" if publish.interval else "every reading"
    if publish.mode == "steady":
        cadence += (
            f" (steady: switches of {publish.step_w:g} W at once, held within {publish.band_w:g} W)"
        )
    return (
        f"{source.describe()} "
        f"→ {settings.openevse.grid_ie_topic} {cadence}, reserve {publish.reserve_w} W; "
        f"stale after {publish.stale_after:g} s → {publish.on_stale.value}; "
        f"broker {settings.mqtt.host}:{settings.mqtt.port}"
    )
