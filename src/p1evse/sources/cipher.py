"""Cutting an encrypted meter's byte stream (MSn: Luxembourg's Smarty; SAGEMCOM_T210_D_R:
Austria's) into DLMS general-global-cipher frames, each decrypted and decoded into a
`Reading` for the intake or counted as the reason it was dropped.

A frame is the tag 0xDB, the system title's length (8: GCM's 96-bit IV is the system
title and a 4-byte invocation counter), the system title, 0x82 and two bytes of length,
then the body: the security control byte (0x30, authenticated and encrypted, suite 0;
0x20 without the tag), the invocation counter, the ciphertext and a 12-byte tag. Every
meter in dsmr-parser's tests sends this header, in frames of 0.8-1.1 kB.

The framing is this module's, not dsmr-parser's `EncryptedTelegramBuffer`: that took any
0xDB followed two bytes on by 0x82 for a frame of up to 64 kB, so a false start (one
byte in 65,536 of a stream joined in the middle) swallowed the good frames behind it for
minutes, and a frame that lost bytes took the next one's start with it. Here:

- a start has an 8-byte system title, a suite-0 security byte and a body that fits
  `max_bytes`;
- a start still arriving was false, or cut off, as soon as a whole frame behind it
  decodes: that frame is read at once, and the bytes before it count as one cut-off
  frame (a false start costs nothing else, and no value waits for it);
- a whole frame the decoder refuses gives back all its bytes but the first (a frame may
  start within it), up to `GIVE_BACK_BYTES` between two good frames (a noisy line
  loses nothing, a flood costs bounded work).

The bytes go to the framing `_SLICE` at a time, and a call decodes at most
`MAX_TELEGRAMS_PER_FEED` frames (as `TelegramStream`, whose `feed` and `end` it mirrors).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from p1evse.counts import Count
from p1evse.errors import InputRejected
from p1evse.model import Rejection
from p1evse.sources.framing import (
    MAX_TELEGRAM_BYTES,
    MAX_TELEGRAMS_PER_FEED,
    PLAIN_START,
    TELEGRAMS_HELP,
    deliver,
)
from p1evse.sources.telegram import Decoder

if TYPE_CHECKING:
    from p1evse.sources import Intake

_SLICE = 1024
_HEADER = re.compile(rb"\xdb\x08.{8}\x82", re.DOTALL)
_HEADER_BYTES = 2 + 8 + 1 + 2
_BODY_MIN = 1 + 4 + 12  # security byte, invocation counter, tag
_SECURITY = (0x30, 0x20)  # suite 0: authenticated and encrypted, or encrypted only
# refused frames' bytes framed again between two good frames, at most: ten minutes of a
# 1 Hz meter whose every frame is refused, or 64 of the largest false frames
GIVE_BACK_BYTES = 64 * MAX_TELEGRAM_BYTES


def _starts(framing: bytearray, position: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, size) of each plausible frame from `position` on, in order; it ends at a
    header whose security byte is still to come."""
    while (header := _HEADER.search(framing, position)) is not None:
        start = header.start()
        if len(framing) <= start + _HEADER_BYTES:
            return
        body = int.from_bytes(framing[start + _HEADER_BYTES - 2 : start + _HEADER_BYTES])
        size = _HEADER_BYTES + body
        if body >= _BODY_MIN and size <= max_bytes and framing[start + _HEADER_BYTES] in _SECURITY:
            yield start, size
        position = start + 1


class CipherStream:
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
        self._framing = bytearray()  # bytes not yet taken as a frame
        self._unread = bytearray()  # what the framing has not been given yet
        self._unframed = 0  # bytes given since the last frame (or the start)
        self._plain_seen = False  # a plain-text telegram's start among them
        self._told = False  # this run of bytes without a frame was counted
        self._given_back = 0  # bytes of refused frames framed again since a good one
        self._refused_behind: set[int] = set()  # whole frames behind a start, refused
        self.telegrams = 0

    def counts(self) -> list[Count]:
        return [Count("source_telegrams", TELEGRAMS_HELP, self.telegrams)]

    def feed(self, data: bytes | bytearray) -> bool:
        """As `TelegramStream.feed`: True if more may be waiting."""
        unread = self._unread
        unread += data
        given = unread[:_SLICE]
        self._framing += given
        del unread[:_SLICE]
        self._unframed += len(given)
        self._plain_seen = self._plain_seen or PLAIN_START.search(given) is not None
        decoded = 0
        while decoded < MAX_TELEGRAMS_PER_FEED and (frame := self._take_frame()) is not None:
            decoded += 1
            self._unframed = 0
            self._plain_seen = self._told = False
            if deliver(frame, self._decoder, self._intake, self._clock):
                self.telegrams += 1
                self._given_back = 0
            elif self._given_back + len(frame) <= GIVE_BACK_BYTES:
                self._given_back += len(frame)
                self._framing[:0] = frame[1:]  # a frame may start within it
        if self._unframed > self._max_bytes and not self._told:
            self._told = True  # a run of bytes without a frame, counted once
            detail = f"{self._unframed} bytes and no encrypted frame in them"
            if self._plain_seen:
                detail += (
                    ": plain-text telegrams ('/' … '!') came, so this meter does not "
                    "encrypt; set source.dsmr_version to its standard (5, 5B, 4, …)"
                )
            self._intake.reject(Rejection.NO_TELEGRAM, detail)
        return bool(unread) or decoded == MAX_TELEGRAMS_PER_FEED

    def end(self) -> None:
        """The connection closed: a frame begun is cut off."""
        if next(_starts(self._framing, 0, self._max_bytes), None) is not None:
            self._intake.reject(Rejection.TRUNCATED, "an encrypted frame cut off")
        self._framing.clear()
        self._unread.clear()
        self._refused_behind.clear()
        self._unframed = self._given_back = 0
        self._plain_seen = self._told = False

    def _take_frame(self) -> bytes | None:
        """The first whole frame in the framing, taken out of it, or one behind a start
        still arriving that decodes; None if there is neither yet."""
        framing = self._framing
        for start, size in _starts(framing, 0, self._max_bytes):
            self._drop(start)  # bytes before a start
            if size <= len(framing):
                return self._cut(size)
            return self._frame_behind()
        self._drop(len(framing) - _HEADER_BYTES)  # but a start still arriving
        return None

    def _frame_behind(self) -> bytes | None:
        """A whole frame behind the start still arriving at 0 that decodes: that start
        was false, or lost bytes, and is dropped as a cut-off frame."""
        framing = self._framing
        for start, size in _starts(framing, 1, self._max_bytes):
            if start + size > len(framing) or start in self._refused_behind:
                continue
            try:
                self._decoder.decode(bytes(framing[start : start + size]))
            except InputRejected:
                self._refused_behind.add(start)  # tried once while the start waits
                continue
            self._intake.reject(
                Rejection.TRUNCATED, f"an encrypted frame cut off after {start} bytes"
            )
            self._drop(start)
            return self._cut(size)
        return None

    def _drop(self, count: int) -> None:
        if count > 0:
            del self._framing[:count]
            self._refused_behind.clear()  # their places moved

    def _cut(self, size: int) -> bytes:
        frame = bytes(self._framing[:size])
        self._drop(size)
        return frame
