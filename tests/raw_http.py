"""A raw HTTP/1.1 client for the page's port: the test decides byte by byte what it
sends, and reads the answers as they come."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

ANSWER_WITHIN_S = 10.0
CLOSED_WITHIN_S = 30.0  # an upper bound that only a server that never closes reaches


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self) -> tuple[int, dict[str, str]]:
        """The status and headers (lower-case names) of the next response."""
        async with asyncio.timeout(ANSWER_WITHIN_S):
            raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.lower()] = value.strip()
        return int(lines[0].split(" ", 2)[1]), headers

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response with a Content-Length: status, headers, body."""
        status, headers = await self.head()
        async with asyncio.timeout(ANSWER_WITHIN_S):
            body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, body

    async def chunk(self) -> bytes:
        """One chunk of a chunked body."""
        async with asyncio.timeout(ANSWER_WITHIN_S):
            size = int(await self.reader.readuntil(b"\r\n"), 16)
            data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def closed_by_server(self) -> bytes:
        """Everything the server still sent, once it has closed the connection."""
        received = b""
        async with asyncio.timeout(CLOSED_WITHIN_S):
            with contextlib.suppress(ConnectionResetError):
                while data := await self.reader.read(65536):
                    received += data
        return received


@asynccontextmanager
async def connect(host: str, port: int) -> AsyncIterator[Client]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield Client(reader, writer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
