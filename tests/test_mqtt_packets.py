"""The connection's own packet handling, held to paho's: a QoS 0 PUBLISH built as paho
builds it, read as paho reads it, and any stream of packets cut into the same packets
however its bytes arrive; too long a packet skipped, a stream that is no MQTT refused."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from p1evse.mqtt_packets import (
    MalformedStream,
    PacketReader,
    Publish,
    publish_packet,
    qos0_publish,
    varint,
)

TOPICS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
    min_size=1,
    max_size=300,
)
PAYLOADS = st.binary(max_size=20_000)


class Capture:
    """A socket that keeps what paho sends."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def send(self, data: bytes) -> int:
        self.sent += data
        return len(data)

    def close(self) -> None:
        pass


def paho_client() -> Any:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client._sock = Capture()
    client.on_socket_register_write = lambda *_: None
    return client


def paho_builds(topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bytes:
    client = paho_client()
    client.publish(topic, payload, qos=qos, retain=retain)
    client.loop_write()
    return bytes(client._sock.sent)


def paho_reads(packet: bytes) -> paho.MQTTMessage:
    """What paho makes of `packet` when it reads it from a socket."""
    messages: list[paho.MQTTMessage] = []

    class Source:
        def __init__(self) -> None:
            self.data = bytearray(packet)

        def recv(self, size: int) -> bytes:
            chunk = bytes(self.data[:size])
            del self.data[:size]
            if not chunk:
                raise BlockingIOError
            return chunk

        def close(self) -> None:
            pass

    client = paho_client()
    client._sock = Source()
    client.on_message = lambda _client, _userdata, message: messages.append(message)
    client.loop_read()
    [message] = messages
    return message


@given(TOPICS, PAYLOADS, st.booleans())
def test_a_publish_is_built_as_paho_builds_it(topic: str, payload: bytes, retain: bool) -> None:
    assert publish_packet(topic, payload, retain) == paho_builds(topic, payload, retain=retain)


@given(TOPICS, PAYLOADS, st.booleans())
def test_a_publish_is_read_as_paho_reads_it(topic: str, payload: bytes, retain: bool) -> None:
    packet = paho_builds(topic, payload, retain=retain)
    message = paho_reads(packet)
    assert qos0_publish(packet) == Publish(message.topic, message.payload, message.retain)


@given(TOPICS, PAYLOADS)
def test_a_publish_of_a_higher_qos_is_left_to_paho(topic: str, payload: bytes) -> None:
    assert qos0_publish(paho_builds(topic, payload, qos=1)) is None


OTHER_PACKETS = st.sampled_from(
    [
        b"\x20\x02\x00\x00",  # CONNACK
        b"\x90\x03\x00\x01\x00",  # SUBACK
        b"\xd0\x00",  # PINGRESP
        b"\x40\x02\x00\x07",  # PUBACK
        b"\xb0\x02\x00\x02",  # UNSUBACK
    ]
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    """Packets, and their bytes cut into chunks anywhere."""
    packets = draw(
        st.lists(
            st.one_of(
                OTHER_PACKETS,
                st.builds(publish_packet, TOPICS, PAYLOADS, st.booleans()),
            ),
            max_size=12,
        )
    )
    stream = b"".join(packets)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return packets, chunks


@given(streams())
def test_any_stream_is_cut_into_its_packets_however_it_arrives(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    packets, chunks = case
    reader = PacketReader()
    got: list[bytes] = []
    for chunk in chunks:
        got += reader.feed(chunk)
    assert got == packets


def test_too_long_a_packet_is_skipped_and_the_stream_goes_on() -> None:
    reader = PacketReader(max_bytes=100)
    big = publish_packet("a/b", b"x" * 500)
    small = publish_packet("a/b", b"ok")
    got = reader.feed(big[:50]) + reader.feed(big[50:] + small[:3]) + reader.feed(small[3:])
    assert got == [small]
    assert reader.skipped == 1


def test_a_stream_that_is_no_mqtt_is_refused() -> None:
    with pytest.raises(MalformedStream):
        PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_lengths_take_one_to_four_bytes() -> None:
    assert [varint(n) for n in (0, 127, 128, 16_383, 16_384, 268_435_455)] == [
        b"\x00",
        b"\x7f",
        b"\x80\x01",
        b"\xff\x7f",
        b"\x80\x80\x01",
        b"\xff\xff\xff\x7f",
    ]
