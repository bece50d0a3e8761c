"""Who is live, when a will is not said: a member left "online" by one that died unheard
is taken as gone after three missed heartbeats, a member learns the members anew on
every connection, and says "online" again when anyone says otherwise on its topic; and
a site whose meter went silent just before it moved, to a member that joined or from
one that died, is still paused by its new owner."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from p1evse.fleet.members import Members
from tests.brokers import BrokerProcess
from tests.logs import log_event
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.proxy import TcpProxy
from tests.test_fleet import CLAIMS, DELIVERED, GRID_IE, PAUSE, fleet_running, fleet_settings

MEMBER = "p1evse/fleet/members/{}"
HANDOVER = "p1evse/fleet/handover/+"
BEAT_S = 1.0  # the member heartbeat of these tests: one not heard for 3 s is gone


def owned_by(member: str, members: list[str], count: int = 1) -> list[str]:
    """`count` site ids that `member` owns among `members` (the service is "p1evse")."""
    live = Members("p1evse")
    for other in members:
        live.update(other, online=True)
    return [f"h{n}" for n in range(1000) if live.owner(f"h{n}") == member][:count]


@contextlib.asynccontextmanager
async def retained(probe: Probe, member: str) -> AsyncIterator[None]:
    """`member`'s "online" left retained, as a member that died unheard leaves it."""
    probe.publish(MEMBER.format(member), "online", retain=True)
    try:
        yield
    finally:
        probe.publish(MEMBER.format(member), "", retain=True)


@contextlib.asynccontextmanager
async def beating(probe: Probe, member: str) -> AsyncIterator[None]:
    """A live member's heartbeat, far more often than it needs to be; its "online"
    cleared after."""

    async def beat() -> None:
        while True:
            probe.publish(MEMBER.format(member), "online", retain=True)
            await asyncio.sleep(BEAT_S / 5)  # the member's own cadence

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        probe.publish(MEMBER.format(member), "", retain=True)


