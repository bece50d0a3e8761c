"""Where raw telegrams come from in tests: a pseudo-terminal pair standing in for the
P1 cable's serial port, and a TCP gateway (P1-to-WiFi dongle, ser2net) on loopback;
and the `p1` source running on them, with a way to wait until it listens."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from p1evse.backoff import Backoff
from p1evse.model import Reading
from p1evse.sources.p1 import P1Settings, P1Source
from tests import telegrams
from tests.intakes import RecordingIntake
from tests.probe import EVENT_TIMEOUT_S


class SerialPort:
    """A pseudo-terminal pair behind a stable path (a symlink, as /dev/serial/by-id/...
    is): `unplug()` closes it, `plug()` makes a new one behind the same path.

    Writes never block the test's event loop (the source reads on the same loop): what
    the terminal cannot take yet is written when it can."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "ttyP1"
        self._fds: tuple[int, int] | None = None
        self._pending = bytearray()
        self._waiting: asyncio.AbstractEventLoop | None = None  # the loop watching for room

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline on the way, whenever the source opens it
        os.set_blocking(master, False)
        link = self.path.with_suffix(".new")
        link.symlink_to(os.ttyname(slave))
        link.replace(self.path)
        self._fds = (master, slave)

    def unplug(self) -> None:
        if self._fds is not None:
            if self._waiting is not None and not self._waiting.is_closed():
                self._waiting.remove_writer(self._fds[0])
            self._waiting = None
            for fd in self._fds:
                os.close(fd)
            self._fds = None
            self._pending.clear()

    def write(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        assert self._fds is not None
        master = self._fds[0]
        try:
            written = os.write(master, self._pending)
        except BlockingIOError:
            written = 0
        del self._pending[:written]
        if self._pending and self._waiting is None:
            self._waiting = asyncio.get_running_loop()
            self._waiting.add_writer(master, self._flush)
        elif not self._pending and self._waiting is not None:
            self._waiting.remove_writer(master)
            self._waiting = None


class Gateway:
    """A P1-to-TCP gateway on a free loopback port; each connection is handed to the test."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()
        self._accepted: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._accepted.append(writer)
            await self._connections.put(writer)

        self._server = await asyncio.start_server(accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection (none is left for the garbage
        collector to close during a later test)."""
        for writer in self._accepted:
            writer.close()
        self._accepted.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def connection(self, timeout: float = EVENT_TIMEOUT_S) -> asyncio.StreamWriter:
        return await asyncio.wait_for(self._connections.get(), timeout)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


HELLO_W = 1.0  # the value of the telegrams that only wait for the source to listen
PACE_S = 0.05


@contextlib.asynccontextmanager
async def source(url: str, **settings: Any) -> AsyncIterator[tuple[P1Source, RecordingIntake]]:
    # a silence shorter than the settings allow (>= 5 s), to test it quickly
    idle_timeout = settings.pop("idle_timeout", None)
    p1 = P1Settings(url=url, **settings)
    if idle_timeout is not None:
        p1 = p1.model_copy(update={"idle_timeout": idle_timeout})
    p1_source = P1Source(p1, None, Backoff(initial=0.02, cap=0.1))
    intake = RecordingIntake()
    task = asyncio.create_task(p1_source.run(intake))
    try:
        yield p1_source, intake
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def listening(write: Callable[[bytes], None], intake: RecordingIntake) -> None:
    """Send a telegram every 50 ms until the source reads one: it has the port open."""
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while True:
            write(telegrams.dsmr5(import_w=HELLO_W))
            with contextlib.suppress(TimeoutError):
                await intake.next_reading(timeout=PACE_S)
                return


async def next_reading(intake: RecordingIntake) -> Reading:
    """The next reading that is not a `listening()` one."""
    while True:
        reading = await intake.next_reading()
        if reading.import_w != HELLO_W:
            return reading
