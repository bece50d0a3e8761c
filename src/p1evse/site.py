"""One meter's runtime, built in one place.

A `Site` is the pipeline, its clock binding (`Bridge`), the charger's read-back
(`ChargerState`), the sinks that feed the charger, and, when something reads it, the
status model (`SiteState`) with its observers (the state topic, Home Assistant's
discovery). `build_site` makes one from its settings and explicit ports: a clock and an
MQTT connection (`Broker`, or a virtual one in simulation). No part registers itself on
another: `build_site` does all of the wiring, here, and the Site closes what it made.

`App` (the service), `check`, `demo` and `simulate` all build their Site here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator, model_validator

from p1evse.bridge import Bridge
from p1evse.clock import Clock
from p1evse.counts import Counted
from p1evse.model import Event
from p1evse.mqtt import MqttPort, MqttSettings
from p1evse.pipeline import Counters, Pipeline, PublishSettings
from p1evse.settings import SITE, Section, site_capture
from p1evse.sinks import Sink
from p1evse.sinks.charger import ChargerState, OpenevseSettings
from p1evse.sinks.deadman import DeadmanSwitch
from p1evse.sinks.openevse_http import OpenEvseHttpSink
from p1evse.sinks.openevse_mqtt import OpenEvseMqttSink
from p1evse.sources import Source
from p1evse.sources.build import SourceSettings, build_source
from p1evse.sources.mqtt_split import MqttSplitSettings
from p1evse.status.homeassistant import HomeAssistantDiscovery, HomeAssistantSettings
from p1evse.status.state import LinkState, SiteState, local_midnight
from p1evse.status.state_topic import StateTopic


class SiteSettings(Section):
    """Everything one meter and its charger need: the sections of the config file
    except the status page's and the log's."""

    mqtt: MqttSettings = MqttSettings()
    source: SourceSettings = Field(default_factory=MqttSplitSettings)
    publish: PublishSettings = PublishSettings()
    openevse: OpenevseSettings = OpenevseSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()

    @model_validator(mode="after")
    def _discovery_needs_state_topic(self) -> SiteSettings:
        if self.homeassistant.discovery and self.mqtt.state_topic is None:
            raise ValueError(
                "homeassistant.discovery reads p1evse's state topic: set mqtt.state_topic"
            )
        return self

    @field_validator("source", mode="before")
    @classmethod
    def _default_source_type(cls, value: object) -> object:
        """No `type` is the default source; a type is named in any case."""
        if isinstance(value, dict):
            kind = value.get("type", "mqtt_split")
            return {**value, "type": kind.strip().lower() if isinstance(kind, str) else kind}
        return value

    def is_fleet(self) -> bool:
        """Whether the source's topics capture a site id: many meters, a Site each."""
        return any(site_capture(topic) is not None for topic in self.source.subscriptions())

    def site_id_problems(self) -> list[tuple[str, str]]:
        """(key, problem) for each rule of site ids broken: in a fleet, every source
        topic captures one and every topic of a site's own has `{site}`; else no topic
        has `{site}`."""
        if not self.is_fleet():
            return [
                (
                    key,
                    f"{topic!r}: {SITE} is a fleet's site id, taken from a '+' level of the "
                    "source's topics, and they have none",
                )
                for key, topic in self._site_topics().items()
                if SITE in topic
            ]
        problems = [
            (
                "source",
                f"{topic!r} has no '+' level, but another of the source's topics has one: "
                "in a fleet every source topic captures the site id",
            )
            for topic in self.source.subscriptions()
            if site_capture(topic) is None
        ]
        armed = self.openevse.deadman_armed(self.publish.on_stale)
        problems += [
            (
                key,
                f"{topic!r} has no {SITE}: with a '+' in the source's topics (a fleet) each "
                f"site needs its own, such as {_example(topic)!r}",
            )
            for key, topic in self._site_topics().items()
            if SITE not in topic and key != "openevse.deadman_topic"
        ]
        if self.openevse.transport != "mqtt":
            problems.append(
                (
                    "openevse.transport",
                    f"{self.openevse.transport!r}: a fleet feeds its chargers over MQTT",
                )
            )
        if armed:
            problems.append(
                (
                    "openevse.deadman",
                    "true: the dead-man's switch is a broker connection per charger, which "
                    "a fleet does not have; set it to false",
                )
            )
        if self.homeassistant.discovery:
            problems.append(("homeassistant.discovery", "true: not available in a fleet yet"))
        return problems

    def _site_topics(self) -> dict[str, str]:
        """The topics that are a site's own: its outputs and its charger's."""
        topics = self.output_topics()
        if self.openevse.transport == "mqtt":
            topics["openevse.base_topic"] = self.openevse.base_topic
        return topics

    def output_topics(self) -> dict[str, str]:
        """The MQTT topics p1evse publishes values to, by config key."""
        openevse = self.openevse
        topics = {}
        if self.mqtt.state_topic is not None:
            topics["mqtt.state_topic"] = self.mqtt.state_topic
        if openevse.transport != "mqtt":
            return topics
        topics["openevse.grid_ie_topic"] = openevse.grid_ie_topic
        if openevse.deadman_armed(self.publish.on_stale):
            topics["openevse.deadman_topic"] = openevse.deadman_topic
        if openevse.shaper:
            topics["openevse.live_pwr_topic"] = openevse.live_pwr_topic
        if openevse.voltage:
            topics["openevse.vrms_topic"] = openevse.vrms_topic
        return topics

    def wants_status(self) -> bool:
        """Whether something publishes the status model (the state topic, discovery)."""
        return self.mqtt.state_topic is not None or self.homeassistant.discovery


