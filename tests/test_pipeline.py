"""DESIGN.md's pipeline rules, one table per rule, on an injected clock."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1evse.model import (
    Event,
    GridPower,
    PhaseKind,
    Reading,
    Rejected,
    Rejection,
    Side,
    StaleAction,
    StaleEntered,
    StaleLeft,
)
from p1evse.pipeline import Pipeline, PublishSettings

IMP, EXP = Side.IMPORT, Side.EXPORT


@dataclass
class Run:
    """Feeds a pipeline a script of (time, side, watts) and fires its timers in between,
    as the bridge does on the event loop."""

    pipeline: Pipeline
    now: float = 0.0

    def advance(self, until: float) -> list[Event]:
        events: list[Event] = []
        while (deadline := self.pipeline.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            events += self.pipeline.tick(self.now)
        self.now = until
        return events

    def half(self, at: float, side: Side, watts: float) -> list[Event]:
        events = self.advance(at)
        return events + self.pipeline.half(side, watts, at)

    def script(self, steps: list[tuple[float, Side, float]], until: float) -> list[Event]:
        events: list[Event] = []
        for at, side, watts in steps:
            events += self.half(at, side, watts)
        return events + self.advance(until)


def make(**overrides: Any) -> Run:
    options: dict[str, Any] = {"interval": 0, "stale_after": 1000}
    options.update(overrides)
    return Run(Pipeline(PublishSettings(**options), now=0.0))


def published(events: list[Event]) -> list[tuple[float, int]]:
    return [(round(e.at, 3), e.watts) for e in events if isinstance(e, GridPower)]


# -- rule 1: pairing ----------------------------------------------------------------

PAIRING = [
    # (name, script, expected [(reading time, watts)])
    ("non-zero import alone completes at once", [(0, IMP, 1500)], [(0, 1500)]),
    ("non-zero export alone completes at once", [(0, EXP, 1500)], [(0, -1500)]),
    (
        "zero partner after a non-zero half is absorbed",
        [(0, IMP, 1500), (0.02, EXP, 0)],
        [(0, 1500)],
    ),
    (
        "zero half first, non-zero partner completes it",
        [(0, EXP, 0), (0.03, IMP, 1500)],
        [(0.03, 1500)],
    ),
    (
        "both halves zero: published as 0 when the partner arrives",
        [(0, IMP, 0), (0.01, EXP, 0)],
        [(0.01, 0)],
    ),
    (
        "missing partner, never seen: completes after the window as 0",
        [(0, IMP, 0)],
        [(0, 0)],
    ),
    (
        "missing partner: its latest value holds (DSMR-reader skips unchanged payloads)",
        [(0, EXP, 800), (1, IMP, 0)],
        [(0, -800), (1, -800)],
    ),
    (
        "a new half never combines with an older non-zero partner",
        [(0, EXP, 800), (1, IMP, 2000)],
        [(0, -800), (1, 2000)],
    ),
    (
        "transition import -> export, export first",
        [(0, IMP, 2000), (1, EXP, 1200), (1.01, IMP, 0)],
        [(0, 2000), (1, -1200)],
    ),
    (
        "transition import -> export, zero import first",
        [(0, IMP, 2000), (1, IMP, 0), (1.01, EXP, 1200)],
        [(0, 2000), (1.01, -1200)],
    ),
    (
        "duplicate zero half within the window counts once",
        [(0, EXP, 0), (0.1, EXP, 0)],
        [(0, 0)],
    ),
    (
        "duplicate non-zero half is a second reading of the same value",
        [(0, IMP, 900), (0.1, IMP, 900)],
        [(0, 900), (0.1, 900)],
    ),
    (
        "zero partner just after the window is a reading of its own",
        [(0, IMP, 1500), (0.6, EXP, 0)],
        [(0, 1500), (0.6, 1500)],
    ),
    (
        "non-zero partner just after the window: the waiting half completed alone",
        [(0, EXP, 700), (1, IMP, 0), (1.6, EXP, 900)],
        [(0, -700), (1, -700), (1.6, -900)],
    ),
    (
        "a zero half waiting when its own side turns non-zero completes first",
        [(0, EXP, 700), (1, IMP, 0), (1.2, IMP, 300)],
        [(0, -700), (1, -700), (1.2, 300)],
    ),
    (
        "a waiting zero pairs with the partner before any absorb window",
        [(0, IMP, 500), (0.1, IMP, 0), (0.2, EXP, 0)],
        [(0, 500), (0.2, 0)],
    ),
]


@pytest.mark.parametrize(
    ("script", "expected"), [p[1:] for p in PAIRING], ids=[p[0] for p in PAIRING]
)
def test_pairing(
    script: list[tuple[float, Side, float]], expected: list[tuple[float, int]]
) -> None:
    run = make(pair_window=0.5)
    assert published(run.script(script, until=5)) == expected


def test_partner_exactly_at_the_window_edge_is_too_late() -> None:
    run = make(pair_window=0.5)
    events = run.script([(0, EXP, 300), (1, IMP, 0), (1.5, EXP, 0)], until=3)
    assert published(events) == [(0, -300), (1, -300), (1.5, 0)]


def test_absorbed_and_duplicates_are_counted() -> None:
    run = make()
    run.script([(0, IMP, 1500), (0.1, EXP, 0), (1, EXP, 0), (1.1, EXP, 0)], until=3)
    assert run.pipeline.counters.absorbed == 1
    assert run.pipeline.counters.duplicates == 1


def test_whole_reading_input() -> None:
    run = make()
    assert published(run.pipeline.reading(Reading(2.0, 300.0, 1000.0), 2.0)) == [(2.0, -700)]


def test_each_accepted_reading_is_an_event_before_its_value() -> None:
    """Observers (the status page) see what the meter said: both halves, at the time the
    reading was taken, then the value it led to."""
    run = make(interval=5)
    steps = [(0, EXP, 800), (0.1, IMP, 0), (1, IMP, 0), (3, IMP, 2000), (5, EXP, 100)]
    events = [e for e in run.script(steps, until=7) if isinstance(e, Reading | GridPower)]
    assert events == [
        Reading(0, 0, 800),
        GridPower(0, -800, 1),
        Reading(1, 0, 800),  # the zero import's partner never came: its export holds
        Reading(3, 2000, 0),
        Reading(5, 0, 100),
        GridPower(5, round((-800 * 1 + 2000 * 2 - 100 * 2) / 5), 3),
    ]
    assert run.pipeline.counters.readings == 4


# -- rule 2: zero is a value; rule 7: whole watts --------------------------------------


@pytest.mark.parametrize(
    ("watts", "expected"),
    [(0.0, 0), (0.4, 0), (1234.4, 1234), (1234.6, 1235), (49_999.9, 50_000)],
)
def test_whole_watts(watts: float, expected: int) -> None:
    for side, sign in ((IMP, 1), (EXP, -1)):
        run = make()
        events = run.script([(0, side, watts)], until=1)
        values = [e.watts for e in events if isinstance(e, GridPower)]
        assert values == [sign * expected]
        assert all(isinstance(v, int) for v in values)
        assert str(values[0]) != "-0"


# -- rule 3: cadence ---------------------------------------------------------------


def test_one_hz_meter_gives_one_value_per_interval() -> None:
    run = make(interval=5)
    steps = [(float(t), IMP, 100.0 * t) for t in range(0, 16)]
    assert published(run.script(steps, until=16)) == [
        (0, 0),  # the first reading goes out at once
        (5, 300),  # mean of 100..500
        (10, 800),  # mean of 600..1000
        (15, 1300),
    ]


def test_mean_is_time_weighted() -> None:
    run = make(interval=5)
    # each reading stands for the time since the one before it
    events = run.script([(0, IMP, 0), (1, IMP, 100), (5, IMP, 500)], until=6)
    assert published(events) == [(0, 0), (5, (100 * 1 + 500 * 4) // 5)]


def test_mean_crosses_import_and_export() -> None:
    run = make(interval=5)
    steps = [
        (0, IMP, 1000),
        (1, IMP, 1000),
        (2, EXP, 500),
        (3, EXP, 500),
        (4, EXP, 500),
        (5, EXP, 500),
    ]
    assert published(run.script(steps, until=6)) == [(0, 1000), (5, (1000 - 2000) // 5)]


def test_ten_second_source_passes_through_unchanged() -> None:
    run = make(interval=5)
    steps = [(10.0 * i, EXP, 100.0 + i) for i in range(5)]
    assert published(run.script(steps, until=50)) == [(10.0 * i, -(100 + i)) for i in range(5)]


def test_reading_just_before_the_interval_does_not_close_it() -> None:
    run = make(interval=5)
    events = run.script([(0, IMP, 10), (4.99, IMP, 20), (5.99, IMP, 30)], until=7)
    assert published(events) == [(0, 10), (5.99, round((20 * 4.99 + 30 * 1) / 5.99))]


def test_interval_zero_relays_every_reading() -> None:
    run = make(interval=0)
    steps = [(0.1 * i, IMP, 100.0 + i) for i in range(20)]
    assert len(published(run.script(steps, until=3))) == 20


# -- rule 3: `mode: steady` ------------------------------------------------------


def steady(**overrides: Any) -> Run:
    return make(mode="steady", interval=5, **overrides)


def meter(run: Run, net_w: dict[float, float], until: float) -> list[GridPower]:
    """A 1 Hz meter (or any times) stating these net powers, + import."""
    steps = [(at, IMP if watts > 0 else EXP, abs(watts)) for at, watts in net_w.items()]
    return [e for e in run.script(steps, until) if isinstance(e, GridPower)]


def each_second(start: int, end: int, watts: float) -> dict[float, float]:
    return {float(t): watts for t in range(start, end)}


def test_steady_sends_a_switch_in_the_house_at_once() -> None:
    run = steady()
    # exporting 2 kW; a kettle goes on at 13 s and off at 23 s
    day = each_second(0, 13, -2000) | each_second(13, 23, 200) | each_second(23, 30, -2000)
    sent = [(v.at, v.watts) for v in meter(run, day, until=30)]
    assert (13, 200) in sent
    assert (23, -2000) in sent


def test_steady_sends_the_value_before_again_while_the_house_moves_less_than_band_w() -> None:
    run = steady()
    noisy = {float(t): -2000 + (60 if t % 2 else -60) for t in range(0, 31)}
    sent = meter(run, noisy, until=31)
    assert [v.at for v in sent] == [0, 5, 10, 15, 20, 25, 30]  # the cadence stays
    first, answer, *later = sent
    assert (first.held, answer.held) == (False, False)  # a new value, then the car's answer
    assert all(v.held and v.watts == answer.watts for v in later)
    assert run.pipeline.counters.held == len(later)
    assert all(v.readings >= 4 for v in later)  # each still says what it stood for


def test_steady_sends_a_mean_that_moved_band_w_and_then_its_answer() -> None:
    run = steady(band_w=100)
    # the sun comes out a little: 150 W more export, less than a switch
    day = each_second(0, 16, -2000) | each_second(16, 36, -2150)
    sent = [(v.at, v.watts, v.held) for v in meter(run, day, until=36)]
    assert sent == [
        (0, -2000, False),
        (5, -2000, False),  # the answer to the first value
        (10, -2000, True),
        (15, -2000, True),
        (20, -2150, False),  # moved 150 W: a new value
        (25, -2150, False),  # and its answer
        (30, -2150, True),
        (35, -2150, True),
    ]


def test_steady_leaves_the_readings_just_after_a_new_value_out_of_the_mean() -> None:
    run = steady()
    day = each_second(0, 10, -2000) | {10.0: 500.0, 11.0: 900.0} | each_second(12, 16, 800)
    sent = [(v.at, v.watts) for v in meter(run, day, until=16)]
    # 10 s is a switch; 11 s, the car still answering it, stays out of the next mean
    assert sent[-2:] == [(10, 500), (15, 800)]


def test_steady_sends_a_switch_seen_while_the_car_settles_once_it_has() -> None:
    run = steady()
    day = each_second(0, 10, -2000) | {10.0: 500.0, 11.0: 1500.0} | each_second(12, 16, 1500)
    sent = [(v.at, v.watts) for v in meter(run, day, until=16)]
    assert (12, 1500) in sent


def test_steady_adds_the_reserve_to_held_values_too() -> None:
    run = steady(reserve_w=100)
    sent = meter(run, each_second(0, 21, -2000), until=21)
    assert [v.watts for v in sent] == [-1900] * 5
    assert sent[-1].held


def test_steady_sends_the_first_reading_after_a_stale_gap_at_once() -> None:
    run = steady(stale_after=30)
    day = each_second(0, 11, -2000) | each_second(60, 62, -1000)
    sent = [(v.at, v.watts, v.held) for v in meter(run, day, until=62)]
    assert (60, -1000, False) in sent


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"interval": 0}, "mode steady needs an interval above 0"),
        ({"step_w": 80, "band_w": 80}, "step_w (80 W) must be larger than band_w (80 W)"),
        ({"band_w": 250}, "less than or equal to 200"),
    ],
)
def test_steady_settings_that_cannot_work_are_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PublishSettings(mode="steady", **overrides)
    PublishSettings(mode="interval", **{**overrides, "band_w": 80})  # they are steady's


# -- rule 4: reserve ---------------------------------------------------------------


def test_reserve_is_added_to_every_value() -> None:
    run = make(reserve_w=100)
    events = run.script([(0, EXP, 1000), (1, IMP, 50), (2, IMP, 0), (2.01, EXP, 0)], until=3)
    assert [w for _, w in published(events)] == [-900, 150, 100]


# -- rule 5: plausibility ----------------------------------------------------------


@pytest.mark.parametrize(
    ("watts", "reason"),
    [
        (math.nan, Rejection.NON_FINITE),
        (math.inf, Rejection.NON_FINITE),
        (-math.inf, Rejection.NON_FINITE),
        (-1.0, Rejection.NEGATIVE),
        (50_000.1, Rejection.IMPLAUSIBLE),
        (1e300, Rejection.IMPLAUSIBLE),
    ],
)
def test_implausible_halves_are_rejected_and_counted(watts: float, reason: Rejection) -> None:
    run = make()
    events = run.script([(0, IMP, 400), (1, EXP, watts), (2, IMP, 500)], until=4)
    # the rejected value never replaced the last good one: 500 W is not netted against it
    assert published(events) == [(0, 400), (2, 500)]
    assert [e.reason for e in events if isinstance(e, Rejected)] == [reason]
    assert run.pipeline.counters.rejected == {reason: 1}


@pytest.mark.parametrize(
    "script",
    [
        [(0, IMP, 512_000), (0.02, EXP, 0)],  # a kW meter read as W: both orders
        [(0, EXP, 0), (0.02, IMP, 512_000)],
        [(0, EXP, math.nan), (0.3, IMP, 0)],
    ],
)
def test_a_rejected_half_takes_its_zero_partner_down_with_it(
    script: list[tuple[float, Side, float]],
) -> None:
    """The telegram had no good value: its zero half alone must not make a 0 W reading."""
    events = make().script(script, until=3)
    assert published(events) == []


def test_max_power_is_configurable() -> None:
    run = make(max_power_w=1000)
    assert published(run.script([(0, IMP, 1000), (1, IMP, 1001)], until=2)) == [(0, 1000)]


def test_source_rejections_are_counted() -> None:
    run = make()
    events = run.pipeline.reject(Rejection.NOT_A_NUMBER, "'abc'", 1.0)
    assert events == [Rejected(1.0, Rejection.NOT_A_NUMBER, "'abc'")]
    assert run.pipeline.counters.rejected == {Rejection.NOT_A_NUMBER: 1}


PHASE_CASES = [
    # (kind, value, reason)
    (PhaseKind.IMPORT, math.inf, Rejection.NON_FINITE),
    (PhaseKind.EXPORT, 1e308 * 1000, Rejection.NON_FINITE),
    (PhaseKind.IMPORT, -5.0, Rejection.NEGATIVE),
    (PhaseKind.EXPORT, 60_000.0, Rejection.IMPLAUSIBLE),
    (PhaseKind.VOLTAGE, -230.0, Rejection.NEGATIVE),
    (PhaseKind.VOLTAGE, math.nan, Rejection.NON_FINITE),
    (PhaseKind.VOLTAGE, 1e9, Rejection.IMPLAUSIBLE),
]
PHASE_FIELD = {
    PhaseKind.IMPORT: "phase_import_w",
    PhaseKind.EXPORT: "phase_export_w",
    PhaseKind.VOLTAGE: "phase_voltage_v",
}


@pytest.mark.parametrize(("kind", "value", "reason"), PHASE_CASES)
def test_an_implausible_phase_value_is_dropped_and_counted(
    kind: PhaseKind, value: float, reason: Rejection
) -> None:
    """Per-phase values and voltages follow the totals' rules; the totals still count."""
    run = make()
    good = (230.0, 231.0, 229.0) if kind is PhaseKind.VOLTAGE else (100.0, 200.0, 300.0)
    reading = Reading(1.0, 600.0, 0.0, **{PHASE_FIELD[kind]: (good[0], value, good[2])})
    events = run.pipeline.reading(reading, 1.0)
    assert published(events) == [(1, 600)]
    [accepted] = [e for e in events if isinstance(e, Reading)]
    assert getattr(accepted, PHASE_FIELD[kind]) == (good[0], None, good[2])
    assert [(e.reason, e.detail) for e in events if isinstance(e, Rejected)] == [
        (reason, f"L2 {kind.value} {value!r}")
    ]
    assert run.pipeline.counters.rejected == {reason: 1}


