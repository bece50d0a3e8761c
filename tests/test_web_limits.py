"""The page's port under hostile clients, over real sockets: connections that never finish
their headers are closed, connections and event streams beyond their caps are refused,
a stream that stops reading is cut, and the bridge publishes throughout."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from p1evse.web.server import file_limit_warning
from p1evse.web.settings import WebSettings
from tests import raw_http
from tests.brokers import BrokerProcess
from tests.logs import log_event
from tests.payloads import DELIVERED
from tests.raw_http import CLOSED_WITHIN_S, Client
from tests.test_deployment import REPO
from tests.test_web import Site, read_event, serving, web_settings

HEADER_TIMEOUT_S = 1.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
REFUSED = 5


@asynccontextmanager
async def connect(site: Site) -> AsyncIterator[Client]:
    host, _, port = site.url.removeprefix("http://").rstrip("/").rpartition(":")
    async with raw_http.connect(host, int(port)) as client:
        yield client


async def metrics(site: Site) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text, _ = await site.get("metrics")
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def publishes(site: Site, value: int) -> None:
    """The bridge still feeds the charger."""
    await site.send(DELIVERED, f"{value / 1000:.3f}", str(value))


@pytest.mark.parametrize("stage", ["nothing", "trickled headers", "second request"])
async def test_a_connection_that_does_not_finish_its_headers_is_closed(
    one_broker: BrokerProcess, stage: str
) -> None:
    """Before its first request and between requests on a keep-alive connection; bytes
    trickling in do not extend the deadline."""
    settings = web_settings(one_broker, web={"header_timeout": HEADER_TIMEOUT_S})
    async with serving(settings) as site:
        loop = asyncio.get_running_loop()
        started = loop.time()  # before the server can arm its timer: a lower bound
        async with connect(site) as client:
            if stage == "second request":
                started = loop.time()
                await client.send(REQUEST)
                assert (await client.response())[0] == 503  # answered: no reading yet
            trickle = asyncio.create_task(
                send_slowly(client) if stage == "trickled headers" else asyncio.sleep(0)
            )
            try:
                assert await client.closed_by_server() == b""
            finally:
                trickle.cancel()
        # asyncio may run a timer up to its clock's resolution early
        assert loop.time() - started >= HEADER_TIMEOUT_S - 0.01
        await publishes(site, 321)


async def send_slowly(client: Client) -> None:
    """A request's headers, one byte at a time, each well inside the header timeout."""
    with contextlib.suppress(ConnectionError):
        await client.send(b"GET / HTTP/1.1\r\n")
        for _ in range(1000):
            await asyncio.sleep(HEADER_TIMEOUT_S / 5)
            await client.send(b"X")


