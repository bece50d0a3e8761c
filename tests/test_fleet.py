"""A fleet through a real broker: a Site per site id taken from a `+` level of the
source's topics, each site's output on its own topics, no cross-talk, a stale guard per
site that never pauses a charger it never fed, idle sites let go (and their pause taken
back when they return), bounds and hostile site ids, and static shards that serve every
site exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from p1evse.app import FleetApp
from p1evse.config import Settings
from p1evse.fleet.members import Members
from p1evse.sinks.charger import READ_BACK_FIELDS
from tests.brokers import BrokerProcess
from tests.conftest import serving, settings_for
from tests.logs import log_event
from tests.payloads import processes_ready, ready
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_loopwatch import hold_the_loop

DELIVERED = "dsmr/{}/reading/electricity_currently_delivered"
RETURNED = "dsmr/{}/reading/electricity_currently_returned"
GRID_IE = "p1evse/+/grid_ie"
CLAIMS = "openevse/+/claim/set"
PAUSE = '{"state":"disabled"}'


def fleet_settings(broker: BrokerProcess, **sections: dict[str, Any]) -> Settings:
    """Every site's settings, with `+` and `{site}` where its id goes; values in W and
    relayed as they come, unless `sections` say otherwise."""
    return settings_for(
        broker,
        source={
            "delivered_topic": DELIVERED.format("+"),
            "returned_topic": RETURNED.format("+"),
            "unit": "W",
            **sections.pop("source", {}),
        },
        openevse={
            "grid_ie_topic": "p1evse/{site}/grid_ie",
            "base_topic": "openevse/{site}",
            "deadman": False,
            **sections.pop("openevse", {}),
        },
        mqtt={"state_topic": None, **sections.pop("mqtt", {})},
        publish={"interval": 0, **sections.pop("publish", {})},
        fleet=sections.pop("fleet", {}),
        **sections,
    )


@asynccontextmanager
async def fleet_running(settings: Settings) -> AsyncIterator[FleetApp]:
    app = FleetApp(settings, asyncio.get_running_loop())
    async with serving(app):
        yield app


async def collect(probe: Probe, pattern: str, count: int) -> dict[str, list[str]]:
    """The next `count` messages on `pattern`, by topic."""
    got: dict[str, list[str]] = defaultdict(list)
    for _ in range(count):
        message = await probe.next(pattern)
        got[message.topic].append(bytes(message.payload).decode())
    return dict(got)


def site_of(topic: str) -> str:
    return topic.split("/")[1]


async def test_a_thousand_sites_each_get_their_own_values_and_no_other(
    one_broker: BrokerProcess,
) -> None:
    sites = [f"home-{n}" for n in range(1000)]
    async with fleet_running(fleet_settings(one_broker)) as app, Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        for round_ in (1, 2):  # the first messages make the sites; the second are routed
            for n, site in enumerate(sites):
                probe.publish(DELIVERED.format(site), str(round_ * (n + 1)))
            got = await collect(probe, GRID_IE, len(sites))
            assert got == {
                f"p1evse/{site}/grid_ie": [str(round_ * (n + 1))] for n, site in enumerate(sites)
            }
        assert sorted(app.fleet.sites) == sorted(sites)
        assert app.fleet.counters.created == len(sites)
        assert probe.pending(GRID_IE) == []
        # one pattern for each topic of a site, whatever the number of sites
        assert sorted(app.broker.subscriptions()) == [
            "dsmr/+/reading/electricity_currently_delivered",
            "dsmr/+/reading/electricity_currently_returned",
            *(f"openevse/+/{field}" for field in sorted([*READ_BACK_FIELDS, "claim"])),
            "p1evse/fleet/paused/+",
            "p1evse/status",
        ]


async def test_each_site_has_its_own_stale_guard_and_one_never_fed_is_never_paused(
    broker: BrokerProcess,
) -> None:
    settings = fleet_settings(broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with fleet_running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        await ready(probe)
        probe.publish(DELIVERED.format("garbage"), "not a number")  # a site, but no reading
        probe.publish(DELIVERED.format("quiet"), "1200")
        assert await probe.next_payload(GRID_IE) == "1200"
        # "busy" keeps sending until "quiet", silent since, is paused
        paused = asyncio.create_task(probe.next(CLAIMS))
        watts = 100
        while not paused.done():
            probe.publish(DELIVERED.format("busy"), str(watts))
            await asyncio.wait({paused}, timeout=0.2)
            watts += 1
        claim = paused.result()
        # "garbage" came before "quiet": a guard running from its first message would
        # have paused it first
        assert (claim.topic, bytes(claim.payload).decode()) == ("openevse/quiet/claim/set", PAUSE)
        assert probe.pending(CLAIMS) == []
        assert sum(app.fleet.sites["garbage"].pipeline.counters.rejected.values()) == 1
        assert app.fleet.sites["garbage"].pipeline.counters.stale_entered == 0
        assert app.fleet.sites["busy"].pipeline.counters.stale_entered == 0
        assert (app.fleet.totals.stale, app.fleet.totals.paused) == (1, 1)
        probe.publish(RETURNED.format("quiet"), "300")
        await probe.wait_for_payload(CLAIMS, "release")
        assert (app.fleet.totals.stale, app.fleet.totals.paused) == (0, 0)


async def test_an_idle_site_is_let_go_and_its_pause_released_when_it_returns(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = fleet_settings(
        one_broker,
        publish={"stale_after": 1.0, "pair_window": 0.1},
        fleet={"evict_after": 2.0},
    )
    async with fleet_running(settings) as app, Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        await ready(probe)
        with log_event("1 let go") as let_go:
            probe.publish(DELIVERED.format("away"), "800")
            assert await probe.next_payload(GRID_IE) == "800"
            assert await probe.next_payload(CLAIMS) == PAUSE
            await asyncio.wait_for(let_go.wait(), EVENT_TIMEOUT_S)
        assert "away" not in app.fleet.sites
        assert app.fleet.counters.evicted == 1
        assert (app.fleet.totals.stale, app.fleet.totals.paused) == (0, 0)  # not served here
        probe.publish(DELIVERED.format("away"), "900")  # back: a new site, the same pause
        assert await probe.next_payload(CLAIMS) == "release"
        assert await probe.next_payload(GRID_IE) == "900"
        assert app.fleet.counters.created == 2
        # how long the meter was silent began before this Site: not told as 0 s
        said = [r.getMessage() for r in caplog.records if "readings are back" in r.getMessage()]
        assert said == ["away: readings are back (the pause was taken over)"]
        assert (app.fleet.totals.stale, app.fleet.totals.paused) == (0, 0)


async def test_a_site_is_not_let_go_before_its_stale_guard_acted_when_the_loop_was_held(
    one_broker: BrokerProcess,
) -> None:
    """The stale guard does not count time the process could not run; neither may the
    sweep that lets idle sites go, or a silent meter's charger would never be paused."""
    settings = fleet_settings(
        one_broker,
        publish={"stale_after": 1.0, "pair_window": 0.1},
        fleet={"evict_after": 2.0},
    )
    async with fleet_running(settings), Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        await ready(probe)
        probe.publish(DELIVERED.format("held"), "800")
        assert await probe.next_payload(GRID_IE) == "800"
        hold_the_loop(3.0)  # longer than evict_after: the process stopped, the meter died
        assert await probe.next_payload(CLAIMS) == PAUSE


