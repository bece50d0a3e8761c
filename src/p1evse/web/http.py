"""HTTP/1.1 for the status pages: h11 reads and frames the protocol, this module serves.

Why not a web framework: the pages ask little of HTTP (GET and HEAD, no request bodies,
a dozen fixed routes, one kind of stream), and aiohttp's server, which served them
before, cost 11 MB of a process that needs 39 without it (52.6 MB against 41.7 MB for a
site with its page, bench/web.py); uvicorn would add 2.5 MB, h11 alone 0.4. h11, the parser
under uvicorn and httpx, does what is easy to get wrong: parsing, framing (chunked,
HTTP/1.0, HEAD), keep-alive and a bound on a request's head. This module adds what the
page's port needs around it: the header timeout, routing, flow control for streams, and
a handler's task cancelled the moment its client goes.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from p1evse.errors import P1evseError
from p1evse.ratelimit import RateLimiter
from p1evse.web.limits import reset

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # a request's line and headers; beyond: 431
# what a client may send ahead of the answer to its request (pipelined requests, a body
# nobody reads) before it is cut off: nothing is buffered without bound
MAX_PENDING_BYTES = 64 * 1024
ERROR_LOG_PERIOD_S = 60.0
METHODS = ("GET", "HEAD")
BODILESS = (204, 304)  # statuses that have no body, nor its type and length


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # percent-decoded
    tail: str  # what follows a prefix route's prefix ("" for an exact route)
    query: Mapping[str, str]  # the first value of each name
    raw_query: str  # as sent, after the "?"
    headers: Mapping[str, str]  # lower-case names; a repeated header's last value
    transport: asyncio.Transport


@dataclass(frozen=True, slots=True)
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stream:
    """A response whose body is written as it comes. `ended` is called exactly once,
    when the stream is over for whatever reason, even if it never started."""

    chunks: AsyncIterator[bytes]
    ended: Callable[[], None]
    headers: Mapping[str, str] = field(default_factory=dict)


class HttpError(P1evseError):
    """Raised by a handler: answered with its status and one line of text."""

    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None):
        super().__init__(text)
        self.response = Response(text.encode(), status, headers=headers or {})


Handler = Callable[[Request], Awaitable[Response | Stream]]
Gate = Callable[[str, Mapping[str, str], Mapping[str, str]], Response | None]


class Routes:
    """Exact paths, and prefixes whose handler reads the rest of the path."""

    def __init__(self) -> None:
        self._exact: dict[str, Handler] = {}
        self._prefixes: list[tuple[str, Handler]] = []

    def get(self, path: str, handler: Handler) -> None:
        self._exact[path] = handler

    def under(self, prefix: str, handler: Handler) -> None:
        self._prefixes.append((prefix, handler))

    def find(self, path: str) -> tuple[Handler, str] | None:
        handler = self._exact.get(path)
        if handler is not None:
            return handler, ""
        for prefix, handler in self._prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return handler, path[len(prefix) :]
        return None


class Service:
    """What every connection of one server shares: its routes, the gate each request
    passes first (the token), the headers every response carries, the header timeout."""

    def __init__(
        self,
        routes: Routes,
        gate: Gate,
        headers: Mapping[str, str],
        header_timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.routes = routes
        self.gate = gate
        self.headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        self.header_timeout = header_timeout
        self.loop = loop
        self.errors = RateLimiter(ERROR_LOG_PERIOD_S, loop.time)
        self.open: set[HttpConnection] = set()

    def connection(self) -> asyncio.Protocol:
        return HttpConnection(self)

    def close(self) -> None:
        """Close every open connection (a stream's handler ends with it)."""
        for connection in list(self.open):
            connection.close()


class HttpConnection(asyncio.Protocol):
    """One client's connection: requests in turn (keep-alive), each answered by its
    handler's task. The header timer runs while a request's head is awaited: from the
    connection's start and after each answer, however many bytes trickle in."""

    def __init__(self, service: Service) -> None:
        self._service = service
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writes are paused
        self._streaming = False
        self._lost = False

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # a TCP server's always is
            raise TypeError(f"expected a stream transport, got {type(transport).__name__}")
        self._transport = transport
        self._service.open.add(self)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        if self._task is None:
            self._next_request()
        elif len(self._h11.trailing_data[0]) > MAX_PENDING_BYTES:
            self._abort()

    def eof_received(self) -> bool:
        """The client sends no more. A request it sent is still answered (`nc` without
        -N ends its side at once); a stream, whose client can only be leaving, ends."""
        if self._streaming:
            return False
        self._h11.receive_data(b"")  # h11 ends the connection after what came before it
        if self._task is None:
            self._next_request()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._service.open.discard(self)
        self._disarm_header_timer()
        if self._task is not None:
            self._task.cancel()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("the client went away"))
            self._writable.exception()  # retrieved: nobody may be waiting for it

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = self._service.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- requests ------------------------------------------------------------------

    def _next_request(self) -> None:
        """Take the next request from what has come in, if its head is complete."""
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            self._refuse(exc.error_status_hint, str(exc))
            return
        if isinstance(event, h11.Request):
            self._disarm_header_timer()
            # h11 bounds a head that is still coming in; one that came in whole is
            # bounded here
            size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
            if size > MAX_HEAD_BYTES:
                self._refuse(431, f"the request's head is over {MAX_HEAD_BYTES} bytes")
                return
            if event.http_version not in (b"1.0", b"1.1"):
                self._refuse(505, f"HTTP/{event.http_version.decode()} is not served")
                return
            names = {name for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                # RFC 9112 6.1: how requests are smuggled past a proxy; never kept open
                self._refuse(400, "both Content-Length and Transfer-Encoding")
                return
            self._task = self._service.loop.create_task(self._answer(event))
        elif isinstance(event, h11.ConnectionClosed):
            self.close()

    async def _answer(self, event: h11.Request) -> None:
        try:
            found = self._request(event)
            if isinstance(found, Response):
                self._send(found, head_only=event.method == b"HEAD")
            else:
                await self._serve(*found)
            # the next pipelined request waits until the client takes this answer: a
            # client that asks and does not read holds one answer in memory, not all
            await self._drained()
        except asyncio.CancelledError:
            return  # the client went away
        except (ConnectionError, h11.LocalProtocolError):
            self.close()
            return
        self._task = None
        self._finish_cycle()

    def _request(self, event: h11.Request) -> tuple[Request, Handler] | Response:
        """The request and its handler, or the answer to a request refused before one."""
        service = self._service
        method = event.method.decode("ascii", "replace")
        raw = event.target.decode("ascii", "replace")
        if raw.startswith("/"):  # origin-form: "//x/y" is a path, not an authority
            raw_path, _, raw_query = raw.partition("?")
        else:
            try:
                target = urlsplit(raw)
            except ValueError as exc:  # an absolute URL with a broken host
                return Response(f"bad request: {exc}\n".encode(), 400)
            raw_path, raw_query = target.path, target.query
        path = unquote(raw_path, errors="replace")
        query = dict(reversed(parse_qsl(raw_query, keep_blank_values=True)))
        headers = {
            name.decode("ascii", "replace"): value.decode("latin-1")
            for name, value in event.headers
        }
        refusal = service.gate(path, query, headers)
        if refusal is not None:
            return refusal
        if method not in METHODS:
            return Response(
                b"only GET and HEAD: this server is read-only\n",
                405,
                headers={"Allow": "GET, HEAD"},
            )
        found = service.routes.find(path)
        if found is None:
            return Response(b"not found\n", 404)
        if self._transport is None:
            raise ConnectionResetError("no transport")
        handler, tail = found
        return Request(method, path, tail, query, raw_query, headers, self._transport), handler

    async def _serve(self, request: Request, handler: Handler) -> None:
        try:
            answer = await handler(request)
        except HttpError as exc:
            answer = exc.response
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            more = self._service.errors.note(request.path)
            if more is not None:
                log.exception("status page: %s failed%s", request.path, more)
            answer = Response(b"internal error\n", 500)
        head_only = request.method == "HEAD"
        if isinstance(answer, Response):
            self._send(answer, head_only)
        else:
            await self._stream(answer, head_only)

    def _send(self, response: Response, head_only: bool) -> None:
        framing = []
        if response.status not in BODILESS:
            framing = [
                (b"content-type", response.content_type.encode()),
                (b"content-length", str(len(response.body)).encode()),
            ]
        out = self._h11.send(self._head(response.status, framing, response.headers))
        if not head_only and response.body:
            out += self._h11.send(h11.Data(data=response.body))
        self._write(out + self._h11.send(h11.EndOfMessage()))

    async def _stream(self, stream: Stream, head_only: bool) -> None:
        try:
            self._write(self._h11.send(self._head(200, [], stream.headers)))
            if not head_only:
                self._streaming = True
                async for chunk in stream.chunks:
                    self._write(self._h11.send(h11.Data(data=chunk)))
                    await self._drained()
            self._write(self._h11.send(h11.EndOfMessage()))
        finally:
            stream.ended()

    def _head(
        self,
        status: int,
        framing: list[tuple[bytes, bytes]],
        extra: Mapping[str, str],
    ) -> h11.Response:
        headers = [*framing, *self._service.headers]
        headers += [(name.encode(), value.encode()) for name, value in extra.items()]
        return h11.Response(
            status_code=status, headers=headers, reason=http.HTTPStatus(status).phrase.encode()
        )

    def _finish_cycle(self) -> None:
        """After an answer: the next request on this connection, or its close."""
        h11_conn = self._h11
        try:
            while h11_conn.their_state is h11.SEND_BODY:  # the end of a request without body
                if h11_conn.next_event() in (h11.NEED_DATA, h11.PAUSED):
                    break
        except h11.RemoteProtocolError:
            pass
        if h11_conn.our_state is h11.DONE and h11_conn.their_state is h11.DONE:
            h11_conn.start_next_cycle()
            self._arm_header_timer()
            self._next_request()
        else:  # the client asked to close, or sent a body nobody reads
            self.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a request that could not be read, then close."""
        body = f"{http.HTTPStatus(status).phrase.lower()}: {reason}\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            self._write(self._h11.send(self._head(status, headers, {})))
            self._write(self._h11.send(h11.Data(data=body)))
        except (h11.LocalProtocolError, ConnectionError):
            pass  # an answer was already under way, or a HEAD's has no body
        self.close()

    # -- the transport -------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._lost or self._transport is None:
            raise ConnectionResetError("the client went away")
        self._transport.write(data)

    async def _drained(self) -> None:
        if self._writable is not None:
            await self._writable

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self._service.loop.call_later(self._service.header_timeout, self.close)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def close(self) -> None:
        """Close once what is written has gone out; a client that does not take it
        within the header timeout is cut off, so it cannot hold the connection."""
        self._disarm_header_timer()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
            if self._transport.get_write_buffer_size():
                self._service.loop.call_later(self._service.header_timeout, self._cut)

    def _cut(self) -> None:
        if not self._lost and self._transport is not None:
            reset(self._transport)

    def _abort(self) -> None:
        self._disarm_header_timer()
        if self._transport is not None:
            reset(self._transport)
