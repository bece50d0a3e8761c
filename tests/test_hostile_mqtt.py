"""What an attacker (or a broken device) on the broker can do to the service: garbage on
the charger's topics, floods on Home Assistant's discovery topics, a broker that refuses
a subscription, and a part of the service that fails. None of it ends the service, floods
its log or hides from /healthz."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from amqtt.broker import Broker as AmqttBroker

from p1evse.app import FleetApp
from p1evse.model import Rejection
from p1evse.mqtt import MAX_UNSENT_BYTES, Broker, MqttSettings
from p1evse.mqtt_packets import MAX_PACKET_BYTES
from p1evse.sim.broker import free_port
from tests.brokers import BrokerProcess
from tests.conftest import running, serving, settings_for
from tests.logs import log_event
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.test_fleet import fleet_settings
from tests.waiting import state_holds

DELIVERED = "dsmr/reading/electricity_currently_delivered"
GRID_IE = "p1evse/grid_ie"
STATUS = "p1evse/status"


async def ready(probe: Probe) -> None:
    await probe.subscribe(STATUS, GRID_IE)
    await probe.wait_for_payload(STATUS, "online")


async def test_garbage_on_the_chargers_topics_is_counted_never_a_traceback(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1evse")
    settings = settings_for(one_broker, publish={"interval": 0})
    async with running(settings) as app, Probe(one_broker.port) as probe:
        await ready(probe)
        for _ in range(300):
            probe.publish("openevse/amp", b"[" * 30 + b"]" * 30)
            probe.publish("openevse/state", b"9" * 400)
            probe.publish("openevse/divertmode", b"1e999")
            probe.publish("openevse/pilot", b'{"a": 1, "a": 2}')
        probe.publish("openevse/amp", b"5000")
        probe.publish(DELIVERED, "0.100")  # read after all the above, in order
        assert await probe.next_payload(GRID_IE, EVENT_TIMEOUT_S) == "100"
    assert app.site.charger.amps == 5.0
    assert app.site.charger.rejected == {
        Rejection.NOT_A_NUMBER: 300,  # a list where a number belongs
        Rejection.TOO_LONG: 300,
        Rejection.NON_FINITE: 300,
        Rejection.BAD_JSON: 300,  # a key given twice
    }
    refused = [r for r in caplog.records if "refused a report from OpenEVSE" in r.getMessage()]
    assert len(refused) == 4  # once a minute per reason
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_message_too_long_to_read_is_said_once_and_skipped(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(one_broker, publish={"interval": 0})
    async with running(settings) as app, Probe(one_broker.port) as probe:
        await ready(probe)
        for _ in range(3):
            probe.publish(DELIVERED, b"1" * (MAX_PACKET_BYTES + 1))
        probe.publish(DELIVERED, "0.100")  # read after the three, in order
        assert await probe.next_payload(GRID_IE, EVENT_TIMEOUT_S) == "100"
        assert app.broker.stats.oversized_skipped == 3
    said = [r.getMessage() for r in caplog.records if "skipped unread" in r.getMessage()]
    assert said == [
        f"MQTT broker 127.0.0.1:{one_broker.port} sent a message over {MAX_PACKET_BYTES} "
        "bytes, more than any p1evse reads: skipped unread"
    ]


async def test_with_discovery_off_its_topics_are_read_once_at_start_up(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1evse")
    topic = "homeassistant/sensor/p1evse/grid_power/config"
    settings = settings_for(one_broker, publish={"interval": 0})
    async with running(settings), Probe(one_broker.port) as probe:
        await ready(probe)
        await probe.subscribe(topic)
        for n in range(1000):
            probe.publish(topic, f'{{"garbage": {n}}}')
        probe.publish(DELIVERED, "0.500")  # after the flood, on the service's own topic
        # the service has read past the flood: anything it said about it came before this
        assert await probe.next_payload(GRID_IE, EVENT_TIMEOUT_S) == "500"
        received = [await probe.next_payload(topic) for _ in range(1000)]
        assert "" not in received + probe.pending(topic)  # it never removed a "config"
    assert not [r for r in caplog.records if "discovery" in r.getMessage()]


@asynccontextmanager
async def broker_refusing(topic: str) -> AsyncIterator[int]:
    """An amqtt broker whose topic filter refuses subscriptions to `topic` (as an ACL
    would): it answers SUBACK 0x80."""
    port = free_port()
    broker = AmqttBroker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                "amqtt.plugins.topic_checking.TopicTabooPlugin": {},
            },
        }
    )
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()


async def test_a_refused_subscription_is_an_error_health_reports() -> None:
    """`prohibited` is one of the topics amqtt's taboo plugin refuses."""
    async with broker_refusing("prohibited") as port:
        settings = settings_for(
            BrokerPort(port),
            source={"type": "mqtt_value", "topic": "prohibited"},
        )
        async with running(settings) as app:
            state = app.site.state
            assert state is not None  # it serves the state topic
            await state_holds(state, lambda: bool(state.problems))
            problem = state.unhealthy(asyncio.get_running_loop().time())
    assert problem == ("the MQTT broker refused the subscription to prohibited (Unspecified error)")


