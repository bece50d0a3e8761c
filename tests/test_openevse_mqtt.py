"""The OpenEVSE MQTT sink in a running service against a real broker: the feed, the
shaper's and the voltage's, the pause claim (and never a release of another client's),
the charger read back, and no pause blip when the broker comes back."""

from __future__ import annotations

import asyncio
import logging

import pytest

import p1evse.app as app_module
from p1evse.model import StaleAction, StaleEntered, StaleLeft
from p1evse.sim.virtual import VirtualBroker, VirtualClock
from p1evse.sinks.charger import ChargerState, OpenevseSettings
from p1evse.sinks.openevse_mqtt import CLAIM_AGAIN_GAP_S, PAUSE_CLAIM, RELEASE, OpenEvseMqttSink
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.logs import log_event
from tests.payloads import (
    CLAIM,
    DELIVERED,
    GRID_IE,
    JSON_SOURCE,
    JSON_TOPIC,
    RETURNED,
    STATUS,
    TELEGRAM_JSON,
    ready,
)
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.proxy import TcpProxy


async def test_stale_pause_claim_and_release_cycle(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"interval": 0, "stale_after": 1.0, "pair_window": 0.1})
    async with running(settings) as app, Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE, CLAIM)
        await ready(probe)
        # no reading since start-up: paused
        assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
        for cycle in range(2):
            probe.publish(RETURNED, f"0.{cycle + 3}00")
            assert await probe.next_payload(CLAIM) == "release"
            assert await probe.next_payload(GRID_IE) == f"-{cycle + 3}00"
            assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
        assert app.site.bridge.pipeline.counters.stale_entered == 3


async def test_shaper_gets_the_same_value(broker: BrokerProcess) -> None:
    settings = settings_for(broker, publish={"interval": 0}, openevse={"shaper": True})
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE, "p1evse/live_pwr")
        await ready(probe)
        probe.publish(DELIVERED, "2.500")
        assert await probe.next_payload(GRID_IE) == "2500"
        assert await probe.next_payload("p1evse/live_pwr") == "2500"


async def test_one_topic_for_divert_and_the_shaper_gets_each_value_once(
    broker: BrokerProcess,
) -> None:
    """OpenEVSE lets one topic drive both; sent twice, the charger took each value twice."""
    openevse = {"shaper": True, "live_pwr_topic": GRID_IE}
    settings = settings_for(broker, publish={"interval": 0}, openevse=openevse)
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe(GRID_IE)
        await ready(probe)
        probe.publish(DELIVERED, "2.500")
        assert await probe.next_payload(GRID_IE) == "2500"
        probe.publish(DELIVERED, "1.500")
        assert await probe.next_payload(GRID_IE) == "1500"  # not 2500 again


async def test_the_charger_is_read_back_and_normal_mode_is_not_paused(
    broker: BrokerProcess,
) -> None:
    # time to report the mode before the stale guard acts (reports are read live only)
    publish = {"interval": 0, "stale_after": 3.0, "pair_window": 0.1}
    settings = settings_for(broker, publish=publish)
    async with Probe(broker.port) as probe:
        await probe.subscribe(CLAIM)
        with log_event("normal mode: not pausing it") as spared:
            async with running(settings) as app:
                await ready(probe)
                # what OpenEVSE publishes under its base topic
                for field, value in [
                    ("amp", "16000"),
                    ("pilot", "16"),
                    ("state", "3"),
                    ("divert_active", "false"),
                    ("divertmode", "1"),
                ]:
                    probe.publish(f"openevse/{field}", value)
                await asyncio.wait_for(spared.wait(), EVENT_TIMEOUT_S)
                assert app.site.charger.amps == 16.0
                assert app.site.charger.state == 3
                assert app.site.charger.divert_active is False
                probe.publish("openevse/divertmode", "2")  # the user switches to Eco
                assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
                probe.publish("openevse/divertmode", "1")  # and back: released
                assert await probe.next_payload(CLAIM) == "release"
        assert probe.pending(CLAIM) == []


