"""The OpenEVSE divert model pinned to the firmware's documented behaviour."""

from __future__ import annotations

from p1evse.sim.openevse import MQTT_PRIORITY, Claim, DivertSettings, OpenEvseModel

AT_230 = DivertSettings(voltage=230.0)


def feed(model: OpenEvseModel, house_net_w: float, start_s: float, seconds: int) -> float:
    """Feed a house's net power (without the car) every 5 s, the car drawing what the
    charger offers; returns the time the charger first offered current, or -1."""
    started = -1.0
    for t in range(0, seconds, 5):
        now = start_s + t
        grid = house_net_w + model.pilot_draw() * model.settings.voltage
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
        model.grid_ie(round(300 + model.pilot_draw() * 230), 1800 + t)
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


def test_a_pause_claim_over_mqtt_wins_over_divert() -> None:
    model = OpenEvseModel(AT_230)
    feed(model, -3000, 0, 600)
    assert model.pilot() > 0
    model.claim("mqtt", Claim(MQTT_PRIORITY, False))
    assert model.pilot() == 0
    model.claim("mqtt", None)
    assert model.pilot() > 0


def test_normal_mode_does_not_divert() -> None:
    model = OpenEvseModel(DivertSettings(eco=False))
    assert feed(model, -5000, 0, 600) == -1
