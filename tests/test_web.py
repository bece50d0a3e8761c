"""The web endpoints over real HTTP, against a running app with a real broker behind it."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from p1evse.app import App
from p1evse.backoff import Backoff
from p1evse.config import Settings
from p1evse.sim.broker import free_port
from p1evse.sources import Source
from p1evse.status.state import LinkState, SiteState
from p1evse.web.assets import STATIC_DIR, UPLOT_SCRIPT
from p1evse.web.server import exposure_warning
from p1evse.web.settings import WebSettings
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.imports import loaded_after
from tests.logs import log_event
from tests.payloads import DELIVERED, GRID_IE, RETURNED, ready
from tests.probe import Probe
from tests.raw_http import connect

TIMEOUT = aiohttp.ClientTimeout(total=5)


@dataclass
class Site:
    app: App
    state: SiteState
    url: str
    probe: Probe
    http: aiohttp.ClientSession

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str, dict[str, str]]:
        async with self.http.get(self.url + path, **kwargs) as response:
            return response.status, await response.text(), dict(response.headers)

    async def api_state(self) -> dict[str, Any]:
        status, body, _ = await self.get("api/state")
        assert status == 200
        data: dict[str, Any] = json.loads(body)
        return data

    async def send(self, topic: str, payload: str, expect: str) -> None:
        """A meter value in; returns once the bridge has published `expect`."""
        self.probe.publish(topic, payload)
        assert await self.probe.next_payload(GRID_IE) == expect


def web_settings(broker: BrokerProcess, **sections: dict[str, Any]) -> Settings:
    web = {"listen": f"127.0.0.1:{free_port()}", **sections.pop("web", {})}
    publish = {"interval": 0, **sections.pop("publish", {})}
    return settings_for(broker, web=web, publish=publish, **sections)


@asynccontextmanager
async def serving(settings: Settings, source: Source | None = None) -> AsyncIterator[Site]:
    """The app with its web server, once it is connected and its page is served;
    `source` stands in for the configured one."""
    async with (
        running(settings, source) as app,
        Probe(settings.mqtt.port) as probe,
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
    ):
        await probe.subscribe(GRID_IE)
        await ready(probe)
        assert settings.web.listen is not None
        assert app.site.state is not None
        assert app.web is not None
        await asyncio.wait_for(app.web.listening.wait(), 5)
        yield Site(app, app.site.state, f"http://{settings.web.listen}/", probe, http)


async def changed(state: SiteState, condition: Any, timeout: float = 5.0) -> None:
    """Wait until `condition()` holds, checked at each change of the site's state."""
    event = asyncio.Event()

    def check() -> None:
        if condition():
            event.set()

    state.listeners.append(check)
    try:
        check()
        await asyncio.wait_for(event.wait(), timeout)
    finally:
        state.listeners.remove(check)


async def test_state_shows_what_was_published(one_broker: BrokerProcess) -> None:
    async with serving(web_settings(one_broker)) as site:
        await site.send(RETURNED, "1.234", "-1234")
        state = await site.api_state()
        assert state["published"]["watts"] == -1234
        assert state["meter"] == state["meter"] | {"net_w": -1234, "export_w": 1234}
        assert state["meter"]["age_s"] < 5
        assert state["links"]["broker"]["state"] == "connected"
        assert state["links"]["source"]["state"] == "connected"
        assert state["links"]["charger"]["state"] == "connecting"  # no report yet
        assert state["counters"]["readings"] == 1
        status, body, _ = await site.get("api/history")
        assert status == 200
        assert json.loads(body)["rows"][-1][1:] == [-1234, -1234]
        status, body, _ = await site.get("api/history?range=today")
        assert status == 200
        today = json.loads(body)
        assert today["step_s"] == 60
        assert today["rows"][-1][1:] == [-1234, -1234]
        for bad in ("week", "", "hour&range=today", "%00", "x" * 5000):
            status, body, headers = await site.get("api/history", params={"range": bad})
            assert status == 400, bad
            assert body == "range must be one of hour, today\n"
            assert "Content-Security-Policy" in headers