async def test_a_retained_report_of_normal_mode_spares_nothing(broker: BrokerProcess) -> None:
    """What the broker holds may be of a charger long gone: a run acts on live reports."""
    publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
    async with Probe(broker.port) as probe:
        await probe.subscribe(CLAIM)
        probe.publish("openevse/divertmode", "1", retain=True)
        probe.publish("openevse/amp", "32000", retain=True)
        try:
            async with running(settings_for(broker, publish=publish)) as app:
                assert await probe.next_payload(CLAIM) == '{"state":"disabled"}'
                assert app.site.charger.divertmode is None
                assert app.site.charger.amps is None
        finally:
            probe.publish("openevse/divertmode", "", retain=True)  # removed
            probe.publish("openevse/amp", "", retain=True)


async def test_a_claim_p1evse_never_set_is_never_released(broker: BrokerProcess) -> None:
    """OpenEVSE has one MQTT claim slot for every client: a release from p1evse that
    did not claim would end another client's claim. (The dead-man's switch is off: on a
    broker too slow to take its goodbye within the shutdown's second, its will pauses the
    charger, as test_deadman.py shows; this is about the feed's own claims.)"""
    settings = settings_for(broker, publish={"interval": 0}, openevse={"deadman": False})
    async with Probe(broker.port) as probe:
        await probe.subscribe(CLAIM, STATUS)
        async with running(settings):
            await probe.wait_for_payload(STATUS, "online")
            probe.publish(DELIVERED, "0.100")
        await probe.wait_for_payload(STATUS, "offline")  # after any release would have been
        assert probe.pending(CLAIM) == []


async def test_no_pause_blip_when_the_broker_comes_back(one_broker: BrokerProcess) -> None:
    """The broker went away long enough for the stale guard to fire; the readings were
    only missing because the broker was. On reconnect the pause waits for them (the
    stale timeout), instead of going out at once and being released a moment later."""
    settings = settings_for(
        one_broker,
        publish={"interval": 0, "stale_after": 2.0, "pair_window": 0.1},
        # a cut connection makes the broker publish the dead-man's will: test_deadman.py
        openevse={"deadman": False},
    )
    async with TcpProxy(one_broker.port) as proxy:
        settings = settings.model_copy(
            update={"mqtt": settings.mqtt.model_copy(update={"port": proxy.port})}
        )
        with log_event("no valid reading") as stale:
            async with running(settings) as app, Probe(one_broker.port) as probe:
                await probe.subscribe(GRID_IE, CLAIM)
                await ready(probe)
                probe.publish(DELIVERED, "0.500")
                assert await probe.next_payload(GRID_IE) == "500"
                proxy.cut()  # the service loses the broker
                await asyncio.wait_for(stale.wait(), EVENT_TIMEOUT_S)  # its pause cannot go
                await proxy.restore()
                await probe.wait_for_payload(STATUS, "online", EVENT_TIMEOUT_S)  # it is back
                probe.publish(DELIVERED, "0.600")
                assert await probe.next_payload(GRID_IE) == "600"
                app.broker.publish(CLAIM, "after")  # after all it said since it came back
                assert await probe.next_payload(CLAIM) == "after"  # and no pause before it

                proxy.cut()  # again, but this time the meter stays quiet once it is back
                await probe.wait_for_payload(STATUS, "offline", EVENT_TIMEOUT_S)
                await proxy.restore()
                await probe.wait_for_payload(STATUS, "online", EVENT_TIMEOUT_S)
                claim = await probe.next_payload(CLAIM, EVENT_TIMEOUT_S)
                assert claim == '{"state":"disabled"}'  # the pause, once stale_after has passed


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_voltage_feed_over_mqtt(broker: BrokerProcess) -> None:
    settings = settings_for(
        broker, source=JSON_SOURCE, publish={"interval": 0}, openevse={"voltage": True}
    )
    async with running(settings), Probe(broker.port) as probe:
        await probe.subscribe("p1evse/vrms")
        await ready(probe)
        probe.publish(JSON_TOPIC, TELEGRAM_JSON)
        assert await probe.next_payload("p1evse/vrms") == "231"  # mean of the phases