async def test_a_member_not_heard_for_three_heartbeats_is_taken_as_gone(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = fleet_settings(one_broker, fleet={"membership": True, "member_heartbeat": BEAT_S})
    [ghosts_site] = owned_by("ghost", ["ghost", "alive"])
    async with (
        Probe(one_broker.port) as probe,
        retained(probe, "ghost"),
        beating(probe, "alive"),
    ):
        await probe.subscribe(GRID_IE)
        with (
            log_event("serving as p1evse with 2 other members") as both,
            log_event("ghost not heard for 3 heartbeats") as gone,
        ):
            async with fleet_running(settings) as app:
                await asyncio.wait_for(both.wait(), EVENT_TIMEOUT_S)
                await asyncio.wait_for(gone.wait(), EVENT_TIMEOUT_S)
                assert app.fleet.members is not None
                assert app.fleet.members.live == {"p1evse", "alive"}
                # the ghost's site is served again; the live member's are not
                probe.publish(DELIVERED.format(ghosts_site), "100")
                message = await probe.next(GRID_IE)
                assert message.topic == f"p1evse/{ghosts_site}/grid_ie"


async def test_a_member_learns_the_members_anew_on_every_connection(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A member that died while this one was cut off said nothing it could hear: its
    "online" is simply no longer there when the connection is back."""
    caplog.set_level(logging.INFO, logger="p1evse")
    async with (
        Probe(one_broker.port) as probe,
        retained(probe, "other"),
        TcpProxy(one_broker.port) as proxy,
    ):
        settings = fleet_settings(one_broker, mqtt={"port": proxy.port}, fleet={"membership": True})
        with log_event("serving as p1evse with 1 other member (other)") as first:
            async with fleet_running(settings) as app:
                await asyncio.wait_for(first.wait(), EVENT_TIMEOUT_S)
                with log_event("serving as p1evse with no others") as alone:
                    proxy.cut()
                    probe.publish(MEMBER.format("other"), "", retain=True)  # gone unheard
                    await proxy.restore()
                    await asyncio.wait_for(alone.wait(), EVENT_TIMEOUT_S)
                assert app.fleet.members is not None
                assert app.fleet.members.live == {"p1evse"}


async def test_a_member_says_online_again_when_another_says_otherwise(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The others would take its sites while it still feeds them."""
    caplog.set_level(logging.INFO, logger="p1evse")
    own = MEMBER.format("p1evse")
    settings = fleet_settings(one_broker, fleet={"membership": True})
    with log_event("fleet: serving as p1evse") as serving_:
        async with fleet_running(settings), Probe(one_broker.port) as probe:
            await asyncio.wait_for(serving_.wait(), EVENT_TIMEOUT_S)
            await probe.subscribe(own)
            await probe.wait_for_payload(own, "online")
            with log_event('it says "online" again') as reasserted:
                probe.publish(own, "", retain=True)
                await probe.wait_for_payload(own, "online")
                assert reasserted.is_set()
            # said again a moment later: answered too, a moment later, not at the next
            # heartbeat (30 s) while the others feed its sites
            probe.publish(own, "", retain=True)
            await probe.wait_for_payload(own, "online", timeout=10)
            async with Probe(one_broker.port) as late:  # and it is what is retained
                await late.subscribe(own)
                assert await late.next_payload(own) == "online"
    async with Probe(one_broker.port) as late:  # its own goodbye is not taken back
        await late.subscribe(own)
        assert await late.next_payload(own) == "offline"


async def test_a_gone_members_site_whose_meter_went_silent_is_still_paused(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The member that fed it died before its stale guard fired: the new owner's guard
    counts from the meter's last message, not from the meter's next one (never)."""
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = fleet_settings(
        one_broker,
        fleet={"membership": True},
        publish={"stale_after": 3.0, "pair_window": 0.1},
    )
    silent, busy, unheard = owned_by("other", ["other"], count=3)
    async with Probe(one_broker.port) as probe, retained(probe, "other"):
        await probe.subscribe(GRID_IE, CLAIMS)
        with (
            log_event("serving as p1evse with 1 other member (other)") as both,
            log_event("0 sites moved to others, 2 taken over") as taken,
        ):
            async with fleet_running(settings) as app:
                await asyncio.wait_for(both.wait(), EVENT_TIMEOUT_S)
                probe.publish(DELIVERED.format(silent), "1200")  # the other fed it; silent since
                paused = asyncio.create_task(probe.next(CLAIMS))
                watts = 100
                while not paused.done():
                    probe.publish(DELIVERED.format(busy), str(watts))
                    if watts == 101:
                        probe.publish(MEMBER.format("other"), "offline", retain=True)  # its will
                    await asyncio.wait({paused}, timeout=0.1)  # the busy meter's cadence
                    watts += 1
                assert taken.is_set()
                claim = paused.result()
                assert (claim.topic, bytes(claim.payload).decode()) == (
                    f"openevse/{silent}/claim/set",
                    PAUSE,
                )
                assert probe.pending(CLAIMS) == []
                # served from its next reading
                assert (await probe.next(GRID_IE)).topic == f"p1evse/{busy}/grid_ie"
                assert unheard not in app.fleet.sites
                assert app.fleet.sites[busy].pipeline.counters.stale_entered == 0
                # its meter's messages went to the site taken over, and made no other
                assert app.fleet.counters.created == len(app.fleet.sites) == 2


async def test_a_site_handed_to_a_member_that_joined_keeps_its_stale_guard(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Its meter went silent just before the new member joined: the former owner lets
    it go without a word to the charger, and says how long ago the meter spoke."""
    caplog.set_level(logging.INFO, logger="p1evse")
    sections: dict[str, Any] = {
        "fleet": {"membership": True},
        "publish": {"stale_after": 8.0, "pair_window": 0.1},
    }
    first = fleet_settings(one_broker, **copy.deepcopy(sections))
    joiner = fleet_settings(one_broker, mqtt={"client_id": "joiner"}, **copy.deepcopy(sections))
    silent, busy = owned_by("joiner", ["joiner"], count=2)
    async with Probe(one_broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIMS, HANDOVER)
        with log_event("serving as p1evse with no others") as alone:
            async with fleet_running(first) as former:
                await asyncio.wait_for(alone.wait(), EVENT_TIMEOUT_S)
                probe.publish(DELIVERED.format(silent), "1200")  # fed; silent since
                probe.publish(DELIVERED.format(busy), "100")
                assert {(await probe.next(GRID_IE)).topic for _ in range(2)} == {
                    f"p1evse/{silent}/grid_ie",
                    f"p1evse/{busy}/grid_ie",
                }
                paused = asyncio.create_task(probe.next(CLAIMS))
                async with fleet_running(joiner) as new:
                    watts = 101
                    while not paused.done():
                        probe.publish(DELIVERED.format(busy), str(watts))
                        await asyncio.wait({paused}, timeout=0.1)  # the busy meter's cadence
                        watts += 1
                    claim = paused.result()
                    assert (claim.topic, bytes(claim.payload).decode()) == (
                        f"openevse/{silent}/claim/set",
                        PAUSE,
                    )
                    assert probe.pending(CLAIMS) == []
                    said = {(await probe.next(HANDOVER)).topic for _ in range(2)}
                    assert said == {f"p1evse/fleet/handover/{site}" for site in (silent, busy)}
                    assert new.fleet.counters.taken_over == 2
                    assert former.fleet.sites == {}
                    assert new.fleet.sites[silent].pipeline.counters.stale_entered == 1
                    assert new.fleet.sites[busy].pipeline.counters.stale_entered == 0


async def test_a_handover_that_is_no_age_is_refused_and_counted(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = fleet_settings(one_broker, fleet={"membership": True})
    with log_event("serving as p1evse with no others") as alone:
        async with fleet_running(settings) as app, Probe(one_broker.port) as probe:
            await probe.subscribe(GRID_IE)
            await asyncio.wait_for(alone.wait(), EVENT_TIMEOUT_S)
            for n, payload in enumerate([b"nan", b"-1", b"1" * 65, b"\xff", b"inf"]):
                probe.publish(f"p1evse/fleet/handover/bad{n}", payload)
            probe.publish("p1evse/fleet/handover/old", "3600")  # paused by its former owner
            probe.publish("p1evse/fleet/handover/good", "1.5")
            probe.publish(DELIVERED.format("after"), "100")  # in after them, on one connection
            assert (await probe.next(GRID_IE)).topic == "p1evse/after/grid_ie"
            assert app.fleet.counters.handovers_refused == 5
            assert sorted(app.fleet.sites) == ["after", "good"]
            assert app.fleet.counters.taken_over == 1


async def test_a_member_keeps_beating_when_no_more_are_taken(
    one_broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The bound on members refuses new ones, never the heartbeat of one it has."""
    caplog.set_level(logging.INFO, logger="p1evse")
    monkeypatch.setattr("p1evse.fleet.fleet.MAX_MEMBERS", 2)
    own = MEMBER.format("p1evse")
    settings = fleet_settings(one_broker, fleet={"membership": True, "member_heartbeat": BEAT_S})
    async with Probe(one_broker.port) as probe, beating(probe, "alive"):
        await probe.subscribe(own)
        with (
            log_event("serving as p1evse with 1 other member (alive)") as both,
            log_event("'extra' is not taken as a member") as refused,
            log_event("alive not heard for") as expired,
        ):
            async with fleet_running(settings) as app:
                await asyncio.wait_for(both.wait(), EVENT_TIMEOUT_S)
                probe.publish(MEMBER.format("extra"), "online")
                await asyncio.wait_for(refused.wait(), EVENT_TIMEOUT_S)
                probe.pending(own)  # from here on: five heartbeats, and as many looks
                for _ in range(5):  # for members gone
                    await probe.wait_for_payload(own, "online")
                assert app.fleet.members is not None
                assert app.fleet.members.live == {"p1evse", "alive"}
                assert not expired.is_set()  # not even for a moment


async def test_a_handover_heard_before_the_site_is_this_processs_is_kept_for_then(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Members that see the members differently for a while: the handover came to this
    process while a member that never was (a stale "online") owned the site as it saw
    them; when that one is gone, the site is this process's, its meter silent for longer
    than stale_after by then, and paused at once."""
    caplog.set_level(logging.INFO, logger="p1evse")
    settings = fleet_settings(
        one_broker,
        fleet={"membership": True, "member_heartbeat": BEAT_S},
        publish={"stale_after": 3.0},
    )
    [site] = owned_by("ghost", ["ghost"])
    async with Probe(one_broker.port) as probe, retained(probe, "ghost"):
        await probe.subscribe(CLAIMS)
        with (
            log_event("serving as p1evse with 1 other member (ghost)") as both,
            log_event("0 sites moved to others, 1 taken over") as taken,
        ):
            async with fleet_running(settings) as app:
                await asyncio.wait_for(both.wait(), EVENT_TIMEOUT_S)
                # its meter silent since 2.9 s; the ghost is gone 3 heartbeats after
                # it was heard, when the meter has been silent for longer than 3 s
                probe.publish(f"p1evse/fleet/handover/{site}", "2.9")
                await asyncio.wait_for(taken.wait(), EVENT_TIMEOUT_S)
                claim = await probe.next(CLAIMS, timeout=EVENT_TIMEOUT_S)
                assert (claim.topic, bytes(claim.payload).decode()) == (
                    f"openevse/{site}/claim/set",
                    PAUSE,
                )
                assert app.fleet.counters.taken_over == 1
                stale = app.fleet.sites[site].pipeline.counters.stale_entered
                assert stale == 1
