"""The one connection to the MQTT broker: paho-mqtt driven by the asyncio event loop.

paho's protocol code is used as is; its socket is registered with the event loop
(`add_reader`) instead of running paho's own network thread, so messages are handled on
the loop with no thread hand-over and no queue between them. Only the blocking TCP/TLS
connect runs in a worker thread. bench/relay.py measures this against bare paho.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, SecretStr, field_validator, model_validator

from p1evse.backoff import Backoff
from p1evse.counts import Count, connection_counts
from p1evse.errors import P1evseError
from p1evse.mqtt_packets import (
    MAX_PACKET_BYTES,
    MalformedStream,
    PacketReader,
    publish_packet,
    qos0_publish,
)
from p1evse.ratelimit import RateLimiter
from p1evse.settings import (
    Host,
    PublishTopic,
    Section,
    check_tls_files,
    host_and_port,
    secrets_from_files,
)

log = logging.getLogger(__name__)


class TlsSettings(Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    @model_validator(mode="after")
    def _cert_needs_key(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        check_tls_files(self.ca_file, self.cert_file, self.key_file)
        return self


class MqttSettings(Section):
    host: Host = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: TlsSettings | None = None
    client_id: str = Field("p1evse", min_length=1, max_length=64)
    keepalive: int = Field(30, ge=5, le=3600)
    availability_topic: PublishTopic = "p1evse/status"
    # retained JSON of the whole state (meter, value sent, charger, stale, counters)
    state_topic: PublishTopic | None = "p1evse/state"

    @field_validator("client_id")
    @classmethod
    def _printable(cls, client_id: str) -> str:
        if not client_id.isprintable():  # a NUL: the broker never answers the CONNECT
            raise ValueError("a client id of letters, digits and signs, no control characters")
        return client_id

    @model_validator(mode="before")
    @classmethod
    def _password_from_file(cls, data: Any) -> Any:
        return secrets_from_files(data, "password")

    @field_validator("state_topic", mode="before")
    @classmethod
    def _empty_state_topic_is_off(cls, value: object) -> object:
        """`state_topic: ""` turns the state topic off, as `state_topic:` (null) does."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def endpoint(self) -> str:
        """The broker as /metrics labels it."""
        return f"mqtt://{host_and_port(self.host, self.port)}"

    @field_validator("tls", mode="before")
    @classmethod
    def _tls_flag(cls, value: object) -> object:
        """`tls: true` means TLS with the system's CAs; `tls: false` means plain TCP."""
        if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
            value = value.strip().lower() in {"true", "1"}
        if value is True:
            return {}
        if value is False:
            return None
        if value is not None and not isinstance(value, dict):
            keys = ", ".join(TlsSettings.model_fields)
            raise ValueError(f"expected true, false or a section of keys ({keys})")
        return value


PayloadHandler = Callable[[bytes | bytearray], None]
TopicHandler = Callable[[str, bytes | bytearray], None]


class MqttPort(Protocol):
    """What a site's parts need of an MQTT connection: `Broker`, or a virtual broker
    in simulation."""

    @property
    def connected(self) -> bool: ...

    def subscribe(self, topic: str, handler: PayloadHandler, *, retained: bool = True) -> None: ...

    def unsubscribe(self, topics: list[str]) -> None: ...

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool: ...

    def on_connected(self, listener: Callable[[], None]) -> None: ...

    def on_disconnected(self, listener: Callable[[], None]) -> None: ...

    def on_problem(self, listener: Callable[[str, str | None], None]) -> None: ...


CONNECT_TIMEOUT_S = 5.0
ONLINE = "online"
OFFLINE = "offline"
HANDLER_FAILURE_LOG_PERIOD_S = 60.0
# a connection that lasted less than this was closed by the broker right after it took
# it (another client with the same client id, an ACL): the next try waits, as after a
# failed one, instead of starting over from no delay
STABLE_AFTER_S = 10.0
SHORT_CONNECTION_LOG_PERIOD_S = 60.0  # what it says, at most this often
OVERSIZED_LOG_PERIOD_S = 60.0  # a message too long to read, said at most this often
# a broker that refuses a subscription: told to `on_problem` under this name
SUBSCRIPTIONS = "subscriptions"


class Retained(NamedTuple):
    """A retained message, published with QoS 1."""

    topic: str
    payload: str