@pytest.mark.parametrize(("kind", "value", "reason"), PHASE_CASES)
def test_an_implausible_phase_value_from_its_own_topic_is_refused(
    kind: PhaseKind, value: float, reason: Rejection
) -> None:
    run = make()
    assert run.pipeline.phase(kind, 0, 230.0, 0.5) == []
    events = run.pipeline.phase(kind, 0, value, 0.6)
    assert [e.reason for e in events if isinstance(e, Rejected)] == [reason]
    events = run.half(1.0, IMP, 400)
    [reading] = [e for e in events if isinstance(e, Reading)]
    assert getattr(reading, PHASE_FIELD[kind]) == (230.0, None, None)  # the last good one


def clocked(at: float, watts: float, second: int) -> Reading:
    return Reading(at, watts, 0.0, meter_time=datetime(2026, 6, 1, 12, 0, second, tzinfo=UTC))


def test_telegrams_that_came_together_are_weighted_by_the_meters_clock() -> None:
    """A gateway holds five telegrams of a 1 Hz meter and sends them at once, every
    5 s: each stands for its second of the meter's, not the first for all five."""
    run = make(interval=5, stale_after=30)
    sent: list[tuple[float, int]] = []
    second = 0
    for burst in range(4):
        at = 5.0 * burst
        for kw in (0, 0, 0, 0, 10_000):
            sent += published(run.pipeline.reading(clocked(at, kw, second), at))
            second += 1
    # the first value goes at once; then each closes on the first of a burst: the four
    # before it and itself, one second each
    assert [watts for _, watts in sent] == [0, 2000, 2000, 2000]


