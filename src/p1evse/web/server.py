"""The status page and its read-only endpoints, in the bridge's event loop (web/http.py).

    /              the page (static files, no CDN; its chart library is vendored)
    /api/state     the site's state as JSON (never a secret)
    /api/history   the chart's rows: the last hour at 1 s, or ?range=today a row a minute
    /api/events    Server-Sent Events: the state and new chart rows as they change
    /metrics       Prometheus text
    /healthz       200 "ok ..." or 503 with the reason, one line

With `web.token` set, every path but /healthz and the page's static files wants it, as
`Authorization: Bearer TOKEN` or `?token=TOKEN` (the page passes it on to its stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import resource
import socket
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from p1evse.backoff import Backoff
from p1evse.settings import is_loopback
from p1evse.status.state import HISTORY_RANGES
from p1evse.web.assets import STATIC_DIR
from p1evse.web.files import Files
from p1evse.web.http import HttpError, Request, Response, Routes, Service, Stream
from p1evse.web.limits import ConnectionLimit, Limit, PortCounters, peer
from p1evse.web.metrics import Metrics, exposition
from p1evse.web.settings import ListenAddress, WebSettings
from p1evse.web.stream import Fanout, StatePush

if TYPE_CHECKING:
    from p1evse.loopwatch import LoopWatch
    from p1evse.mqtt import Broker
    from p1evse.status.state import SiteState
    from p1evse.supervise import Supervisor

log = logging.getLogger(__name__)

PING_PERIOD_S = 20.0  # a comment on an idle stream keeps proxies from closing it
# A page's stream needs little buffer. Small ones, in the kernel (doubled by it) and in
# the transport, pin little for a page that stops reading, and fill soon, so its writes
# block and web.write_timeout cuts it in seconds rather than after megabytes.
STREAM_SNDBUF = 16 * 1024
STREAM_BUFFER = 16 * 1024
# files (sockets) kept for all but the page: the meter, the broker, the charger, Python
RESERVED_FILES = 64
# Connections the kernel queues for p1evse to accept, which asyncio then accepts in one
# go: a flood is throttled by the kernel, and each burst of accepts holds the loop (and a
# value on its way to the charger) for a moment only. With asyncio's default of 100,
# bench/web.py's 1000 hostile connections raised the median publish latency from 0.7 ms
# to 10 ms; with 16 it stays where it was.
ACCEPT_BACKLOG = 16
# retrying a port that another program holds: soon at first, then once a minute at most
RETRY_INITIAL_S = 1.0
RETRY_CAP_S = 60.0
RETRY_STREAM_S = 30  # a refused page's stream: when to try again

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# the forms of an IPv4 address inet_aton takes besides dotted quads: 127.1, 0x7f.0.0.1
LEGACY_IPV4 = re.compile(r"[0-9a-fx.]{1,40}")
OPEN_PATHS = ("/healthz", "/static/")  # no token needed: health probes, public files
UNAUTHORIZED = Response(
    b"a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
    401,
    headers={"WWW-Authenticate": 'Bearer realm="p1evse"'},
)
PAGE_CACHE = "no-cache"  # a page is revalidated on every load: its files may change


def foreign_host(host: str | None) -> str | None:
    """The name in a Host header that is neither localhost nor an address, if it is.

    A page without a token is meant for whoever can reach its address, but a web page
    elsewhere can point a name of its own at that address (DNS rebinding: 127.0.0.1,
    or the LAN address of a NAS) and read it in the browser of anyone who can: a
    request under a name, not localhost's, is such a page's."""
    if host is None:
        return None
    host = host.strip(" \t")
    if host.startswith("["):  # [v6] or [v6]:port
        name = host[1:].partition("]")[0]
    elif host.count(":") > 1:  # an IPv6 address without its brackets
        name = host
    else:
        name = host.partition(":")[0]
    name = name.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost") or _is_address(name):
        return None
    return name


def _is_address(name: str) -> bool:
    """An IP address in any form a resolver takes as one (127.1 and 0x7f.1 too): no
    name that DNS could answer for."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        # inet_aton takes what follows a space as well: hex digits, x and dots only
        if not LEGACY_IPV4.fullmatch(name):
            return False
        try:
            socket.inet_aton(name)
        except OSError:
            return False
    return True