async def test_connections_beyond_the_cap_are_refused_while_those_within_keep_working(
    one_broker: BrokerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    settings = web_settings(one_broker, web={"max_connections": 3, "max_streams": 1})
    async with serving(settings) as site, contextlib.AsyncExitStack() as stack:
        await publishes(site, 100)
        held = [await stack.enter_async_context(connect(site)) for _ in range(3)]
        for client in held:  # each is served: three connections open
            await client.send(REQUEST)
            assert (await client.response())[0] == 200
        for _ in range(REFUSED):
            async with connect(site) as refused:
                answer = await refused.closed_by_server()
            assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert answer.endswith(b"\r\n\r\ntoo many connections: web.max_connections is 3\n")
        refusals = [r.getMessage() for r in caplog.records if "refused a" in r.getMessage()]
        assert len(refusals) == 1  # at most one line a minute, however many
        assert re.fullmatch(
            r"status page: refused a connection from 127\.0\.0\.1:\d+: "
            r"web\.max_connections \(3\) are open",
            refusals[0],
        )
        await publishes(site, 101)
        for client in held:  # those within keep working
            await client.send(REQUEST)
            assert (await client.response())[0] == 200
        # one of them leaves; its place is free again
        await held[0].send(REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        assert (await held[0].response())[0] == 200
        assert await held[0].closed_by_server() == b""
        async with connect(site) as client:
            await client.send(REQUEST.replace(b"/healthz", b"/metrics"))
            status, _, text = await client.response()
        assert status == 200
        assert b'p1evse_web_refused_total{limit="max_connections"} %d.0' % REFUSED in text
        assert b"p1evse_web_connections 3.0" in text  # two held, and this one


async def test_event_streams_beyond_the_cap_get_503(one_broker: BrokerProcess) -> None:
    settings = web_settings(one_broker, web={"max_streams": 2})
    async with serving(settings) as site, contextlib.AsyncExitStack() as stack:
        url = site.url + "api/events"
        streams = [await stack.enter_async_context(site.http.get(url)) for _ in range(2)]
        for stream in streams:
            assert (await read_event(stream.content))["full"] is True
        with log_event("max_streams") as logged:
            async with site.http.get(url) as refused:
                assert refused.status == 503
                assert refused.headers["Retry-After"]
                assert await refused.text() == "too many live pages: web.max_streams is 2\n"
            assert logged.is_set()
        await publishes(site, 555)
        for stream in streams:  # those within go on receiving
            while (await read_event(stream.content))["state"]["published"] is None:
                pass
        samples = await metrics(site)
        assert samples[("p1evse_web_refused_total", (("limit", "max_streams"),))] == 1
        assert samples[("p1evse_page_clients", ())] == 2


async def test_a_page_that_leaves_frees_its_stream_at_once(one_broker: BrokerProcess) -> None:
    """Not at the next write that fails, up to a ping period later: until then a page
    opened in its place would be refused."""
    settings = web_settings(one_broker, web={"max_streams": 1})
    async with serving(settings) as site:
        url = site.url + "api/events"
        async with site.http.get(url) as first:
            assert (await read_event(first.content))["full"] is True
            first.close()  # the connection, as a closed tab does
        # one more request: the server has seen the close before it answers this one
        assert (await site.get("healthz"))[0] == 503
        async with site.http.get(url) as second:
            assert second.status == 200


def stalled_stream(site: Site) -> socket.socket:
    """Opens the event stream and never reads it; a small receive buffer fills soon."""
    host, _, port = site.url.removeprefix("http://").rstrip("/").rpartition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    return sock


async def read_to_the_end(sock: socket.socket) -> None:
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(10):
        while await loop.sock_recv(sock, 1 << 20):
            pass


@contextlib.contextmanager
def closing(sock: socket.socket) -> Iterator[socket.socket]:
    try:
        yield sock
    finally:
        sock.close()


async def test_a_stream_that_stops_reading_is_cut_within_seconds(
    one_broker: BrokerProcess,
) -> None:
    """However few messages follow: cut when a write does not complete in time, not
    only once its queue is full."""
    write_timeout = 1.0
    settings = web_settings(one_broker, web={"write_timeout": write_timeout})
    async with serving(settings) as site:
        web = site.app.web
        assert web is not None
        with closing(stalled_stream(site)) as sock, log_event("stopped reading") as cut:
            async with asyncio.timeout(10):
                while not len(web.fanout):  # joined: its first message is on its way
                    await publishes(site, 200 + len(web.fanout))
            loop = asyncio.get_running_loop()
            burst = loop.time()
            for _ in range(8):  # far more than any buffer holds, far fewer than its queue
                web.fanout.send(b"data: " + b"x" * 256 * 1024 + b"\n\n")
            await publishes(site, 300)
            await asyncio.wait_for(cut.wait(), CLOSED_WITHIN_S)
            assert loop.time() - burst >= write_timeout - 0.01  # a timer may run that early
            await publishes(site, 301)
            assert len(web.fanout) == 0
            assert web.fanout.dropped == 0  # not the full-queue rule: its writes stalled
            with pytest.raises(ConnectionResetError):  # reset: nothing lingers for it
                await read_to_the_end(sock)
        samples = await metrics(site)
        assert samples[("p1evse_web_stalled_total", ())] == 1


def test_streams_must_leave_connections_for_the_rest() -> None:
    with pytest.raises(ValidationError, match=r"max_streams \(8\) must be below max_connections"):
        WebSettings(max_connections=8, max_streams=8)


def test_a_connection_cap_the_file_limit_cannot_hold_is_warned_about() -> None:
    many = WebSettings(max_connections=1000)
    assert file_limit_warning(many, 1024) == (
        "web.max_connections 1000: this process may open only 1024 files (ulimit -n, "
        "systemd's LimitNOFILE), and the meter, the broker and the charger need some of "
        "them; keep it at 960 or below"
    )
    assert file_limit_warning(many, resource.RLIM_INFINITY) is None


def test_the_systemd_unit_leaves_the_bridge_files_beside_a_full_page() -> None:
    unit = (REPO / "deploy" / "p1evse.service").read_text()
    [limit] = re.findall(r"^LimitNOFILE=(\d+)$", unit, re.MULTILINE)
    assert file_limit_warning(WebSettings(), int(limit)) is None
