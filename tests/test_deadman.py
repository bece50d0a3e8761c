"""The dead-man's switch, with p1evse as a real process that is killed (SIGKILL), hangs
(SIGSTOP) or stops cleanly (SIGTERM), a real broker, and a simulated OpenEVSE that reads
`claim/set` and publishes its claim slot on `<base>/claim` as the firmware does."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from p1evse.mqtt import Broker, MqttSettings
from p1evse.sim.charger import ChargerTopics, SimulatedCharger
from p1evse.sim.openevse import DivertSettings, OpenEvseModel
from p1evse.sinks.openevse_mqtt import PAUSE_CLAIM
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.logs import log_event
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.proxy import TcpProxy

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"
CLAIM = "openevse/claim/set"
MARKER = "p1evse/deadman"
KEEPALIVE_S = 2
PAUSED = {"priority": 500, "state": "disabled", "auto_release": False}  # OpenEVSE's claim


class Service:
    """`p1evse run` in a process of its own, configured by environment variables; its
    log lines can be waited for."""

    def __init__(self, broker: BrokerProcess, **env: str) -> None:
        """`env`: more settings, or others, as environment variables."""
        self._env = {
            **os.environ,
            "P1EVSE_MQTT__PORT": str(broker.port),
            "P1EVSE_WEB__LISTEN": "",
            "P1EVSE_PUBLISH__INTERVAL": "0",
            "P1EVSE_OPENEVSE__DEADMAN_KEEPALIVE": str(KEEPALIVE_S),
            **env,
        }
        self._loop = asyncio.get_running_loop()
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self.log: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Service:
        self.process = process = subprocess.Popen(
            [sys.executable, "-m", "p1evse", "run"],
            stderr=subprocess.PIPE,
            text=True,
            env=self._env,
        )

        def drain() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                self._loop.call_soon_threadsafe(self._lines.put_nowait, line.rstrip())

        threading.Thread(target=drain, daemon=True, name="p1evse-log").start()
        return self

    async def said(self, fragment: str) -> str:
        """The first log line from now on that holds `fragment`."""
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while fragment not in (line := await self._lines.get()):
                self.log.append(line)
        self.log.append(line)
        return line

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM, as systemd or `docker stop` sends it; the exit code."""
        assert self.process is not None
        self.process.terminate()
        try:
            return self.process.wait(EVENT_TIMEOUT_S)
        finally:
            self.kill()

    def kill(self) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def meter(probe: Probe) -> None:
    """A meter exporting 2 kW, five readings a second."""
    while True:
        probe.publish(DELIVERED, "0.000")
        probe.publish(RETURNED, "2.000")
        await asyncio.sleep(0.2)  # pacing the simulated meter


@asynccontextmanager
async def charger_and_meter(
    broker: BrokerProcess, eco: bool = True, meter_on: bool = True
) -> AsyncIterator[tuple[SimulatedCharger, Probe]]:
    """A simulated OpenEVSE on the broker; a meter publishing a reading five times a
    second (unless `meter_on` is False); and a probe that sees what goes to `claim/set`
    and the switch's marker."""
    link = Broker(
        MqttSettings(port=broker.port, client_id="sim-openevse", availability_topic="sim/st")
    )
    charger = SimulatedCharger(
        OpenEvseModel(DivertSettings(eco=eco)),
        link,
        ChargerTopics("p1evse/grid_ie", "openevse"),
        asyncio.get_running_loop().time,
    )
    link_task = asyncio.create_task(link.run())
    async with Probe(broker.port) as probe:
        await probe.subscribe(CLAIM, MARKER, "openevse/claim", "sim/st")
        await probe.wait_for_payload("sim/st", "online")

        meter_task = asyncio.create_task(meter(probe)) if meter_on else None
        try:
            yield charger, probe
        finally:
            if meter_task is not None:
                meter_task.cancel()
            await link.close()
            link_task.cancel()


