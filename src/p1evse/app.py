"""The service: one broker connection, one Site or a Fleet of them, the status page, in
one TaskGroup. Leaving the TaskGroup is shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from p1evse import __version__
from p1evse.coalesce import coalesced
from p1evse.config import Settings
from p1evse.fleet.fleet import Fleet
from p1evse.fleet.view import FleetView
from p1evse.loopwatch import LoopWatch
from p1evse.model import Event
from p1evse.mqtt import Broker
from p1evse.site import Ports, Role, build_site
from p1evse.supervise import Supervisor

if TYPE_CHECKING:
    from p1evse.web.fleet import FleetWebServer
    from p1evse.web.server import StatusServer, WebServer

log = logging.getLogger(__name__)


class Unit(Protocol):
    """What the service runs: one Site, or a Fleet of them."""

    def work(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


class Service:
    """One broker connection, what runs on it, and the status page, supervised."""

    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        unit: Unit,
        supervisor: Supervisor,
        loop_watch: LoopWatch,
        web: StatusServer | None = None,
    ) -> None:
        """`loop_watch` runs with the service: the stale guard asks it whether the
        loop was held, the status server how late it runs."""
        self.settings = settings
        self.broker = broker
        self.unit = unit
        self.supervisor = supervisor
        self.web = web
        self.loop_watch = loop_watch

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then release claims, say offline and return."""
        log.info("p1evse %s: %s", __version__, describe(self.settings))
        work: dict[str, Callable[[], Awaitable[None]]] = {
            "mqtt": self.broker.run,
            **self.unit.work(),
        }
        if self.web is not None:  # a port it cannot have yet does not stop the bridge
            work["web"] = self.web.run
        work["loop-watch"] = self.loop_watch.run
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.supervisor.keep(name, task), name=name)
                    for name, task in work.items()
                ]
                self.unit.start()
                await stop.wait()
                log.info("stopping")
                await self.unit.close()
                await self.broker.close()
                for task in tasks:
                    task.cancel()
        finally:
            if self.web is not None:
                await self.web.close()


# a charger on the broker says its claim slot at once (retained), its status every 30 s
CHARGER_HEARD_WITHIN_S = 60.0


class App(Service):
    """The service for one meter: one Site."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        observers: list[Callable[[Event], None]] | None = None,
    ) -> None:
        """`observers` see every event of the site (as the demo shows them)."""
        broker = Broker(settings.mqtt)
        watch = LoopWatch(loop)
        # the status model is kept only when something reads it: the page and /metrics,
        # the state topic, discovery; without them the relay path stays as lean as it was
        role = Role(status=settings.web.listen is not None)
        self.site = build_site(settings, Ports(loop, broker, watch.held), role, observers=observers)
        supervisor = Supervisor(loop, self.site.state.problem if self.site.state else None)
        web: WebServer | None = None
        address = settings.web.address
        if address is not None and self.site.state is not None:
            from p1evse.web.server import WebServer  # the page's code only when it is wanted

            web = WebServer(settings.web, address, self.site.state, broker, supervisor, loop, watch)
            self.site.state.listeners.append(web.push.changed)
            self.site.bridge.observers.append(web.metrics.observe)
        super().__init__(settings, broker, self.site, supervisor, watch, web)
        self._loop = loop

    async def run(self, stop: asyncio.Event) -> None:
        """As a Service, and a word if the charger is not heard on its base topic."""
        feed = self.site.feed
        check = None
        if feed is not None:
            after = CHARGER_HEARD_WITHIN_S
            check = self._loop.call_later(after, feed.warn_if_unheard, after)
        try:
            await super().run(stop)
        finally:
            if check is not None:
                check.cancel()


class FleetApp(Service):
    """The service for many meters: a Fleet of Sites on one broker connection."""

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop,
        observers: list[Callable[[Event], None]] | None = None,
    ) -> None:
        announced = settings.announced_on()
        broker = Broker(settings.mqtt.model_copy(update={"availability_topic": announced}))
        watch = LoopWatch(loop)
        self.fleet = Fleet(
            settings, settings.fleet, broker, loop, announced, observers=observers, holds=watch.held
        )
        web: FleetWebServer | None = None
        supervisor = Supervisor(loop, None)
        address = settings.web.address
        if address is not None:
            from p1evse.web.fleet import FleetWebServer  # the page's code only when wanted

            view = FleetView(self.fleet, broker, loop.time, supervisor)
            web = FleetWebServer(settings.web, address, view, loop, watch)
        super().__init__(settings, broker, self.fleet, supervisor, watch, web)
        self._loop = loop

    async def run(self, stop: asyncio.Event) -> None:
        """As a Service, with the sites' log lines of one kind coalesced."""
        with coalesced(self._loop):
            await super().run(stop)


def service(settings: Settings, loop: asyncio.AbstractEventLoop) -> Service:
    """The service this configuration asks for: a fleet when its source's topics
    capture a site id, else one site."""
    return FleetApp(settings, loop) if settings.is_fleet() else App(settings, loop)


def describe(settings: Settings) -> str:
    """One line that says what this configuration does."""
    source = settings.source
    publish = settings.publish
    cadence = f"every {publish.interval:g} s" if publish.interval else "every reading"
    if publish.mode == "steady":
        cadence += (
            f" (steady: switches of {publish.step_w:g} W at once, held within {publish.band_w:g} W)"
        )
    line = (
        f"{source.describe()} "
        f"→ {settings.openevse.route().sent_to} {cadence}, reserve {publish.reserve_w} W; "
        f"stale after {publish.stale_after:g} s → {publish.on_stale.value}; "
        f"broker {settings.mqtt.host}:{settings.mqtt.port}"
    )
    if settings.is_fleet():
        fleet = settings.fleet
        evict = f"{fleet.evict_after:g} s" if fleet.evict_after is not None else "never"
        shard = f", shard {fleet.shard}" if fleet.shard is not None else ""
        if fleet.share_group is not None:
            shard = f", the meters dealt by the broker to the group {fleet.share_group}"
        line += f"; a fleet of up to {fleet.max_sites} sites{shard}, idle ones let go: {evict}"
    return line