def _foreign_host_response(name: str) -> Response:
    return Response(
        f"Host {name[:80]}: a page without web.token answers to localhost, an IP address "
        "or a name of web.hosts only (a name could be any web page's, pointed here); set "
        "web.token, or list the name in web.hosts\n".encode(),
        403,
    )


def exposure_warning(settings: WebSettings) -> str | None:
    """What to tell a user whose page anyone on the network can read."""
    address = settings.address
    if settings.token is not None or address is None or is_loopback(address.host):
        return None
    return (
        f"web.listen {settings.listen}: the status page, /api/state and /metrics are "
        "readable by anyone who can reach this address; set web.token (or web.token_file) "
        "to require a token"
    )


def file_limit_warning(settings: WebSettings, open_files: int) -> str | None:
    """What to tell a user whose page may hold the files the bridge needs."""
    if (
        open_files == resource.RLIM_INFINITY
        or settings.max_connections <= open_files - RESERVED_FILES
    ):
        return None
    return (
        f"web.max_connections {settings.max_connections}: this process may open only "
        f"{open_files} files (ulimit -n, systemd's LimitNOFILE), and the meter, the broker "
        f"and the charger need some of them; keep it at {open_files - RESERVED_FILES} or "
        "below"
    )


class StatusServer:
    """What every status server does: listen (and retry a port it cannot have yet),
    bound its connections, ask for the token, set the security headers. What it serves
    is the subclass's `_routes`."""

    def __init__(
        self, settings: WebSettings, address: ListenAddress, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._settings = settings
        self._address = address
        self._loop = loop
        self.port = PortCounters(loop.time)
        self._token = (
            settings.token.get_secret_value().encode() if settings.token is not None else None
        )
        self._files = Files(STATIC_DIR)
        self._service: Service | None = None
        self._server: asyncio.Server | None = None
        self.backoff = Backoff(RETRY_INITIAL_S, RETRY_CAP_S)
        self.listening = asyncio.Event()  # set once the page is served

    @property
    def url(self) -> str:
        return f"http://{self._address.authority}/"

    async def run(self) -> None:
        """Serve the page until cancelled. A port it cannot have (in use by another
        program, an address not up yet) is retried with backoff while the bridge goes on
        feeding the charger; that is logged once, and once more when the page is up."""
        said_unavailable = False
        while True:
            try:
                await self._listen()
                break
            except OSError as exc:
                reason = _why(exc)
                if not said_unavailable:
                    log.warning(
                        "status page and /healthz unavailable: web.listen %s: %s; "
                        "the bridge runs on, retrying",
                        self._settings.listen,
                        reason,
                    )
                else:
                    log.debug("web.listen %s: still %s", self._settings.listen, reason)
                said_unavailable = True
            await asyncio.sleep(self.backoff.next_delay())
        log.info("status page on %s", self.url)
        open_files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        for warning in (
            exposure_warning(self._settings),
            file_limit_warning(self._settings, open_files),
        ):
            if warning is not None:
                log.warning("%s", warning)
        self.listening.set()
        await asyncio.Event().wait()  # served by the connections' own callbacks

    async def _listen(self) -> None:
        settings = self._settings
        routes = Routes()
        self._routes(routes)
        routes.under("/static/", self._static)
        service = Service(routes, self._gate, SECURITY_HEADERS, settings.header_timeout, self._loop)
        limit = ConnectionLimit(
            service.connection,
            settings.max_connections,
            settings.write_timeout,
            self.port,
            self._loop,
        )
        self._server = await self._loop.create_server(
            limit, self._address.host, self._address.port, backlog=ACCEPT_BACKLOG
        )
        self._service = service

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # not wait_closed(): a client that does not read holds it
            self._server = None
        if self._service is not None:
            self._service.close()
            self._service = None

    def _routes(self, routes: Routes) -> None:
        raise NotImplementedError

    def _gate(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> Response | None:
        """The token, asked of every path but the open ones; without one, a Host that
        names no other machine (`foreign_host`) or is one of web.hosts."""
        if path.startswith(OPEN_PATHS):
            return None
        if self._token is None:
            name = foreign_host(headers.get("host"))
            if name is None or name in self._settings.hosts:
                return None
            return _foreign_host_response(name)
        offered = query.get("token", "").encode()
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            # the bytes sent (UTF-8 or not); around them only HTTP's own spaces and tabs
            offered = credentials.strip(" \t").encode("latin-1")
        if not hmac.compare_digest(offered, self._token):
            return UNAUTHORIZED
        return None

    def _file(self, name: str, request: Request, cache: str | None = None) -> Response:
        response = self._files.response(name, request.headers, cache)
        if response is None:
            raise HttpError(404, "not found\n")
        return response

    async def _static(self, request: Request) -> Response:
        return self._file(request.tail, request)


class WebServer(StatusServer):
    """One site's page, its state, history and live stream, /metrics and /healthz."""

    def __init__(
        self,
        settings: WebSettings,
        address: ListenAddress,
        state: SiteState,
        broker: Broker,
        supervisor: Supervisor,
        loop: asyncio.AbstractEventLoop,
        loop_watch: LoopWatch,
    ) -> None:
        super().__init__(settings, address, loop)
        self._state = state
        self.fanout = Fanout()
        self.push = StatePush(state, self.fanout, loop)
        self.metrics = Metrics(
            state, broker, supervisor, self.fanout, self.port, loop.time, loop_watch
        )
        self._streams = 0

    async def close(self) -> None:
        self.push.close()
        self.fanout.close()
        await super().close()

    def _routes(self, routes: Routes) -> None:
        routes.get("/", self._page)
        routes.get("/api/state", self._api_state)
        routes.get("/api/history", self._api_history)
        routes.get("/api/events", self._events)
        routes.get("/metrics", self._metrics)
        routes.get("/healthz", self._healthz)

    async def _page(self, request: Request) -> Response:
        return self._file("index.html", request, PAGE_CACHE)

    async def _api_state(self, request: Request) -> Response:
        return json_response(self._state.snapshot())

    async def _api_history(self, request: Request) -> Response:
        """?range=hour (the default: the last hour at 1 s) or today (a row a minute)."""
        wanted = request.query.get("range", "hour")
        for range_ in HISTORY_RANGES:
            if wanted == range_:
                return json_response(self._state.history_json(range_=range_))
        raise HttpError(400, f"range must be one of {', '.join(HISTORY_RANGES)}\n", NO_STORE)

    async def _metrics(self, request: Request) -> Response:
        return exposition(self.metrics.registry, request.headers)

    async def _healthz(self, request: Request) -> Response:
        problem = self._state.unhealthy(self._loop.time())
        if problem is not None:
            return text_response(f"unhealthy: {problem}\n", 503)
        age = self._state.reading_age(self._loop.time()) or 0.0
        return text_response(f"ok: broker connected, last reading {age:.1f} s ago\n")

    async def _events(self, request: Request) -> Stream:
        limit = self._settings.max_streams
        if self._streams >= limit:
            self.port.count(
                Limit.MAX_STREAMS,
                f"refused a live stream to {peer(request.transport)}: "
                f"web.max_streams ({limit}) are open",
            )
            raise HttpError(
                503,
                f"too many live pages: web.max_streams is {limit}\n",
                {"Retry-After": str(RETRY_STREAM_S)},
            )
        transport = request.transport
        transport.set_write_buffer_limits(high=STREAM_BUFFER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        # the first message and joining the fan-out happen in one step: nothing is missed
        first = self.push.first_message()
        client = self.fanout.add(transport)
        self._streams += 1

        def ended() -> None:
            self._streams -= 1
            self.fanout.remove(client)

        return Stream(_messages(first, client.queue), ended, EVENT_STREAM_HEADERS)


async def _messages(first: bytes, queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    """A page's stream: the first message, then each pushed one, and a comment whenever
    nothing came for PING_PERIOD_S; until the fan-out ends it (None)."""
    yield first
    while True:
        try:
            async with asyncio.timeout(PING_PERIOD_S):  # no task per wait, unlike wait_for
                message = await queue.get()
        except TimeoutError:
            message = b": ping\n\n"
        if message is None:
            return
        yield message


EVENT_STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a reverse proxy should not hold messages back
}
NO_STORE = {"Cache-Control": "no-store"}


def _why(exc: OSError) -> str:
    """ "Address already in use", without asyncio's wrapping of it."""
    if exc.errno is not None and exc.errno > 0:  # a name lookup's errors are negative
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def json_response(data: Any) -> Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, content_type="application/json", headers=NO_STORE)


def text_response(text: str, status: int = 200) -> Response:
    return Response(text.encode(), status, headers=NO_STORE)