async def armed(probe: Probe, service: Service) -> str:
    """The run id of the switch, once it is armed."""
    await service.said("dead-man's switch armed")
    while True:
        marker = json.loads(await probe.next_payload(MARKER, EVENT_TIMEOUT_S) or "{}")
        if marker.get("armed"):
            return str(marker["run"])


@pytest.mark.parametrize(
    ("death", "how"),
    [
        (signal.SIGKILL, "killed: the kernel closes its sockets"),
        pytest.param(signal.SIGSTOP, "hung", marks=pytest.mark.slow),  # 1.5+ keepalives
    ],
)
async def test_when_p1evse_dies_the_broker_pauses_the_charger_and_the_next_run_releases_it(
    one_broker: BrokerProcess, death: signal.Signals, how: str
) -> None:
    loop = asyncio.get_running_loop()
    async with charger_and_meter(one_broker) as (charger, probe):
        first = Service(one_broker).start()
        try:
            await armed(probe, first)
            died = loop.time()
            first.signal(death)
            assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == PAUSE_CLAIM  # the will
            after = loop.time() - died
        finally:
            first.kill()
        print(f"\n{how}: the will paused the charger {after:.1f} s after p1evse died")
        if death is signal.SIGSTOP:  # only the keepalive can tell: 1.5 keepalives at least
            assert after >= 1.5 * KEEPALIVE_S - 0.5
        await probe.wait_for_payload("openevse/claim", json.dumps(PAUSED))  # its claim slot
        assert charger.mqtt_claim == {"state": "disabled"}
        assert not charger.model.pilot()  # paused

        second = Service(one_broker).start()
        try:
            await second.said("the last run of p1evse ended without disarming")
            await second.said("released the pause left by the dead-man's switch's will")
            assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == "release"
            await probe.wait_for_payload("openevse/claim", '{"state": "null"}')
            assert charger.mqtt_claim == {}
        finally:
            assert second.stop() == 0


async def test_a_stop_while_the_meter_is_silent_leaves_the_charger_paused_for_the_next_run(
    one_broker: BrokerProcess,
) -> None:
    """Released on the way out, the charger would charge on at its last rate with no one
    feeding it: the pause stays, the marker says so, and the next run releases it once
    its readings are fresh."""
    silent = {"P1EVSE_PUBLISH__STALE_AFTER": "2"}
    async with charger_and_meter(one_broker, meter_on=False) as (charger, probe):
        first = Service(one_broker, **silent).start()
        try:
            await first.said("paused charging")
        finally:
            assert first.stop() == 0
        await first.said("the charger stays paused")
        marker = json.loads(await probe.next_payload(MARKER, EVENT_TIMEOUT_S) or "{}")
        while "paused" not in marker:  # the armed one came first
            marker = json.loads(await probe.next_payload(MARKER, EVENT_TIMEOUT_S) or "{}")
        assert marker["paused"] is True
        await probe.wait_for_payload("openevse/claim", json.dumps(PAUSED))  # its claim slot
        assert charger.mqtt_claim == {"state": "disabled"}
        assert "release" not in probe.pending(CLAIM)

        # a run stopped before its own stale guard acted passes the pause on
        between = Service(one_broker, P1EVSE_PUBLISH__STALE_AFTER="600").start()
        try:
            await between.said("left the charger paused")
        finally:
            assert between.stop() == 0
        marker = json.loads(await probe.next_payload(MARKER, EVENT_TIMEOUT_S) or "{}")
        while "paused" not in marker:  # its armed one came first
            marker = json.loads(await probe.next_payload(MARKER, EVENT_TIMEOUT_S) or "{}")

        back = asyncio.create_task(meter(probe))  # the meter is back
        second = Service(one_broker, **silent).start()
        try:
            await second.said("stopped while its meter was silent and left the charger paused")
            await second.said("released the pause left by a run stopped while stale")
            await probe.wait_for_payload("openevse/claim", '{"state": "null"}')
            assert charger.mqtt_claim == {}
        finally:
            back.cancel()
            assert second.stop() == 0


