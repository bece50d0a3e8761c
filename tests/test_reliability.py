"""Faults a 24/7 service meets: a broker crash under load, and many stale cycles."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import tracemalloc
from pathlib import Path

import pytest

from p1evse.backoff import Backoff
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.probe import EVENT_TIMEOUT_S, Probe

DELIVERED = "dsmr/reading/electricity_currently_delivered"
GRID_IE = "p1evse/grid_ie"
CLAIM = "openevse/claim/set"
STATUS = "p1evse/status"
SRC = str(Path(__file__).resolve().parent.parent / "src")


async def load(probe: Probe, values: range, rate_hz: float) -> None:
    """A meter reader publishing distinct readings (W as kW text) at `rate_hz`."""
    for watts in values:
        probe.publish(DELIVERED, f"{watts / 1000:.3f}")
        await asyncio.sleep(1 / rate_hz)  # pacing the simulated meter


async def received(probe: Probe, count: int) -> list[int]:
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        return [int(await probe.next_payload(GRID_IE)) for _ in range(count)]


async def test_broker_killed_under_load_resumes_and_loses_nothing_after(
    broker: BrokerProcess,
) -> None:
    settings = settings_for(broker, publish={"interval": 0})
    async with running(settings) as app:
        async with Probe(broker.port) as probe:
            await probe.subscribe(GRID_IE, STATUS)
            await probe.wait_for_payload(STATUS, "online")
            meter = asyncio.create_task(load(probe, range(1001, 10_000), rate_hz=100))
            assert len(await received(probe, 50)) == 50
            broker.kill()  # mid-stream
            meter.cancel()
        broker.start()
        loop = asyncio.get_running_loop()
        restarted = loop.time()
        async with Probe(broker.port) as probe:
            await probe.subscribe(GRID_IE, STATUS)
            await probe.wait_for_payload(STATUS, "online")
            back_after = loop.time() - restarted
            values = range(20_001, 20_201)
            await load(probe, values, rate_hz=100)
            assert await received(probe, len(values)) == list(values)
    assert back_after < Backoff().cap_s  # reconnect tries never lie further apart
    assert app.broker.stats.drops == 1
    assert app.broker.stats.connects == 2


@pytest.mark.slow  # 110 stale cycles
@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_hundred_stale_cycles_leak_no_tasks_files_or_memory(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # pytest keeps every captured log record (and the strings in it): not p1evse's memory
    caplog.set_level(logging.ERROR, logger="p1evse")
    publish = {"interval": 0, "stale_after": 0.05, "pair_window": 0.0}
    settings = settings_for(broker, publish=publish)

    async def cycle(probe: Probe, watts: int) -> None:
        assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
        probe.publish(DELIVERED, f"{watts / 1000:.3f}")
        assert await probe.next_payload(CLAIM) == "release"
        assert await probe.next_payload(GRID_IE) == str(watts)

    def footprint() -> tuple[int, int, int]:
        gc.collect()  # sockets other tests left to the collector must not count here
        in_p1evse = tracemalloc.Filter(True, f"{SRC}/*")
        snapshot = tracemalloc.take_snapshot().filter_traces([in_p1evse])
        memory = sum(stat.size for stat in snapshot.statistics("filename"))
        return len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd")), memory

    async with running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe(CLAIM, GRID_IE)
        for warm_up in range(10):
            await cycle(probe, 100 + warm_up)
        tracemalloc.start()
        try:
            before = footprint()
            for n in range(100):
                await cycle(probe, 200 + n)
            after = footprint()
        finally:
            tracemalloc.stop()
        # the meter is silent again after the last cycle: the 111th stale, and no more
        assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
        assert app.site.bridge.pipeline.counters.stale_entered == 111
    tasks, files, memory = (b - a for a, b in zip(before, after, strict=True))
    assert tasks == 0
    assert files == 0
    assert memory < 8_000, f"p1evse's own allocations grew by {memory} bytes in 100 cycles"