async def test_a_pause_the_charger_missed_is_sent_again_when_it_says_its_slot(
    broker: BrokerProcess,
) -> None:
    """`claim/set` is not retained: a pause sent while the charger was away (rebooting
    with the router) reached no one. The charger says its claim slot on connecting; the
    pause is sent again then, and not once more while the slot holds it."""
    settings = settings_for(broker, publish={"interval": 0, "stale_after": 1.0, "pair_window": 0.1})
    with log_event("paused charging") as paused:
        async with running(settings), Probe(broker.port) as charger:
            await asyncio.wait_for(paused.wait(), EVENT_TIMEOUT_S)  # to no one
            await charger.subscribe(CLAIM)
            charger.publish("openevse/claim", '{"state":"null"}', retain=True)
            assert await charger.next_payload(CLAIM) == PAUSE_CLAIM
            slot = '{"priority":500,"state":"disabled","auto_release":false}'
            charger.publish("openevse/claim", slot, retain=True)
            charger.publish(CLAIM, "marker")  # comes after anything sent for the slot
            assert await charger.next_payload(CLAIM) == "marker"


def claims_of_a_sink() -> tuple[OpenEvseMqttSink, VirtualClock, list[str]]:
    """A sink on a virtual broker and clock, and what it sends to `claim/set`."""
    broker, clock = VirtualBroker(), VirtualClock(0.0)
    settings = OpenevseSettings()
    sink = OpenEvseMqttSink(settings, broker, ChargerState(), clock)
    claims: list[str] = []
    broker.subscribe(settings.claim_topic, lambda payload: claims.append(payload.decode()))
    broker.connect()
    return sink, clock, claims


def test_a_pause_missing_from_the_slot_is_sent_again_at_most_every_few_seconds() -> None:
    """Another MQTT client clearing the shared slot over and over is not fought in a
    tight loop; nothing is sent again once the pause is not wanted, nor for a slot that
    holds it."""
    sink, clock, claims = claims_of_a_sink()
    clock.advance(1.0)
    sink.stale_entered(StaleEntered(1.0, 0.0, StaleAction.PAUSE))
    assert claims == [PAUSE_CLAIM]
    for at in (1.0, 1.5, 2.0, 2.5):
        clock.advance(at)
        sink.on_slot(b'{"state":"null"}')
    assert claims == [PAUSE_CLAIM]  # sent a moment ago: the slot may not show it yet
    clock.advance(1.0 + CLAIM_AGAIN_GAP_S)  # the slot still said nothing
    assert claims == [PAUSE_CLAIM] * 2
    sink.on_slot(b'{"state":"null"}')
    clock.advance(1.0 + 2 * CLAIM_AGAIN_GAP_S)
    assert claims == [PAUSE_CLAIM] * 3
    sink.on_slot(b'{"priority":500,"state":"disabled","auto_release":false}')
    clock.advance(100.0)
    assert claims == [PAUSE_CLAIM] * 3
    sink.stale_left(StaleLeft(101.0, 100.0))
    sink.on_slot(b'{"state":"null"}')
    sink.on_slot(b"not json")
    clock.advance(200.0)
    assert claims == [*[PAUSE_CLAIM] * 3, RELEASE]


