"""What one client may cost on the page's port, enforced below HTTP.

The page shares the event loop, the file descriptors and the memory with the bridge that
feeds the charger, so nothing a client does may take those away:

- at most `web.max_connections` are open at once; one more is answered `503` and closed
  the moment it is accepted, before anything is made for it;
- a connection whose writes stay blocked for `web.write_timeout` (the client stopped
  reading: a stalled page's event stream, a response nobody takes) is reset, which also
  drops what the kernel still holds for it.

Refusals and cuts are counted for /metrics and logged at most once a minute per limit.
(The header timeout is the connection's own, in http.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable

from p1evse.counts import Count
from p1evse.ratelimit import RateLimiter

log = logging.getLogger(__name__)

LOG_PERIOD_S = 60.0
# SO_LINGER on with a zero timeout: close() sends a reset and frees the buffers at once
RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class Limit(enum.StrEnum):
    """The setting that made p1evse refuse or cut a client."""

    MAX_CONNECTIONS = "max_connections"
    MAX_STREAMS = "max_streams"
    WRITE_TIMEOUT = "write_timeout"


class PortCounters:
    """The page's open connections, and how often each limit acted (for /metrics);
    each limit's action is logged at most once a period."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.open = 0
        self.acted: Counter[Limit] = Counter()
        self._log = RateLimiter(LOG_PERIOD_S, clock)

    def count(self, limit: Limit, message: str) -> None:
        self.acted[limit] += 1
        more = self._log.note(limit)
        if more is None:
            return
        log.warning("status page: %s%s", message, more)

    def counts(self) -> list[Count]:
        return [
            *(
                Count(
                    "web_refused",
                    "Connections and live streams refused at web.max_connections or "
                    "web.max_streams",
                    self.acted[limit],
                    {"limit": limit.value},
                )
                for limit in (Limit.MAX_CONNECTIONS, Limit.MAX_STREAMS)
            ),
            Count(
                "web_stalled",
                "Connections reset because the client left a write unread for web.write_timeout",
                self.acted[Limit.WRITE_TIMEOUT],
            ),
        ]


def reset(transport: asyncio.WriteTransport) -> None:
    """Close at once with a TCP reset: the bytes the kernel still holds for a client that
    does not read them are dropped, instead of lingering after the close."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_ON_CLOSE)
    transport.abort()


class ConnectionLimit:
    """The protocol factory for the page's port: each connection gets a `_Guard`, which
    admits it (and makes its HTTP protocol, `serve()`) only below the cap."""

    def __init__(
        self,
        serve: Callable[[], asyncio.Protocol],
        max_connections: int,
        write_timeout: float,
        counters: PortCounters,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._serve = serve
        self._max = max_connections
        self._write_timeout = write_timeout
        self._counters = counters
        self._loop = loop
        body = f"too many connections: web.max_connections is {max_connections}\n".encode()
        self._refusal = (
            b"HTTP/1.1 503 Service Unavailable\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Retry-After: 10\r\n"
            b"Connection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    def __call__(self) -> asyncio.Protocol:
        return _Guard(self)

    def admit(self, transport: asyncio.Transport) -> asyncio.Protocol | None:
        counters = self._counters
        if counters.open >= self._max:
            transport.write(self._refusal)  # a few bytes: a fresh socket takes them at once
            transport.close()
            counters.count(
                Limit.MAX_CONNECTIONS,
                f"refused a connection from {peer(transport)}: "
                f"web.max_connections ({self._max}) are open",
            )
            return None
        counters.open += 1
        return self._serve()

    def left(self) -> None:
        self._counters.open -= 1

    def watch(self, transport: asyncio.Transport) -> asyncio.TimerHandle:
        """Cut `transport` unless its writes resume within `write_timeout`."""
        return self._loop.call_later(self._write_timeout, self._cut, transport)

    def _cut(self, transport: asyncio.Transport) -> None:
        self._counters.count(
            Limit.WRITE_TIMEOUT,
            f"cut {peer(transport)}, which stopped reading: a write waited "
            f"web.write_timeout ({self._write_timeout:g} s)",
        )
        reset(transport)


class _Guard(asyncio.Protocol):
    """One connection: its HTTP protocol if admitted, and a timer that runs
    while the transport's writes are paused (its buffer is full: nobody reads)."""

    __slots__ = ("_limit", "_served", "_stall", "_transport")

    def __init__(self, limit: ConnectionLimit) -> None:
        self._limit = limit
        self._served: asyncio.Protocol | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.Transport):  # a TCP server's always is
            raise TypeError(f"expected a stream transport, got {type(transport).__name__}")
        self._transport = transport
        self._served = self._limit.admit(transport)
        if self._served is not None:
            self._served.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stall is not None:
            self._stall.cancel()
        if self._served is not None:
            self._limit.left()
            self._served.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._served is not None:
            self._served.data_received(data)

    def eof_received(self) -> bool | None:
        return self._served.eof_received() if self._served is not None else None

    def pause_writing(self) -> None:
        if self._served is not None and self._transport is not None:
            self._stall = self._limit.watch(self._transport)
            self._served.pause_writing()

    def resume_writing(self) -> None:
        if self._served is not None:
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None
            self._served.resume_writing()


def peer(transport: asyncio.BaseTransport | None) -> str:
    """The client's address, for a log line (a client already gone has none)."""
    address = None if transport is None else transport.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return "an unknown address"