async def test_state_shows_what_the_charger_reports(one_broker: BrokerProcess) -> None:
    async with serving(web_settings(one_broker)) as site:
        for field, payload in (("amp", "12000"), ("state", "3"), ("divertmode", "2")):
            site.probe.publish(f"openevse/{field}", payload)
        # one client's messages arrive in order: the charger's reports are in first
        await site.send(DELIVERED, "0.300", "300")
        state = await site.api_state()
        assert state["links"]["charger"]["state"] == "connected"
        assert state["links"]["charger"]["detail"].endswith("eco · charging · 12.0 A")
        assert state["charger"]["current_a"] == 12.0
        _, body, _ = await site.get("api/history")
        assert json.loads(body)["rows"][-1][1:] == [300, 300, 12.0]
        _, text, _ = await site.get("metrics")
        assert "p1evse_charger_current_amps 12.0" in text


async def test_page_and_its_files_are_small_local_and_carry_a_strict_policy(
    one_broker: BrokerProcess,
) -> None:
    async with serving(web_settings(one_broker)) as site:
        status, page, headers = await site.get("")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert set(assets) == {
            "static/app.css",
            "static/app.js",
            "static/chart-nav.js",
            "static/icon.svg",
            "static/vendor/uplot/uPlot.iife.min.js",
            "static/vendor/uplot/uPlot.min.css",
        }
        total = len(page.encode())
        for asset in set(assets):
            status, body, asset_headers = await site.get(asset)
            assert status == 200, asset
            total += len(body.encode())
            assert "Content-Security-Policy" in asset_headers
        # uPlot is about 53 kB of it, the page's own files about 35 kB
        assert total < 100_000
        for path in STATIC_DIR.rglob("*"):
            if path.is_dir() or path.name in ("LICENSE", "VENDORED.md"):
                continue  # the licence and the record of where uPlot came from: not served
            text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # a name, not a fetch
            if path == UPLOT_SCRIPT:  # its header comment names its homepage, and only that
                head, _, text = text.partition("\n")
                assert head == "/*! https://github.com/leeoniya/uPlot (v1.6.32) */"
            assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name
            assert "<script>" not in text  # nothing inline
            assert "style=" not in text
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe" not in policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_read_only(one_broker: BrokerProcess, method: str) -> None:
    async with serving(web_settings(one_broker)) as site:
        for path in ("", "api/state", "metrics", "healthz", "api/events"):
            async with site.http.request(method, site.url + path) as response:
                assert response.status == 405, path
                assert "Content-Security-Policy" in response.headers


async def test_health_follows_broker_and_readings(one_broker: BrokerProcess) -> None:
    settings = web_settings(one_broker, publish={"stale_after": 1.0, "pair_window": 0.1})
    async with serving(settings) as site:
        status, body, _ = await site.get("healthz")
        assert (status, body.startswith("unhealthy: no reading since start-up")) == (503, True)
        await site.send(DELIVERED, "0.500", "500")
        status, body, _ = await site.get("healthz")
        assert status == 200
        assert re.fullmatch(r"ok: broker connected, last reading \d+\.\d s ago\n", body)
        await changed(site.state, lambda: site.state.stale is not None)
        status, body, _ = await site.get("healthz")
        assert status == 503
        assert re.fullmatch(r"unhealthy: no valid reading for \d+ s \(stale_after 1 s\)\n", body)
        await site.send(DELIVERED, "0.600", "600")
        assert (await site.get("healthz"))[0] == 200
        one_broker.stop()
        broker_link = site.state.links["broker"]
        await changed(site.state, lambda: broker_link.state is LinkState.DISCONNECTED)
        status, body, _ = await site.get("healthz")
        assert status == 503
        assert body == f"unhealthy: MQTT 127.0.0.1:{one_broker.port}: disconnected\n"
        assert len(body.splitlines()) == 1