class Will(NamedTuple):
    """What the broker publishes for this client when its connection dies unannounced."""

    topic: str
    payload: str
    qos: int = 1
    retain: bool = False


class BrokerUnavailable(P1evseError):
    """The broker could not be reached, or refused the connection."""


class BrokerRefused(BrokerUnavailable):
    """The broker answered but refused us (credentials, client id): a configuration error."""


@dataclass(slots=True)
class BrokerStats:
    connects: int = 0
    drops: int = 0  # connections lost after they were up
    failed_attempts: int = 0
    unsent: int = 0  # publishes dropped because the connection was down
    retained_skipped: int = 0  # old retained messages on topics that want live ones only
    handler_failures: int = 0  # messages whose handler raised
    oversized_skipped: int = 0  # packets longer than MAX_PACKET_BYTES, skipped unread
    refused: dict[str, str] = field(default_factory=dict)  # subscriptions refused: reason

    def refusal(self) -> str | None:
        """The subscriptions the broker refuses, as a problem for /healthz."""
        if not self.refused:
            return None
        return "the MQTT broker refused the subscription to " + ", ".join(
            f"{topic} ({reason})" for topic, reason in sorted(self.refused.items())
        )

    def counts(self, endpoint: str, prefix: str = "") -> list[Count]:
        labels = {"endpoint": endpoint}
        return [
            *connection_counts(endpoint, self.connects, self.drops, self.failed_attempts, prefix),
            Count(
                f"{prefix}unsent",
                "Messages dropped while the connection was down",
                self.unsent,
                labels,
            ),
            Count(
                f"{prefix}retained_skipped",
                "Old retained messages on topics that want live ones (a meter's, a charger's "
                "feed heard back), not taken",
                self.retained_skipped,
                labels,
            ),
            Count(
                f"{prefix}handler_failures",
                "Messages whose handler failed (a bug: logged with its traceback)",
                self.handler_failures,
                labels,
            ),
            Count(
                f"{prefix}oversized_skipped",
                f"Messages longer than {MAX_PACKET_BYTES} bytes, skipped unread",
                self.oversized_skipped,
                labels,
            ),
        ]


