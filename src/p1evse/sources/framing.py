"""Cutting a byte stream (serial port, TCP gateway, MQTT message) into DSMR telegrams,
each decoded into a `Reading` for the intake or counted as the reason it was dropped.

A telegram is what dsmr-parser's reader takes for one: a `/` header, ASCII text (IEC
62056-21 allows no other) without a second `/` or `!`, `!`, the CRC (0-4 hex digits; some
publishers write them in lower case), an optional NUL and CR LF. Data that is one
message (MQTT) ends its telegram where it ends: DSMR-reader's `dsmr/raw` has nothing
after the checksum. Bytes between telegrams that hold no `/` are skipped (padding some
gateways send). A `/` that does not lead to a telegram began one that never ended: cut
off by the next `/` or by the end of the data, grown past `max_bytes`, or ended by a `!`
without a checksum line, with a byte that is not ASCII before it, or with lines that
end in LF alone (a gateway that strips the CRs; the refusal says so). Such garbage
counts as one rejection per run, however long the run (a megabyte of `/` is one), until
the next telegram ends it: a telegram cut off by the next good one is a run of its own,
and still counted. So are more bytes than the largest telegram without one in them,
when no other garbage was counted: what a port whose serial settings do not fit the
meter reads (`hint` says what to check).

One regular expression finds the telegrams, so the work is linear in the bytes and
done in C, whatever they are; the buffer keeps only a telegram still arriving, at most
`max_bytes`. One call decodes at most `MAX_TELEGRAMS_PER_FEED` telegrams: a meter sends
one every second or ten, so more at once is a backlog or a flood. `feed` then says so,
and the caller decodes the rest on later turns of the event loop (`feed(b"")`) or drops
it (`end()`): no read holds the loop for long (bench/p1.py measures it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from p1evse.counts import Count
from p1evse.errors import InputRejected
from p1evse.model import Rejection
from p1evse.sources.telegram import Decoder, to_reading

if TYPE_CHECKING:
    from p1evse.sources import Intake

# DSMR telegrams are 0.9-1.5 kB; a 1,024-character text message and M-Bus devices have
# needed 3 kB+ in the field.
MAX_TELEGRAM_BYTES = 8192
MAX_TELEGRAMS_PER_FEED = 4
_CIPHER_SLICE = 1024
TELEGRAMS_HELP = "DSMR telegrams decoded into readings"
# '!', 4 hex digits, a NUL, CR LF
_MAX_TRAILER = len(b"!FFFF\x00\r\n")
_NOT_ASCII = re.compile(rb"[\x80-\xff]")
_NO_CHECKSUM = "no checksum line after '!'"
_LF_ONLY = "lines end in LF alone, not CR LF as DSMR sends them (a gateway that strips the CRs?)"


def _telegram_pattern(max_bytes: int) -> re.Pattern[bytes]:
    body = max_bytes - 1 - _MAX_TRAILER
    return re.compile(rb"/[^/!\x80-\xff]{0,%d}+![0-9A-Fa-f]{0,4}\x00?\r\n" % body)


# the start of a plain-text telegram: '/', a manufacturer's three letters, a baud digit
_PLAIN_START = re.compile(rb"/[A-Za-z]{3}\d")

# a telegram up to its checksum with nothing after it: whole at the end of a message
_UP_TO_CHECKSUM = re.compile(rb"/[^/!\x80-\xff]*+![0-9A-Fa-f]{0,4}\x00?")


class TelegramStream:
    """Feed it bytes as they arrive; it calls `intake.reading` for every good telegram
    and `intake.reject` for every bad one (and once for every run of garbage)."""

    def __init__(
        self,
        decoder: Decoder,
        intake: Intake,
        clock: Callable[[], float],
        max_bytes: int = MAX_TELEGRAM_BYTES,
        *,
        hint: str = "",
    ) -> None:
        self._decoder = decoder
        self._intake = intake
        self._clock = clock
        self._max_bytes = max_bytes
        self._hint = hint
        self._telegram = _telegram_pattern(max_bytes)
        self._buffer = bytearray()  # empty, or a telegram still arriving: '/' and no other
        self._in_garbage = False  # a run of garbage was counted; a telegram ends it
        self._backlog = False  # the buffer holds telegrams a call left for the next
        self._unframed = 0  # bytes since the last telegram (or the start)
        self.telegrams = 0
        self.skipped_bytes = 0

    def counts(self) -> list[Count]:
        return [
            Count("source_telegrams", TELEGRAMS_HELP, self.telegrams),
            Count(
                "source_skipped_bytes",
                "Bytes outside any good telegram (padding, garbage), skipped",
                self.skipped_bytes,
            ),
        ]

    def feed(self, data: bytes | bytearray) -> bool:
        """Decode the telegrams that `data` completes; True if it stopped after
        `MAX_TELEGRAMS_PER_FEED` and more may be waiting (for `feed(b"")` or `end()`)."""
        buffer = self._buffer
        buffer += data
        self._unframed += len(data)
        start = 0
        self._backlog = False
        for decoded, telegram in enumerate(self._telegram.finditer(buffer)):
            if decoded == MAX_TELEGRAMS_PER_FEED:
                self._backlog = True
                break
            self._between(start, telegram.start())
            self._in_garbage = False
            frame = bytes(telegram.group())
            self.telegrams += deliver(frame, self._decoder, self._intake, self._clock)
            start = telegram.end()
            self._unframed = len(buffer) - start
        if self._backlog:
            del buffer[:start]
            return True
        # what follows the last telegram: anything before its last '/' never ends
        last = buffer.rfind(b"/", start)
        self._between(start, len(buffer) if last < 0 else last)
        del buffer[: len(buffer) if last < 0 else last]
        if buffer and self._never_ends():
            self._garbage(0, len(buffer))
            buffer.clear()
        if self._unframed > self._max_bytes and not self._in_garbage:
            self._in_garbage = True  # a run of garbage, counted once
            detail = f"{self._unframed} bytes and no telegram in them"
            self._intake.reject(
                Rejection.NO_TELEGRAM, f"{detail}: {self._hint}" if self._hint else detail
            )
        return False

    def end(self, *, whole_message: bool = False) -> None:
        """The connection closed or the message ended: a telegram begun is cut off, and
        a backlog left undecoded is dropped (one rejection). With `whole_message` the
        data was one message, so a telegram that reached its checksum ends with it."""
        if whole_message and not self._backlog and _UP_TO_CHECKSUM.fullmatch(self._buffer):
            self.feed(b"\r\n")  # the line end the message left out
        if self._backlog:
            detail = f"more than {MAX_TELEGRAMS_PER_FEED} telegrams at once"
            self._intake.reject(Rejection.OVERSIZED, detail)
        elif self._buffer and not self._in_garbage:
            no_line_end = (
                (Rejection.BAD_TELEGRAM, _NO_CHECKSUM)
                if whole_message
                else (Rejection.TRUNCATED, "the data ended after '!', before its line end")
            )
            self._intake.reject(*self._fault(0, len(self._buffer), "the data ended", no_line_end))
        self._buffer.clear()
        self._in_garbage = self._backlog = False
        self._unframed = 0

    def _between(self, start: int, end: int) -> None:
        """Bytes between telegrams: skipped, and from the first '/' on, garbage."""
        begun = self._buffer.find(b"/", start, end)
        self.skipped_bytes += (end if begun < 0 else begun) - start
        if begun >= 0:
            self._garbage(begun, end)

    def _never_ends(self) -> bool:
        """Whether the telegram still arriving can no longer become one."""
        buffer = self._buffer
        end = buffer.find(b"!")
        return len(buffer) > self._max_bytes or (end >= 0 and len(buffer) - end >= _MAX_TRAILER)

    def _garbage(self, start: int, end: int) -> None:
        """Telegrams begun at `start` that never ended: one rejection for the run, with
        the reason the first of them failed."""
        self.skipped_bytes += end - start
        if self._in_garbage:
            return
        self._in_garbage = True
        cut = self._buffer.find(b"/", start + 1, end)
        first_end = end if cut < 0 else cut
        no_line_end = (Rejection.BAD_TELEGRAM, _NO_CHECKSUM)
        self._intake.reject(*self._fault(start, first_end, "a new telegram began", no_line_end))

    def _fault(
        self, start: int, end: int, cut_off_by: str, no_line_end: tuple[Rejection, str]
    ) -> tuple[Rejection, str]:
        """Why the telegram in `start`..`end` is none: `cut_off_by` what, if it has no
        '!'; `no_line_end` if it is text that has one but no checksum line after it."""
        buffer = self._buffer
        bang = buffer.find(b"!", start, end)
        if end - start > self._max_bytes:
            return Rejection.OVERSIZED, f"no end within {self._max_bytes} bytes"
        if bang < 0:
            return Rejection.TRUNCATED, f"{cut_off_by} before '!'"
        if _NOT_ASCII.search(buffer, start, bang) is not None:
            return Rejection.BAD_TELEGRAM, "a byte that is not ASCII text"
        if buffer.find(b"\r\n", start, bang) < 0 and buffer.find(b"\n", start, bang) >= 0:
            return Rejection.BAD_TELEGRAM, _LF_ONLY
        return no_line_end


def deliver(frame: bytes, decoder: Decoder, intake: Intake, clock: Callable[[], float]) -> bool:
    """Decode one complete telegram into the intake; False if it was rejected. A
    per-phase value it could not read is a rejection of its own, the reading goes on."""
    refused: list[InputRejected] = []
    try:
        reading = to_reading(decoder.decode(frame), clock(), refused)
    except InputRejected as exc:
        intake.reject(exc.reason, exc.detail)
        return False
    for problem in refused:
        intake.reject(problem.reason, problem.detail)
    intake.reading(reading)
    return True


# A DLMS general-global-cipher frame as encrypted meters send it: the tag 0xDB, the
# system title's length (8: GCM's 96-bit IV is the system title and a 4-byte invocation
# counter), the system title, 0x82 and two bytes of length, then the body: the security
# control byte, the invocation counter, the ciphertext and (authenticated) a 12-byte tag.
_CIPHER_HEADER = re.compile(rb"\xdb\x08.{8}\x82", re.DOTALL)
_CIPHER_HEADER_BYTES = 2 + 8 + 1 + 2
_CIPHER_BODY_MIN = 1 + 4


def _encrypting_security(control: int) -> bool:
    """A security control byte an encrypted meter sends: encrypted (0x20), maybe
    authenticated (0x10), neither broadcast nor compressed, security suite 0-2."""
    return control & 0xE0 == 0x20 and control & 0x0F <= 2


class CipherStream:
    """The same for encrypted meters (`MSn`, `SAGEMCOM_T210_D_R`): binary DLMS
    general-global-cipher frames, framed by the length they carry, then decrypted and
    checked by the decoder. The framing is this module's, not dsmr-parser's buffer: that
    took any 0xDB followed two bytes on by 0x82 for a frame of up to 64 kB, so a false
    start (one byte in 65,536 of a frame joined in the middle) swallowed every good frame
    behind it for minutes. Here a start must have an 8-byte system title, a plausible
    security byte and a length within `max_bytes`, and a frame the decoder refuses after
    a good one gives back all its bytes but the first: a frame that lost bytes, or a
    false start, costs only itself (a second refusal in a row gives nothing back, so
    garbage is decoded once, not once per start in it). The bytes go to the framing
    `_CIPHER_SLICE` at a time, and a call decodes at most `MAX_TELEGRAMS_PER_FEED`
    frames."""

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
        self._give_back = True  # a refused frame's bytes are framed again
        self.telegrams = 0

    def counts(self) -> list[Count]:
        return [Count("source_telegrams", TELEGRAMS_HELP, self.telegrams)]

    def feed(self, data: bytes | bytearray) -> bool:
        """As `TelegramStream.feed`: True if more may be waiting."""
        unread = self._unread
        unread += data
        given = unread[:_CIPHER_SLICE]
        self._framing += given
        del unread[:_CIPHER_SLICE]
        self._unframed += len(given)
        self._plain_seen = self._plain_seen or _PLAIN_START.search(given) is not None
        decoded = 0
        while decoded < MAX_TELEGRAMS_PER_FEED and (frame := self._take_frame()) is not None:
            decoded += 1
            self._unframed = 0
            self._plain_seen = self._told = False
            if deliver(frame, self._decoder, self._intake, self._clock):
                self.telegrams += 1
                self._give_back = True
            elif self._give_back:
                self._give_back = False  # once per run of refused frames: linear work
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

    def _take_frame(self) -> bytes | None:
        """The first whole frame in the framing, taken out of it; None if none is whole
        yet. Bytes before a frame's start are dropped."""
        framing = self._framing
        while (start := _CIPHER_HEADER.search(framing)) is not None:
            del framing[: start.start()]
            if len(framing) <= _CIPHER_HEADER_BYTES:
                return None  # the security byte is still to come
            body = int.from_bytes(framing[_CIPHER_HEADER_BYTES - 2 : _CIPHER_HEADER_BYTES])
            size = _CIPHER_HEADER_BYTES + body
            plausible = body >= _CIPHER_BODY_MIN and size <= self._max_bytes
            if not (plausible and _encrypting_security(framing[_CIPHER_HEADER_BYTES])):
                del framing[:1]
                continue
            if len(framing) < size:
                return None
            frame = bytes(framing[:size])
            del framing[:size]
            return frame
        del framing[: -(_CIPHER_HEADER_BYTES - 1)]  # keep a start still arriving
        return None

    def end(self) -> None:
        self._framing.clear()
        self._unread.clear()
        self._unframed = 0
        self._give_back = True
        self._plain_seen = self._told = False
