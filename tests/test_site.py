"""A Site's wiring, on virtual ports: what build_site connects, for each role, and the
clock binding (the pipeline's timers fire on the site's clock)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from p1evse.model import Event, GridPower, Reading, StaleEntered, StaleLeft
from p1evse.mqtt import MqttSettings
from p1evse.pipeline import PublishSettings
from p1evse.sim.virtual import VirtualBroker, VirtualClock
from p1evse.sinks.charger import MODE_FRESH_S, OpenevseSettings
from p1evse.sinks.openevse_mqtt import MODE_CLAIM_GAP_S, PAUSE_CLAIM, RELEASE
from p1evse.site import Ports, Role, Site, SiteSettings, build_site

START = 1000.0
STALE_AFTER = 30.0
GRID_IE, CLAIM, STATE = "p1evse/grid_ie", "openevse/claim/set", "p1evse/state"


class Heard:
    """Everything published on the virtual broker, by topic."""

    def __init__(self, broker: VirtualBroker, *topics: str) -> None:
        self.messages: dict[str, list[str]] = defaultdict(list)
        for topic in topics:
            broker.subscribe(
                topic, lambda payload, t=topic: self.messages[t].append(payload.decode())
            )


def make(
    role: Role | None = None, **sections: object
) -> tuple[Site, VirtualClock, VirtualBroker, Heard, list[Event]]:
    """A site on virtual ports, connected and started; readings fed by hand unless
    `role` says otherwise."""
    role = role or Role(source=False)
    clock, broker = VirtualClock(START), VirtualBroker()
    settings = SiteSettings.model_validate(
        {"publish": {"interval": 0, "stale_after": STALE_AFTER}, **sections}
    )
    heard = Heard(broker, GRID_IE, CLAIM, STATE)
    events: list[Event] = []
    site = build_site(settings, Ports(clock, broker), role, observers=[events.append])
    broker.connect()
    site.start()
    return site, clock, broker, heard, events


def test_a_reading_reaches_the_charger_and_the_observers() -> None:
    site, clock, _, heard, events = make()
    site.intake.reading(Reading(clock.time(), 1500.0, 0.0))
    assert heard.messages[GRID_IE] == ["1500"]
    assert [type(e) for e in events] == [Reading, GridPower]


def test_the_stale_guard_fires_on_the_sites_clock_and_pauses_an_eco_charger() -> None:
    site, clock, broker, heard, events = make()
    broker.publish("openevse/divertmode", "2")  # eco: p1evse may pause it
    site.intake.reading(Reading(clock.time(), 1500.0, 0.0))
    clock.advance(START + STALE_AFTER - 0.001)
    assert heard.messages[CLAIM] == []
    clock.advance(START + STALE_AFTER + 5)
    [stale] = [e for e in events if isinstance(e, StaleEntered)]
    assert stale.at == START + STALE_AFTER  # at its deadline, not when the clock was moved
    assert heard.messages[CLAIM] == [PAUSE_CLAIM]
    site.intake.reading(Reading(clock.time(), 100.0, 0.0))
    assert isinstance(events[-3], StaleLeft)
    assert heard.messages[CLAIM] == [PAUSE_CLAIM, RELEASE]


def test_the_status_model_shows_the_claim_the_charger_holds() -> None:
    """The page's "pause claim" is what the sink sent, not what the stale guard wanted:
    a charger in normal mode is spared, and its pause shows as none."""
    site, clock, broker, heard, _ = make(Role(source=False, status=True))
    state = site.state
    assert state is not None
    broker.publish("openevse/divertmode", "1")  # normal mode: spared
    site.intake.reading(Reading(clock.time(), 1500.0, 0.0))
    clock.advance(START + STALE_AFTER + 1)
    assert state.stale is not None
    assert state.snapshot()["pause"]["claimed"] is False
    broker.publish("openevse/divertmode", "2")  # eco now: the sink claims
    assert heard.messages[CLAIM] == [PAUSE_CLAIM]
    assert state.snapshot()["pause"]["claimed"] is True
    clock.advance(START + STALE_AFTER + 11)
    site.intake.reading(Reading(clock.time(), 100.0, 0.0))
    snapshot = state.snapshot()
    assert snapshot["pause"]["claimed"] is False
    [(start, end)] = snapshot["periods"]["paused"]
    assert end - start == 10


def test_a_charger_reporting_normal_mode_is_never_paused() -> None:
    _, clock, broker, heard, _ = make()
    for at in range(0, 600, 30):  # the firmware reports its status every 30 s
        clock.advance(START + at)
        broker.publish("openevse/divertmode", "1")  # normal: someone's deliberate charge
    clock.advance(START + 600)
    assert heard.messages[CLAIM] == []


def test_a_report_of_normal_mode_spares_the_charger_only_while_it_is_fresh() -> None:
    """A retained `divertmode` 1 from a charger long gone, or one that stopped
    reporting, must not switch the stale guard off for good."""
    _, clock, broker, heard, _ = make()
    broker.publish("openevse/divertmode", "1")
    clock.advance(START + MODE_FRESH_S - 0.001)
    assert heard.messages[CLAIM] == []  # stale since START + 30, spared
    clock.advance(START + MODE_FRESH_S)
    assert heard.messages[CLAIM] == [PAUSE_CLAIM]  # the report lapsed: paused on time
    broker.publish("openevse/divertmode", "1")  # it speaks again: spared again
    assert heard.messages[CLAIM] == [PAUSE_CLAIM, RELEASE]
    clock.advance(START + 2 * MODE_FRESH_S + 1)
    assert heard.messages[CLAIM] == [PAUSE_CLAIM, RELEASE, PAUSE_CLAIM]


async def test_close_keeps_a_pause_the_next_run_hears_of_and_releases_any_other() -> None:
    """While the meter is silent the charger stays paused, if the dead-man's switch
    (on by default) tells the next run so; without the switch no one would release it."""
    for deadman, claims in ((True, [PAUSE_CLAIM]), (False, [PAUSE_CLAIM, RELEASE])):
        site, clock, broker, heard, _ = make(openevse={"deadman": deadman})
        broker.publish("openevse/divertmode", "2")
        clock.advance(START + STALE_AFTER)
        assert heard.messages[CLAIM] == [PAUSE_CLAIM]
        await site.close()
        assert heard.messages[CLAIM] == claims, deadman


def test_a_divert_mode_flipping_on_the_broker_does_not_flip_the_charger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, clock, broker, heard, _ = make()
    clock.advance(START + STALE_AFTER)
    assert heard.messages[CLAIM] == [PAUSE_CLAIM]  # stale, mode unknown: paused
    for n in range(1000):  # a thousand reports within a second, 1 and 2 in turn
        clock.advance(START + STALE_AFTER + n / 1000)
        broker.publish("openevse/divertmode", "1" if n % 2 == 0 else "2")
    assert heard.messages[CLAIM] == [PAUSE_CLAIM, RELEASE]  # the first change, at once
    assert len(caplog.records) < 10
    broker.publish("openevse/divertmode", "1")  # where it comes to rest
    clock.advance(START + STALE_AFTER + MODE_CLAIM_GAP_S + 1)
    assert heard.messages[CLAIM] == [PAUSE_CLAIM, RELEASE]  # normal: stays released
    broker.publish("openevse/divertmode", "2")
    assert heard.messages[CLAIM] == [PAUSE_CLAIM, RELEASE, PAUSE_CLAIM]  # a gap later: at once


def test_read_back_only_the_charger_is_read_but_never_fed() -> None:
    """As `check` builds it: the pipeline runs, the sinks only read the charger back."""
    site, clock, broker, heard, events = make(Role(source=False, feed=False))
    broker.publish("openevse/divertmode", "2")
    site.intake.reading(Reading(clock.time(), 1500.0, 0.0))
    clock.advance(START + 10 * STALE_AFTER)
    assert heard.messages[GRID_IE] == heard.messages[CLAIM] == []
    assert any(isinstance(e, GridPower) for e in events)  # made, only not sent
    assert site.charger.divertmode is not None


def test_the_source_is_built_from_its_settings_only_when_asked() -> None:
    assert make()[0].source is None
    site = make(Role())[0]
    assert site.source is not None
    assert "source:mqtt_split" in site.work()


def test_the_status_model_and_its_topic_only_when_something_reads_them() -> None:
    for off in (None, "", "  "):  # as the docs say: empty is off
        quiet = make(mqtt=MqttSettings(state_topic=off).model_dump())[0]
        assert quiet.state is None
        assert quiet.state_topic is None
    site, clock, _, heard, _ = make()  # the state topic is on by default
    assert site.state is not None
    assert len(heard.messages[STATE]) == 1  # on connect
    site.intake.reading(Reading(clock.time(), 1500.0, 0.0))
    clock.advance(START + 1.0)  # changes coalesce to one message a second
    assert len(heard.messages[STATE]) == 2
    paged = make(Role(source=False, status=True), mqtt={"state_topic": None})[0]
    assert paged.state is not None
    assert paged.state_topic is None


def test_the_dead_mans_switch_only_with_a_feed_over_mqtt_and_a_pause_to_keep() -> None:
    def sinks(role: Role, **openevse: object) -> list[str]:
        site = make(role, openevse=OpenevseSettings(**openevse).model_dump())[0]  # type: ignore[arg-type]
        return [type(sink).__name__ for sink in site.sinks]

    assert sinks(Role(source=False)) == ["OpenEvseMqttSink", "DeadmanSwitch"]
    assert sinks(Role(source=False), deadman=False) == ["OpenEvseMqttSink"]
    assert sinks(Role(source=False, feed=False)) == ["OpenEvseMqttSink"]
    assert sinks(Role(source=False), transport="http", url="http://openevse.local") == [
        "OpenEvseHttpSink"
    ]


def test_the_publish_settings_reach_the_pipeline() -> None:
    site = make(publish=PublishSettings(interval=0, stale_after=12.0).model_dump())[0]
    assert site.pipeline.next_deadline() == START + 12.0
