"""The simulation's ports: virtual time and an in-process broker."""

from __future__ import annotations

from p1evse.sim.virtual import VirtualBroker, VirtualClock


def test_timers_fire_in_order_each_at_its_own_time() -> None:
    clock = VirtualClock(0.0)
    fired: list[tuple[str, float]] = []
    clock.call_at(5.0, lambda: fired.append(("late", clock.time())))
    clock.call_at(2.0, lambda: fired.append(("early", clock.time())))
    clock.call_at(3.0, lambda: fired.append(("cancelled", clock.time()))).cancel()
    clock.advance(4.0)
    assert fired == [("early", 2.0)]
    assert clock.time() == 4.0
    clock.advance(9.0)
    assert fired == [("early", 2.0), ("late", 5.0)]
    assert clock.time() == 9.0


def test_a_timer_set_by_a_timer_fires_in_the_same_advance_when_due() -> None:
    clock = VirtualClock(0.0)
    fired: list[float] = []
    clock.call_at(1.0, lambda: clock.call_at(1.5, lambda: fired.append(clock.time())))
    clock.advance(2.0)
    assert fired == [1.5]


def test_a_message_published_while_one_is_handled_waits_its_turn() -> None:
    broker = VirtualBroker()
    heard: list[str] = []

    def answer(payload: bytes | bytearray) -> None:
        heard.append(f"claim {payload.decode()}")
        broker.publish("report", "paused")
        heard.append("claim handled")

    broker.subscribe("claim", answer)
    broker.subscribe("report", lambda payload: heard.append(f"report {payload.decode()}"))
    broker.publish("claim", "disabled")
    assert heard == ["claim disabled", "claim handled", "report paused"]


def test_it_tells_its_listeners_when_it_connects() -> None:
    broker = VirtualBroker()
    told: list[bool] = []
    broker.on_connected(lambda: told.append(broker.connected))
    assert not broker.connected
    broker.connect()
    assert told == [True]
