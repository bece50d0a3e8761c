"""Live updates for status pages (Server-Sent Events) that never hold up a publish.

The web server shares the event loop with the bridge. So the state's change callback
only schedules a push for later (after the publish that caused it has been written),
pushes are at most one per `push_period_s`, and a push hands each page its bytes with
`put_nowait` on a bounded queue: a page whose queue is full has not kept up and is cut
off (its browser reconnects by itself and gets the full state again), never waited for.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from p1evse.counts import Count
from p1evse.status.state import SiteState
from p1evse.web.limits import reset

QUEUE_SIZE = 64  # messages; at most 10 a second, so seconds of backlog
PUSH_PERIOD_S = 0.1
RETRY_MS = 2000  # how soon a browser reconnects after losing the stream


def sse_message(event: str, data: Any, retry_ms: int | None = None) -> bytes:
    retry = f"retry: {retry_ms}\n" if retry_ms is not None else ""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"{retry}event: {event}\ndata: {payload}\n\n".encode()


@dataclass(eq=False, slots=True)
class PageClient:
    """One open event stream. `abort` cuts its connection at once."""

    transport: asyncio.WriteTransport | None
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def abort(self) -> None:
        if self.transport is not None:
            reset(self.transport)


class Fanout:
    """The open event streams; `send` costs one `put_nowait` per stream."""

    def __init__(self) -> None:
        self._clients: set[PageClient] = set()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._clients)

    def counts(self) -> list[Count]:
        return [
            Count(
                "page_clients_dropped",
                "Status pages cut off because they did not keep up",
                self.dropped,
            )
        ]

    def add(self, transport: asyncio.WriteTransport | None) -> PageClient:
        client = PageClient(transport)
        self._clients.add(client)
        return client

    def remove(self, client: PageClient) -> None:
        self._clients.discard(client)

    def send(self, message: bytes) -> None:
        for client in list(self._clients):
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._clients.discard(client)
                self.dropped += 1
                client.abort()

    def close(self) -> None:
        """End every stream: its writer finishes what is queued, or is cut off."""
        for client in self._clients:
            try:
                client.queue.put_nowait(None)
            except asyncio.QueueFull:
                client.abort()
        self._clients.clear()


class StatePush:
    """Turns state changes into `state` messages for every open stream: the snapshot
    and the chart rows changed since the previous push."""

    def __init__(
        self,
        state: SiteState,
        fanout: Fanout,
        loop: asyncio.AbstractEventLoop,
        push_period_s: float = PUSH_PERIOD_S,
    ) -> None:
        self._state = state
        self._fanout = fanout
        self._loop = loop
        self.push_period_s = push_period_s
        self._pending: asyncio.Handle | None = None
        self._next_push = 0.0
        self._since: int | None = None  # the newest chart bucket of the previous push

    def first_message(self) -> bytes:
        """What a new stream starts with: the whole state and chart."""
        state = self._state
        data = {"full": True, "state": state.snapshot(), "history": state.history_json()}
        return sse_message("state", data, retry_ms=RETRY_MS)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def changed(self) -> None:
        """The state changed: a push within `push_period_s` (a state listener)."""
        if self._pending is not None:
            return
        delay = self._next_push - self._loop.time()
        if delay > 0:
            self._pending = self._loop.call_later(delay, self._push)
        else:
            # call_soon: the MQTT write of the value that caused this comes first
            self._pending = self._loop.call_soon(self._push)

    def _push(self) -> None:
        self._pending = None
        self._next_push = self._loop.time() + self.push_period_s
        state = self._state
        since = self._since
        self._since = state.history.latest
        if not len(self._fanout):
            return
        data = {"full": False, "state": state.snapshot(), "history": state.history_json(since)}
        self._fanout.send(sse_message("state", data))
