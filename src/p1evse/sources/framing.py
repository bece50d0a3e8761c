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
PLAIN_START = re.compile(rb"/[A-Za-z]{3}\d")

# a telegram up to its checksum with nothing after it: whole at the end of a message
# (whose source strips what follows the checksum)
_UP_TO_CHECKSUM = re.compile(rb"/[^/!\x80-\xff]*+![0-9A-Fa-f]{0,4}")


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