def test_a_release_the_charger_missed_is_sent_again_until_the_slot_shows_it() -> None:
    """The charger away when the pause was released comes back with the pause in its
    slot: released again. Once the slot has shown the release, a pause that appears
    there is another client's, and stays."""
    sink, clock, claims = claims_of_a_sink()
    paused = b'{"priority":500,"state":"disabled","auto_release":false}'
    sink.stale_entered(StaleEntered(1.0, 0.0, StaleAction.PAUSE))
    sink.on_slot(paused)
    clock.advance(10.0)
    sink.stale_left(StaleLeft(10.0, 9.0))  # released while the charger was away
    assert claims == [PAUSE_CLAIM, RELEASE]
    clock.advance(30.0)
    sink.on_slot(paused)  # back, and still paused
    assert claims == [PAUSE_CLAIM, RELEASE, RELEASE]
    sink.on_slot(b'{"state":"null"}')
    sink.on_slot(paused)  # someone else's now
    sink.on_slot(b'{"priority":500,"state":"disabled","charge_current":6}')
    clock.advance(100.0)
    assert claims == [PAUSE_CLAIM, RELEASE, RELEASE]


async def test_a_charger_not_heard_on_its_base_topic_is_told_of(
    broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenEVSE's own base topic is its host name (openevse-xxxx), not p1evse's default
    `openevse`: a pause sent there would reach no charger."""
    monkeypatch.setattr(app_module, "CHARGER_HEARD_WITHIN_S", 0.5)
    with log_event("nothing from OpenEVSE on openevse/… in 0.5 s") as told:
        async with running(settings_for(broker)):
            await asyncio.wait_for(told.wait(), EVENT_TIMEOUT_S)


def test_a_charger_heard_on_its_base_topic_is_not_told_of(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for heard in (b'{"state":"null"}', None):
        sink, _, _ = claims_of_a_sink()
        if heard is not None:
            sink.on_slot(heard)
        else:
            sink.on_report("amp", b"6000")
        sink.warn_if_unheard(60.0)
    assert "nothing from OpenEVSE" not in caplog.text


def test_a_report_heard_while_the_claim_is_published_sends_it_once() -> None:
    """An in-process broker delivers at once: the charger takes the claim and reports
    its mode before the publish returns. The claim still goes out once, and so does its
    release; a report that spares the charger meanwhile is acted on after."""
    broker, clock = VirtualBroker(), VirtualClock(0.0)
    settings = OpenevseSettings()
    sink = OpenEvseMqttSink(settings, broker, ChargerState(), clock)
    for topic, handler in sink.subscriptions().items():
        broker.subscribe(topic, handler)
    claims: list[str] = []
    mode = ["2"]  # eco: the charger may be paused

    def charger(payload: bytes | bytearray) -> None:
        claims.append(payload.decode())
        broker.publish(f"{settings.base_topic}/divertmode", mode[0])

    broker.subscribe(settings.claim_topic, charger)
    broker.connect()
    sink.stale_entered(StaleEntered(1.0, 0.0, StaleAction.PAUSE))
    assert claims == [PAUSE_CLAIM]
    assert sink.claim_sent
    sink.stale_left(StaleLeft(2.0, 1.0))
    assert claims == [PAUSE_CLAIM, RELEASE]
    mode[0] = "1"  # normal: someone's deliberate charge, answered while being paused
    sink.stale_entered(StaleEntered(3.0, 2.0, StaleAction.PAUSE))
    assert claims == [PAUSE_CLAIM, RELEASE, PAUSE_CLAIM, RELEASE]
    assert not sink.claim_sent


def test_a_refused_report_names_its_topic_and_payload_on_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log names where the refused report came from and an excerpt of it: bounded,
    escaped (a control character or a line end in it cannot forge a line of the log)."""
    broker, clock = VirtualBroker(), VirtualClock(0.0)
    settings = OpenevseSettings(base_topic="garage/evse")
    sink = OpenEvseMqttSink(settings, broker, ChargerState(), clock)
    sink.on_report("amp", b"6\nWARNING forged \x1b[31m" + b"x" * 200)
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert message.startswith("refused a report from OpenEVSE on garage/evse/amp (")
    assert "\n" not in message
    assert "\x1b" not in message
    assert "payload '6\\nWARNING forged \\x1b[31mxxx" in message
    assert len(message) < 300
