"""Live membership with real processes on a real broker: `p1evse run` three times, a
fourth joins, one is killed (SIGKILL). Every site is fed by exactly one process at any
moment; a joining member takes only its share, from every other alike; a killed
member's sites are fed by the survivors again within `stale_after`; nobody pauses or
releases a charger on the way."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp

from p1evse.fleet.members import Members
from p1evse.sim.broker import free_port
from tests.brokers import BrokerProcess
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_fleet import DELIVERED, GRID_IE

STALE_AFTER_S = 10.0
HEARTBEAT_S = 3.0  # heartbeats come and go all through the test; a member is gone after 9 s
CLAIMS = "openevse/+/claim/set"
MEMBERS = "p1evse/fleet/members/+"
CONFIG = """\
source:
  delivered_topic: dsmr/+/reading/electricity_currently_delivered
  returned_topic: dsmr/+/reading/electricity_currently_returned
  unit: W
publish:
  interval: 0
  stale_after: {stale_after}
openevse:
  grid_ie_topic: p1evse/{{site}}/grid_ie
  base_topic: openevse/{{site}}
  deadman: false
mqtt:
  port: {port}
  state_topic: null
fleet:
  membership: true
  member_heartbeat: {heartbeat}
"""


class Member:
    """`p1evse run` as one member of the fleet, its log read as it comes."""

    def __init__(self, name: str, config: Path) -> None:
        self.name = name
        self.listen = f"127.0.0.1:{free_port()}"
        self._config = config
        self._process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._said = asyncio.Event()

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "p1evse",
            "run",
            env={
                **os.environ,
                "P1EVSE_CONFIG": str(self._config),
                "P1EVSE_MQTT__CLIENT_ID": self.name,
                "P1EVSE_WEB__LISTEN": self.listen,
            },
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        while line := await self._process.stderr.readline():
            self.log.append(line.decode(errors="replace").rstrip())
            self._said.set()

    async def said(self, fragment: str) -> None:
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while not any(fragment in line for line in self.log):
                self._said.clear()
                await self._said.wait()

    async def sites(self, http: aiohttp.ClientSession) -> set[str]:
        async with http.get(f"http://{self.listen}/api/sites?limit=1000") as response:
            assert response.status == 200
            return {site["id"] for site in json.loads(await response.text())["sites"]}

    def kill(self) -> None:
        assert self._process is not None
        self._process.kill()

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await asyncio.wait_for(self._process.wait(), EVENT_TIMEOUT_S)
        await self._reader


@asynccontextmanager
async def members(config: Path, names: list[str]) -> AsyncIterator[dict[str, Member]]:
    async with AsyncExitStack() as stack:
        started = {name: Member(name, config) for name in names}
        for member in started.values():
            stack.push_async_callback(member.stop)
            await member.start()
        yield started


class Feed:
    """A meter for each site, each reading with a value of its own, sent every
    `PERIOD_S` (as meters do), and what came out, as it comes."""

    PERIOD_S = 0.25

    def __init__(self, probe: Probe, sites: list[str]) -> None:
        self.probe = probe
        self.sites = sites
        self.round = 0
        self.out: Counter[tuple[str, str]] = Counter()  # (grid_ie topic, value) -> times
        self.fed: dict[str, int] = {}  # site -> the last round it was fed from
        self._came = asyncio.Event()

    async def meters(self) -> None:
        while True:
            self.round += 1
            for n, site in enumerate(self.sites):
                self.probe.publish(DELIVERED.format(site), str(self.round * 1000 + n))
            await asyncio.sleep(self.PERIOD_S)  # the meters' own cadence

    async def collect(self) -> None:
        while True:
            message = await self.probe.next(GRID_IE, timeout=3600)
            value = bytes(message.payload).decode()
            self.out[(message.topic, value)] += 1
            self.fed[message.topic.split("/")[1]] = int(value) // 1000
            self._came.set()

    async def all_fed_after(self, round_: int, timeout: float = EVENT_TIMEOUT_S) -> None:
        """Until every site has been fed from a round after `round_`."""
        async with asyncio.timeout(timeout):
            while any(self.fed.get(site, 0) <= round_ for site in self.sites):
                self._came.clear()
                await self._came.wait()

    def fed_twice(self) -> list[tuple[str, str]]:
        return [key for key, times in self.out.items() if times > 1]


async def owners(running: dict[str, Member], http: aiohttp.ClientSession) -> dict[str, str]:
    """site -> the member serving it, each site served by one member only."""
    served: dict[str, str] = {}
    for name, member in running.items():
        for site in await member.sites(http):
            assert site not in served, f"{site} served by {served[site]} and {name}"
            served[site] = name
    return served


def expected(names: list[str], sites: list[str]) -> dict[str, str]:
    members = Members(names[0])
    for name in names[1:]:
        members.update(name, online=True)
    return {site: members.owner(site) for site in sites}


async def test_members_share_the_sites_and_a_killed_ones_are_taken_over(
    one_broker: BrokerProcess, tmp_path: Path
) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text(
        CONFIG.format(port=one_broker.port, stale_after=STALE_AFTER_S, heartbeat=HEARTBEAT_S)
    )
    sites = [f"home{n}" for n in range(80)]
    names = ["m0", "m1", "m2"]
    async with (
        Probe(one_broker.port) as probe,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        members(config, names) as running,
    ):
        await probe.subscribe(GRID_IE, CLAIMS, MEMBERS)
        for member in running.values():
            await member.said("status page on")
            await member.said("fleet: serving as")
        await probe.wait_for_payload(MEMBERS, "online")  # all three are online
        feed = Feed(probe, sites)
        tasks = [asyncio.create_task(feed.meters()), asyncio.create_task(feed.collect())]
        await feed.all_fed_after(0)
        assert await owners(running, http) == expected(names, sites)

        joined = Member("m3", config)
        await joined.start()
        try:
            await joined.said("fleet: serving as m3 with 3 other members")
            for member in running.values():
                await member.said("with 3 other members")
            await feed.all_fed_after(feed.round)
            running["m3"] = joined
            after_join = await owners(running, http)
            assert after_join == expected([*names, "m3"], sites)
            before = expected(names, sites)
            moved = [site for site in sites if after_join[site] != before[site]]
            assert all(after_join[site] == "m3" for site in moved)  # only to the new one
            assert 8 <= len(moved) <= 32  # about a quarter of 80

            killed_at = asyncio.get_running_loop().time()
            joined.kill()
            await feed.all_fed_after(feed.round, timeout=STALE_AFTER_S)
            taken_over_s = asyncio.get_running_loop().time() - killed_at
            del running["m3"]
            await feed.all_fed_after(feed.round)
            assert await owners(running, http) == before  # rendezvous: back as it was
        finally:
            for task in tasks:
                task.cancel()
            await joined.stop()
        assert feed.fed_twice() == []
        assert probe.pending(CLAIMS) == []  # no pause, no release, from anyone
        print(f"a killed member's sites were fed again after {taken_over_s:.2f} s")