@pytest.mark.filterwarnings("ignore:The 'acl' option is deprecated")
async def test_a_fleet_deaf_to_its_meters_says_so_on_healthz() -> None:
    """The broker lets p1evse read its own topics and the chargers', not the meters'."""
    port = free_port()
    acl = {"anonymous": ["p1evse/#", "openevse/#"]}
    broker = AmqttBroker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                # "acl": what this amqtt's plugin takes for subscriptions (it warns that
                # a later one takes "subscribe-acl")
                "amqtt.plugins.topic_checking.TopicAccessControlListPlugin": {"acl": acl},
            },
        }
    )
    await broker.start()
    listen = f"127.0.0.1:{free_port()}"
    try:
        app = FleetApp(
            fleet_settings(BrokerPort(port), web={"listen": listen}), asyncio.get_running_loop()
        )
        refused = asyncio.Event()
        app.broker.on_problem(lambda _, problem: refused.set() if problem else None)
        async with serving(app), aiohttp.ClientSession() as http:
            assert app.web is not None
            await asyncio.wait_for(app.web.listening.wait(), EVENT_TIMEOUT_S)
            await asyncio.wait_for(refused.wait(), EVENT_TIMEOUT_S)
            async with http.get(f"http://{listen}/healthz") as response:
                status, body = response.status, await response.text()
    finally:
        await broker.shutdown()
    assert status == 503
    assert body.startswith(
        "unhealthy: the MQTT broker refused the subscription to "
        "dsmr/+/reading/electricity_currently_delivered"
    )


class BrokerPort:
    """Enough of a BrokerProcess for `settings_for`: a broker this test runs itself."""

    def __init__(self, port: int) -> None:
        self.port = port


class FailingSource:
    """A source with a bug: it fails every time it starts."""

    def __init__(self, starts: int) -> None:
        self.starts = 0
        self.started_again = asyncio.Event()  # set at the `starts`-th start
        self._wanted = starts

    async def run(self, intake: object) -> None:
        self.starts += 1
        if self.starts == self._wanted:
            self.started_again.set()
        raise RuntimeError(f"bug number {self.starts}")


