"""Wiring: one broker connection, one source, one pipeline, the sinks, in one TaskGroup.
Leaving the TaskGroup is shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from p1evse import __version__
from p1evse.bridge import Bridge
from p1evse.config import Settings
from p1evse.mqtt import Broker
from p1evse.pipeline import Pipeline
from p1evse.sinks import build_sinks
from p1evse.sinks.charger import ChargerState
from p1evse.sinks.homeassistant import HomeAssistantDiscovery
from p1evse.sinks.state_topic import StateTopic
from p1evse.sources import build_source
from p1evse.state import LinkState, SiteState
from p1evse.supervise import Supervisor

if TYPE_CHECKING:
    from p1evse.web.server import WebServer

log = logging.getLogger(__name__)


class App:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self.broker = Broker(settings.mqtt)
        self.charger = ChargerState()
        pipeline = Pipeline(settings.publish, loop.time())
        self.sinks = build_sinks(
            settings, self.broker, self.charger, loop.time, lambda: pipeline.last_reading
        )
        self.bridge = Bridge(pipeline, self.sinks, loop)
        self.source = build_source(settings.source, self.broker)
        # The site's state is what the status page and /metrics show; without them
        # nothing reads it, so nothing feeds it and the relay path stays as lean as it was.
        self.state: SiteState | None = None
        self.web: WebServer | None = None
        wants_state = settings.mqtt.state_topic is not None or settings.homeassistant.discovery
        if settings.web.listen is not None or wants_state:
            state = self.state = SiteState(
                settings, pipeline.counters, loop.time, charger=self.charger
            )
            self.bridge.observers.append(state.observe)
            self.broker.on_connected(lambda: state.link_changed("broker", LinkState.CONNECTED))
            self.broker.on_disconnected(
                lambda: state.link_changed("broker", LinkState.DISCONNECTED)
            )
            self.broker.on_problem(state.problem)
            if settings.mqtt.state_topic is not None:
                StateTopic(state, self.broker, settings.mqtt.state_topic, loop)
        HomeAssistantDiscovery(settings, self.broker, self.state)
        self.supervisor = Supervisor(loop, self.state.problem if self.state is not None else None)
        if settings.web.listen is not None:
            from p1evse.web.server import WebServer  # aiohttp only when it is wanted

            assert self.state is not None
            self.web = WebServer(settings.web, self.state, self.broker, self.bridge, loop)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then release claims, say offline and return."""
        log.info("p1evse %s: %s", __version__, describe(self.settings))
        work: dict[str, Callable[[], Awaitable[None]]] = {
            "mqtt": self.broker.run,
            f"source:{self.settings.source.type}": lambda: self.source.run(self.bridge),
            **{f"sink:{type(sink).__name__}": sink.run for sink in self.sinks},
        }
        if self.web is not None:  # a port it cannot have yet does not stop the bridge
            work["web"] = self.web.run
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.supervisor.keep(name, task), name=name)
                    for name, task in work.items()
                ]
                self.bridge.start()
                await stop.wait()
                log.info("stopping")
                self.bridge.stop()
                for sink in self.sinks:
                    await sink.close()
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
    return (
        f"{source.describe()} "
        f"→ {settings.openevse.grid_ie_topic} {cadence}, reserve {publish.reserve_w} W; "
        f"stale after {publish.stale_after:g} s → {publish.on_stale.value}; "
        f"broker {settings.mqtt.host}:{settings.mqtt.port}"
    )
