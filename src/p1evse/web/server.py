"""The status page and its read-only endpoints, on aiohttp, in the bridge's event loop.

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
import json
import logging
import os
import resource
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from p1evse.backoff import Backoff
from p1evse.settings import is_loopback
from p1evse.status.state import HISTORY_RANGES
from p1evse.web.assets import STATIC_DIR
from p1evse.web.limits import ConnectionLimit, Limit, PortCounters, peer
from p1evse.web.metrics import Metrics
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
SHUTDOWN_TIMEOUT_S = 0.5
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
OPEN_PATHS = ("/healthz", "/static/")  # no token needed: health probes, public files

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.backoff = Backoff(RETRY_INITIAL_S, RETRY_CAP_S)
        self.listening = asyncio.Event()  # set once the page is served

    @property
    def url(self) -> str:
        host, port = self._address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

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
        await asyncio.Event().wait()  # served by aiohttp's own callbacks until cancelled

    async def _listen(self) -> None:
        settings = self._settings
        runner = web.AppRunner(
            self._application(),
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            # The header timeout. aiohttp arms its keep-alive timer when a connection is
            # made (since 3.14.4) and again after each response, and at its end closes
            # the connection if it still waits for a request's headers, however many
            # bytes of them came: the first request and every later one must be in
            # within this, and an idle keep-alive connection lasts as long.
            keepalive_timeout=settings.header_timeout,
            # a page that leaves ends its stream at once, and frees its web.max_streams
            # slot, instead of at the next write that fails (up to PING_PERIOD_S later)
            handler_cancellation=True,
        )
        await runner.setup()
        if runner.server is None:
            raise RuntimeError("aiohttp's runner made no server in setup()")
        limit = ConnectionLimit(
            runner.server,
            settings.max_connections,
            settings.write_timeout,
            self.port,
            self._loop,
        )
        try:
            server = await self._loop.create_server(
                limit, self._address.host, self._address.port, backlog=ACCEPT_BACKLOG
            )
        except OSError:
            await runner.cleanup()
            raise
        self._server = server
        self._runner = runner

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # not wait_closed(): a client that does not read holds it
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the aiohttp application ---------------------------------------------------

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[self._require_token])
        app.on_response_prepare.append(_security_headers)
        self._routes(app.router)
        app.router.add_static("/static/", STATIC_DIR)
        return app

    def _routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    @web.middleware
    async def _require_token(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._token is None or request.path.startswith(OPEN_PATHS):
            return await handler(request)
        offered = request.query.get("token", "")
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            offered = credentials.strip()
        if not hmac.compare_digest(offered.encode(), self._token):
            raise web.HTTPUnauthorized(
                text="a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
                headers={"WWW-Authenticate": 'Bearer realm="p1evse"'},
            )
        return await handler(request)


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

    def _routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self._page)
        router.add_get("/api/state", self._api_state)
        router.add_get("/api/history", self._api_history)
        router.add_get("/api/events", self._events)
        router.add_get("/metrics", make_aiohttp_handler(self.metrics.registry))
        router.add_get("/healthz", self._healthz)

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _api_state(self, request: web.Request) -> web.Response:
        return json_response(self._state.snapshot())

    async def _api_history(self, request: web.Request) -> web.Response:
        """?range=hour (the default: the last hour at 1 s) or today (a row a minute)."""
        wanted = request.query.get("range", "hour")
        for range_ in HISTORY_RANGES:
            if wanted == range_:
                return json_response(self._state.history_json(range_=range_))
        raise web.HTTPBadRequest(
            text=f"range must be one of {', '.join(HISTORY_RANGES)}\n", headers=NO_STORE
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        problem = self._state.unhealthy(self._loop.time())
        if problem is not None:
            return web.Response(status=503, text=f"unhealthy: {problem}\n", headers=NO_STORE)
        age = self._state.reading_age(self._loop.time()) or 0.0
        return web.Response(
            text=f"ok: broker connected, last reading {age:.1f} s ago\n", headers=NO_STORE
        )

    async def _events(self, request: web.Request) -> web.StreamResponse:
        limit = self._settings.max_streams
        if self._streams >= limit:
            self.port.count(
                Limit.MAX_STREAMS,
                f"refused a live stream to {peer(request.transport)}: "
                f"web.max_streams ({limit}) are open",
            )
            raise web.HTTPServiceUnavailable(
                text=f"too many live pages: web.max_streams is {limit}\n",
                headers={"Retry-After": str(RETRY_STREAM_S)},
            )
        self._streams += 1  # before the first await: the cap holds for streams starting
        try:
            return await self._stream(request)
        finally:
            self._streams -= 1

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a reverse proxy should not hold messages back
            }
        )
        await response.prepare(request)
        transport = request.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=STREAM_BUFFER)
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        # the first message and joining the fan-out happen in one step: nothing is missed
        first = self.push.first_message()
        client = self.fanout.add(transport)
        try:
            await response.write(first)
            while True:
                try:
                    async with asyncio.timeout(PING_PERIOD_S):  # no task per wait, unlike wait_for
                        message = await client.queue.get()
                except TimeoutError:
                    message = b": ping\n\n"
                if message is None:
                    break
                await response.write(message)
        except (ConnectionError, RuntimeError):
            pass  # the page went away, or was cut off for not keeping up or not reading
        finally:
            self.fanout.remove(client)
        return response


NO_STORE = {"Cache-Control": "no-store"}


def _why(exc: OSError) -> str:
    """ "Address already in use", without asyncio's wrapping of it."""
    if exc.errno is not None and exc.errno > 0:  # a name lookup's errors are negative
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def json_response(data: Any) -> web.Response:
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return web.Response(text=body, content_type="application/json", headers=NO_STORE)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)
