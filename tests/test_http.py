"""The status pages' HTTP/1.1 (web/http.py) over real sockets, byte by byte: keep-alive
and pipelining, HEAD, requests it cannot read or will not serve, a handler that fails,
streams that end however the client leaves, and the page's files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from p1evse.web.files import Files
from p1evse.web.http import (
    MAX_HEAD_BYTES,
    MAX_PENDING_BYTES,
    HttpError,
    Request,
    Response,
    Routes,
    Service,
    Stream,
)
from tests import raw_http
from tests.raw_http import Client

TIMEOUT_S = 10.0
BIG = b"x" * 4_000_000
PIPELINED = 20
HEADERS = {"X-Frame-Options": "DENY"}


@dataclass
class Served:
    """A server with a few routes, and what its stream route saw."""

    port: int
    service: Service
    streamed: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)
    answered: int = 0  # by /big
    answered_more: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)  # a connection ended


def gate(path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> Response | None:
    if path == "/secret" and query.get("token") != "t":
        return Response(b"a token is needed\n", 401)
    return None


class Watched(asyncio.Protocol):
    """A connection's protocol, and an event when the connection has ended."""

    def __init__(self, inner: asyncio.Protocol, served: Served) -> None:
        self._inner = inner
        self._served = served

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        self._served.lost.set()


@asynccontextmanager
async def serving(header_timeout: float = TIMEOUT_S) -> AsyncIterator[Served]:
    loop = asyncio.get_running_loop()
    routes = Routes()
    service = Service(routes, gate, HEADERS, header_timeout, loop)
    served = Served(0, service)
    server = await loop.create_server(lambda: Watched(service.connection(), served), "127.0.0.1", 0)
    served.port = server.sockets[0].getsockname()[1]

    async def hello(request: Request) -> Response:
        return Response(f"hello {request.query.get('name', 'you')}\n".encode())

    async def echo(request: Request) -> Response:
        return Response(request.tail.encode())

    async def fails(request: Request) -> Response:
        raise ValueError("a bug")

    async def big(request: Request) -> Response:
        served.answered += 1
        served.answered_more.set()
        return Response(BIG)

    async def stuck(request: Request) -> Response:
        """An answer that stays in the server's buffer while the client does not read."""
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        request.transport.set_write_buffer_limits(high=1 << 20)  # no pause: no stall cut
        return Response(b"x" * 300_000)

    async def refuses(request: Request) -> Response:
        raise HttpError(400, "no\n", {"Retry-After": "5"})

    async def chunks() -> AsyncIterator[bytes]:
        while True:
            yield await served.streamed.get()

    async def stream(request: Request) -> Stream:
        return Stream(chunks(), served.stream_ended.set, {"Content-Type": "text/event-stream"})

    for path, handler in [
        ("/", hello),
        ("/secret", hello),
        ("/fails", fails),
        ("/refuses", refuses),
        ("/stream", stream),
        ("/big", big),
        ("/stuck", stuck),
    ]:
        routes.get(path, handler)
    routes.under("/echo/", echo)
    try:
        yield served
    finally:
        server.close()
        service.close()


@asynccontextmanager
async def connect(served: Served) -> AsyncIterator[Client]:
    async with raw_http.connect("127.0.0.1", served.port) as client:
        yield client


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: p1evse\r\n{extra}\r\n".encode()


async def test_requests_on_one_connection_are_answered_in_order() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(get("/?name=a") + get("/echo/x%2Fy") + get("/?name=b&name=c"))
        answers = [await client.response() for _ in range(3)]
        assert [body for _, _, body in answers] == [b"hello a\n", b"x/y", b"hello b\n"]
        status, headers, _ = answers[0]
        assert (status, headers["x-frame-options"]) == (200, "DENY")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        await client.send(get("/?name=later"))  # and the connection is still open
        assert (await client.response())[2] == b"hello later\n"


