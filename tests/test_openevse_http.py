"""OpenEVSE over HTTP: the feed, the pause claim, login and failures, against a loopback
server that follows the charger's documented API; readings come through a real broker."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import pytest

from p1evse.backoff import Backoff
from p1evse.sinks.charger import HTTP_CLAIM_CLIENT_ID, DivertMode
from p1evse.sinks.openevse_http import OpenEvseHttpSink
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.fake_openevse import FakeOpenEvse, Request
from tests.logs import log_event
from tests.payloads import JSON_SOURCE, JSON_TOPIC, TELEGRAM_JSON, ready
from tests.probe import EVENT_TIMEOUT_S, Probe
from tests.waiting import state_holds

DELIVERED = "dsmr/reading/electricity_currently_delivered"
RETURNED = "dsmr/reading/electricity_currently_returned"
CLAIM_PATH = f"/claims/{HTTP_CLAIM_CLIENT_ID}"


async def expect(charger: FakeOpenEvse, method: str, path: str) -> Request:
    """The next request to `path` (other requests, such as value posts, are skipped)."""
    while True:
        request = await charger.next_request()
        if (request.method, request.path) == (method, path):
            return request


def http_settings(broker: BrokerProcess, charger: FakeOpenEvse, **openevse: Any) -> Any:
    publish = openevse.pop("publish", {"interval": 0})
    return settings_for(
        broker,
        openevse={"transport": "http", "url": charger.url, **openevse},
        publish=publish,
    )


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_values_are_posted_as_grid_ie(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        settings = http_settings(broker, charger, shaper=True)
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            probe.publish(RETURNED, "1.250")
            request = await expect(charger, "POST", "/status")
    assert request.body == {"grid_ie": -1250, "shaper_live_pwr": -1250}
    assert charger.status["grid_ie"] == -1250


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_stale_claims_with_our_own_id_releases_on_recovery_not_at_a_silent_stop(
    broker: BrokerProcess,
) -> None:
    async with FakeOpenEvse(username="admin", password="pw-9731") as charger:
        publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
        settings = http_settings(
            broker, charger, username="admin", password="pw-9731", publish=publish
        )
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            claim = await expect(charger, "POST", CLAIM_PATH)  # nothing since start-up
            assert claim.body == {"state": "disabled"}
            assert claim.authorization is not None
            assert claim.authorization.startswith("Basic ")
            assert charger.claims == {HTTP_CLAIM_CLIENT_ID: {"state": "disabled"}}
            probe.publish(DELIVERED, "0.400")
            await expect(charger, "DELETE", CLAIM_PATH)
            assert charger.claims == {}
            await expect(charger, "POST", CLAIM_PATH)  # quiet again
            loop = asyncio.get_running_loop()
            stopping = loop.time()
        # leaving `running` is SIGTERM's shutdown, the meter silent: released, the
        # charger would charge on at its last rate with no one feeding it
        assert [r.method for r in charger.log if r.path == CLAIM_PATH][-1] == "POST"
        assert charger.claims == {HTTP_CLAIM_CLIENT_ID: {"state": "disabled"}}
        assert loop.time() - stopping < 2


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_pause_claim_left_by_an_earlier_run_is_released_once_readings_are_fresh(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that died holding its pause claim, or stopped while its meter was silent,
    left the charger paused: the next run finds its own claim and keeps it until a
    fresh reading (the meter may still be silent), then releases it."""
    caplog.set_level(logging.INFO, logger="p1evse")
    async with FakeOpenEvse(fail={("GET", CLAIM_PATH): [503]}) as charger:
        charger.claims[HTTP_CLAIM_CLIENT_ID] = {"state": "disabled"}
        async with running(http_settings(broker, charger)), Probe(broker.port) as probe:
            await expect(charger, "GET", CLAIM_PATH)  # refused: asked again
            await expect(charger, "GET", CLAIM_PATH)
            await ready(probe)
            before_reading = len(charger.log)
            probe.publish(DELIVERED, "0.400")
            await expect(charger, "DELETE", CLAIM_PATH)
            assert charger.claims == {}
    kept = [r.getMessage() for r in caplog.records if "earlier run" in r.getMessage()]
    assert kept == [
        f"the charger holds the pause claim an earlier run left on {charger.url}{CLAIM_PATH}; "
        "released once readings are fresh"
    ]
    claim_requests = [(n, r.method) for n, r in enumerate(charger.log) if r.path == CLAIM_PATH]
    assert [method for _, method in claim_requests] == ["GET", "GET", "DELETE"]
    assert claim_requests[-1][0] >= before_reading  # released for the reading


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_charger_that_refuses_the_look_for_an_old_claim_is_still_paused(
    broker: BrokerProcess,
) -> None:
    async with FakeOpenEvse(fail={("GET", CLAIM_PATH): [500] * 1000}) as charger:
        publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
        async with running(http_settings(broker, charger, publish=publish)):
            claim = await expect(charger, "POST", CLAIM_PATH)  # stale since start-up
    assert claim.body == {"state": "disabled"}


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_claim_the_charger_lost_is_released_all_the_same(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A charger that restarted holds no claims: the release's 404 is no failure to retry."""
    caplog.set_level(logging.INFO, logger="p1evse")
    async with FakeOpenEvse() as charger:
        publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
        async with running(http_settings(broker, charger, publish=publish)) as app:
            async with Probe(broker.port) as probe:
                await ready(probe)
                await expect(charger, "POST", CLAIM_PATH)
                charger.claims.clear()  # the charger restarted
                with log_event("released the pause claim") as released:
                    probe.publish(DELIVERED, "0.400")
                    await expect(charger, "DELETE", CLAIM_PATH)  # answered 404
                    await asyncio.wait_for(released.wait(), EVENT_TIMEOUT_S)
            [sink] = app.site.sinks
            assert isinstance(sink, OpenEvseHttpSink)
            assert sink.failures == 0


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_release_that_times_out_at_shutdown_says_so(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeOpenEvse() as charger:
        publish = {"interval": 0, "stale_after": 0.3, "pair_window": 0.1}
        settings = http_settings(broker, charger, publish=publish)
        async with running(settings), Probe(broker.port) as probe:
            await expect(charger, "POST", CLAIM_PATH)
            charger.stall = stall = asyncio.Event()  # from now on the charger answers nothing
            await ready(probe)
            probe.publish(DELIVERED, "0.400")  # fresh: the release hangs, then the stop
            await expect(charger, "DELETE", CLAIM_PATH)
        assert charger.claims == {HTTP_CLAIM_CLIENT_ID: {"state": "disabled"}}
        stall.set()  # the requests still waiting end, and so can the charger
    [warning] = [r.getMessage() for r in caplog.records if "could not release" in r.getMessage()]
    assert warning == (
        f"could not release the claim on {charger.url}{CLAIM_PATH}: no answer within 1 s"
    )


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_recovery_is_logged_once_for_the_kind_of_request_that_recovered(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """The read-back keeps failing while values go through: the charger does not
    "answer again" with every value, only once the read-back itself is answered."""
    caplog.set_level(logging.INFO, logger="p1evse")
    failing = [500] * 1000
    async with FakeOpenEvse(fail={("GET", "/status"): failing}) as charger:
        settings = http_settings(broker, charger, poll_interval=1)
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            for kw in ("0.100", "0.200", "0.300"):
                await expect(charger, "GET", "/status")  # refused
                probe.publish(DELIVERED, kw)
                await expect(charger, "POST", "/status")
            with log_event("answers") as answered:
                failing.clear()
                await asyncio.wait_for(answered.wait(), EVENT_TIMEOUT_S)
    recovered = [r.getMessage() for r in caplog.records if "answers" in r.getMessage()]
    assert recovered == [f"OpenEVSE at {charger.url} answers GET /status again"]


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_value_the_charger_refused_is_not_shown_as_sent(broker: BrokerProcess) -> None:
    """The read-back is answered, the value is refused: nothing counts as sent, and the
    charger's link is not shown connected until a value goes through."""
    refusals = [500]
    async with FakeOpenEvse(fail={("POST", "/status"): refusals}) as charger:
        settings = settings_for(
            broker,
            mqtt={"state_topic": "p1evse/state"},  # the status model, without a page
            openevse={"transport": "http", "url": charger.url, "poll_interval": 1},
            publish={"interval": 0},
        )
        with log_event("HTTP 500") as refused:
            async with running(settings) as app, Probe(broker.port) as probe:
                state = app.site.state
                assert state is not None
                await ready(probe)
                await expect(charger, "GET", "/status")
                await state_holds(state, lambda: state.charger_link(0).detail.count("eco") == 1)
                probe.publish(DELIVERED, "0.100")
                await asyncio.wait_for(refused.wait(), EVENT_TIMEOUT_S)
                refused_at = state.snapshot()
                probe.publish(DELIVERED, "0.200")
                await state_holds(state, lambda: state.published is not None)
                sent = state.snapshot()
    assert refused_at["published"] is None
    assert refused_at["counters"]["published"] == 0
    assert refused_at["links"]["charger"]["state"] == "disconnected"
    assert "HTTP 500" in refused_at["links"]["charger"]["detail"]
    assert sent["published"]["watts"] == 200
    assert sent["counters"]["published"] == 1
    assert sent["links"]["charger"]["state"] == "connected"


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_redirect_is_a_failure_never_followed(broker: BrokerProcess) -> None:
    """A charger's API does not redirect: one that does is not followed anywhere, so
    neither values nor the login ever go to another host."""
    async with (
        FakeOpenEvse() as elsewhere,
        FakeOpenEvse(username="admin", password="pw-9731", redirect=elsewhere.url) as charger,
    ):
        settings = http_settings(broker, charger, username="admin", password="pw-9731")
        with log_event(f"POST {charger.url}/status: HTTP 302") as refused:
            async with running(settings) as app, Probe(broker.port) as probe:
                await ready(probe)
                probe.publish(DELIVERED, "0.100")
                await asyncio.wait_for(refused.wait(), EVENT_TIMEOUT_S)
                [sink] = app.site.sinks
                assert isinstance(sink, OpenEvseHttpSink)
                assert sink.failures > 0
        assert elsewhere.log == []


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_broken_answer_is_logged_on_one_line(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp spreads the reason of a broken answer over lines; the log has it on one."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nnot gz"
        )
        await writer.drain()
        writer.close()

    async with await asyncio.start_server(answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        openevse = {"transport": "http", "url": f"http://127.0.0.1:{port}"}
        with log_event("content-encoding") as logged:
            async with running(settings_for(broker, openevse=openevse)):
                await asyncio.wait_for(logged.wait(), EVENT_TIMEOUT_S)
    broken = [r.getMessage() for r in caplog.records if "content-encoding" in r.getMessage()]
    assert broken
    assert [m for m in broken if "\n" in m] == []


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_failures_whose_text_quotes_the_charger_are_logged_once_and_short(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Something that is no HTTP server (TLS on a plain port) answers each request with
    other bytes, which the error quotes: still one short line a minute per request."""
    requests: asyncio.Queue[bytes] = asyncio.Queue()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await requests.put(b" ".join(head.split(b" ", 2)[:2]))
        writer.write(b"\x16\x03\x01" + secrets.token_hex(600).encode() + b"\r\n\r\n")
        await writer.drain()
        writer.close()

    async with await asyncio.start_server(answer, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        openevse = {"transport": "http", "url": f"http://127.0.0.1:{port}"}
        settings = settings_for(broker, openevse=openevse, publish={"interval": 0})
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            for watts in range(100, 108):
                probe.publish(DELIVERED, f"{watts / 1000:.3f}")
                while await asyncio.wait_for(requests.get(), EVENT_TIMEOUT_S) != (b"POST /status"):
                    pass
    posts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST ")]
    assert len(posts) == 1
    assert len(posts[0]) < 300


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_refused_login_is_one_clear_error_without_the_password(
    broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1evse")
    async with FakeOpenEvse(username="admin", password="right") as charger:
        settings = http_settings(broker, charger, username="admin", password="wr0ng-s3cret")
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            for kw in ("0.100", "0.200", "0.300"):
                probe.publish(DELIVERED, kw)
                await expect(charger, "POST", "/status")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"OpenEVSE at {charger.url} refused the login (HTTP 401): "
        "check openevse.username and openevse.password"
    ]
    assert "wr0ng-s3cret" not in caplog.text


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_failed_claim_is_retried_until_the_charger_has_it(broker: BrokerProcess) -> None:
    async with FakeOpenEvse(fail={("POST", CLAIM_PATH): [500, 503]}) as charger:
        publish = {"interval": 0, "stale_after": 0.3, "pair_window": 0.1}
        settings = http_settings(broker, charger, publish=publish)
        async with running(settings) as app:
            for _ in range(3):  # 500, 503, then accepted
                await expect(charger, "POST", CLAIM_PATH)
            [sink] = app.site.sinks
            assert isinstance(sink, OpenEvseHttpSink)
            assert charger.claims == {HTTP_CLAIM_CLIENT_ID: {"state": "disabled"}}
            assert sink.failures == 2


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_pause_that_failed_and_is_no_longer_wanted_leaves_nothing_failing(
    broker: BrokerProcess,
) -> None:
    """The pause claim failed while the meter was silent, then the readings came back:
    no claim is to be sent any more, yet it stayed "failing" (the charger shown
    disconnected, /healthz 503) until the next silence."""
    refusals = [500] * 1000
    async with FakeOpenEvse(fail={("POST", CLAIM_PATH): refusals}) as charger:
        publish = {"interval": 0, "stale_after": 0.3, "pair_window": 0.1}
        settings = http_settings(broker, charger, publish=publish, poll_interval=1)
        async with running(settings) as app, Probe(broker.port) as probe:
            state = app.site.state
            assert state is not None
            await expect(charger, "POST", CLAIM_PATH)  # refused
            await state_holds(state, lambda: "HTTP 500" in state.charger_link(0).detail)
            probe.publish(DELIVERED, "0.100")  # fresh: the pause is no longer wanted
            await state_holds(state, lambda: state.charger_link(0).state.value != "disconnected")
    assert charger.claims == {}


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_claim_answered_by_a_page_that_is_not_openevse_is_not_taken_as_held(
    broker: BrokerProcess,
) -> None:
    """A captive portal or a router answers 200 with its own page: the pause is not
    held for that (nor shown so), and goes to the charger once it answers itself."""
    portal = {("POST", CLAIM_PATH): b"<html>Sign in to the Wi-Fi</html>"}
    async with FakeOpenEvse(garbage=portal) as charger:
        publish = {"interval": 0, "stale_after": 0.3, "pair_window": 0.1}
        settings = http_settings(broker, charger, publish=publish)
        with log_event("the answer is no JSON") as told:
            async with running(settings) as app:
                [sink] = app.site.sinks
                assert isinstance(sink, OpenEvseHttpSink)
                await expect(charger, "POST", CLAIM_PATH)
                await asyncio.wait_for(told.wait(), EVENT_TIMEOUT_S)
                assert not sink.claim_sent
                charger.garbage.clear()
                state = app.site.state
                assert state is not None
                await state_holds(state, lambda: sink.claim_sent)
                assert charger.claims == {HTTP_CLAIM_CLIENT_ID: {"state": "disabled"}}
                assert sink.failures >= 1


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_value_the_charger_is_slow_to_take_holds_no_pause_back(
    broker: BrokerProcess,
) -> None:
    """The meter falls silent while the charger sits on a value: the pause goes at
    once, beside it."""
    async with FakeOpenEvse() as charger:
        publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
        settings = http_settings(broker, charger, timeout=60, publish=publish)
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            charger.stalls["POST", "/status"] = taken = asyncio.Event()
            probe.publish(DELIVERED, "0.100")
            await expect(charger, "POST", "/status")  # and the meter is silent from now on
            claim = await expect(charger, "POST", CLAIM_PATH)
            assert claim.body == {"state": "disabled"}
            taken.set()


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_not_found_that_is_not_openevses_is_no_release(broker: BrokerProcess) -> None:
    """OpenEVSE says "no such claim" in JSON; a 404 page of something else (a proxy, a
    portal) leaves the claim held, and the release is tried again."""
    async with FakeOpenEvse(fail={("DELETE", CLAIM_PATH): [404]}) as charger:
        publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
        settings = http_settings(broker, charger, publish=publish)
        async with running(settings), Probe(broker.port) as probe:
            await expect(charger, "POST", CLAIM_PATH)  # nothing since start-up
            await ready(probe)

            async def meter() -> None:
                while True:
                    probe.publish(DELIVERED, "0.100")
                    await asyncio.sleep(0.1)  # pacing the simulated meter

            back = asyncio.create_task(meter())
            try:
                await expect(charger, "DELETE", CLAIM_PATH)  # an empty 404
                await expect(charger, "DELETE", CLAIM_PATH)  # tried again: released
                assert charger.claims == {}
            finally:
                back.cancel()


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_claim_waiting_to_be_tried_again_holds_no_value_back(
    broker: BrokerProcess,
) -> None:
    """A charger that refuses `/claims` for good (a proxy, a full claim table): the claim
    is tried again after its backoff, here an hour, and every value goes out meanwhile."""
    async with FakeOpenEvse(fail={("GET", CLAIM_PATH): [500] * 1000}) as charger:
        settings = http_settings(broker, charger)
        async with running(settings) as app, Probe(broker.port) as probe:
            [sink] = app.site.sinks
            assert isinstance(sink, OpenEvseHttpSink)
            sink._backoff = Backoff(initial=3600, cap=3600)
            await expect(charger, "GET", CLAIM_PATH)  # refused: tried again in an hour
            await ready(probe)
            for watts in (100, 200, 300):
                probe.publish(DELIVERED, f"{watts / 1000:.3f}")
                assert (await expect(charger, "POST", "/status")).body == {"grid_ie": watts}
        looks = [r for r in charger.log if (r.method, r.path) == ("GET", CLAIM_PATH)]
        assert len(looks) <= 2  # the first, and one before the backoff was set here


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_stalled_charger_never_delays_the_bridge(broker: BrokerProcess) -> None:
    """While one request hangs, newer values replace the waiting one: no backlog, and
    the event loop (and so the MQTT side) keeps going."""
    async with FakeOpenEvse() as charger:
        settings = http_settings(broker, charger, timeout=60)
        async with running(settings) as app, Probe(broker.port) as probe:
            await expect(charger, "GET", CLAIM_PATH)  # the start-up's look for an old claim
            charger.stall = stall = asyncio.Event()
            all_read = asyncio.Event()
            counters = app.site.bridge.pipeline.counters
            app.site.bridge.observers.append(lambda _: counters.readings < 21 or all_read.set())
            await ready(probe)
            probe.publish(DELIVERED, "0.100")
            await expect(charger, "POST", "/status")  # hangs in the charger
            for watts in range(101, 121):
                probe.publish(DELIVERED, f"{watts / 1000:.3f}")
            # the loop still serves MQTT: all 20 readings come in while the request hangs
            await asyncio.wait_for(all_read.wait(), EVENT_TIMEOUT_S)
            stall.set()
            request = await expect(charger, "POST", "/status")
        assert request.body == {"grid_ie": 120}  # only the newest of the 20 waiting values
        assert [r.body for r in charger.log if (r.method, r.path) == ("POST", "/status")] == [
            {"grid_ie": 100},
            {"grid_ie": 120},
        ]


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_the_charger_is_read_back(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        charger.status.update(amp=9800, pilot=10, state=3, divert_active=True, charge_rate=10)
        async with running(http_settings(broker, charger, poll_interval=1)) as app:
            await expect(charger, "GET", "/status")
            await expect(charger, "GET", "/status")  # the first answer has been taken in
    assert app.site.charger.amps == 9.8
    assert app.site.charger.pilot == 10
    assert app.site.charger.state == 3
    assert app.site.charger.divertmode is DivertMode.ECO
    assert app.site.charger.divert_active is True


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_charger_in_normal_mode_is_not_paused(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        charger.status["divertmode"] = 1
        publish = {"interval": 0, "stale_after": 0.5, "pair_window": 0.1}
        settings = http_settings(broker, charger, poll_interval=1, publish=publish)
        with log_event("OpenEVSE is in normal mode: not pausing it") as spared:
            async with running(settings):
                await asyncio.wait_for(spared.wait(), 5)
                charger.status["divertmode"] = 2  # switched to Eco: now it is paused
                claim = await expect(charger, "POST", CLAIM_PATH)
    assert claim.body == {"state": "disabled"}
    assert [r.path for r in charger.log if r.method == "POST"].count(CLAIM_PATH) == 1


GARBAGE = [
    # (the request answered with garbage, its answer, refused read-backs by reason)
    pytest.param(("POST", "/status"), b"\xff\xfe{not utf-8", {}, id="post-not-utf8"),
    pytest.param(("POST", "/status"), b"<html>Sign in to the Wi-Fi</html>", {}, id="portal"),
    pytest.param(("GET", "/status"), b"[" * 30_000 + b"]" * 30_000, {"bad_json": 1}, id="nested"),
    pytest.param(
        ("GET", "/status"), b'{"state": ' + b"9" * 400 + b"}", {"non_finite": 1}, id="400-digits"
    ),
    pytest.param(("GET", "/status"), b'{"amp": 1, "amp": 2}', {"bad_json": 1}, id="duplicate"),
    pytest.param(("GET", "/status"), b"\xc3\x28", {"not_utf8": 1}, id="get-not-utf8"),
    pytest.param(("GET", "/status"), b'"just a string"', {"bad_json": 1}, id="not-an-object"),
    pytest.param(("GET", "/status"), b"x" * 200_000, {}, id="too-long"),  # a failed request
]


@pytest.mark.parametrize(("where", "answer", "refused"), GARBAGE)
@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_a_charger_answering_garbage_never_stops_the_feed(
    broker: BrokerProcess, where: tuple[str, str], answer: bytes, refused: dict[str, int]
) -> None:
    """Every answer is parsed defensively: a broken one is a counted refusal (or a
    failed request), logged once, and values keep going to the charger."""
    async with (
        FakeOpenEvse(garbage={where: answer}) as charger,
        running(http_settings(broker, charger, poll_interval=1)) as app,
        Probe(broker.port) as probe,
    ):
        await ready(probe)
        for kw in ("0.100", "0.200", "0.300"):
            probe.publish(DELIVERED, kw)
            await expect(charger, "POST", "/status")
        await expect(charger, "GET", "/status")
        await expect(charger, "GET", "/status")  # polled again: the sink lives on
        assert {reason.value for reason in app.site.charger.rejected} == set(refused)
        assert not any(app.supervisor.restarts.values())
        [sink] = app.site.sinks
        assert isinstance(sink, OpenEvseHttpSink)
        if refused:
            assert sink.failures == 0  # the request itself went well
        else:
            assert sink.failures >= 2  # each poll or value, and it goes on


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_the_good_fields_of_a_broken_status_are_taken(broker: BrokerProcess) -> None:
    answer = b'{"state": ' + b"9" * 400 + b', "amp": 6000, "divertmode": 7, "pilot": 16}'
    async with (
        FakeOpenEvse(garbage={("GET", "/status"): answer}) as charger,
        running(http_settings(broker, charger, poll_interval=1)) as app,
    ):
        await expect(charger, "GET", "/status")
        await expect(charger, "GET", "/status")
    assert (app.site.charger.amps, app.site.charger.pilot, app.site.charger.state) == (
        6.0,
        16,
        None,
    )
    assert {r.value: n for r, n in app.site.charger.rejected.items()} == {
        "non_finite": 2,
        "implausible": 2,
    }


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)
async def test_voltage_feed_over_http(broker: BrokerProcess) -> None:
    async with FakeOpenEvse() as charger:
        openevse = {"transport": "http", "url": charger.url, "voltage": True, "shaper": True}
        settings = settings_for(
            broker, source=JSON_SOURCE, publish={"interval": 0}, openevse=openevse
        )
        async with running(settings), Probe(broker.port) as probe:
            await ready(probe)
            probe.publish(JSON_TOPIC, TELEGRAM_JSON)
            while (request := await charger.next_request()).method != "POST":
                pass
    assert request.body == {"grid_ie": -1200, "shaper_live_pwr": -1200, "voltage": 231.0}