async def test_every_output_topic_is_the_sites_own(one_broker: BrokerProcess) -> None:
    settings = fleet_settings(
        one_broker,
        source={"phase_voltage_topics": ["dsmr/+/reading/phase_voltage_l1"]},
        openevse={
            "shaper": True,
            "live_pwr_topic": "p1evse/{site}/live_pwr",
            "voltage": True,
            "vrms_topic": "p1evse/{site}/vrms",
        },
        mqtt={"state_topic": "p1evse/{site}/state"},
    )
    topics = ["p1evse/+/grid_ie", "p1evse/+/live_pwr", "p1evse/+/vrms", "p1evse/+/state"]
    async with fleet_running(settings) as app, Probe(one_broker.port) as probe:
        await probe.subscribe(*topics)
        await ready(probe)
        for site, volts in (("a", "231.0"), ("b", "229.5")):
            probe.publish(f"dsmr/{site}/reading/phase_voltage_l1", volts)
            probe.publish(DELIVERED.format(site), "1500")
            assert (await probe.next("p1evse/+/vrms")).topic == f"p1evse/{site}/vrms"
            assert (await probe.next("p1evse/+/grid_ie")).topic == f"p1evse/{site}/grid_ie"
            assert (await probe.next("p1evse/+/live_pwr")).topic == f"p1evse/{site}/live_pwr"
            state = await probe.next("p1evse/+/state")
            assert state.topic == f"p1evse/{site}/state"
            assert json.loads(state.payload)["watts"] == 1500
        # each charger is read back from its own base topic
        probe.publish("openevse/b/amp", "7500")
        probe.publish(DELIVERED.format("b"), "1600")  # in after it, on the same connection
        assert (await probe.next("p1evse/+/grid_ie")).topic == "p1evse/b/grid_ie"
        assert app.fleet.sites["b"].charger.amps == 7.5
        assert app.fleet.sites["a"].charger.amps is None