def test_a_meter_clock_that_jumps_is_no_weight() -> None:
    """Back, still, or more than stale_after on: the time between arrivals counts."""
    run = make(interval=5, stale_after=30)
    events = run.pipeline.reading(clocked(0.0, 0, 50), 0.0)
    events += run.pipeline.reading(clocked(1.0, 100, 10), 1.0)  # the clock went back
    events += run.pipeline.reading(clocked(5.0, 500, 59), 5.0)  # 49 s on, by the meter
    assert published(events) == [(0, 0), (5, (100 * 1 + 500 * 4) // 5)]


def test_a_meter_clock_set_forward_counts_no_more_than_a_step() -> None:
    """A 1 Hz meter whose clock jumps 6 s at one telegram (set anew): that reading
    stands for its arrival's second and the meter's period, not for six."""
    run = make(interval=5, stale_after=30)
    sent: list[int] = []
    second = 0
    for n, kw in enumerate((0, 0, 0, 0, 10_000, 0, 0, 0, 0, 10_000, 0)):
        second += 6 if n == 8 else 1
        events = run.pipeline.reading(clocked(float(n), kw, second), float(n))
        sent += [watts for _, watts in published(events)]
    # the window closing at 10 s: readings 6 to 10, the one at 8 counting 2 s
    assert sent == [0, 2000, round(10_000 / 6)]


def test_a_meter_clock_set_forward_at_its_first_step_counts_no_more_than_a_second_more() -> None:
    """Before a plain step is known, a step of the clock counts no more than the arrival
    gap and the shortest DSMR period (1 s). With the longest (10 s) the jump weighed 11 s
    and this 1 Hz meter's mean was 7,333 W where its readings stand for 2,000."""
    run = make(interval=5, stale_after=30)
    sent = published(run.pipeline.reading(clocked(0.0, 0, 0), 0.0))
    sent += published(run.pipeline.reading(clocked(1.0, 10_000, 25), 1.0))  # 25 s on
    sent += published(run.pipeline.reading(clocked(5.0, 0, 29), 5.0))
    assert sent == [(0, 0), (5, round(10_000 * 2 / 6))]


def test_a_telegram_sent_again_is_no_reading() -> None:
    """A gateway that repeats its cached telegram: the meter's clock does not move."""
    run = make(stale_after=30)
    events: list[Event] = []
    events += run.pipeline.reading(clocked(0.0, 500, 0), 0.0)
    for t in range(1, 40):  # the same telegram, once a second
        events += run.advance(float(t)) + run.pipeline.reading(clocked(float(t), 500, 0), t)
    assert published(events) == [(0, 500)]
    stuck = [e for e in events if isinstance(e, Rejected)]
    assert [(e.at, e.reason) for e in stuck] == [(1.0, Rejection.METER_CLOCK_STUCK)]  # once
    assert stuck[0].detail.startswith("meter clock stuck at 2026-06-01T12:00:00+00:00")
    assert run.pipeline.counters.rejected == {Rejection.METER_CLOCK_STUCK: 39}
    assert stale_events(events) == [StaleEntered(30, 0, StaleAction.PAUSE)]
    events = run.pipeline.reading(clocked(40.0, 700, 1), 40.0)  # the clock moves again
    assert published(events) == [(40, 700)]
    assert stale_events(events) == [StaleLeft(40, 40)]


def test_a_meter_clock_that_never_moves_still_gives_readings() -> None:
    """A meter whose clock is unset (the same timestamp in every telegram): a telegram
    that says something else is a new one; only the same telegram again is a repeat."""
    run = make(stale_after=30)
    events: list[Event] = []
    for t in range(40):
        watts = 500 + 10 * (t % 3)
        events += run.advance(float(t)) + run.pipeline.reading(clocked(float(t), watts, 0), t)
    events += run.pipeline.reading(clocked(40.0, 500, 0), 40.0)  # the one before, again
    assert published(events) == [(t, 500 + 10 * (t % 3)) for t in range(40)]
    assert run.pipeline.counters.rejected == {Rejection.METER_CLOCK_STUCK: 1}
    assert stale_events(events) == []


def test_a_meter_clock_set_back_costs_one_reading_at_most() -> None:
    run = make()
    events = run.pipeline.reading(clocked(0.0, 500, 30), 0.0)
    events += run.pipeline.reading(clocked(1.0, 500, 10), 1.0)  # set back 20 s
    events += run.pipeline.reading(clocked(2.0, 520, 11), 2.0)
    events += run.pipeline.reading(clocked(3.0, 530, 5), 3.0)  # set back, a new value
    assert published(events) == [(0, 500), (2, 520), (3, 530)]


def test_readings_without_a_meter_clock_are_never_stuck() -> None:
    run = make()
    events = run.pipeline.reading(Reading(0.0, 500, 0.0), 0.0)
    events += run.pipeline.reading(Reading(1.0, 500, 0.0), 1.0)
    assert published(events) == [(0, 500), (1, 500)]


# -- rule 6: stale guard -----------------------------------------------------------


def stale_events(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, StaleEntered | StaleLeft)]


def test_stale_at_start_up_when_no_reading_ever_came() -> None:
    run = make(stale_after=30)
    events = run.advance(100)
    assert stale_events(events) == [StaleEntered(30, None, StaleAction.PAUSE)]
    assert published(events) == []


def test_stale_enters_once_and_leaves_with_the_gap() -> None:
    run = make(stale_after=30, interval=5)
    events = run.script([(0, IMP, 500), (1, IMP, 600)], until=80)
    assert stale_events(events) == [StaleEntered(31, 1, StaleAction.PAUSE)]
    events = run.half(90, EXP, 200)
    assert stale_events(events) == [StaleLeft(90, 89)]
    # the first fresh reading goes out at once; the gap is never averaged over
    assert published(events) == [(90, -200)]
    assert run.pipeline.counters.stale_entered == 1


def test_readings_keep_the_stale_guard_away() -> None:
    run = make(stale_after=30)
    events = run.script([(float(t), IMP, 100) for t in range(0, 200, 20)], until=200)
    assert stale_events(events) == []


def test_time_the_caller_was_held_is_not_the_meters_silence() -> None:
    run = make(stale_after=30)
    run.half(0, IMP, 100)
    run.advance(10)
    run.pipeline.held(50)  # stopped from 10 s to 60 s: the readings meanwhile wait
    assert run.pipeline.next_deadline() == 80
    events = run.half(60, IMP, 200)  # the first of them: no pause ahead of it
    assert stale_events(events) == []
    assert published(events) == [(60, 200)]
    assert run.pipeline.next_deadline() == 90  # a reading ends what was held


def test_a_meter_silent_while_the_caller_was_held_is_stale_after_its_running_time() -> None:
    run = make(stale_after=30)
    run.half(0, IMP, 100)
    run.advance(10)
    run.pipeline.held(50)
    assert stale_events(run.advance(79.9)) == []
    # 30 s of running time without a reading; the log says how long it really was
    assert stale_events(run.advance(100)) == [StaleEntered(80, 0, StaleAction.PAUSE)]
    run.pipeline.held(500)  # held while stale: nothing to wait for
    assert stale_events(run.half(700, IMP, 100)) == [StaleLeft(700, 700)]
    assert run.pipeline.next_deadline() == 730


def test_rejected_input_does_not_count_as_fresh() -> None:
    run = make(stale_after=30)
    events = run.script([(0, IMP, 100), (20, IMP, math.nan), (29, IMP, -5)], until=31)
    assert stale_events(events) == [StaleEntered(30, 0, StaleAction.PAUSE)]


def test_on_stale_import_repeats_the_failsafe_every_interval() -> None:
    run = make(stale_after=30, interval=5, on_stale="import", failsafe_import_w=7000)
    events = run.script([(0, EXP, 3000)], until=46)
    assert published(events) == [(0, -3000), (30, 7000), (35, 7000), (40, 7000), (45, 7000)]
    assert all(e.failsafe for e in events if isinstance(e, GridPower) and e.at >= 30)
    events = run.half(47, EXP, 1000)
    assert published(events) == [(47, -1000)]
    assert not any(isinstance(e, GridPower) and e.failsafe for e in run.advance(60))


def test_on_stale_import_with_interval_zero_repeats_every_five_seconds() -> None:
    run = make(stale_after=10, interval=0, on_stale="import")
    assert [t for t, _ in published(run.advance(21))] == [10, 15, 20]


def test_on_stale_none_publishes_nothing() -> None:
    run = make(stale_after=10, on_stale="none")
    events = run.advance(100)
    assert published(events) == []
    assert stale_events(events) == [StaleEntered(10, None, StaleAction.NONE)]


def test_failsafe_value_has_no_reserve() -> None:
    run = make(stale_after=10, on_stale="import", failsafe_import_w=5000, reserve_w=300)
    assert published(run.advance(10)) == [(10, 5000)]


# -- property: any input, no crash, nothing implausible published -----------------------

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=60_000),
    st.just(0.0),
)
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=40), st.sampled_from([IMP, EXP]), values),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    interval=st.sampled_from([0, 1, 5]),
    reserve=st.integers(-500, 500),
    on_stale=st.sampled_from(["pause", "import", "none"]),
    mode=st.sampled_from(["interval", "steady"]),
)
def test_any_input_never_crashes_nor_publishes_implausible_values(
    steps: list[tuple[float, Side, float]], interval: int, reserve: int, on_stale: str, mode: str
) -> None:
    if mode == "steady" and interval == 0:
        interval = 1
    run = make(interval=interval, reserve_w=reserve, stale_after=30, on_stale=on_stale, mode=mode)
    accepted: list[float] = []
    events: list[Event] = []
    t = 0.0
    for dt, side, watts in steps:
        t += dt
        events += run.half(t, side, watts)
        if math.isfinite(watts) and 0 <= watts <= 50_000:
            accepted.append(watts)
    events += run.advance(t + 100)
    for event in events:
        if isinstance(event, GridPower):
            assert isinstance(event.watts, int)
            if event.failsafe:
                assert event.watts == 10_000
            else:
                assert -50_000 + reserve <= event.watts <= 50_000 + reserve
                assert event.readings >= 1
    measured = [e for e in events if isinstance(e, GridPower) and not e.failsafe]
    assert len(measured) <= run.pipeline.counters.readings
    entered = [e for e in events if isinstance(e, StaleEntered)]
    left = [e for e in events if isinstance(e, StaleLeft)]
    assert len(entered) - len(left) in (0, 1)