async def test_metrics(one_broker: BrokerProcess) -> None:
    async with serving(web_settings(one_broker)) as site:
        site.probe.publish(DELIVERED, "abc")
        site.probe.publish("openevse/state", "1e999")  # a charger report that is no state
        await site.send(DELIVERED, "1.500", "1500")
        await site.send(RETURNED, "0.250", "-250")
        status, text, headers = await site.get("metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    endpoint = f"mqtt://127.0.0.1:{one_broker.port}"
    assert value("p1evse_readings_total") == 2
    assert value("p1evse_published_total") == 2
    assert value("p1evse_rejected_total", reason="not_a_number") == 1
    assert value("p1evse_rejected_total", reason="negative") == 0
    assert value("p1evse_grid_watts") == -250
    assert value("p1evse_published_watts") == -250
    assert value("p1evse_stale") == 0
    assert value("p1evse_stale_seconds_total") == 0
    assert value("p1evse_stale_entered_total") == 0
    assert 0 <= value("p1evse_last_reading_age_seconds") < 5
    assert value("p1evse_connected", endpoint=endpoint) == 1
    assert value("p1evse_reconnects_total", endpoint=endpoint) == 0
    assert value("p1evse_pipeline_latency_seconds_count") == 2
    assert 0 < value("p1evse_pipeline_latency_seconds_sum") < 1
    assert value("p1evse_page_clients") == 0
    assert value("p1evse_charger_rejected_total", reason="non_finite") == 1
    assert value("p1evse_retained_skipped_total", endpoint=endpoint) == 0
    assert not [k for k in samples if k[0] == "p1evse_problem"]  # nothing wrong
    [build] = [k for k in samples if k[0] == "p1evse_build_info"]
    assert dict(build[1])["version"]
    assert value("process_resident_memory_bytes") > 0


async def test_a_token_is_required_when_set(one_broker: BrokerProcess) -> None:
    settings = web_settings(one_broker, web={"token": "t0k-3n-0123456789ab"})
    async with serving(settings) as site:
        for path in ("", "api/state", "api/history", "api/events", "metrics"):
            status, body, headers = await site.get(path)
            assert status == 401, path
            assert headers["WWW-Authenticate"] == 'Bearer realm="p1evse"'
            assert "t0k-3n-0123456789ab" not in body
            assert (await site.get(path, params={"token": "wrong"}))[0] == 401
        bearer = {"Authorization": "Bearer t0k-3n-0123456789ab"}
        assert (await site.get("api/state", headers=bearer))[0] == 200
        assert (await site.get("metrics", headers=bearer))[0] == 200
        assert (await site.get("", params={"token": "t0k-3n-0123456789ab"}))[0] == 200
        # health probes and the page's public files need none
        assert (await site.get("healthz"))[0] == 503  # no reading yet, but answered
        assert (await site.get("static/app.js"))[0] == 200


async def test_a_token_of_any_script_is_taken_as_sent(one_broker: BrokerProcess) -> None:
    """In the Authorization header as UTF-8 bytes, and in ?token= percent-encoded."""
    token = "zürich-schlüssel-Ωμέγα-0123-à"  # its last byte, 0xa0, is no space to strip
    settings = web_settings(one_broker, web={"token": f" {token}\t\n"})  # as a file ends
    async with serving(settings) as site:
        assert settings.web.address is not None
        for around in (b"", b" \t"):
            async with connect("127.0.0.1", settings.web.address.port) as client:
                await client.send(
                    b"GET /api/state HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
                    + around
                    + token.encode()
                    + around
                    + b"\r\n\r\n"
                )
                assert (await client.response())[0] == 200
        assert (await site.get("api/state", params={"token": token}))[0] == 200
        assert (await site.get("api/state", params={"token": token[:-1]}))[0] == 401


@pytest.mark.parametrize(
    ("listen", "path"),
    [("127.0.0.1", ""), ("127.0.0.1", "api/state"), ("127.0.0.1", "metrics"), ("0.0.0.0", "")],
)
async def test_a_page_without_a_token_answers_to_this_machines_names_only(
    one_broker: BrokerProcess, listen: str, path: str
) -> None:
    """A web page elsewhere that points a name of its own at the page's address (DNS
    rebinding) reads nothing, on loopback as on the LAN (a container's 0.0.0.0
    published on the host's 127.0.0.1); localhost and addresses do."""
    settings = web_settings(one_broker, web={"listen": f"{listen}:{free_port()}"})
    async with serving(settings) as site:
        port = site.url.rsplit(":", 1)[1].strip("/")
        for host in (
            "evil.example",
            f"evil.example:{port}",
            "127.0.0.1.nip.io",
            "localhost.evil",
            "face.cafe",
        ):
            status, body, _ = await site.get(path, headers={"Host": host})
            assert status == 403, host
            assert body.startswith(f"Host {host.partition(':')[0]}: a page without web.token")
        for host in (
            f"localhost:{port}",
            f"127.0.0.1:{port}",
            "[::1]",
            "::1",
            "app.localhost",
            "10.0.0.7",
            f"127.1:{port}",  # as Python's urllib sends it
            "0x7f.1",
        ):
            assert (await site.get(path, headers={"Host": host}))[0] == 200, host
        assert (await site.get("healthz", headers={"Host": "evil.example"}))[0] in (200, 503)


async def test_a_name_of_web_hosts_is_answered_as_this_machines(
    one_broker: BrokerProcess,
) -> None:
    """A reverse proxy beside p1evse that passes its own Host on."""
    settings = web_settings(one_broker, web={"hosts": ["P1evse.Example.org.", "p1_evse"]})
    async with serving(settings) as site:
        assert (await site.get("api/state", headers={"Host": "p1evse.example.org:443"}))[0] == 200
        assert (await site.get("api/state", headers={"Host": "p1_evse:8080"}))[0] == 200
        assert (await site.get("api/state", headers={"Host": "example.org"}))[0] == 403
    with pytest.raises(ValidationError, match="expected host names such as"):
        WebSettings(hosts=["p1evse.example.org/x"])


async def read_event(stream: aiohttp.StreamReader) -> dict[str, Any]:
    """The data of the next `state` event of a Server-Sent Events stream."""
    data = None
    while True:
        line = (await asyncio.wait_for(stream.readline(), 5)).decode()
        if line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "\n" and data is not None:
            return data
        elif not line:
            raise EOFError


async def test_event_stream_sends_state_changes_and_ends_on_shutdown(
    one_broker: BrokerProcess,
) -> None:
    settings = web_settings(one_broker)
    app = App(settings, asyncio.get_running_loop())
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        async with (
            Probe(one_broker.port) as probe,
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
        ):
            await probe.subscribe(GRID_IE)
            await ready(probe)
            assert app.web is not None
            await asyncio.wait_for(app.web.listening.wait(), 5)
            url = f"http://{settings.web.listen}/api/events"
            async with http.get(url) as response:
                assert response.headers["Content-Type"] == "text/event-stream"
                first = await read_event(response.content)
                assert first["full"] is True
                assert first["state"]["published"] is None
                probe.publish(DELIVERED, "0.777")
                while True:  # the broker's connect may come first
                    message = await read_event(response.content)
                    if message["state"]["published"] is not None:
                        break
                assert message["full"] is False
                assert message["state"]["published"]["watts"] == 777
                assert message["history"]["rows"][-1][1:] == [777, 777]
                assert len(app.web.fanout) == 1
                loop = asyncio.get_running_loop()
                stopping = loop.time()
                stop.set()
                await asyncio.wait_for(task, 5)
                assert loop.time() - stopping < 2.0
                with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                    await read_event(response.content)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_a_taken_port_keeps_the_bridge_publishing_until_the_page_can_have_it(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A busy port is not a bad config: the charger is fed while the page retries."""
    caplog.set_level(logging.INFO, logger="p1evse")
    with socket.socket() as taken, log_event("unavailable") as unavailable:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        async with (
            running(web_settings(one_broker, web={"listen": listen})) as app,
            Probe(one_broker.port) as probe,
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
        ):
            assert app.web is not None
            app.web.backoff = Backoff(initial=0.05, cap=0.5)  # retries a test can wait for
            await probe.subscribe(GRID_IE)
            await ready(probe)
            await asyncio.wait_for(unavailable.wait(), 5)
            for value in range(100, 105):
                probe.publish(DELIVERED, f"{value / 1000:.3f}")
                assert await probe.next_payload(GRID_IE) == str(value)
            assert not app.web.listening.is_set()
            taken.close()
            await asyncio.wait_for(app.web.listening.wait(), 30)
            async with http.get(f"http://{listen}/healthz") as response:
                assert response.status == 200
                assert (await response.text()).startswith("ok: broker connected")
            probe.publish(DELIVERED, "0.200")
            assert await probe.next_payload(GRID_IE) == "200"
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("p1evse.web")]
    [down] = [m for m in messages if "unavailable" in m]
    assert down.startswith(f"status page and /healthz unavailable: web.listen {listen}: ")
    assert "Address already in use" in down
    assert [m for m in messages if m.startswith("status page on")] == [
        f"status page on http://{listen}/"
    ]


@pytest.mark.parametrize("listen", ["no such host:8080", "[::1:8080", "nas..lan:8080", "[nas]:80"])
def test_an_address_that_cannot_be_parsed_stays_a_config_error(listen: str) -> None:
    with pytest.raises(ValidationError, match=r"expected host:port such as 127\.0\.0\.1:8080"):
        WebSettings(listen=listen)


@pytest.mark.parametrize("listen", ["localhost:8080", "[::1]:8080", "::1:8080", "nas.lan.:80"])
def test_names_and_addresses_are_accepted(listen: str) -> None:
    assert WebSettings(listen=listen).listen == listen


@pytest.mark.parametrize(
    ("listen", "authority"),
    [("::1:8080", "[::1]:8080"), ("[::1]:8080", "[::1]:8080"), ("nas.lan:80", "nas.lan:80")],
)
def test_the_pages_address_is_written_as_a_url_has_it(listen: str, authority: str) -> None:
    """`check` printed http://::1:8080/, which no browser opens."""
    address = WebSettings(listen=listen).address
    assert address is not None
    assert address.authority == authority


def test_a_page_open_to_the_network_without_a_token_is_warned_about() -> None:
    warning = exposure_warning(WebSettings(listen="0.0.0.0:8080"))
    assert warning is not None
    assert "set web.token" in warning
    assert exposure_warning(WebSettings(listen="0.0.0.0:8080", token="t0ken-0123456789ab")) is None
    assert exposure_warning(WebSettings(listen="127.0.0.1:8080")) is None
    assert exposure_warning(WebSettings(listen="localhost:8080")) is None


def test_without_web_listen_the_page_s_libraries_are_not_even_imported() -> None:
    code = (
        "import asyncio\n"
        "from p1evse.app import App\n"
        "from p1evse.config import Settings\n"
        "App(Settings(web={'listen': None}), asyncio.new_event_loop())"
    )
    assert loaded_after(code, "aiohttp", "h11", "prometheus_client") == []


FLEET = {
    "source": {"delivered_topic": "dsmr/+/d", "returned_topic": "dsmr/+/r"},
    "openevse": {"grid_ie_topic": "p/{site}/grid_ie", "base_topic": "o/{site}", "deadman": False},
    "mqtt": {"state_topic": None},
}


@pytest.mark.parametrize(("app", "config"), [("App", {}), ("FleetApp", FLEET)])
def test_the_page_is_served_without_aiohttp(app: str, config: dict[str, Any]) -> None:
    """aiohttp costs 12 MB of RSS; only the HTTP clients (OpenEVSE's API, HomeWizard)
    need it, so a page on an MQTT meter and charger never loads it."""
    code = (
        "import asyncio\n"
        "from p1evse.app import App, FleetApp\n"
        "from p1evse.config import Settings\n"
        f"settings = Settings(web={{'listen': '127.0.0.1:8080'}}, **{config!r})\n"
        f"{app}(settings, asyncio.new_event_loop())"
    )
    loaded = loaded_after(code, "aiohttp", "h11")
    assert "h11" in loaded  # the page was made
    assert [name for name in loaded if name.startswith("aiohttp")] == []