async def test_head_gets_the_headers_of_get_and_no_body() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(b"HEAD / HTTP/1.1\r\nHost: p1evse\r\n\r\n" + get("/?name=next"))
        status, headers = await client.head()
        assert (status, headers["content-length"]) == (200, str(len(b"hello you\n")))
        status, _, body = await client.response()  # the next answer follows at once
        assert (status, body) == (200, b"hello next\n")


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: p1evse\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: p1evse\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: p1evse\r\nX: " + b"a" * MAX_HEAD_BYTES, 431),  # unended
        (b"GET / HTTP/1.1\r\nHost: p\r\n" + b"X: y\r\n" * (MAX_HEAD_BYTES // 6) + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: p1evse\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: p1evse\r\n\r\n", 505),
    ],
)
async def test_a_request_that_cannot_be_read_is_answered_and_closed(
    request_: bytes, status: int
) -> None:
    async with serving() as served, connect(served) as client:
        await client.send(request_)
        answered = await client.closed_by_server()
        assert answered.startswith(f"HTTP/1.1 {status} ".encode()), answered[:80]
        assert b"\r\nX-Frame-Options: DENY\r\n" in answered


async def test_only_get_and_head_and_a_body_is_never_read() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(b"POST / HTTP/1.1\r\nHost: p1evse\r\nContent-Length: 5\r\n\r\n")
        status, headers, _ = await client.response()
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        assert await client.closed_by_server() == b""  # the body it announced is not waited for


async def test_unknown_paths_refusals_and_the_gate() -> None:
    async with serving() as served, connect(served) as client:
        for path, status in [
            ("/nothing", 404),
            ("/echo/", 404),  # a prefix route wants something after its prefix
            ("/refuses", 400),
            ("/secret", 401),
            ("/secret?token=t", 200),
            ("http://[broken/", 400),
            ("//elsewhere/secret?token=t", 404),  # a path, not an authority
            ("http://elsewhere/secret?token=t", 200),  # absolute-form: its path
        ]:
            await client.send(get(path))
            answer, headers, _ = await client.response()
            assert answer == status, path
            assert headers["x-frame-options"] == "DENY", path


async def test_head_of_a_refused_request_gets_no_body() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(b"HEAD /nothing HTTP/1.1\r\nHost: p1evse\r\n\r\n" + get("/"))
        status, headers = await client.head()
        assert (status, headers["content-length"]) == (404, "10")
        assert (await client.response())[2] == b"hello you\n"


async def test_a_client_that_ends_its_side_after_its_request_gets_the_answer() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(get("/"))
        client.writer.write_eof()
        assert (await client.closed_by_server()).endswith(b"\r\n\r\nhello you\n")


async def test_http_1_0_is_answered_and_closed() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(b"GET / HTTP/1.0\r\n\r\n")
        assert (await client.closed_by_server()).endswith(b"\r\n\r\nhello you\n")


async def test_a_failing_handler_answers_500_and_is_logged_once_a_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as served, connect(served) as client:
        with caplog.at_level(logging.ERROR, logger="p1evse.web.http"):
            for _ in range(3):
                await client.send(get("/fails"))
                assert (await client.response())[0] == 500
        failures = [r for r in caplog.records if "/fails failed" in r.getMessage()]
        assert len(failures) == 1
        assert failures[0].exc_info is not None


async def test_a_stream_is_written_as_it_comes_and_ends_when_its_client_leaves() -> None:
    async with serving() as served:
        async with connect(served) as client:
            await client.send(get("/stream"))
            status, headers = await client.head()
            assert (status, headers["transfer-encoding"]) == (200, "chunked")
            assert headers["content-type"] == "text/event-stream"
            for message in (b"one\n\n", b"two\n\n"):
                served.streamed.put_nowait(message)
                assert await client.chunk() == message
        async with asyncio.timeout(TIMEOUT_S):
            await served.stream_ended.wait()
        assert served.service.open == set()


async def end_side(client: Client) -> None:
    client.writer.write_eof()


async def flood(client: Client) -> None:
    with contextlib.suppress(ConnectionError):
        await client.send(b"X" * (MAX_PENDING_BYTES + 1))
    await client.closed_by_server()