async def test_bad_site_ids_and_sites_beyond_max_sites_are_refused(
    one_broker: BrokerProcess,
) -> None:
    settings = fleet_settings(one_broker, fleet={"max_sites": 2})
    async with fleet_running(settings) as app, Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        for site in ("-dash-first", "x" * 65, "one", "two", "three", "four"):
            probe.publish(DELIVERED.format(site), "100")
        got = await collect(probe, GRID_IE, 2)
        assert sorted(got) == ["p1evse/one/grid_ie", "p1evse/two/grid_ie"]
        probe.publish(DELIVERED.format("one"), "200")  # the sites it has go on
        assert await probe.next_payload(GRID_IE) == "200"
        assert probe.pending(GRID_IE) == []
        assert sorted(app.fleet.sites) == ["one", "two"]
        assert (app.fleet.counters.refused_id, app.fleet.counters.refused_full) == (2, 2)


@asynccontextmanager
async def two_shards(
    broker: BrokerProcess, **fleet: Any
) -> AsyncIterator[tuple[FleetApp, FleetApp, Probe]]:
    """Shards 0/2 and 1/2 of one fleet, and a probe listening to every grid_ie."""
    shards = [
        fleet_settings(
            broker, fleet={"shard": f"{i}/2", **fleet}, mqtt={"client_id": f"p1evse-{i}"}
        )
        for i in range(2)
    ]
    async with (
        fleet_running(shards[0]) as first,
        fleet_running(shards[1]) as second,
        Probe(broker.port) as probe,
    ):
        await probe.subscribe(GRID_IE)
        await processes_ready(probe, "p1evse-0", "p1evse-1")
        yield first, second, probe


async def test_static_shards_serve_every_site_exactly_once(one_broker: BrokerProcess) -> None:
    sites = [f"s{n}" for n in range(200)]
    async with two_shards(one_broker) as (first, second, probe):
        for round_ in (1, 2):
            for site in sites:
                probe.publish(DELIVERED.format(site), str(round_))
            got = await collect(probe, GRID_IE, len(sites))
            assert got == {f"p1evse/{site}/grid_ie": [str(round_)] for site in sites}
        owned = [set(first.fleet.sites), set(second.fleet.sites)]
        assert owned[0] | owned[1] == set(sites)
        assert not owned[0] & owned[1]
        assert 60 <= len(owned[0]) <= 140  # a hash, near half
        # each saw the other's sites' messages, and served none of them
        assert first.fleet.counters.not_owned == 2 * len(owned[1])
        assert second.fleet.counters.not_owned == 2 * len(owned[0])
        assert probe.pending(GRID_IE) == []


