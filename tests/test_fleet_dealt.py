"""A fleet whose broker deals the meters among its processes (`fleet.share_group`, a
shared subscription) through mosquitto: a site whose meter went to another process is
let go, never paused, whether its stale guard or the other's second value comes first;
its meter dealt back makes it anew; and a broker that deals one meter to two processes
(mosquitto's round robin) is told, not hidden.

mosquitto deals round robin, so the move of a meter to another process is played by the
test: the meter falls silent here, and the test publishes on the charger's feed what the
new owner would."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from p1evse.config import Settings
from p1evse.fleet.dealt import FeedWatch, Heard
from p1evse.fleet.view import FleetView
from tests.brokers import BrokerProcess, mosquitto_available
from tests.conftest import require
from tests.logs import log_event
from tests.payloads import processes_ready
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_fleet import CLAIMS, DELIVERED, GRID_IE, PAUSE, fleet_running, fleet_settings

MOVED_LINE = "fleet: a site let go: another process feeds its charger now"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Any:
    """Shared subscriptions: mosquitto has them (amqtt, the fallback broker, has not)."""
    require("mosquitto", mosquitto_available())
    process = BrokerProcess("mosquitto", tmp_path)
    process.start()
    yield process
    process.stop()


def dealt(broker: BrokerProcess, client_id: str = "p1evse-a", **sections: Any) -> Settings:
    return fleet_settings(
        broker,
        fleet={"share_group": "p1evse", "share_sticky": True},
        mqtt={"client_id": client_id, **sections.pop("mqtt", {})},
        **sections,
    )


async def fed(probe: Probe, site: str, watts: str) -> None:
    """The meter of `site` says `watts`, and its charger is fed that."""
    probe.publish(DELIVERED.format(site), watts)
    message = await probe.next(GRID_IE)
    assert (message.topic, bytes(message.payload).decode()) == (f"p1evse/{site}/grid_ie", watts)


async def another_feeds(probe: Probe, site: str, watts: str) -> None:
    """What the process that the broker moved `site`'s meter to publishes (heard back by
    the probe, as by the fleet)."""
    probe.publish(f"p1evse/{site}/grid_ie", watts)
    message = await probe.next(GRID_IE)
    assert (message.topic, bytes(message.payload).decode()) == (f"p1evse/{site}/grid_ie", watts)


async def test_a_site_whose_meter_went_to_another_process_is_let_go_not_paused(
    mosquitto: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = dealt(mosquitto, publish={"stale_after": 2.0, "pair_window": 0.1})
    async with fleet_running(settings) as app, Probe(mosquitto.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        await processes_ready(probe, "p1evse-a")
        assert "$share/p1evse/dsmr/+/reading/electricity_currently_delivered" in (
            app.broker.subscriptions()
        )
        summary = FleetView(app.fleet, app.broker, asyncio.get_running_loop().time).summary()
        assert summary["fleet"]["share_group"] == "p1evse"
        # the site's first value subscribes to every charger's feed: from its second on
        # it hears them
        await fed(probe, "moved", "1000")
        await fed(probe, "moved", "1100")
        await another_feeds(probe, "moved", "-700")  # its meter goes to another process now
        await fed(probe, "kept", "1200")  # silent from now on, as "moved" is here
        with log_event(MOVED_LINE) as let_go:
            # "moved" went silent first: a pause of it would come before this one
            claim = await probe.next(CLAIMS, timeout=EVENT_TIMEOUT_S)
            assert (claim.topic, bytes(claim.payload).decode()) == (
                "openevse/kept/claim/set",
                PAUSE,
            )
            await asyncio.wait_for(let_go.wait(), EVENT_TIMEOUT_S)
        assert sorted(app.fleet.sites) == ["kept"]
        assert app.fleet.counters.moved == 1
        assert probe.pending(CLAIMS) == []
        # the broker deals the meter back here: the site is made anew, and fed
        await fed(probe, "moved", "400")
        assert app.fleet.counters.created == 3
        assert app.fleet.sites["moved"].pipeline.counters.stale_entered == 0


async def test_a_second_value_of_another_process_lets_the_site_go_at_once(
    mosquitto: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = dealt(mosquitto, publish={"stale_after": 60.0})  # the guard never comes
    async with fleet_running(settings) as app, Probe(mosquitto.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        await processes_ready(probe, "p1evse-a")
        await fed(probe, "moved", "1000")
        await fed(probe, "kept", "800")
        await fed(probe, "moved", "1100")
        with log_event(MOVED_LINE) as let_go:
            await another_feeds(probe, "moved", "-700")
            await another_feeds(probe, "moved", "-650")
            await asyncio.wait_for(let_go.wait(), EVENT_TIMEOUT_S)
        assert sorted(app.fleet.sites) == ["kept"]
        # what no process sends is nobody's feed: "kept" stays, counted
        for junk in ("garbage", "", "12.5", "1" * 20):
            await another_feeds(probe, "kept", junk)
        await fed(probe, "kept", "850")
        assert app.fleet.counters.feed_refused == 4
        # another's value after a reading here is no move: "kept" stays
        await another_feeds(probe, "kept", "-100")
        await fed(probe, "kept", "900")
        assert sorted(app.fleet.sites) == ["kept"]
        assert probe.pending(CLAIMS) == []


async def test_a_broker_that_deals_one_meter_to_two_processes_is_told(
    mosquitto: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """mosquitto deals round robin: each of two processes gets every other reading of
    the same meter, and both feed its charger. Each hears the other's values between
    its own readings, and says so."""
    first, second = (dealt(mosquitto, client_id=name) for name in ("p1evse-a", "p1evse-b"))
    caplog.set_level(logging.WARNING, "p1evse.fleet")
    async with (
        fleet_running(first) as a,
        fleet_running(second) as b,
        Probe(mosquitto.port) as probe,
    ):
        await probe.subscribe(GRID_IE)
        await processes_ready(probe, "p1evse-a", "p1evse-b")
        # each reading waits for its value: the two processes take turns (1 in 2)
        for watts in range(100, 140):
            await fed(probe, "h1", str(watts))
            if a.fleet.counters.fed_by_both and b.fleet.counters.fed_by_both:
                break
        assert a.fleet.counters.fed_by_both >= 1
        assert b.fleet.counters.fed_by_both >= 1
        problem = FleetView(a.fleet, a.broker, asyncio.get_running_loop().time).problem()
        assert problem is not None
        assert problem.startswith("the broker deals site h1's meter to this and another")
    told = [r.getMessage() for r in caplog.records if "deals one meter to two" in r.getMessage()]
    assert told
    assert told[0].startswith("fleet: site h1: another process feeds its charger too")


def test_own_values_are_known_by_their_echo_and_a_lost_one_only_delays_a_verdict() -> None:
    watch = FeedWatch("p1evse/h1/grid_ie")
    watch.sent("100")
    watch.sent("120")
    assert watch.heard(b"100", 1.0) is Heard.OWN
    assert watch.heard(b"120", 1.0) is Heard.OWN
    assert not watch.fed_by_another(1.0)
    watch.sent("-40")  # its echo is lost
    assert watch.heard(b"-40", 2.0) is Heard.OWN  # another's "-40": taken for it
    assert watch.heard(b"-35", 2.0) is Heard.OTHER
    assert watch.fed_by_another(2.0)
    assert not watch.fed_by_another(3.0)  # a reading here since
    assert watch.heard(b"-30", 3.0) is Heard.BOTH
    assert watch.heard(b"-25", 3.0) is Heard.MOVED
    for watts in range(10):  # own values beyond the few kept push the oldest out
        watch.sent(str(watts))
    assert watch.heard(b"0", 4.0) is Heard.BOTH
    for junk in (b"", b"abc", b"12.5", b"+5", b" 7", b"1" * 10):  # no process sends these
        assert watch.heard(junk, 5.0) is Heard.NOT_A_VALUE
    assert not watch.fed_by_another(5.0)