def _example(topic: str) -> str:
    """`topic` with a level for the site id: `p1evse/grid_ie` -> `p1evse/{site}/grid_ie`."""
    head, _, tail = topic.rpartition("/")
    return f"{head}/{SITE}/{tail}" if head else f"{topic}/{SITE}"


@dataclass(frozen=True, slots=True)
class Ports:
    """What a Site runs on. `clock`: the event loop, or a virtual clock. `mqtt`: the
    broker connection that carries the source's topics, the charger's feed and
    read-back over MQTT, the state topic and discovery. `holds`: how long the loop was
    held in all up to a time (`LoopWatch.held`; None: never)."""

    clock: Clock
    mqtt: MqttPort
    holds: Callable[[float], float] | None = None


@dataclass(frozen=True, slots=True)
class Role:
    """What a Site is built for. The service: all of it. `check`: the source into the
    pipeline, the charger read back but never fed. `simulate`: the pipeline fed by hand
    (no source), the charger fed over a virtual broker."""

    source: bool = True  # run the configured source (False: readings are fed by hand)
    feed: bool = True  # the sinks get the pipeline's events (False: read-back only)
    status: bool = False  # keep the status model (the page, /metrics, the state topic)
    # False: the stale guard waits for the first valid reading (a fleet's site is made
    # on its first message, which may be no reading at all)
    guard_from_start: bool = True
    # Home Assistant's discovery (or the removal of an earlier run's); a fleet has none
    discovery: bool = True
    # the status model for mqtt.state_topic; a fleet publishes its sites' state itself
    state_topic: bool = True