@pytest.mark.parametrize(
    ("method", "leave"),
    [
        ("GET", end_side),  # a stream's client that ends its side is leaving
        ("GET", flood),  # one that sends more than it may ahead of an answer is cut off
        ("HEAD", None),  # the head of a stream is all of it
    ],
)
async def test_a_stream_ends_however_it_ends(
    method: str, leave: Callable[[Client], Awaitable[None]] | None
) -> None:
    async with serving() as served, connect(served) as client:
        await client.send(f"{method} /stream HTTP/1.1\r\nHost: p1evse\r\n\r\n".encode())
        status, _ = await client.head()
        assert status == 200
        if leave is not None:
            await leave(client)
        async with asyncio.timeout(TIMEOUT_S):
            await served.stream_ended.wait()


async def test_closing_the_service_closes_its_connections() -> None:
    async with serving() as served, connect(served) as client:
        await client.send(get("/"))
        await client.response()
        served.service.close()
        assert await client.closed_by_server() == b""


async def test_header_timeout_closes_an_idle_connection_after_its_answer() -> None:
    async with serving(header_timeout=0.2) as served, connect(served) as client:
        await client.send(get("/"))
        await client.response()
        assert await client.closed_by_server() == b""


def test_only_the_listed_files_are_served_and_a_browser_may_revalidate(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "app.js").write_text("let x = 1;\n")
    (tmp_path / "index.html").write_text("<!doctype html>\n")
    secret = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    secret.write_text("never served\n")
    files = Files(tmp_path)
    for name in ("../" + secret.name, "/etc/passwd", "sub", "sub/../index.html", ""):
        assert files.response(name, {}) is None, name
    page = files.response("index.html", {}, "no-cache")
    assert page is not None
    assert (page.status, page.body, page.content_type) == (
        200,
        b"<!doctype html>\n",
        "text/html; charset=utf-8",
    )
    assert page.headers["Cache-Control"] == "no-cache"
    script = files.response("sub/app.js", {})
    assert script is not None
    assert script.content_type == "text/javascript; charset=utf-8"
    tag = page.headers["ETag"]
    for offered in (tag, "*", f'"other", W/{tag}'):
        again = files.response("index.html", {"if-none-match": offered})
        assert again is not None
        assert (again.status, again.body) == (304, b""), offered
    changed = files.response("index.html", {"if-none-match": '"other"'})
    assert changed is not None
    assert changed.status == 200


async def test_pipelined_answers_wait_for_the_client_to_take_them() -> None:
    """A client that asks for 4 MB twenty times and reads nothing holds the answers that
    fit in the buffers (the kernel's take a few MB on loopback), not twenty."""
    async with serving() as served, connect(served) as client:
        await client.send(get("/big") * PIPELINED)
        async with asyncio.timeout(TIMEOUT_S):
            await served.answered_more.wait()
        served.answered_more.clear()
        # the first answers fill the buffers: the next ones wait while nothing is read
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while served.answered < PIPELINED:
                    await served.answered_more.wait()
                    served.answered_more.clear()
        assert served.answered < PIPELINED / 2
        for _ in range(PIPELINED):  # and once read, every answer comes
            status, _, body = await client.response()
            assert (status, len(body)) == (200, len(BIG))
        assert served.answered == PIPELINED


async def test_a_connection_whose_answer_is_not_taken_is_cut_after_it_is_closed() -> None:
    """The answer fills the kernel's small buffers and waits in the server's, below the
    mark where writing pauses (so no write-stall cut); the header timer closes the
    connection, which cannot flush: it is reset rather than held."""
    async with serving(header_timeout=0.3) as served:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", served.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            await Client(reader, writer).send(get("/stuck"))
            async with asyncio.timeout(TIMEOUT_S):
                await served.lost.wait()
            assert served.service.open == set()
        finally:
            writer.close()


async def test_content_length_with_transfer_encoding_is_refused_and_closed() -> None:
    """RFC 9112 6.1: how requests are smuggled past a proxy."""
    async with serving() as served, connect(served) as client:
        await client.send(
            b"GET / HTTP/1.1\r\nHost: p1evse\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/?name=smuggled")
        )
        answered = await client.closed_by_server()
        assert answered.startswith(b"HTTP/1.1 400 ")
        assert b"smuggled" not in answered
