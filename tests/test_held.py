"""A p1evse that could not run for a while (SIGSTOP, as a suspended container or VM, or
a machine swapping, leaves it) is not fooled into taking that time for the meter's
silence: on resume it reads what the meter sent meanwhile and sends no pause ahead of
it; a meter that did go quiet is still paused, once p1evse has run `stale_after`
without it. A real process, a real broker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from p1evse.sinks.openevse_mqtt import PAUSE_CLAIM
from tests.brokers import BrokerProcess
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_deadman import CLAIM, DELIVERED, RETURNED, Service

STALE_AFTER_S = 2.0
HELD_S = 2.5 * STALE_AFTER_S  # how long p1evse is stopped
METER_PERIOD_S = 0.2

pytestmark = pytest.mark.slow  # a process stopped for seconds of real time


@dataclass(frozen=True)
class Layout:
    """One site, or one of a fleet's: where its meter and charger are."""

    delivered: str = DELIVERED
    returned: str = RETURNED
    grid_ie: str = "p1evse/grid_ie"
    claim: str = CLAIM
    env: dict[str, str] = field(default_factory=dict)


ONE_SITE = Layout()
FLEET_SITE = Layout(
    "dsmr/home/reading/electricity_currently_delivered",
    "dsmr/home/reading/electricity_currently_returned",
    "p1evse/home/grid_ie",
    "openevse/home/claim/set",
    {
        "P1EVSE_SOURCE__DELIVERED_TOPIC": "dsmr/+/reading/electricity_currently_delivered",
        "P1EVSE_SOURCE__RETURNED_TOPIC": "dsmr/+/reading/electricity_currently_returned",
        "P1EVSE_OPENEVSE__GRID_IE_TOPIC": "p1evse/{site}/grid_ie",
        "P1EVSE_OPENEVSE__BASE_TOPIC": "openevse/{site}",
        "P1EVSE_MQTT__CLIENT_ID": "p1evse-held",
        "P1EVSE_MQTT__STATE_TOPIC": "p1evse/{site}/state",
    },
)


class Meter:
    """DSMR-reader's two topics, a reading every `METER_PERIOD_S`, of `kw` imported."""

    def __init__(self, probe: Probe, layout: Layout) -> None:
        self.kw = 0.5
        self._probe = probe
        self._layout = layout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            self._probe.publish(self._layout.delivered, f"{self.kw:.3f}")
            self._probe.publish(self._layout.returned, "0.000")
            await asyncio.sleep(METER_PERIOD_S)  # pacing the simulated meter


@asynccontextmanager
async def running(
    broker: BrokerProcess, layout: Layout
) -> AsyncIterator[tuple[Service, Probe, Meter]]:
    async with Probe(broker.port) as probe:
        await probe.subscribe(layout.claim, layout.grid_ie)
        meter = Meter(probe, layout)
        meter.start()
        service = Service(
            broker,
            P1EVSE_PUBLISH__STALE_AFTER=str(STALE_AFTER_S),
            P1EVSE_OPENEVSE__DEADMAN="false",  # its keepalive is not what this is about
            **layout.env,
        ).start()
        try:
            await probe.wait_for_payload(layout.grid_ie, "500")
            yield service, probe, meter
        finally:
            meter.stop()
            service.signal(signal.SIGCONT)
            assert service.stop() == 0


async def claims_until_now(probe: Probe, topic: str) -> list[str]:
    """Every claim p1evse sent so far: a marker of the test's own, sent last, ends them."""
    probe.publish(topic, "marker")
    claims = [await probe.next_payload(topic, EVENT_TIMEOUT_S)]
    while claims[-1] != "marker":
        claims.append(await probe.next_payload(topic, EVENT_TIMEOUT_S))
    return claims[:-1]


@pytest.mark.parametrize("layout", [ONE_SITE, FLEET_SITE], ids=["one site", "a fleet's site"])
async def test_readings_that_waited_while_p1evse_was_stopped_are_read_with_no_pause(
    one_broker: BrokerProcess, layout: Layout
) -> None:
    async with running(one_broker, layout) as (service, probe, meter):
        service.signal(signal.SIGSTOP)
        await asyncio.sleep(HELD_S)  # stopped this long, the meter going on
        meter.kw = 1.234  # what the meter says from now on
        service.signal(signal.SIGCONT)
        await probe.wait_for_payload(layout.grid_ie, "1234", EVENT_TIMEOUT_S)
        assert await claims_until_now(probe, layout.claim) == []  # no pause, no release


async def test_a_meter_that_went_quiet_meanwhile_is_paused_once_p1evse_ran_without_it(
    one_broker: BrokerProcess,
) -> None:
    loop = asyncio.get_running_loop()
    async with running(one_broker, ONE_SITE) as (service, probe, meter):
        meter.stop()
        service.signal(signal.SIGSTOP)
        await asyncio.sleep(HELD_S)
        service.signal(signal.SIGCONT)
        resumed = loop.time()
        assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == PAUSE_CLAIM
        # not at once on resume: after stale_after of running time, less what ran
        # before the stop (at most a meter period and the signal's way)
        assert loop.time() - resumed > STALE_AFTER_S / 2
        line = await service.said("no valid reading for")
        assert "on_stale: pause" in line