@dataclass
class Site:
    name: str
    settings: SiteSettings
    pipeline: Pipeline
    bridge: Bridge  # the sources' Intake
    charger: ChargerState
    sinks: list[Sink]
    state: SiteState | None
    source: Source | None
    discovery: HomeAssistantDiscovery | None
    state_topic: StateTopic | None = None
    feed: OpenEvseMqttSink | None = None  # the charger's feed over MQTT, of the sinks

    @property
    def intake(self) -> Bridge:
        return self.bridge

    def work(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        """The site's own tasks, by name: the source and every sink's I/O."""
        work: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        source = self.source
        if source is not None:
            work[f"source:{self.settings.source.type}"] = lambda: source.run(self.bridge)
        for sink in self.sinks:
            work[f"sink:{type(sink).__name__}"] = sink.run
        return work

    def start(self) -> None:
        self.bridge.start()

    @property
    def holds_pause(self) -> bool:
        """Whether the charger holds this site's pause claim."""
        return self.feed is not None and self.feed.claim_sent

    def on_pause_held(self, listener: Callable[[bool], None]) -> None:
        """Tell `listener` each time the charger comes to hold this site's pause claim
        (True) or it is released (False)."""
        if self.feed is not None:
            self.feed.pause.listeners.append(listener)

    def adopt_pause(self, now: float) -> None:
        """The charger holds this site's pause claim from before it was made (a fleet
        let the site go while it was paused): begin stale, and release on the first
        fresh reading."""
        self.pipeline.begin_stale(now)
        if self.feed is not None:
            self.feed.adopt_pause()

    def leave(self) -> None:
        """Stop the timers without undoing what the charger holds: a fleet lets an
        idle site go, and takes its pause claim back if it returns."""
        self.bridge.stop()
        if self.state_topic is not None:
            self.state_topic.close()
        if self.feed is not None:
            self.feed.leave()

    async def close(self) -> None:
        """Stop the timers and undo what the sinks hold (claims)."""
        self.leave()
        for sink in self.sinks:
            await sink.close()


def build_site(
    settings: SiteSettings,
    ports: Ports,
    role: Role = Role(),
    *,
    name: str = "p1evse",
    observers: list[Callable[[Event], None]] | None = None,
) -> Site:
    """The one place a site is put together; `observers` see every event after the
    sinks and the status model (as `check` watches what the pipeline makes)."""
    clock, mqtt = ports.clock, ports.mqtt
    confirms_sent = settings.openevse.route().confirms_sent
    pipeline = Pipeline(
        settings.publish,
        clock.time(),
        guard_from_start=role.guard_from_start,
        count_sent=not confirms_sent,
    )
    charger = ChargerState(mode_fresh_s=settings.openevse.mode_fresh_s())
    sinks = _sinks(settings, mqtt, charger, clock, feed=role.feed)
    for sink in sinks:
        if isinstance(sink, OpenEvseHttpSink):
            sink.sent.append(pipeline.counters.sent)  # counted once the charger has it
    source = build_source(settings.source, mqtt) if role.source else None
    state = state_topic = None
    if role.status or (role.state_topic and settings.wants_status()):
        counted: list[Counted] = [*([source] if source is not None else []), *sinks]
        state = _status(settings, mqtt, pipeline, charger, clock, counted)
        state_topic = _state_topic(settings, mqtt, state, clock)
        for sink in sinks:
            if isinstance(sink, OpenEvseMqttSink | OpenEvseHttpSink):
                sink.pause.listeners.append(state.claim_changed)  # the page shows the claim
            if isinstance(sink, OpenEvseHttpSink):
                sink.sent.append(state.sent)
                sink.failing.append(state.charger_failing)
    discovery = _discovery(settings, mqtt, state) if role.discovery else None
    every_observer = [*([state.observe] if state is not None else []), *(observers or [])]
    bridge = Bridge(
        pipeline, sinks if role.feed else [], clock, every_observer, name=name, holds=ports.holds
    )
    feed = next((sink for sink in sinks if isinstance(sink, OpenEvseMqttSink)), None)
    return Site(
        name,
        settings,
        pipeline,
        bridge,
        charger,
        sinks,
        state,
        source,
        discovery,
        state_topic,
        feed,
    )


def _sinks(
    settings: SiteSettings, mqtt: MqttPort, charger: ChargerState, clock: Clock, *, feed: bool
) -> list[Sink]:
    """The charger's feed, and over MQTT its dead-man's switch when armed. A site that
    feeds acts on the charger's live reports only: a retained one may be of a charger
    long gone (its normal mode would spare it from the stale guard, its current count
    as energy). `check`, which only looks, reads what the broker holds too."""
    openevse = settings.openevse
    if openevse.transport == "http":
        return [OpenEvseHttpSink(openevse, charger, clock.time)]
    # the readings ride on the broker too: after a reconnect they need time to come back
    settle_s = settings.publish.stale_after if settings.source.subscriptions() else 0.0
    sink = OpenEvseMqttSink(openevse, mqtt, charger, clock, settle_s)
    _attach(mqtt, sink.subscriptions(), sink.connected, retained=not feed)
    _attach(mqtt, sink.slot_subscription())
    if not feed or not openevse.deadman_armed(settings.publish.on_stale):
        return [sink]
    switch = DeadmanSwitch(
        openevse, settings.mqtt, mqtt, charger, sink, settings.publish.stale_after
    )
    return [sink, switch]


def _status(
    settings: SiteSettings,
    mqtt: MqttPort,
    pipeline: Pipeline,
    charger: ChargerState,
    clock: Clock,
    counted: Sequence[Counted],
) -> SiteState:
    """The status model, told of the broker's link and the parts' counts."""
    state = new_state(settings, pipeline.counters, clock.time, charger=charger, counted=counted)
    mqtt.on_connected(lambda: state.link_changed("broker", LinkState.CONNECTED))
    mqtt.on_disconnected(lambda: state.link_changed("broker", LinkState.DISCONNECTED))
    mqtt.on_problem(state.problem)
    return state


def new_state(
    settings: SiteSettings,
    counters: Counters,
    clock: Callable[[], float],
    *,
    wall: Callable[[], float] = time.time,
    charger: ChargerState | None = None,
    counted: Sequence[Counted] = (),
    day_start: Callable[[float], float] = local_midnight,
) -> SiteState:
    """A status model for a site with these settings; `day_start` gives the start of the
    day a Unix time is in (local midnight)."""
    return SiteState(
        settings.publish,
        settings.openevse.route(),
        counters,
        clock,
        source_detail=settings.source.describe(),
        broker_detail=f"MQTT {settings.mqtt.host}:{settings.mqtt.port}",
        wall=wall,
        charger=charger,
        counted=counted,
        day_start=day_start,
    )


def _state_topic(
    settings: SiteSettings, mqtt: MqttPort, state: SiteState, clock: Clock
) -> StateTopic | None:
    """The state, retained on `mqtt.state_topic`, after changes and on every connect."""
    topic = settings.mqtt.state_topic
    if topic is None:
        return None
    state_topic = StateTopic(state, mqtt, topic, clock)
    state.listeners.append(state_topic.changed)
    mqtt.on_connected(state_topic.connected)
    return state_topic


def _discovery(
    settings: SiteSettings, mqtt: MqttPort, state: SiteState | None
) -> HomeAssistantDiscovery:
    """Home Assistant's discovery: announced when on, an earlier run's removed when off."""
    discovery = HomeAssistantDiscovery(settings.homeassistant, settings.mqtt, mqtt, state)
    mqtt.on_connected(discovery.connected)
    if state is not None:
        state.listeners.append(discovery.state_changed)
    return discovery


def _attach(
    mqtt: MqttPort,
    subscriptions: dict[str, Callable[[bytes | bytearray], None]],
    connected: Callable[[], None] | None = None,
    *,
    retained: bool = True,
) -> None:
    for topic, handler in subscriptions.items():
        mqtt.subscribe(topic, handler, retained=retained)
    if connected is not None:
        mqtt.on_connected(connected)