async def test_a_claim_someone_else_set_meanwhile_is_never_released(
    one_broker: BrokerProcess,
) -> None:
    async with charger_and_meter(one_broker) as (charger, probe):
        first = Service(one_broker).start()
        try:
            await armed(probe, first)
            first.signal(signal.SIGKILL)
            assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == PAUSE_CLAIM
        finally:
            first.kill()
        probe.publish(CLAIM, '{"charge_current": 10}')  # a user, on the shared MQTT slot
        await probe.wait_for_payload(
            "openevse/claim",
            json.dumps(
                {"priority": 500, "state": "disabled", "charge_current": 10, "auto_release": False}
            ),
        )
        second = Service(one_broker).start()
        try:
            await second.said("not releasing OpenEVSE's MQTT claim")
            assert charger.mqtt_claim == {"state": "disabled", "charge_current": 10}
            assert "release" not in probe.pending(CLAIM)
        finally:
            assert second.stop() == 0


async def test_a_clean_stop_disarms_it(one_broker: BrokerProcess) -> None:
    async with charger_and_meter(one_broker) as (charger, probe):
        service = Service(one_broker).start()
        try:
            await armed(probe, service)
        finally:
            assert service.stop() == 0
        await service.said("dead-man's switch disarmed")  # its log, read after it ended
        assert await probe.next_payload(MARKER, EVENT_TIMEOUT_S) == ""  # the marker is gone
        probe.publish(CLAIM, "after")  # no will came before this
        claims = [await probe.next_payload(CLAIM, EVENT_TIMEOUT_S)]
        while claims[-1] != "after":
            claims.append(await probe.next_payload(CLAIM, EVENT_TIMEOUT_S))
        assert PAUSE_CLAIM not in claims
        assert charger.mqtt_claim == {}


async def test_a_charger_in_normal_mode_is_not_paused_by_a_dead_p1evse(
    one_broker: BrokerProcess,
) -> None:
    async with charger_and_meter(one_broker, eco=False) as (charger, probe):
        service = Service(one_broker).start()
        try:
            await service.said("connected to MQTT broker")
            while True:  # the switch connects without a will while the mode is normal
                marker = json.loads(await probe.next_payload(MARKER, EVENT_TIMEOUT_S) or "{}")
                if marker.get("armed") is False:
                    break
        finally:
            service.kill()
        probe.publish(CLAIM, "after")
        assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == "after"
        assert charger.mqtt_claim == {}


async def test_a_network_cut_pauses_and_the_reconnected_run_releases(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Between p1evse and the broker, a cut looks like a death: the will pauses the
    charger (nothing can feed it now); once p1evse is back and fresh, it releases."""
    caplog.set_level(logging.INFO, logger="p1evse")
    async with (
        charger_and_meter(one_broker) as (charger, probe),
        TcpProxy(one_broker.port) as proxy,
    ):
        settings = settings_for(
            one_broker,
            mqtt={"port": proxy.port},
            publish={"interval": 0},
            openevse={"deadman_keepalive": KEEPALIVE_S},
        )
        with log_event("dead-man's switch armed") as armed_event:
            async with running(settings):
                await asyncio.wait_for(armed_event.wait(), EVENT_TIMEOUT_S)
                with log_event("released the pause left by the dead-man's switch's will") as freed:
                    proxy.cut()
                    assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == PAUSE_CLAIM
                    await probe.wait_for_payload("openevse/claim", json.dumps(PAUSED))
                    await proxy.restore()
                    await asyncio.wait_for(freed.wait(), EVENT_TIMEOUT_S)
                    assert await probe.next_payload(CLAIM, EVENT_TIMEOUT_S) == "release"
        await probe.wait_for_payload("openevse/claim", '{"state": "null"}')
        assert charger.mqtt_claim == {}
