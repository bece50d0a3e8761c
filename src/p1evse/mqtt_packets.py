"""MQTT 3.1.1 packets on the byte stream: the broker connection's hot path.

paho reads a packet with a `recv` for its first byte, one for each byte of its length
and one for the rest, and builds a message object, a properties object and a lock for
each one it sends. At thousands of messages a second that is most of the CPU (bench/
scale.py). So the connection reads the socket in large chunks, cuts them into packets
here, and hands a QoS 0 PUBLISH straight to its handler; every other packet (CONNACK,
SUBACK, PINGRESP, a PUBLISH of a higher QoS) goes to paho whole, which keeps the session.
A QoS 0 PUBLISH to send is built here in one step. `tests/test_mqtt_packets.py` holds
both to paho's own reading and building, on arbitrary packets.
"""

from __future__ import annotations

from typing import NamedTuple

from p1evse.errors import P1evseError

PUBLISH = 0x30
# Packets longer than this are skipped unread, counted: no meter, charger or fleet message
# comes near it, and holding one would let anyone with publish rights on a subscribed
# topic fill the memory.
MAX_PACKET_BYTES = 1 << 20
MAX_LENGTH_BYTES = 4  # the remaining length is at most 4 bytes (MQTT 3.1.1, 2.2.3)


class MalformedStream(P1evseError):
    """The byte stream is no sequence of MQTT packets: the connection must be dropped."""


class Publish(NamedTuple):
    topic: str
    payload: bytes
    retain: bool


def varint(length: int) -> bytes:
    out = bytearray()
    while True:
        length, byte = divmod(length, 128)
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def publish_packet(topic: str, payload: str | bytes, retain: bool = False) -> bytes:
    """A QoS 0 PUBLISH, as paho builds it."""
    topic_bytes = topic.encode("utf-8")
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    length = 2 + len(topic_bytes) + len(body)
    return b"".join(
        (
            b"\x31" if retain else b"\x30",
            varint(length),
            len(topic_bytes).to_bytes(2, "big"),
            topic_bytes,
            body,
        )
    )


def qos0_publish(packet: bytes) -> Publish | None:
    """The topic, payload and retain flag of a QoS 0 PUBLISH; None for any other packet
    (a PUBLISH of a higher QoS, or one too short to be one, is paho's to judge)."""
    first = packet[0]
    if first & 0xF6 != PUBLISH:  # the type, and QoS 0 (bits 1-2); dup and retain free
        return None
    start = 1
    while packet[start] & 0x80:
        start += 1
    start += 1
    if len(packet) < start + 2:
        return None
    end = start + 2 + int.from_bytes(packet[start : start + 2], "big")
    if end > len(packet) or end == start + 2:  # no topic: malformed in MQTT 3.1.1
        return None
    return Publish(
        packet[start + 2 : end].decode("utf-8", "replace"), packet[end:], bool(first & 1)
    )


class PacketReader:
    """Cuts a byte stream into whole packets, however the bytes come."""

    def __init__(self, max_bytes: int = MAX_PACKET_BYTES) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._skip = 0  # bytes left of a packet too long to keep
        self.skipped = 0  # such packets

    def feed(self, data: bytes) -> list[bytes]:
        """The packets that `data` completes, in order."""
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        position, end = 0, len(buffer)
        while position < end:
            if self._skip:
                taken = min(self._skip, end - position)
                self._skip -= taken
                position += taken
                continue
            length, shift, index = 0, 0, position + 1
            while True:
                if index >= end:
                    length = -1  # the length is not all in yet
                    break
                byte = buffer[index]
                length |= (byte & 0x7F) << shift
                index += 1
                if byte < 0x80:
                    break
                shift += 7
                if index - position > MAX_LENGTH_BYTES:
                    raise MalformedStream("a remaining length longer than 4 bytes")
            if length < 0:
                break
            if length > self._max:
                self.skipped += 1
                self._skip = length
                position = index
                continue
            if index + length > end:
                break
            packets.append(bytes(buffer[position : index + length]))
            position = index + length
        del buffer[:position]
        return packets

    def clear(self) -> None:
        """A new connection: nothing of the old stream carries over."""
        self._buffer.clear()
        self._skip = 0