async def test_a_failing_task_is_restarted_and_named_by_health(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1evse")
    source = FailingSource(starts=3)
    async with running(settings_for(one_broker), source=source) as app:
        assert app.site.state is not None
        await asyncio.wait_for(source.started_again.wait(), EVENT_TIMEOUT_S)  # restarted twice
        problem = app.site.state.unhealthy(asyncio.get_running_loop().time())
        assert problem is not None
        assert problem.startswith("task source:mqtt_split failed (RuntimeError: bug number")
        assert app.broker.connected  # the rest of the service goes on
    failures = [r for r in caplog.records if "task source:mqtt_split failed" in r.getMessage()]
    assert len(failures) == 1  # the same cause is logged once
    assert failures[0].exc_info is not None  # with its traceback


async def test_a_broker_that_stops_reading_costs_bounded_memory() -> None:
    """A broker that takes the connection and then reads no more: what cannot be sent
    piles up to a bound, then values are dropped and counted, never held without end."""
    stalled: list[asyncio.Transport] = []

    class Stalling(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            stalled.append(transport)

        def data_received(self, data: bytes) -> None:
            if data[0] == 0x10:  # CONNECT: accepted, and then nothing is read again
                stalled[0].write(b"\x20\x02\x00\x00")
                stalled[0].pause_reading()

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stalling, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broker = Broker(MqttSettings(port=port), announce=False)
    try:
        await broker.connect_once()
        payload = "x" * 1000
        async with asyncio.timeout(EVENT_TIMEOUT_S):
            while broker.stats.unsent == 0:
                for _ in range(1000):
                    broker.publish("p1evse/grid_ie", payload)
                await asyncio.sleep(0)  # the flush runs
        assert len(broker._out) <= MAX_UNSENT_BYTES + 1100
    finally:
        await broker.close(timeout=0.1)
        server.close()


async def test_a_broker_shutting_down_is_not_taken_for_a_second_client(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker stopped seconds after p1evse connected was logged as "is another client
    connected with client id …?"; it is a lost connection, and the broker is then down."""
    caplog.set_level(logging.INFO, logger="p1evse.mqtt")
    broker = Broker(MqttSettings(port=one_broker.port), announce=False)
    connected = asyncio.Event()
    broker.on_connected(connected.set)
    task = asyncio.create_task(broker.run())
    try:
        await asyncio.wait_for(connected.wait(), EVENT_TIMEOUT_S)
        with log_event("; retrying") as retrying:  # the broker is down
            one_broker.stop()
            await asyncio.wait_for(retrying.wait(), EVENT_TIMEOUT_S)
    finally:
        await broker.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "lost MQTT broker 127.0.0.1:" in caplog.text
    assert "another client" not in caplog.text


async def test_two_connections_with_one_client_id_take_turns_slowly_and_say_why(
    one_broker: BrokerProcess,
) -> None:
    """A broker keeps the newer of two connections with one client id. Each then
    reconnects and throws the other out: without a wait after a short connection that is
    hundreds of connections a second."""
    settings = MqttSettings(port=one_broker.port, client_id="p1evse-twin")
    first, second = Broker(settings, announce=False), Broker(settings, announce=False)
    thrown_out = asyncio.Event()
    drops = 0

    def dropped() -> None:
        nonlocal drops
        drops += 1
        if drops == 3:
            thrown_out.set()

    first.on_disconnected(dropped)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with log_event("is another client connected with client id 'p1evse-twin'?") as said:
        tasks = [asyncio.create_task(broker.run()) for broker in (first, second)]
        try:
            await asyncio.wait_for(thrown_out.wait(), EVENT_TIMEOUT_S)
            took = loop.time() - began
        finally:
            for broker in (first, second):
                await broker.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert said.is_set()
    # the waits after its first two short connections: at least 0.25 s and 0.5 s
    assert took >= 0.7


class _ClosedByItsWrite:
    """paho when a write finds the connection gone (EPIPE after the broker dropped a
    process frozen past its keepalive): it closes the socket, packets still queued."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def socket(self) -> socket.socket:
        return self._sock

    def loop_write(self) -> None:
        self._sock.close()

    def want_write(self) -> bool:
        return True


async def test_a_write_that_finds_the_connection_gone_leaves_no_writer_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer was added for the closed socket's fd, -1: every later flush and removal
    raised, thousands of tracebacks a second after a suspended NAS woke up."""
    broker = Broker(MqttSettings(port=free_port()))
    mine, theirs = socket.socketpair()
    monkeypatch.setattr(broker, "_client", _ClosedByItsWrite(mine))
    monkeypatch.setattr(broker, "_loop", asyncio.get_running_loop())
    with theirs:
        broker._flush()
        broker._remove_writer()  # as the reconnect does
