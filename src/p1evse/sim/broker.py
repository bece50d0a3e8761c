"""An MQTT broker in pure Python (amqtt), for the demo and where mosquitto is missing.

`python -m p1evse.sim.broker PORT` runs one in its own process, as the tests do.

Known of amqtt 0.12, and left as it is: when a client's DISCONNECT and the closing of
its connection are read together (a loaded broker), its reader cancels the DISCONNECT's
handling and publishes the client's will as if it had died. Tests that a clean stop
fires no will run on mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from amqtt.broker import Broker as AmqttBroker

from p1evse.errors import P1evseError

_Subscriptions = dict[str, list[Any]]


class _SnapshotDict(_Subscriptions):
    """amqtt's table of subscriptions, iterated over a copy.

    amqtt 0.12 walks this table with awaits inside the loop (retained messages for a
    client that connects, and every broadcast); a client that subscribes meanwhile
    changes its size, and the connecting client's session dies with "dictionary changed
    size during iteration". Walking a snapshot is what the loops mean to do."""

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))

    def items(self) -> list[tuple[str, list[Any]]]:  # type: ignore[override]
        return list(super().items())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def embedded_broker(port: int = 0, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """Run an anonymous broker on host:port (a free port for 0); yields the port."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    if port:
        _check_free(host, port)
    port = port or free_port(host)
    broker = AmqttBroker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    broker._subscriptions = _SnapshotDict()  # see _SnapshotDict
    await broker.start()
    try:
        yield port
    finally:
        await broker.shutdown()


class PortInUse(P1evseError):
    """The port asked for the embedded broker is taken."""


def _check_free(host: str, port: int) -> None:
    """Bind it as asyncio's server will (SO_REUSEADDR), to say a taken port in one line
    (amqtt would log its traceback first)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"{host}:{port}: {exc.strerror or exc}") from None


async def _serve(port: int) -> None:
    async with embedded_broker(port):
        print(f"listening on {port}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
