"""An independent MQTT client for tests: plain paho on its own network thread,
handing messages to the test's event loop."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

_ids = itertools.count()
# How long a test waits for something that must happen: waiting costs nothing when it
# does, so this only has to outlast a machine many times slower than a quiet one.
EVENT_TIMEOUT_S = 60.0
TIMEOUT_S = EVENT_TIMEOUT_S


class Probe:
    def __init__(self, port: int, **credentials: Any) -> None:
        self.port = port
        self._loop = asyncio.get_running_loop()
        self._queues: dict[str, asyncio.Queue[paho.MQTTMessage]] = {}
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._connected: asyncio.Future[Any] = self._loop.create_future()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{next(_ids)}")
        if credentials:
            self.client.username_pw_set(credentials["username"], credentials.get("password"))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    async def __aenter__(self) -> Probe:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        await asyncio.wait_for(self._connected, TIMEOUT_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    async def subscribe(self, *topics: str) -> None:
        for topic in topics:
            self._queues.setdefault(topic, asyncio.Queue())
            _, mid = self.client.subscribe(topic, qos=1)
            ack = self._acks.setdefault(mid, self._loop.create_future())
            await asyncio.wait_for(ack, TIMEOUT_S)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)

    async def next(self, topic: str, timeout: float = TIMEOUT_S) -> paho.MQTTMessage:
        return await asyncio.wait_for(self._queues[topic].get(), timeout)

    async def next_payload(self, topic: str, timeout: float = TIMEOUT_S) -> str:
        message = await self.next(topic, timeout)
        return bytes(message.payload).decode()

    async def wait_for_payload(self, topic: str, payload: str, timeout: float = TIMEOUT_S) -> None:
        """Skip messages on `topic` until one carries `payload`."""
        async with asyncio.timeout(timeout):
            while await self.next_payload(topic) != payload:
                pass

    def pending(self, topic: str) -> list[str]:
        queue = self._queues[topic]
        return [bytes(queue.get_nowait().payload).decode() for _ in range(queue.qsize())]

    # paho's network thread -> the test's loop

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._loop.call_soon_threadsafe(self._settle, self._connected, reason)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._loop.call_soon_threadsafe(self._ack, mid)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        self._loop.call_soon_threadsafe(self._deliver, message)

    def _deliver(self, message: paho.MQTTMessage) -> None:
        for topic, queue in self._queues.items():
            if paho.topic_matches_sub(topic, message.topic):
                queue.put_nowait(message)

    def _ack(self, mid: int) -> None:
        self._settle(self._acks.setdefault(mid, self._loop.create_future()), None)

    @staticmethod
    def _settle(future: asyncio.Future[Any], value: Any) -> None:
        if not future.done():
            future.set_result(value)