async def test_a_pause_outlives_the_process_that_made_it(one_broker: BrokerProcess) -> None:
    """A fleet stopped while a charger is paused leaves the claim and its retained
    marker; whoever serves the site next releases it on its first fresh reading."""
    settings = fleet_settings(one_broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS, "p1evse/fleet/paused/+")
        async with fleet_running(settings):
            await ready(probe)
            probe.publish(DELIVERED.format("gone"), "700")
            assert await probe.next_payload(GRID_IE) == "700"
            assert await probe.next_payload(CLAIMS) == PAUSE
            assert await probe.next_payload("p1evse/fleet/paused/+") == "1"
        await probe.wait_for_payload("p1evse/status", "offline")  # all it sent came before
        assert probe.pending(CLAIMS) == []  # not released on the way out
        async with fleet_running(settings):
            await probe.wait_for_payload("p1evse/status", "online")
            probe.publish(DELIVERED.format("gone"), "650")
            assert await probe.next_payload(CLAIMS) == "release"
            assert await probe.next_payload(GRID_IE) == "650"
            assert await probe.next_payload("p1evse/fleet/paused/+") == ""


async def test_a_pause_marker_the_broker_lost_is_published_again(
    one_broker: BrokerProcess,
) -> None:
    """A broker restarted without persistence forgets the retained markers: the process
    that holds the pause says it again, so the next to serve the site still releases."""
    settings = fleet_settings(one_broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with fleet_running(settings):
        async with Probe(one_broker.port) as probe:
            await probe.subscribe(GRID_IE, CLAIMS, "p1evse/fleet/paused/+")
            await ready(probe)
            probe.publish(DELIVERED.format("gone"), "700")
            assert await probe.next_payload(CLAIMS) == PAUSE
            assert await probe.next_payload("p1evse/fleet/paused/+") == "1"
        with log_event("the broker had lost the pause markers of 1 site ") as told:
            one_broker.stop()  # the tests' mosquitto keeps nothing
            one_broker.start()
            await asyncio.wait_for(told.wait(), EVENT_TIMEOUT_S)
        async with Probe(one_broker.port) as probe:
            await probe.subscribe("p1evse/fleet/paused/gone")
            assert await probe.next_payload("p1evse/fleet/paused/gone") == "1"
    async with Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        async with fleet_running(settings):
            await ready(probe)
            probe.publish(DELIVERED.format("gone"), "650")
            assert await probe.next_payload(CLAIMS) == "release"


async def test_sites_going_stale_together_are_told_in_a_few_lines(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Every site still pauses its charger; the log says it once, then how many more."""
    sites = [f"quiet{n}" for n in range(40)]
    settings = fleet_settings(one_broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with fleet_running(settings), Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS)
        await ready(probe)
        with log_event("more like the line before") as summarized:
            for site in sites:
                probe.publish(DELIVERED.format(site), "100")
            await collect(probe, GRID_IE, len(sites))
            paused = await collect(probe, CLAIMS, len(sites))
            assert sorted(paused) == sorted(f"openevse/{site}/claim/set" for site in sites)
            await asyncio.wait_for(summarized.wait(), EVENT_TIMEOUT_S)
    stale_lines = [r.getMessage() for r in caplog.records if "no valid reading" in r.getMessage()]
    summaries = [
        r.getMessage() for r in caplog.records if "more like the line before" in r.getMessage()
    ]
    assert len(stale_lines) < 5  # one per window of a second, not one per site
    assert sum(int(line.split()[0]) for line in summaries if "quiet" in line) >= len(sites)


async def test_listed_sites_come_on_exact_topics_to_their_owner_only(
    one_broker: BrokerProcess, tmp_path: Path
) -> None:
    """With its site ids listed, a process subscribes to its own sites' topics only: it
    never reads another's messages, and a site not on the list is not served."""
    sites = [f"l{n}" for n in range(50)]
    listing = tmp_path / "sites.txt"
    listing.write_text("# the fleet's homes\n" + "\n".join(sites) + "\n")
    async with two_shards(one_broker, sites_file=str(listing)) as (first, second, probe):
        for site in [*sites, "unlisted"]:
            probe.publish(DELIVERED.format(site), "300")
        got = await collect(probe, GRID_IE, len(sites))
        assert got == {f"p1evse/{site}/grid_ie": ["300"] for site in sites}
        probe.publish(DELIVERED.format(sites[0]), "301")  # after all the others
        assert await probe.next_payload(GRID_IE) == "301"
        assert probe.pending(GRID_IE) == []  # nothing for the unlisted site
        for app, other in ((first, second), (second, first)):
            assert app.fleet.counters.not_owned == 0  # nothing of the other's came
            subscribed = [t for t in app.broker.subscriptions() if t.startswith("dsmr/")]
            assert len(subscribed) == 2 * len(app.fleet.sites)
            assert not set(app.fleet.sites) & set(other.fleet.sites)


async def test_a_member_not_named_like_one_is_not_taken(one_broker: BrokerProcess) -> None:
    settings = fleet_settings(one_broker, fleet={"membership": True})
    async with fleet_running(settings) as app, Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, "p1evse/fleet/members/+")
        await probe.wait_for_payload("p1evse/fleet/members/+", "online")  # p1evse itself
        probe.publish("p1evse/fleet/members/not one!", "online")
        probe.publish("p1evse/fleet/members/other", "online")
        expected = Members("p1evse")
        expected.update("other", online=True)
        ours = next(f"h{n}" for n in range(100) if expected.owns(f"h{n}"))
        probe.publish(DELIVERED.format(ours), "100")  # in after them, on the same connection
        assert (await probe.next(GRID_IE)).topic == f"p1evse/{ours}/grid_ie"
        assert app.fleet.members is not None
        assert app.fleet.members.live == {"p1evse", "other"}


async def test_a_member_never_counts_a_shard_or_a_shared_groups_process(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Each process of a fleet of many announces itself; only members count members."""
    caplog.set_level(logging.INFO, logger="p1evse")
    others = [
        fleet_settings(one_broker, fleet={"shard": "0/2"}, mqtt={"client_id": "p1evse-d"}),
        fleet_settings(
            one_broker,
            fleet={"share_group": "p1evse", "share_sticky": True},
            mqtt={"client_id": "p1evse-a"},
        ),
    ]
    member = fleet_settings(one_broker, fleet={"membership": True}, mqtt={"client_id": "p1evse-c"})
    async with (
        fleet_running(others[0]),
        fleet_running(others[1]),
        Probe(one_broker.port) as probe,
    ):
        await processes_ready(probe, "p1evse-d", "p1evse-a")  # retained before c looks
        with log_event("fleet: serving as p1evse-c with") as serving_:
            async with fleet_running(member) as c:
                await asyncio.wait_for(serving_.wait(), EVENT_TIMEOUT_S)
                assert c.fleet.members is not None
                assert c.fleet.members.live == {"p1evse-c"}


async def test_pause_markers_beyond_the_bound_are_counted_and_told(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fleet_settings(one_broker, fleet={"max_sites": 1})  # 10 markers known
    with log_event("pause markers under p1evse/fleet/paused/+: site m10's is not taken") as told:
        async with fleet_running(settings) as app, Probe(one_broker.port) as probe:
            await probe.subscribe(GRID_IE)
            await ready(probe)
            for n in range(11):
                probe.publish(f"p1evse/fleet/paused/m{n}", "1")
            probe.publish(DELIVERED.format("after"), "100")  # in after them, on one connection
            assert (await probe.next(GRID_IE)).topic == "p1evse/after/grid_ie"
            assert len(app.fleet.paused) == 10
            assert app.fleet.counters.markers_refused == 1
            assert told.is_set()
