"""Cutting a byte stream (serial port, TCP gateway, MQTT message) into DSMR telegrams,
each decoded into a `Reading` for the intake or counted as the reason it was dropped.

A telegram runs from its `/` header to `!`, the (optional) CRC and CR LF. Bytes before a
header are skipped. A header that arrives before the previous telegram's `!` means that
telegram was cut off (truncated); a telegram that grows past `max_bytes` without ending
is oversized. Either is dropped and counted: the pipeline keeps the last good reading.
The buffer never holds more than `max_bytes` (+ one read), whatever arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from p1evse.model import Rejection
from p1evse.sources.telegram import Decoder, TelegramError, to_reading

if TYPE_CHECKING:
    from p1evse.sources import Intake

# DSMR telegrams are 0.9-1.5 kB; a 1,024-character text message and M-Bus devices have
# needed 3 kB+ in the field.
MAX_TELEGRAM_BYTES = 8192
# '!' + 4 hex digits + an optional NUL (some meters) + CR LF
_MAX_TRAILER = 8


class TelegramStream:
    """Feed it bytes as they arrive; it calls `intake.reading` for every good telegram
    and `intake.reject` for every bad one."""

    def __init__(
        self,
        decoder: Decoder,
        intake: Intake,
        clock: Callable[[], float],
        max_bytes: int = MAX_TELEGRAM_BYTES,
    ) -> None:
        self._decoder = decoder
        self._intake = intake
        self._clock = clock
        self._max_bytes = max_bytes
        self._buffer = bytearray()
        self._in_telegram = False  # the buffer starts with a '/' header
        self.telegrams = 0
        self.skipped_bytes = 0

    def feed(self, data: bytes | bytearray) -> None:
        buffer = self._buffer
        buffer += data
        while buffer:
            if not self._in_telegram and not self._find_header():
                return
            end = buffer.find(b"!", 1)
            header = buffer.find(b"/", 1, end if end >= 0 else len(buffer))
            if header >= 0:
                self._drop(header, Rejection.TRUNCATED, "a new telegram began before '!'")
                continue
            if end < 0:
                if len(buffer) > self._max_bytes:
                    self._drop(
                        len(buffer), Rejection.OVERSIZED, f"no end within {self._max_bytes} bytes"
                    )
                return
            line_end = buffer.find(b"\n", end, end + _MAX_TRAILER)
            if line_end < 0:
                if len(buffer) - end >= _MAX_TRAILER:
                    self._drop(end + 1, Rejection.BAD_TELEGRAM, "no line end after '!'")
                    continue
                return
            size = line_end + 1
            if size > self._max_bytes:
                self._drop(size, Rejection.OVERSIZED, f"{size} bytes, more than {self._max_bytes}")
                continue
            frame = bytes(buffer[:size])
            del buffer[:size]
            self._in_telegram = False
            self.telegrams += deliver(frame, self._decoder, self._intake, self._clock)

    def end(self) -> None:
        """The connection closed or the message ended: a telegram begun is cut off."""
        if self._in_telegram:
            self._drop(len(self._buffer), Rejection.TRUNCATED, "the data ended before '!'")
        self._buffer.clear()

    def _find_header(self) -> bool:
        buffer = self._buffer
        start = buffer.find(b"/")
        if start < 0:
            self.skipped_bytes += len(buffer)
            buffer.clear()
            return False
        self.skipped_bytes += start
        del buffer[:start]
        self._in_telegram = True
        return True

    def _drop(self, size: int, reason: Rejection, detail: str) -> None:
        del self._buffer[:size]
        self._in_telegram = False
        self._intake.reject(reason, detail)


def deliver(frame: bytes, decoder: Decoder, intake: Intake, clock: Callable[[], float]) -> bool:
    """Decode one complete telegram into the intake; False if it was rejected."""
    try:
        reading = to_reading(decoder.decode(frame), clock())
    except TelegramError as exc:
        intake.reject(exc.reason, exc.detail)
        return False
    intake.reading(reading)
    return True


class CipherStream:
    """The same for encrypted meters (`MSn`, `SAGEMCOM_T210_D_R`): binary DLMS
    general-global-cipher frames, framed by the length they carry (at most 64 kB) with
    dsmr-parser's own buffer, then decrypted and checked by the decoder."""

    def __init__(
        self,
        decoder: Decoder,
        intake: Intake,
        clock: Callable[[], float],
        max_bytes: int = MAX_TELEGRAM_BYTES,
    ) -> None:
        from dsmr_parser.clients.telegram_buffer import EncryptedTelegramBuffer

        self._decoder = decoder
        self._intake = intake
        self._clock = clock
        self._max_bytes = max_bytes
        self._buffer = EncryptedTelegramBuffer()
        self.telegrams = 0

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer.append(data)
        for frame_hex in self._buffer.get_all():
            frame = bytes.fromhex(frame_hex)
            if len(frame) > self._max_bytes:
                self._intake.reject(
                    Rejection.OVERSIZED, f"{len(frame)} bytes, more than {self._max_bytes}"
                )
                continue
            self.telegrams += deliver(frame, self._decoder, self._intake, self._clock)

    def end(self) -> None:
        self._buffer = type(self._buffer)()
