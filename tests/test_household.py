"""The household laid over a day: its appliances, fridge and noise, seeded."""

from __future__ import annotations

import statistics
from datetime import datetime

from p1evse.sim.house import RecordedDay, Sample, SyntheticDay
from p1evse.sim.household import (
    APPLIANCE_POWER_W,
    APPLIANCE_RUN_S,
    FRIDGE_ON_S,
    FRIDGE_PERIOD_S,
    FRIDGE_W,
    Household,
)


def flat_day(hours: float = 15.0, load_w: float = 300.0) -> RecordedDay:
    samples = [
        Sample(0.0, 1_000.0, (load_w / 3,) * 3, 231.0),
        Sample(hours * 3600, 1_000.0, (load_w / 3,) * 3, 231.0),
    ]
    return RecordedDay(samples, datetime(2026, 6, 21, 6))


def test_the_same_seed_is_the_same_house_and_another_seed_another() -> None:
    day = flat_day()
    one, again, other = Household(day, 1), Household(day, 1), Household(day, 2)
    times = range(0, 54_000, 7)
    assert [one.sample(t) for t in times] == [again.sample(t) for t in times]
    assert one.appliances != other.appliances


def test_appliances_come_about_every_15_minutes_within_their_ranges() -> None:
    for seed in range(1, 6):
        house = Household(flat_day(), seed)
        assert 30 <= len(house.appliances) <= 95  # 60 expected in 15 h
        for appliance in house.appliances:
            assert APPLIANCE_POWER_W[0] <= appliance.power_w <= APPLIANCE_POWER_W[1]
            assert APPLIANCE_RUN_S[0] <= appliance.duration_s <= APPLIANCE_RUN_S[1]
            assert appliance.phase in (0, 1, 2)


def test_an_appliance_adds_its_power_on_its_phase_while_it_runs() -> None:
    house = Household(flat_day(), 3)
    appliance = house.appliances[5]
    before = house.sample(appliance.start_s - 1)
    during = house.sample(appliance.start_s + 1)
    step = sum(during.load_w) - sum(before.load_w)
    assert abs(step - appliance.power_w) < 400  # the noise and the fridge move it a little
    assert during.load_w[appliance.phase] - before.load_w[appliance.phase] > appliance.power_w - 400


def test_the_noise_is_about_50_w_and_the_fridge_runs_a_third_of_the_time() -> None:
    house = Household(flat_day(), 4)
    busy = {
        t
        for a in house.appliances
        for t in range(int(a.start_s) - 1, int(a.start_s + a.duration_s) + 2)
    }
    quiet = [t for t in range(0, 54_000) if t not in busy]
    load = {t: sum(house.sample(t).load_w) - 300.0 for t in quiet}
    # new each second: one second to the next differs by the noise twice over (the
    # fridge's few edges change that by a fraction of a watt)
    steps = [load[t + 1] - load[t] for t in quiet if t + 1 in load]
    assert 45 < statistics.pstdev(steps) / 2**0.5 < 55
    # minutes without an appliance: the fridge's 100 W shows in their means
    minutes = [
        statistics.fmean(load[t] for t in range(start, start + 60))
        for start in range(0, 54_000, 60)
        if all(t in load for t in range(start, start + 60))
    ]
    running = sum(mean > FRIDGE_W / 2 for mean in minutes) / len(minutes)
    assert abs(running - FRIDGE_ON_S / FRIDGE_PERIOD_S) < 0.06


def test_the_day_keeps_its_pv_voltage_and_span_and_a_load_is_never_negative() -> None:
    day = flat_day(load_w=0.0)
    house = Household(day, 5)
    for t in range(0, 54_000, 13):
        sample = house.sample(t)
        assert sample.solar_w == 1_000.0
        assert sample.voltage_v == 231.0
        assert min(sample.load_w) >= 0.0
    assert (house.first_s, house.last_s, house.origin) == (day.first_s, day.last_s, day.origin)


def test_it_lays_over_the_synthetic_day_too() -> None:
    day = SyntheticDay(seed=2)
    house = Household(day, 2)
    noon = 12 * 3600.0
    assert house.sample(noon).solar_w == day.sample(noon).solar_w
    assert house.first_s == day.first_s
