"""The OpenEVSE divert model pinned to the firmware's documented behaviour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from p1evse.pipeline import PublishSettings
from p1evse.sim.charger import to_int
from p1evse.sim.dayfile import read_csv
from p1evse.sim.openevse import (
    DIVERT_PRIORITY,
    MQTT_PRIORITY,
    SHAPER_PRIORITY,
    Car,
    Claim,
    DivertSettings,
    InputFilter,
    OpenEvseModel,
    ShaperSettings,
)
from p1evse.sim.simulate import simulate

AT_230 = DivertSettings(voltage=230.0)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: DivertSettings(voltage=0), "greater than or equal to 60"),
        (lambda: DivertSettings(voltage=1e9), "less than or equal to 300"),
        (lambda: DivertSettings(attack_s=-1), "greater than or equal to 0"),
        (lambda: DivertSettings(min_current=16, max_current=10), "above max_current"),
        (lambda: ShaperSettings(max_pwr_w=-1), "greater than or equal to 0"),
        (lambda: Car(max_current=0), "greater than 0"),
        (lambda: Car(max_current=16, phases=3), "Extra inputs are not permitted"),
    ],
)
def test_settings_out_of_range_are_refused(make: Callable[[], object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        make()


def feed(model: OpenEvseModel, house_net_w: float, start_s: float, seconds: int) -> float:
    """Feed a house's net power (without the car) every 5 s, the car drawing what the
    charger offers; returns the time the charger first offered current, or -1."""
    started = -1.0
    for t in range(0, seconds, 5):
        now = start_s + t
        grid = house_net_w + model.amps() * model.settings.voltage
        model.grid_ie(round(grid), now)
        if started < 0 and model.pilot() > 0:
            started = now
    return started


def test_about_1_6_kw_of_sustained_export_starts_charging_at_230_v() -> None:
    model = OpenEvseModel(AT_230)
    assert feed(model, -1600, 0, 600) > 0
    assert model.pilot() >= 6


def test_1_5_kw_of_export_never_starts_charging_at_230_v() -> None:
    model = OpenEvseModel(AT_230)
    assert feed(model, -1500, 0, 3600) == -1


def test_without_surplus_a_16_a_charge_ends_after_about_590_s_at_the_6_a_floor() -> None:
    model = OpenEvseModel(AT_230)
    feed(model, -16 * 230 - 100, 0, 1800)  # long enough: past the minimum charge time
    assert model.pilot() == 16
    ended = None
    drawn = []
    for t in range(0, 1200, 5):
        model.grid_ie(round(300 + model.amps() * 230), 1800 + t)
        drawn.append(model.pilot())
        if model.pilot() == 0 and ended is None:
            ended = t
    assert ended is not None
    assert 580 <= ended <= 600
    assert set(drawn[1 : ended // 5]) == {6.0}  # the floor, drawn from the grid meanwhile


def test_feeds_less_than_a_second_apart_freeze_the_filter() -> None:
    model = OpenEvseModel(AT_230)
    model.grid_ie(-3000, 0.0)
    for i in range(1, 200):
        model.grid_ie(-3000, i * 0.999)  # whole-second dt truncation: 0 most of the time
    slow = model.smoothed
    steady = OpenEvseModel(AT_230)
    for i in range(0, 40):
        steady.grid_ie(-3000, i * 5.0)
    assert slow < steady.smoothed


@pytest.mark.parametrize(("tau_s", "filtered"), [(0.0, 10.0), (0.9, 10.0), (5.0, 0.95)])
def test_a_time_constant_of_zero_filters_nothing(tau_s: float, filtered: float) -> None:
    """getFactor: a tau of 0 (whole seconds, as its uint32_t) is no filter; one below
    INPUT_FILTER_MIN_TAU counts as 10 s. Zero was taken for 10 s."""
    input_filter = InputFilter()
    input_filter.filter(0.0, 0.0, tau_s, 0.0)
    assert input_filter.filter(10.0, 0.0, tau_s, 1.0) == pytest.approx(filtered, abs=0.01)


# -- DivertTask::update_state's decisions, one at a time ------------------------------
# The filter counts whole seconds: updates within one second leave `smoothed` where a
# test put it, so each test sets the smoothed current it needs and then sends a value.
VOLTS = DivertSettings().voltage  # 240 V; trigger 6 A, start at 6.5 A, 0.42 A reserve
# the car's current known at once (the default knows it as polled a second ago)
AT_ONCE = DivertSettings(current_lag_s=0.0)


def update(model: OpenEvseModel, surplus_a: float, now_s: float, smoothed: float) -> None:
    """One grid value at `now_s` (the car's draw included, as a meter sees it) with the
    divert filter at `smoothed`, then the firmware's tick."""
    model.smoothed = smoothed
    grid = (-surplus_a + model.amps()) * VOLTS
    model.grid_ie(round(grid), now_s)
    model.tick(now_s)


def started(surplus_a: float = 12.0) -> OpenEvseModel:
    """Charging at 11 A since t = 0 (12 A of surplus less the reserve), and divert
    counting itself active (a second update saw its claim in effect)."""
    model = OpenEvseModel(AT_ONCE)
    update(model, surplus_a, 0.0, smoothed=10.0)
    update(model, surplus_a, 0.5, smoothed=10.0)
    assert model.pilot() == 11
    return model


@pytest.mark.parametrize(("smoothed", "pilot"), [(6.2, 11), (6.5, 7), (6.0, 11)])
def test_between_the_trigger_and_half_an_amp_above_it_no_new_claim(
    smoothed: float, pilot: float
) -> None:
    """At 8 A of surplus the rate would be 7 A; only at or above 6.5 A is it claimed.
    (At 6 A and below the minimum charge time keeps the last claim.)"""
    model = started()
    update(model, 8.0, 0.9, smoothed=smoothed)
    assert model.pilot() == pilot


def test_the_minimum_charge_time_keeps_the_last_rate_from_when_charging_started() -> None:
    model = started()
    for t in (300.0, 599.0):  # the filter decays far below the trigger meanwhile
        update(model, 0.0, t, smoothed=3.0)
        assert model.pilot() == 11  # frozen, not the 6 A minimum
    update(model, 0.0, 600.0, smoothed=3.0)
    assert model.pilot() == 0


def test_the_first_update_after_a_start_can_stop_it() -> None:
    """Divert only counts itself active once an update sees its claim in effect: until
    then the minimum charge time does not hold, so a Disabled claim goes through."""
    model = OpenEvseModel(AT_ONCE)
    update(model, 12.0, 0.0, smoothed=10.0)
    assert model.pilot() == 11
    update(model, 0.0, 0.5, smoothed=3.0)
    assert model.pilot() == 0


def test_the_minimum_charge_time_runs_from_when_the_charger_starts_to_charge() -> None:
    """Divert claims at t = 0 under a pause over MQTT; the car charges from t = 300,
    when the pause is released, so it may stop at t = 900, not at 600."""
    model = OpenEvseModel(AT_ONCE)
    model.claim("mqtt", Claim(MQTT_PRIORITY, False))
    update(model, 12.0, 0.0, smoothed=10.0)
    assert model.pilot() == 0
    model.claim("mqtt", None)
    model.tick(300.0)
    update(model, 12.0, 300.5, smoothed=10.0)
    assert model.pilot() == 11
    update(model, 0.0, 899.0, smoothed=3.0)
    assert model.pilot() == 11
    update(model, 0.0, 900.0, smoothed=3.0)
    assert model.pilot() == 0


def test_as_divert_sim_runs_it_the_minimum_charge_time_starts_one_update_late() -> None:
    """divert_sim delivers the charger's state change to divert's loop at its next
    row: a charge started at t = 0 is seen at t = 60, so it may stop at 660, not 600."""
    model = OpenEvseModel(DivertSettings(current_lag_s=0.0, state_seen_next_update=True))
    for t in (0.0, 60.0):
        update(model, 12.0, t, smoothed=10.0)
    assert model.pilot() == 11
    update(model, 0.0, 659.0, smoothed=3.0)
    assert model.pilot() == 11
    update(model, 0.0, 660.0, smoothed=3.0)
    assert model.pilot() == 0


def test_as_divert_sim_runs_it_a_restart_one_update_after_a_stop_has_no_minimum() -> None:
    """The loop sees "charging" at the restart as it saw it before the stop: no change,
    so no new minimum charge time (a 540 s session on OpenEVSE's day 2)."""
    model = OpenEvseModel(DivertSettings(current_lag_s=0.0, state_seen_next_update=True))
    for t in (0.0, 60.0, 120.0):
        update(model, 12.0, t, smoothed=10.0)
    update(model, 0.0, 660.0, smoothed=3.0)  # stopped: the minimum ran out at 660
    assert model.pilot() == 0
    update(model, 12.0, 720.0, smoothed=10.0)  # on again at the next update
    assert model.pilot() == 11
    update(model, 0.0, 780.0, smoothed=3.0)  # a claim that counts itself active
    update(model, 0.0, 840.0, smoothed=3.0)
    assert model.pilot() == 0  # no minimum charge time held it


@pytest.mark.parametrize(("lag_s", "available"), [(0.0, 11.58), (5.0, 0.58)])
def test_divert_takes_off_the_cars_current_as_measured_lag_s_ago(
    lag_s: float, available: float
) -> None:
    """The car draws 11 A from t = 0; at t = 2 the meter's 1 A of export includes it.
    Measured now, the surplus is 12 A; measured as it was 5 s ago (0 A), only 1 A."""
    model = OpenEvseModel(DivertSettings(current_lag_s=lag_s))
    update(model, 12.0, 0.0, smoothed=10.0)
    assert model.amps() == 11
    model.grid_ie(round(-1.0 * VOLTS), 2.0)
    assert model.available == pytest.approx(available, abs=0.01)


def test_a_value_right_after_a_pause_ends_does_not_count_the_car_twice() -> None:
    """The pause is released and the meter's value, taken while the car was paused,
    comes a moment later: the firmware takes off the current it polled (still 0 A), not
    the rate the car is only now allowed, so the rate is the surplus (13 A), not 28 A."""
    model = OpenEvseModel()  # the car's current as polled a second ago
    update(model, 16.0, 0.0, smoothed=10.0)
    update(model, 16.0, 5.0, smoothed=10.0)
    assert model.pilot() == 15
    model.claim("mqtt", Claim(MQTT_PRIORITY, False))
    model.tick(6.0)
    model.tick(600.0)
    model.claim("mqtt", None)
    model.grid_ie(round(-14.0 * VOLTS), 600.1)  # the house alone: the car was paused
    assert model.pilot() == 13


def test_a_pause_claim_over_mqtt_wins_over_divert() -> None:
    model = OpenEvseModel(AT_230)
    feed(model, -3000, 0, 600)
    assert model.pilot() > 0
    model.claim("mqtt", Claim(MQTT_PRIORITY, False))
    assert model.pilot() == 0
    model.claim("mqtt", None)
    assert model.pilot() > 0


def test_normal_mode_charges_at_full_current_whatever_the_grid() -> None:
    model = OpenEvseModel(DivertSettings(eco=False, max_current=16))
    feed(model, 3000, 0, 600)  # importing: divert would never start
    assert model.pilot() == 16
    assert "divert" not in model.claims
    model.claim("mqtt", Claim(MQTT_PRIORITY, False))  # a pause still wins
    assert model.pilot() == 0


# -- the voltage rule ---------------------------------------------------------------------


def test_a_fresh_vrms_is_used_for_120_s_then_the_configured_voltage() -> None:
    model = OpenEvseModel(AT_230)
    assert model.voltage(0.0) == 230.0
    model.vrms(241.5, 10.0)
    assert model.voltage(10.0) == 241.5
    assert model.voltage(130.0) == 241.5  # 120 s old: still fresh
    assert model.voltage(130.5) == 230.0


@pytest.mark.parametrize("volts", [59.9, 300.1, 0.0, 400.0])
def test_a_vrms_outside_60_to_300_v_is_ignored(volts: float) -> None:
    model = OpenEvseModel(AT_230)
    model.vrms(volts, 0.0)
    assert model.voltage(1.0) == 230.0


def test_the_voltage_decides_how_much_export_is_a_start() -> None:
    """1.55 kW of export starts a charger that believes 207 V but not one at 253 V:
    the current available is export / voltage."""
    started = {}
    for volts in (207.0, 253.0):
        model = OpenEvseModel(AT_230)
        for t in range(0, 600, 5):
            model.vrms(volts, float(t))
            model.grid_ie(-1550 + round(model.amps() * volts), float(t))
        started[volts] = model.pilot() > 0
    assert started == {207.0: True, 253.0: False}


# -- claims and the car -----------------------------------------------------------------


def test_the_car_draws_what_the_pilot_allows_up_to_its_own_limit() -> None:
    model = OpenEvseModel(AT_230, car=Car(max_current=16.0))
    model.claim("manual", Claim(1000, True, 32.0))
    assert model.pilot() == 32.0
    assert model.amps() == 16.0
    assert OpenEvseModel(AT_230, car=None).amps() == 0.0


def test_each_property_comes_from_the_highest_claim_that_sets_it() -> None:
    model = OpenEvseModel(AT_230)
    model.claim("divert", Claim(DIVERT_PRIORITY, True, 20.0))
    model.claim("shaper", Claim(SHAPER_PRIORITY, None, max_current=10.0))
    assert model.pilot() == 10.0  # divert's state and rate, the shaper's cap
    model.claim("shaper", Claim(SHAPER_PRIORITY, False, max_current=10.0))
    assert model.pilot() == 0.0


# -- the current shaper --------------------------------------------------------------------

SHAPED = DivertSettings(voltage=230.0, shaper=ShaperSettings(max_pwr_w=5000.0))


def shaper_run(model: OpenEvseModel, house_w: float, start: int, seconds: int) -> None:
    """The charger held active at 32 A by a manual claim; the site's power (house + car)
    fed to the shaper every 5 s."""
    model.claim("manual", Claim(1000, True, 32.0))
    for t in range(start, start + seconds, 5):
        model.live_pwr(round(house_w + model.amps() * 230), float(t))
        model.tick(float(t))


def test_the_shaper_keeps_house_and_car_under_its_maximum_power() -> None:
    model = OpenEvseModel(SHAPED)
    shaper_run(model, 1500, 0, 900)
    assert 1500 + model.amps() * 230 <= 5000
    assert model.amps() == 15.0  # floor((5000 - 1500) / 230) = 15


def test_the_shaper_pauses_below_the_minimum_and_waits_before_resuming() -> None:
    model = OpenEvseModel(SHAPED)
    shaper_run(model, 1500, 0, 900)
    paused_at = None
    for t in range(900, 1800, 5):  # 500 W left: less than 6 A
        model.live_pwr(round(4500 + model.amps() * 230), float(t))
        if paused_at is None and model.pilot() == 0:
            paused_at = t
    assert paused_at is not None
    resumed = None
    for t in range(1800, 3000, 5):  # room again
        model.live_pwr(round(1000 + model.amps() * 230), float(t))
        if resumed is None and model.pilot() > 0:
            resumed = t
    assert resumed is not None
    assert resumed - paused_at >= 300  # current_shaper_min_pause_time


def test_the_shaper_disables_the_charger_when_its_feed_is_silent() -> None:
    model = OpenEvseModel(SHAPED)
    model.tick(0.0)
    assert model.pilot() == 0  # no live power yet: disabled
    shaper_run(model, 1000, 0, 900)  # the last value at 895 s
    assert model.pilot() > 0
    model.tick(895.0 + 120)
    assert model.pilot() > 0
    model.tick(895.0 + 121)
    assert model.pilot() == 0


def test_the_simulated_charger_reads_payloads_like_arduino_to_int() -> None:
    assert [to_int(p) for p in (b"1234.7", b"3.048", b"-250", b'{"w": 5}', b"", b" 42 W")] == [
        1234,
        3,
        -250,
        0,
        0,
        42,
    ]


# -- OpenEVSE's own figures ------------------------------------------------------------
# The firmware's divert code built natively (its divert_sim) on OpenEVSE's recorded days,
# at their own 60 s step, 240 V, 6-32 A, with its scenario profiles: the car's kWh and
# charge starts. The days are OpenEVSE's, kept beside this project (not in it): the test
# runs where they are and says so where they are not.
SOLAR_DAYS = Path(__file__).resolve().parents[2] / "shared" / "data" / "solar-days"
PROFILES = {
    "default": {},
    "noimport": {"attack_s": 300.0, "decay_s": 20.0},
    "nowaste": {"pv_ratio": 0.5},
}
FIRMWARE = [
    ("day1", "default", 8.456, 7),
    ("day2", "default", 7.968, 12),
    ("day1", "noimport", 4.832, 7),
    ("day2", "noimport", 1.672, 3),
    ("day1", "nowaste", 14.212, 4),
    ("day2", "nowaste", 11.504, 7),
]


# What OpenEVSE's own simulator gives on those days: its CI's figures (divert_sim/
# test_divert.py, kWh to two decimals), with divert's loop seeing a start one row late
# as divert_sim runs it. The sessions start and stop at the same minutes; the kWh differ
# by up to 0.2 % (divert_sim counts each row's power over the minute before it).
DIVERT_SIM = [
    ("day1", "default", 8.48, 7),
    ("day2", "default", 8.09, 12),
    ("day1", "noimport", 4.88, 7),
    ("day2", "noimport", 1.74, 3),
    ("day1", "nowaste", 14.21, 4),
    ("day2", "nowaste", 11.53, 7),
]


@pytest.mark.parametrize(
    ("day", "profile", "ev_kwh", "starts", "as_divert_sim"),
    [(*row, False) for row in FIRMWARE] + [(*row, True) for row in DIVERT_SIM],
)
def test_the_firmwares_own_figures_on_its_recorded_days(
    day: str, profile: str, ev_kwh: float, starts: int, as_divert_sim: bool
) -> None:
    path = SOLAR_DAYS / f"openevse-{day}_grid_ie.csv"
    if not path.exists():
        pytest.skip(f"OpenEVSE's recorded days are not beside the project ({SOLAR_DAYS})")
    recorded = read_csv(path)
    divert = DivertSettings(state_seen_next_update=as_divert_sim, **PROFILES[profile])
    result = simulate(recorded, PublishSettings(), divert, recorded.period_s())
    assert result.ev_kwh == pytest.approx(ev_kwh, rel=0.005)
    assert result.charge_starts == starts
