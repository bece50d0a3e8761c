"""The clock binding: the Bridge stamps each input with its clock's time, sets one timer
for the pipeline's next deadline, and hands the events to the sinks, then to the
observers; a failing sink or observer never keeps an event from the others."""

from __future__ import annotations

import logging

import pytest

from p1evse.bridge import Bridge
from p1evse.model import Event, GridPower, Reading, Rejection, Side, StaleEntered, StaleLeft
from p1evse.pipeline import Pipeline, PublishSettings
from p1evse.sim.virtual import VirtualClock

START = 100.0


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[object] = []
        self._fail = fail

    def grid_power(self, value: GridPower) -> None:
        self.events.append(value)
        if self._fail:
            raise RuntimeError("the sink broke")

    def stale_entered(self, event: StaleEntered) -> None:
        self.events.append(event)

    def stale_left(self, event: StaleLeft) -> None:
        self.events.append(event)

    async def run(self) -> None:
        """Nothing to run."""

    async def close(self) -> None:
        """Nothing to undo."""

    def counts(self) -> list[object]:
        return []


def make(*sinks: RecordingSink, **publish: object) -> tuple[Bridge, VirtualClock, list[Event]]:
    clock = VirtualClock(START)
    seen: list[Event] = []
    settings = PublishSettings(**{"interval": 0, "stale_after": 10.0, **publish})
    bridge = Bridge(Pipeline(settings, clock.time()), list(sinks), clock, [seen.append])  # type: ignore[arg-type]
    bridge.start()
    return bridge, clock, seen


def test_inputs_are_stamped_with_the_clocks_time() -> None:
    bridge, clock, seen = make()
    clock.advance(START + 2.5)
    bridge.half(Side.IMPORT, 300.0)
    clock.advance(START + 3.0)  # the pair window (0.5 s by default) ends: the half is a reading
    [reading, value] = seen
    assert isinstance(reading, Reading)
    assert (reading.at, reading.import_w) == (START + 2.5, 300.0)
    assert isinstance(value, GridPower)
    assert value.watts == 300


def test_the_log_says_which_values_were_held(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="p1evse.bridge")  # before the bridge looks
    bridge, clock, seen = make(mode="steady", interval=5)
    for second in range(21):  # a still house: a new value, its answer, then held
        clock.advance(START + second)
        bridge.half(Side.EXPORT, 2000.0)
    held = [e for e in seen if isinstance(e, GridPower) and e.held]
    assert held
    assert "publish -2000 W (held: the mean of 5 readings stayed close)" in caplog.text
    assert "publish -2000 W (mean of 1 reading)" in caplog.text


def test_the_stale_timer_fires_at_its_deadline_and_moves_with_each_reading() -> None:
    sink = RecordingSink()
    bridge, clock, seen = make(sink)
    clock.advance(START + 8.0)
    bridge.reading(Reading(clock.time(), 100.0, 0.0))
    clock.advance(START + 17.9)  # the first deadline (START + 10) went with the reading
    assert not any(isinstance(e, StaleEntered) for e in seen)
    clock.advance(START + 30.0)
    [stale] = [e for e in seen if isinstance(e, StaleEntered)]
    assert stale.at == START + 18.0
    bridge.reading(Reading(clock.time(), 100.0, 0.0))
    assert isinstance(sink.events[-2], StaleLeft)


def test_stop_cancels_the_timer() -> None:
    bridge, clock, seen = make()
    bridge.stop()
    clock.advance(START + 100.0)
    assert seen == []


def test_a_failing_sink_keeps_no_event_from_the_others_and_is_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, working = RecordingSink(fail=True), RecordingSink()
    bridge, clock, seen = make(broken, working)
    with caplog.at_level(logging.ERROR, logger="p1evse.bridge"):
        for second in range(3):
            clock.advance(START + second)
            bridge.reading(Reading(clock.time(), 100.0 + second, 0.0))
    assert [e.watts for e in working.events if isinstance(e, GridPower)] == [100, 101, 102]
    assert len([e for e in seen if isinstance(e, GridPower)]) == 3  # observers after it too
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1


def test_rejections_are_logged_once_a_minute_with_a_hint_for_a_wrong_unit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge, clock, _ = make()
    with caplog.at_level(logging.WARNING, logger="p1evse.bridge"):
        for _ in range(3):
            bridge.half(Side.IMPORT, 60_000.0)
        clock.advance(START + 60.0)
        bridge.reject(Rejection.NOT_A_NUMBER, "'abc'")
    lines = [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "implausible" in line]) == 1
    assert "wrong unit?" in lines[0]
    assert any("not_a_number" in line for line in lines)
