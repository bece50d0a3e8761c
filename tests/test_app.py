"""The service end to end against a real broker (mosquitto and amqtt), driven by a real
client: the sign and format, the averaging, broker restarts, bad payloads, the log."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from p1evse.backoff import Backoff
from p1evse.model import Reading, Rejection
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.logs import log_event
from tests.payloads import DELIVERED, GRID_IE, RETURNED, STATUS, ready
from tests.probe import EVENT_TIMEOUT_S, Probe


async def test_end_to_end_sign_and_format(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"interval": 0})
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        probe.publish(DELIVERED, "1.234")
        message = await probe.next(GRID_IE)
        assert message.payload == b"1234"
        if broker.kind == "mosquitto":  # amqtt delivers at the subscription's QoS
            assert message.qos == 0  # subscribed at QoS 1: the bridge published at QoS 0
        assert not message.retain
        probe.publish(RETURNED, "0.567")
        probe.publish(DELIVERED, "0.000")
        assert await probe.next_payload(GRID_IE) == "-567"
        probe.publish(RETURNED, "0.000")
        assert await probe.next_payload(GRID_IE) == "0"


async def test_watts_unit_and_reserve(broker: BrokerProcess) -> None:
    settings = settings_for(broker, source={"unit": "W"}, publish={"interval": 0, "reserve_w": 100})
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        probe.publish(RETURNED, "2000")
        assert await probe.next_payload(GRID_IE) == "-1900"


@pytest.mark.slow  # a 1 Hz meter for five seconds of real time
async def test_one_hz_input_is_averaged_over_five_seconds(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"interval": 5})
    async with running(settings) as app, Probe(broker.port) as probe:
        readings: list[Reading] = []
        app.site.bridge.observers.append(
            lambda e: readings.append(e) if isinstance(e, Reading) else 0
        )
        await probe.subscribe(GRID_IE)
        await ready(probe)
        loop = asyncio.get_running_loop()
        probe.publish(DELIVERED, "1.000")
        assert await probe.next_payload(GRID_IE) == "1000"  # the first goes out at once
        started = loop.time()
        for kw in ("1.100", "1.200", "1.300", "1.400", "1.500"):
            await asyncio.sleep(1.0)  # pacing the simulated 1 Hz meter
            probe.publish(DELIVERED, kw)
        mean = int(await probe.next_payload(GRID_IE))
        assert loop.time() - started >= 5.0
        # time-weighted: each reading stands for the time since the one before it, as the
        # service saw them arrive (about 1 s apart, more or less on a busy machine)
        weights = [b.at - a.at for a, b in itertools.pairwise(readings)]
        weighted = sum(w * r.import_w for w, r in zip(weights, readings[1:], strict=True))
        assert mean == round(weighted / sum(weights))
        assert abs(mean - 1300) <= 100  # and near the plain mean for a steady meter
        assert probe.pending(GRID_IE) == []


async def test_publishing_resumes_after_a_broker_restart(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"interval": 0})
    async with running(settings) as app:
        async with Probe(broker.port) as probe:
            await probe.subscribe(GRID_IE)
            await ready(probe)
            probe.publish(DELIVERED, "0.500")
            assert await probe.next_payload(GRID_IE) == "500"
        broker.stop()
        broker.start()
        loop = asyncio.get_running_loop()
        restarted = loop.time()
        async with Probe(broker.port) as probe:
            await probe.subscribe(GRID_IE)
            await probe.subscribe(STATUS)
            await probe.wait_for_payload(STATUS, "online")
            probe.publish(DELIVERED, "0.600")
            assert await probe.next_payload(GRID_IE) == "600"
        assert loop.time() - restarted < Backoff().cap_s  # reconnect tries never lie further apart
        assert app.broker.stats.drops == 1
        assert app.broker.stats.connects == 2


# every way a plain-number payload can be wrong
SPLIT_REJECTIONS = {
    Rejection.NOT_UTF8,
    Rejection.TOO_LONG,
    Rejection.NOT_A_NUMBER,
    Rejection.NON_FINITE,
    Rejection.NEGATIVE,
    Rejection.IMPLAUSIBLE,
}
BAD_PAYLOADS = [
    b"",
    b"abc",
    b"nan",
    b"inf",
    b"-1",
    b"1e400",
    b"1,5",
    b"\x8f" * 10_000,
    b"\xff\xfe\xfd",
    b"99999",  # 99 999 kW: far above max_power_w
]


async def test_bad_payloads_never_reach_the_output(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p1evse")
    settings = settings_for(broker, publish={"interval": 0})
    async with running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        for payload in BAD_PAYLOADS * 2:
            probe.publish(DELIVERED, payload)
        probe.publish(DELIVERED, "0.321")  # the messages of one client arrive in order
        assert await probe.next_payload(GRID_IE) == "321"
        assert probe.pending(GRID_IE) == []
        rejected = app.site.bridge.pipeline.counters.rejected
        assert sum(rejected.values()) == 2 * len(BAD_PAYLOADS)
        assert set(rejected) == SPLIT_REJECTIONS
    # each kind of rejection is logged once, not per message
    reports = [r.getMessage() for r in caplog.records if "rejected input" in r.getMessage()]
    assert len(reports) == len(SPLIT_REJECTIONS)
    assert any("wrong unit?" in report for report in reports)


async def test_debug_log_shows_every_message(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1evse")
    settings = settings_for(broker, publish={"interval": 0})
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        probe.publish(RETURNED, "0.250")
        assert await probe.next_payload(GRID_IE) == "-250"
    assert "export 250 W" in caplog.text
    assert "publish -250 W (mean of 1 reading)" in caplog.text


async def test_started_before_the_broker_it_connects_when_the_broker_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p1evse")
    broker = BrokerProcess("amqtt", tmp_path)
    settings = settings_for(broker, publish={"interval": 0})
    try:
        with log_event("retrying") as refused:
            async with running(settings):
                await asyncio.wait_for(refused.wait(), EVENT_TIMEOUT_S)  # found no broker
                broker.start()
                async with Probe(broker.port) as probe:
                    await probe.subscribe(GRID_IE, STATUS)
                    await probe.wait_for_payload(STATUS, "online")
                    probe.publish(DELIVERED, "0.100")
                    assert await probe.next_payload(GRID_IE) == "100"
    finally:
        broker.stop()  # after the service: its loss would be one more state change
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "retrying" in m]) == 1  # once per state change
    assert any(m.startswith("connected to MQTT broker") for m in messages)
