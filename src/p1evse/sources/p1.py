"""Raw DSMR telegrams from the meter's P1 port: a serial device (USB P1 cable) or a
TCP gateway (P1-to-WiFi dongle, ser2net) at `tcp://host:port`.

Serial and TCP both go through serialx, the serial library dsmr-parser itself depends
on (so it costs no extra dependency): its asyncio transports read the port's
non-blocking file descriptor (or the socket) on the event loop, and do the few blocking
calls (open, termios settings, the exclusive lock) in an executor, so the loop never
blocks. pyserial-asyncio would add a second serial library, and runs only on POSIX
through the same reader callbacks.

The port or socket may go away (cable pulled, gateway rebooted) and come back: the
source reconnects with capped, jittered backoff, and a connection that stays silent for
`idle_timeout` seconds (a half-open TCP connection sends nothing, forever) is closed
and opened again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from p1evse.backoff import Backoff
from p1evse.counts import Count, connection_counts
from p1evse.ratelimit import RateLimiter
from p1evse.settings import Section, secrets_from_files
from p1evse.sources.cipher import CipherStream
from p1evse.sources.framing import TelegramStream
from p1evse.sources.telegram import (
    DSMR_VERSIONS,
    METER_SERIAL_SETTINGS,
    DsmrVersionName,
    make_decoder,
    serial_settings,
)

if TYPE_CHECKING:
    from p1evse.mqtt import MqttPort
    from p1evse.sources import Intake

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# a read can hold 256 kB; framing costs up to ~10 ns a byte (a run of "/"), so a call
# handles 32 kB: well under a millisecond
_FEED_BYTES = 32_768
_TCP_URL = re.compile(r"tcp://(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>\d{1,5})")
_HEX_KEY = re.compile(r"[0-9A-Fa-f]{32}")


class P1Settings(Section):
    type: Literal["p1"] = "p1"
    url: str = Field(min_length=1)
    dsmr_version: DsmrVersionName = "5"
    # encrypted meters only (MSn: Luxembourg Smarty, SAGEMCOM_T210_D_R: Austria)
    decryption_key: SecretStr | None = None
    decryption_key_file: Path | None = None
    authentication_key: SecretStr | None = None
    authentication_key_file: Path | None = None
    idle_timeout: float = Field(60.0, ge=5, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _keys_from_files(cls, data: Any) -> Any:
        return secrets_from_files(data, "decryption_key", "authentication_key")

    @field_validator("url")
    @classmethod
    def _device_or_tcp(cls, url: str) -> str:
        url = url.strip()
        if url.startswith("/"):
            return url
        match = _TCP_URL.fullmatch(url)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ValueError(
                f"expected a serial device such as /dev/ttyUSB0 or tcp://host:port, got {url!r}"
            )
        return url

    @field_validator("decryption_key", "authentication_key")
    @classmethod
    def _hex_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not _HEX_KEY.fullmatch(key.get_secret_value()):
            raise ValueError("expected 32 hexadecimal digits (a 16-byte key)")
        return key

    @model_validator(mode="after")
    def _keys_fit_the_version(self) -> P1Settings:
        encrypted = DSMR_VERSIONS[self.dsmr_version].encrypted
        if encrypted and self.decryption_key is None:
            raise ValueError(
                f"dsmr_version {self.dsmr_version} sends encrypted telegrams: set "
                "decryption_key (from the grid operator)"
            )
        if not encrypted and (self.decryption_key or self.authentication_key):
            raise ValueError(
                f"dsmr_version {self.dsmr_version} sends plain telegrams: decryption_key and "
                "authentication_key are for MSn and SAGEMCOM_T210_D_R"
            )
        return self

    def subscriptions(self) -> list[str]:
        return []

    def describe(self) -> str:
        return f"p1 {self.url} (DSMR {self.dsmr_version})"

    def no_telegram_hint(self) -> str:
        """What to check when bytes arrive but no telegram is in them."""
        encrypted = "; an encrypted meter needs source.dsmr_version MSn or SAGEMCOM_T210_D_R"
        if self.url.startswith("/"):
            reads = serial_settings(DSMR_VERSIONS[self.dsmr_version])
            return (
                f"do the serial settings fit the meter? source.dsmr_version {self.dsmr_version} "
                f"reads the port at {reads}; {METER_SERIAL_SETTINGS}{encrypted}"
            )
        return f"do the gateway's serial settings fit the meter? {METER_SERIAL_SETTINGS}{encrypted}"


@dataclass(slots=True)
class LinkStats:
    connects: int = 0
    drops: int = 0  # connections lost (or closed for silence) after they were up
    failed_attempts: int = 0


class _Link(asyncio.Protocol):
    """One open connection: bytes go to the telegram stream `_FEED_BYTES` at a time.
    When one read holds more (a backlog, a flood), reading pauses and the rest is fed on
    the next turns of the loop: no call holds the loop for long, and what waits is at
    most one read."""

    _transport: asyncio.ReadTransport  # from connection_made, before any data

    def __init__(self, stream: TelegramStream | CipherStream, loop: asyncio.AbstractEventLoop):
        self._stream = stream
        self._loop = loop
        self._unfed = bytearray()
        self.last_data = loop.time()
        self.closed: asyncio.Future[Exception | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.ReadTransport):
            raise TypeError(f"a P1 link reads; got {type(transport).__name__}")
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_data = self._loop.time()
        self._unfed += data
        if self._feed_some():
            self._transport.pause_reading()
            self._loop.call_soon(self.feed_more)

    def feed_more(self) -> None:
        if self.closed.done() or self._transport.is_closing():
            return  # the session ends the stream
        if self._feed_some():
            self._loop.call_soon(self.feed_more)
        else:
            self._transport.resume_reading()

    def _feed_some(self) -> bool:
        """Feed the stream at most `_FEED_BYTES`; True if more is waiting."""
        chunk = self._unfed[:_FEED_BYTES]
        del self._unfed[:_FEED_BYTES]
        return self._stream.feed(chunk) or bool(self._unfed)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)


# how often a connection made or lost is logged, at most (each is counted in /metrics)
SESSION_LOG_PERIOD_S = 60.0


class P1Source:
    def __init__(
        self, settings: P1Settings, broker: MqttPort | None = None, backoff: Backoff | None = None
    ) -> None:
        self._settings = settings
        self._version = DSMR_VERSIONS[settings.dsmr_version]
        self._backoff = backoff or Backoff()
        self.stats = LinkStats()
        self._failures_in_a_row = 0
        self._stream: TelegramStream | CipherStream | None = None  # once it runs
        # a gateway that drops every connection after a telegram: two lines a minute
        self._session_log = RateLimiter(SESSION_LOG_PERIOD_S, time.monotonic)

    def counts(self) -> list[Count]:
        stats = self.stats
        link = connection_counts(
            self._settings.url, stats.connects, stats.drops, stats.failed_attempts
        )
        return [*link, *(self._stream.counts() if self._stream is not None else [])]

    async def run(self, intake: Intake) -> None:
        loop = asyncio.get_running_loop()
        settings = self._settings
        decoder = make_decoder(
            self._version,
            settings.decryption_key.get_secret_value() if settings.decryption_key else "",
            # no authentication key: MSn uses its standard's public one (""), the Sagemcom
            # is decrypted without checking the tag (None) and the CRC guards it
            settings.authentication_key.get_secret_value()
            if settings.authentication_key
            else ("" if settings.dsmr_version == "MSn" else None),
        )
        stream: TelegramStream | CipherStream
        if self._version.encrypted:
            stream = CipherStream(decoder, intake, loop.time)
        else:
            stream = TelegramStream(decoder, intake, loop.time, hint=settings.no_telegram_hint())
        self._stream = stream
        from serialx import SerialException  # only this source needs serialx

        while True:
            telegrams_before = stream.telegrams
            try:
                await self._session(stream, loop)
            except (OSError, TimeoutError, SerialException) as exc:
                self._failed(exc)
            if stream.telegrams > telegrams_before:
                self._backoff.reset()  # it worked for a while: retry soon
            await asyncio.sleep(self._backoff.next_delay())

    async def _session(
        self, stream: TelegramStream | CipherStream, loop: asyncio.AbstractEventLoop
    ) -> None:
        link = _Link(stream, loop)
        transport = await self._connect(link, loop)
        try:
            self.stats.connects += 1
            self._failures_in_a_row = 0
            if (more := self._session_log.note("connected")) is not None:
                log.info("p1: connected to %s%s", self._settings.url, more)
            exc = await self._until_closed_or_idle(link, transport, loop)
            stream.end()  # a telegram begun is cut off: counted as truncated
            self.stats.drops += 1
            if (more := self._session_log.note("lost")) is not None:
                url = self._settings.url
                log.warning("p1: %s: connection lost (%s); reconnecting%s", url, exc, more)
        finally:
            transport.close()

    async def _connect(self, link: _Link, loop: asyncio.AbstractEventLoop) -> asyncio.BaseTransport:
        import serialx

        version = self._version
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            transport, _ = await serialx.create_serial_connection(
                loop,
                lambda: link,
                self._settings.url,
                baudrate=version.baudrate,
                parity=serialx.Parity(version.parity),
                byte_size=version.byte_size,
                stopbits=serialx.StopBits.ONE,
            )
        return transport

    async def _until_closed_or_idle(
        self, link: _Link, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop
    ) -> str:
        idle_timeout = self._settings.idle_timeout
        while not link.closed.done():
            silent = loop.time() - link.last_data
            if silent >= idle_timeout:
                transport.close()
                return f"no data for {silent:.0f} s"
            await asyncio.wait([link.closed], timeout=idle_timeout - silent)
        exc = link.closed.result()
        return str(exc) if exc is not None else "closed by the other end"

    def _failed(self, exc: BaseException) -> None:
        """Log the first failure of a series; the retries only at debug level."""
        self.stats.failed_attempts += 1
        self._failures_in_a_row += 1
        level = logging.WARNING if self._failures_in_a_row == 1 else logging.DEBUG
        message = str(exc) or type(exc).__name__
        log.log(level, "p1: cannot open %s: %s; retrying", self._settings.url, message)
