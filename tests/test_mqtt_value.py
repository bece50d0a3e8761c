"""The `mqtt_value` source: one signed number per message."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import Rejection
from tests.brokers import BrokerProcess
from tests.payloads import never_implausible, payloads, rejected, relayed, value_source


def test_signed_value_in_kilowatts_and_inverted() -> None:
    intake, handle = value_source(topic="house/grid", unit="kW")
    handle(b"1.5")
    handle(b"-0.25")
    handle(b"0")
    assert intake.published == [1500, -250, 0]
    intake, handle = value_source(topic="house/grid", invert=True)
    handle(b"734")
    assert intake.published == [-734]


def test_bad_values_are_counted() -> None:
    intake, handle = value_source(topic="house/grid")
    for payload in (b"", b"nan", b"abc", b"99999999", b"\xff"):
        handle(payload)
    assert intake.published == []
    assert rejected(intake) == {
        Rejection.NOT_A_NUMBER: 2,
        Rejection.NON_FINITE: 1,
        Rejection.IMPLAUSIBLE: 1,
        Rejection.NOT_UTF8: 1,
    }


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(payloads, max_size=20))
def test_arbitrary_payloads_never_crash_nor_publish_implausible_values(
    messages: list[bytes],
) -> None:
    never_implausible(lambda: value_source(topic="t", unit="kW"), messages)


async def test_a_signed_value_through_a_broker(broker: BrokerProcess) -> None:
    messages = [("house/grid_power", b"-1234"), ("house/grid_power", b"oops")]
    messages.append(("house/grid_power", b"56.7"))
    await relayed(
        broker, {"type": "mqtt_value", "topic": "house/grid_power"}, messages, ["-1234", "57"]
    )