class _PahoClient(paho.Client):
    """paho, reading the packets the Broker hands it (`inbox`) instead of the socket:
    the Broker reads the socket in large chunks and keeps the QoS 0 PUBLISH packets to
    itself (p1evse.mqtt_packets); paho gets the rest, whole, to keep the session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = bytearray()
        self.closed = False  # the socket said end of stream, or failed

    def _sock_recv(self, bufsize: int) -> bytes:
        if self.inbox:
            chunk = bytes(self.inbox[:bufsize])
            del self.inbox[:bufsize]
            return chunk
        if self.closed:
            return b""  # paho: the connection is lost
        raise BlockingIOError


class TopicFilter:
    """An MQTT topic filter, split into levels once. paho's `topic_matches_sub` parses
    the filter on every call (8 µs); this costs about 1 µs, with the topic split once
    for all filters. `tests/test_mqtt_filter.py` holds it to paho's answers."""

    __slots__ = ("_levels", "_multi", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        levels = text.split("/")
        self._multi = levels[-1] == "#"
        self._levels = levels[:-1] if self._multi else levels

    def matches(self, levels: list[str]) -> bool:
        """Whether the topic split into `levels` matches."""
        pattern = self._levels
        if len(levels) != len(pattern) and not (self._multi and len(levels) >= len(pattern)):
            return False
        if levels[0].startswith("$") and (not pattern or pattern[0] == "+"):
            return False  # a wildcard at the first level does not match the broker's own
        for wanted, level in zip(pattern, levels, strict=False):
            if wanted != level and wanted != "+":
                return False
        return True


@dataclass(frozen=True, slots=True)
class _Subscription:
    handler: PayloadHandler
    retained: bool  # whether a retained message (an old value) is wanted
    subscribed: bool = True  # False: a route, brought by a pattern's subscription


# topics per SUBSCRIBE packet: a fleet's thousands of topics go in packets a broker takes
SUBSCRIBE_CHUNK = 256
READ_CHUNK_BYTES = 256 * 1024  # one recv
READ_TURN_BYTES = 1024 * 1024  # at most this much read in one loop turn, then others run
# QoS 0 messages waiting for a broker that does not read are dropped beyond this (a value
# that old is no use to a charger), rather than held without bound
MAX_UNSENT_BYTES = 4 * 1024 * 1024


class Broker:
    """Subscriptions survive reconnects; `publish` never blocks.

    Call `run()` as a task: it connects, reconnects with capped jittered backoff, and
    keeps the availability topic (retained `online`, last will `offline`) true. A
    connection that must not speak for the service (`p1evse check`, the dead-man's
    switch) says `announce=False`: no availability, and its own `will` if any; one beside
    the service's main connection says `quiet=True`. Connections made one after another
    that count as one (the switch's) share their `stats`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        backoff: Backoff | None = None,
        *,
        client_id: str | None = None,
        keepalive: int | None = None,
        announce: bool = True,
        will: Will | None = None,
        quiet: bool = False,
        stats: BrokerStats | None = None,
    ) -> None:
        self._settings = settings
        self._backoff = backoff or Backoff()
        self._client_id = client_id or settings.client_id
        self._keepalive = keepalive or settings.keepalive
        self._announce = announce
        # another connection reports the broker's comings and goings: this one says them
        # at debug level (a refusal still as an error)
        self._info_level = logging.DEBUG if quiet else logging.INFO
        self._warning_level = logging.DEBUG if quiet else logging.WARNING
        if announce:
            will = Will(settings.availability_topic, OFFLINE, qos=1, retain=True)
        self._will = will
        self.stats = stats if stats is not None else BrokerStats()
        self.connected = False
        self._handlers: dict[str, _Subscription] = {}
        self._wildcard_handlers: list[tuple[TopicFilter, _Subscription]] = []
        # subscribe_pattern's: the filter, its handler, whether retained messages are
        # wanted, and what is subscribed to (the filter, or a shared subscription of it)
        self._patterns: list[tuple[TopicFilter, TopicHandler, bool, str]] = []
        self._pending: dict[int, list[str]] = {}  # subscribe message id -> its topics
        self._leaving: dict[int, list[str]] = {}  # unsubscribe message id -> its topics
        self._connected_listeners: list[Callable[[], None]] = []
        self._disconnected_listeners: list[Callable[[], None]] = []
        self._problem_listeners: list[Callable[[str, str | None], None]] = []
        self._handler_failure_log = RateLimiter(HANDLER_FAILURE_LOG_PERIOD_S, time.monotonic)
        self._short_log = RateLimiter(SHORT_CONNECTION_LOG_PERIOD_S, time.monotonic)
        self._oversized_log = RateLimiter(OVERSIZED_LOG_PERIOD_S, time.monotonic)
        # the QoS 1 messages in flight on this connection, until the broker acknowledges
        # them: the goodbye waits for them all
        self._unacknowledged: set[int] = set()
        self._acknowledged = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._attempt: asyncio.Future[None] | None = None  # done when the attempt has ended
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._closing = False
        self._reading = False
        self._flush_wanted = False
        self._flush_scheduled = False
        self._writer_fd: int | None = None
        self._reader = PacketReader()
        self._out = bytearray()  # QoS 0 packets to send, before paho's (see _flush)
        self._client = self._make_client()

    @property
    def address(self) -> str:
        return host_and_port(self._settings.host, self._settings.port)

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    def counts(self) -> list[Count]:
        return self.stats.counts(self.endpoint)

    # -- what sources and sinks use -------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._client_id

    def subscribe(self, topic: str, handler: PayloadHandler, *, retained: bool = True) -> None:
        """Hand each message on `topic` to `handler`. `retained=False`: a retained
        message the broker replays on subscribing is an old value, not news, and is
        skipped (a meter's reading must be live)."""
        self.subscribe_many({topic: handler}, retained=retained)

    def subscribe_many(self, handlers: dict[str, PayloadHandler], *, retained: bool = True) -> None:
        """`subscribe` for many topics at once, in as few SUBSCRIBE packets as fit."""
        for topic, handler in handlers.items():
            subscription = _Subscription(handler, retained)
            if "+" in topic or "#" in topic:
                self._wildcard_handlers.append((TopicFilter(topic), subscription))
            else:
                self._handlers[topic] = subscription
        if self.connected:
            self._send_subscribe_chunked(list(handlers))

    def subscriptions(self) -> list[str]:
        """The topics and filters this connection subscribes to (not its routes)."""
        return [
            *(topic for topic, subscription in self._handlers.items() if subscription.subscribed),
            *(wildcard.text for wildcard, _ in self._wildcard_handlers),
            *(subscribed for _, _, _, subscribed in self._patterns),
        ]

    def subscribe_pattern(
        self,
        pattern: str,
        handler: TopicHandler,
        *,
        retained: bool = True,
        share_group: str | None = None,
    ) -> None:
        """Subscribe to a wildcard `pattern`. A message whose topic has a `route` goes
        there, found by a dict lookup; any other goes to `handler` with its topic (a
        fleet makes the route of a new site there). `share_group`: as one member of the
        shared subscription `$share/<group>/<pattern>`, of which the broker deals each
        message to one member."""
        subscribed = pattern if share_group is None else f"$share/{share_group}/{pattern}"
        self._patterns.append((TopicFilter(pattern), handler, retained, subscribed))
        if self.connected:
            self._send_subscribe([subscribed])

    def route(self, topic: str, handler: PayloadHandler, *, retained: bool = True) -> None:
        """Hand each message on the exact `topic` to `handler`, without subscribing:
        a pattern subscribed with `subscribe_pattern` brings them."""
        self._handlers[topic] = _Subscription(handler, retained, subscribed=False)

    def unroute(self, topics: list[str]) -> None:
        for topic in topics:
            subscription = self._handlers.get(topic)
            if subscription is not None and not subscription.subscribed:
                del self._handlers[topic]

    def unsubscribe(self, topics: list[str]) -> None:
        """Stop receiving `topics`. Messages the broker sent before it took this in
        (such as the retained ones of a subscription made just before) still reach
        their handlers: those go when the broker confirms."""
        if not self.connected:
            self._forget(topics)
            return
        _, mid = self._client.unsubscribe(topics)
        if mid is not None:
            self._leaving[mid] = topics

    def _forget(self, topics: list[str]) -> None:
        for topic in topics:
            self._handlers.pop(topic, None)
        self._wildcard_handlers = [
            (f, s) for f, s in self._wildcard_handlers if f.text not in topics
        ]

    def on_problem(self, listener: Callable[[str, str | None], None]) -> None:
        """Told (SUBSCRIPTIONS, what is wrong) when the broker refuses a subscription,
        and (SUBSCRIPTIONS, None) once every subscription is accepted again."""
        self._problem_listeners.append(listener)

    def on_connected(self, listener: Callable[[], None]) -> None:
        """Called after every (re)connect, once subscriptions are renewed."""
        self._connected_listeners.append(listener)

    def on_disconnected(self, listener: Callable[[], None]) -> None:
        """Called when a connection that was up is lost or closed."""
        self._disconnected_listeners.append(listener)

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        """Queue a message; False when the connection is down and it was dropped."""
        if not self.connected:
            self.stats.unsent += 1
            return False
        if qos == 0:  # built here in one step (p1evse.mqtt_packets), sent with the next flush
            if len(self._out) > MAX_UNSENT_BYTES:  # the broker stopped taking them
                self.stats.unsent += 1
                return False
            self._out += publish_packet(topic, payload, retain)
            self._schedule_flush()
            return True
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.stats.unsent += 1
            return False
        if qos > 0:
            self._unacknowledged.add(info.mid)
            self._acknowledged.clear()
        return True

    # -- lifecycle -----------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until `close()`; never raises for network trouble."""
        reported_down = False
        short_before = False  # the connection before this one was short too
        while not self._closing:
            try:
                await self.connect_once()
            except BrokerUnavailable as exc:
                short_before = False  # the broker went away: no other client took the id
                self.stats.failed_attempts += 1
                delay = self._backoff.next_delay()
                if not reported_down:
                    refused = isinstance(exc, BrokerRefused)
                    level = logging.ERROR if refused else self._warning_level
                    log.log(level, "MQTT broker %s: %s; retrying", self.address, exc)
                    reported_down = True
                else:
                    log.debug("MQTT broker %s: %s; next try in %.1f s", self.address, exc, delay)
                await asyncio.sleep(delay)
                continue
            reported_down = False
            log.log(self._info_level, "connected to MQTT broker %s", self.address)
            began = time.monotonic()
            await self._stay_connected()
            if self._closing:
                break
            self.stats.drops += 1
            lasted = time.monotonic() - began
            lost = "lost MQTT broker %s after %.1f s (%s); reconnecting"
            if lasted >= STABLE_AFTER_S:
                self._backoff.reset()
                short_before = False
                log.log(self._warning_level, lost, self.address, lasted, self._lost_reason)
                continue
            delay = self._backoff.next_delay()
            if not short_before:  # once, a broker shutting down does it too
                short_before = True
                log.log(self._warning_level, lost, self.address, lasted, self._lost_reason)
            elif (more := self._short_log.note("short")) is not None:
                log.log(
                    self._warning_level,
                    "MQTT broker %s closed the connection %.1f s after taking it (%s), "
                    "twice in a row: is another client connected with client id %r? Of "
                    "two with one id, a broker keeps only the newer. Next try in %.1f s%s",
                    self.address,
                    lasted,
                    self._lost_reason,
                    self._client_id,
                    delay,
                    more,
                )
            await asyncio.sleep(delay)

    async def connect_once(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and wait for the broker's answer; `BrokerUnavailable` says why not."""
        loop = asyncio.get_running_loop()
        self._attempt = attempt = loop.create_future()
        try:
            await self._connect(loop, timeout)
        finally:
            attempt.set_result(None)

    async def _connect(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._lost.clear()
        self._connack = loop.create_future()
        settings = self._settings
        try:
            await asyncio.to_thread(
                self._client.connect, settings.host, settings.port, self._keepalive
            )
        except ssl.SSLError as exc:
            raise BrokerUnavailable(f"TLS failed: {exc.reason or exc}") from None
        except socket.gaierror as exc:
            raise BrokerUnavailable(f"cannot resolve {settings.host!r}: {exc.strerror}") from None
        except OSError as exc:
            raise BrokerUnavailable(exc.strerror or str(exc) or type(exc).__name__) from None
        try:
            result = await asyncio.wait_for(asyncio.shield(self._connack), timeout)
        except TimeoutError:
            self._client.disconnect()
            raise BrokerUnavailable(f"no answer to CONNECT within {timeout:g} s") from None
        if result.is_failure:
            raise BrokerRefused(_refusal(result, settings, self._client_id))

    async def close(self, timeout: float = 1.0, last: Sequence[Retained] = ()) -> None:
        """Publish the `last` retained messages and `offline`, disconnect cleanly (so the
        broker drops the will) and stop reconnecting.

        The goodbye waits for the broker's acknowledgements first: the socket is then
        closed with nothing left unread in it. A socket closed with unread data sends a
        reset, which can overtake the DISCONNECT; the broker would take that for a
        death and publish the will."""
        self._closing = True
        try:
            async with asyncio.timeout(timeout):
                attempt = self._attempt
                if not self.connected and attempt is not None:
                    # an attempt under way: the broker may hold its will already, so it
                    # gets its goodbye too
                    await asyncio.shield(attempt)
                if self.connected:
                    await self._goodbye(last)
        except TimeoutError:
            log.warning("MQTT broker %s did not take the disconnect in time", self.address)

    async def _goodbye(self, last: Sequence[Retained]) -> None:
        """Every QoS 1 message still in flight, the ones sent before included, is
        acknowledged before the DISCONNECT: a broker may acknowledge out of order."""
        if self._announce:
            last = [*last, Retained(self._settings.availability_topic, OFFLINE)]
        for topic, payload in last:
            self.publish(topic, payload, qos=1, retain=True)
        if self._unacknowledged:
            await self._acknowledged.wait()
        self._client.disconnect()
        await self._lost.wait()

    async def _stay_connected(self) -> None:
        """Wait for the connection to drop, running paho's keepalive housekeeping."""
        while not self._lost.is_set():
            try:
                await asyncio.wait_for(self._lost.wait(), 1.0)
            except TimeoutError:
                self._client.loop_misc()

    # -- paho callbacks (on the loop thread unless noted) ----------------------------

    def _make_client(self) -> _PahoClient:
        settings = self._settings
        client = _PahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        client.connect_timeout = CONNECT_TIMEOUT_S
        if settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls is not None:
            tls = settings.tls
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
            )
            client.tls_insecure_set(tls.insecure)
        if self._will is not None:
            client.will_set(*self._will)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_unsubscribe = self._on_unsubscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        if reason.is_failure:
            return
        self.connected = True
        self.stats.connects += 1
        self.stats.refused.clear()
        self._pending.clear()
        for topics in self._leaving.values():  # a new session holds none of them
            self._forget(topics)
        self._leaving.clear()
        self._send_subscribe_chunked(self.subscriptions())
        if self._announce:
            client.publish(self._settings.availability_topic, ONLINE, qos=1, retain=True)
        for listener in self._connected_listeners:
            listener()

    def _send_subscribe_chunked(self, topics: list[str]) -> None:
        for start in range(0, len(topics), SUBSCRIBE_CHUNK):
            self._send_subscribe(topics[start : start + SUBSCRIBE_CHUNK])

    def _send_subscribe(self, topics: list[str]) -> None:
        _, mid = self._client.subscribe([(topic, 0) for topic in topics])
        if mid is not None:
            self._pending[mid] = topics

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        """The broker's answer to a subscription: a refused one leaves the service deaf
        to that topic, which /healthz must say."""
        topics = self._pending.pop(mid, [])
        refused = self.stats.refused
        for topic, reason in zip(topics, reasons, strict=False):
            if reason.is_failure:
                if topic not in refused:
                    log.error(
                        "MQTT broker %s refused the subscription to %s (%s)",
                        self.address,
                        topic,
                        reason,
                    )
                refused[topic] = str(reason)
            else:
                refused.pop(topic, None)
        problem = self.stats.refusal()
        for listener in self._problem_listeners:
            listener(SUBSCRIPTIONS, problem)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        was_connected = self.connected
        self.connected = False
        self._out.clear()  # nothing of this connection goes out on the next
        self._lost_reason = str(reason)
        self._unacknowledged.clear()  # no acknowledgement comes on a lost connection
        self._acknowledged.set()
        self._lost.set()
        if was_connected:
            for listener in self._disconnected_listeners:
                listener()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        unacknowledged = self._unacknowledged
        if mid in unacknowledged:
            unacknowledged.discard(mid)
            if not unacknowledged:
                self._acknowledged.set()

    def _on_unsubscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any
    ) -> None:
        self._forget(self._leaving.pop(mid, []))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        """A PUBLISH paho read (one of a higher QoS than subscribed for, if ever)."""
        self._dispatch(message.topic, message.payload, message.retain)

    def _dispatch(self, topic: str, payload: bytes | bytearray, retain: bool) -> None:
        subscription = self._handlers.get(topic)
        if subscription is not None:
            self._deliver(subscription.handler, subscription.retained, topic, payload, retain)
            return
        levels = topic.split("/")
        for wildcard, subscription in self._wildcard_handlers:
            if wildcard.matches(levels):
                self._deliver(subscription.handler, subscription.retained, topic, payload, retain)
        for pattern, handler, retained, _ in self._patterns:
            if pattern.matches(levels):
                self._deliver(partial(handler, topic), retained, topic, payload, retain)

    def _deliver(
        self,
        handler: PayloadHandler,
        wanted: bool,
        topic: str,
        payload: bytes | bytearray,
        retain: bool,
    ) -> None:
        """`wanted`: whether the handler takes a retained message (an old value)."""
        if retain and not wanted:
            self.stats.retained_skipped += 1
            return
        try:
            handler(payload)
        except Exception as exc:
            # Handlers refuse bad input themselves; this is the last guard against a
            # bug, logged with its traceback once a minute per kind, never per message.
            self.stats.handler_failures += 1
            more = self._handler_failure_log.note(type(exc).__name__)
            if more is not None:
                log.error("handling a message on %s failed%s", topic[:200], more, exc_info=exc)

    # Socket callbacks: called on the worker thread during connect, so every change to
    # the event loop's registrations is passed to the loop thread, in order.

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Nagle's algorithm stays on (paho's default). TCP_NODELAY was measured with
        # bench/relay.py at 1000 readings/s: p50 1.25 -> 0.44 ms, but CPU per reading
        # 1.16x -> 1.3-1.46x the bare paho relay's. At a meter's 1-10 readings/s Nagle
        # holds nothing back, so the CPU is worth more than the latency.
        self._in_loop(self._add_reader, sock.fileno())

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._remove_socket, sock.fileno())

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._schedule_flush)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._remove_writer)

    @property
    def _io_loop(self) -> asyncio.AbstractEventLoop:
        """The loop that runs the connection: `_connect` sets it before paho opens the
        socket, and paho asks for socket work only from then on."""
        if self._loop is None:
            raise RuntimeError("MQTT socket work asked for before the first connect")
        return self._loop

    def _in_loop(self, callback: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            callback(*args)
        else:
            self._io_loop.call_soon_threadsafe(callback, *args)

    def _add_reader(self, fd: int) -> None:
        """A new socket: nothing of the last one's stream carries over."""
        self._reader.clear()
        self._out.clear()
        self._client.inbox.clear()
        self._client.closed = False
        self._io_loop.add_reader(fd, self._read)

    def _read(self) -> None:
        """Read what the socket has (up to READ_TURN_BYTES a loop turn), hand each QoS 0
        PUBLISH to its handler and every other packet to paho, then write at once
        whatever handling them published: a relayed value leaves in the same loop turn
        as the reading that caused it, and many in one write."""
        client = self._client
        sock = client.socket()
        if sock is None or sock.fileno() < 0:  # closed by a connect on another thread
            return
        self._reading = True
        try:
            for packet in self._receive(sock):
                message = qos0_publish(packet)
                if message is not None:
                    self._dispatch(*message)
                    continue
                client.inbox += packet
                client.loop_read()  # paho reads this packet, and only it
            if client.closed:
                client.loop_read()  # paho finds the end of the stream: connection lost
        finally:
            self._reading = False
        if self._flush_wanted:
            self._flush()

    def _receive(self, sock: Any) -> list[bytes]:
        packets: list[bytes] = []
        taken = 0
        while taken < READ_TURN_BYTES:
            try:
                data = sock.recv(READ_CHUNK_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                data = b""
            if not data:
                self._client.closed = True
                break
            taken += len(data)
            skipped = self._reader.skipped
            try:
                packets += self._reader.feed(data)
            except MalformedStream:
                log.error("MQTT broker %s sent bytes that are no MQTT packets", self.address)
                self._client.closed = True
                break
            if self._reader.skipped != skipped:
                self._oversized(self._reader.skipped - skipped)
            pending = getattr(sock, "pending", None)  # TLS: bytes decrypted, not yet read
            if len(data) < READ_CHUNK_BYTES and not (pending is not None and pending()):
                break
        return packets

    def _oversized(self, count: int) -> None:
        """Messages too long to read: counted, and said at most once a minute (unread,
        their topic is unknown, so no source can count them as its own)."""
        self.stats.oversized_skipped += count
        suppressed = self._oversized_log.note("oversized")
        if suppressed is not None:
            log.warning(
                "MQTT broker %s sent a message over %d bytes, more than any p1evse reads: "
                "skipped unread%s",
                self.address,
                MAX_PACKET_BYTES,
                suppressed,
            )

    def _remove_socket(self, fd: int) -> None:
        self._io_loop.remove_reader(fd)
        if self._writer_fd == fd:
            self._remove_writer()

    def _schedule_flush(self) -> None:
        # Write right after the packet being read (see _read), or else on the next loop
        # turn, rather than registering for writability: the socket is almost always
        # writable, and this saves two epoll_ctl calls per burst.
        self._flush_wanted = True
        if self._reading:
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._io_loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Our QoS 0 packets first, in one write, then paho's queue; what the socket
        does not take now goes when it is writable again, in the same order."""
        self._flush_scheduled = self._flush_wanted = False
        sock = self._client.socket()
        if sock is None or sock.fileno() < 0:  # closed by a connect on another thread
            self._out.clear()
            return
        if self._out:
            try:
                sent = sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                sent = 0
            except OSError:
                sent = len(self._out)  # the connection is going: paho finds out reading
            del self._out[:sent]
        if not self._out:
            self._client.loop_write()
        if sock.fileno() < 0:  # the write found the connection gone: paho closed it
            self._out.clear()
            return
        if (self._out or self._client.want_write()) and self._writer_fd is None:
            self._writer_fd = sock.fileno()
            self._io_loop.add_writer(self._writer_fd, self._flush)
        elif not self._out and not self._client.want_write():
            self._remove_writer()

    def _remove_writer(self) -> None:
        fd, self._writer_fd = self._writer_fd, None
        if fd is not None:
            self._io_loop.remove_writer(fd)


def _refusal(reason: ReasonCode, settings: MqttSettings, client_id: str) -> str:
    text = str(reason)
    if reason.value in (4, 5, 134, 135):  # bad user name or password / not authorised
        user = settings.username or "(anonymous)"
        return f"refused the login as {user!r}: {text} (check mqtt.username and mqtt.password)"
    if reason.value in (2, 133):
        return f"refused client id {client_id!r}: {text} (check mqtt.client_id)"
    return f"refused the connection: {text}"
