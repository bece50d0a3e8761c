"""What the charger reports back: its state codes by name, its values parsed once."""

from __future__ import annotations

import pytest

from p1evse.errors import InputRejected
from p1evse.model import Rejection
from p1evse.sinks.charger import (
    EVSE_STATE_TEXT,
    MODE_FRESH_S,
    ChargerState,
    EvseState,
    OpenevseSettings,
    describe_state,
)


def test_every_evse_state_has_its_text_and_other_codes_their_number() -> None:
    assert set(EVSE_STATE_TEXT) == set(EvseState)
    assert describe_state(EvseState.CHARGING) == "charging"
    assert describe_state(254) == "sleeping"
    assert describe_state(1) == "no car connected"
    assert describe_state(12) == "state 12"


def test_the_current_the_car_draws_is_read_from_ma_into_amps() -> None:
    charger = ChargerState()
    charger.update("amp", b"9800", 1.0)
    assert (charger.amps, charger.updated_at) == (9.8, 1.0)
    charger.update_all(b'{"amp": 16000, "pilot": 16, "state": 3}', 2.0)
    assert (charger.amps, charger.pilot, charger.state) == (16.0, 16.0, EvseState.CHARGING)
    charger.update("amp", 0, 3.0)
    assert charger.amps == 0.0


def test_a_refused_current_keeps_the_last_and_names_the_reported_ma() -> None:
    charger = ChargerState()
    charger.update("amp", b"6000", 1.0)
    with pytest.raises(InputRejected) as refused:
        charger.update("amp", b"-5", 2.0)
    assert (refused.value.reason, refused.value.detail) == (Rejection.NEGATIVE, "amp = -5")
    assert (charger.amps, charger.updated_at) == (6.0, 1.0)
    assert charger.rejected == {Rejection.NEGATIVE: 1}


def test_the_voltage_the_charger_uses_is_read_back_and_an_absurd_one_refused() -> None:
    charger = ChargerState()
    charger.update_all(b'{"amp": 6000, "voltage": 231.5}', 1.0)
    assert charger.voltage == 231.5
    with pytest.raises(InputRejected) as refused:
        charger.update("voltage", b"2300", 2.0)
    assert refused.value.reason is Rejection.IMPLAUSIBLE
    assert charger.voltage == 231.5


@pytest.mark.parametrize(
    ("name", "raw", "detail"),
    [
        ("amp", b"1e300", "amp = 1e+300 mA: expected at most 80000"),
        ("amp", b"80001", "amp = 80001 mA: expected at most 80000"),
        ("pilot", b"81", "pilot = 81 A: expected at most 80"),
        ("charge_rate", b"1e300", "charge_rate = 1e+300 A: expected at most 1000"),
    ],
)
def test_a_current_beyond_what_a_charger_can_carry_is_refused(
    name: str, raw: bytes, detail: str
) -> None:
    """A current past J1772's 80 A (or a divert wish past 1000 A) is garbage: taken, it
    would overflow the page's history and its kWh to infinity."""
    charger = ChargerState()
    charger.update_all(b'{"amp": 6000, "pilot": 16, "charge_rate": 6}', 1.0)
    with pytest.raises(InputRejected) as refused:
        charger.update(name, raw, 2.0)
    assert (refused.value.reason, refused.value.detail) == (Rejection.IMPLAUSIBLE, detail)
    assert (charger.amps, charger.pilot, charger.charge_rate) == (6.0, 16.0, 6.0)
    charger.update(name, b"80000" if name == "amp" else b"80", 3.0)


def test_a_report_of_normal_mode_stands_for_a_window_the_transport_sets() -> None:
    mqtt = OpenevseSettings()
    http = OpenevseSettings(transport="http", url="http://evse.local", poll_interval=90, timeout=5)
    assert mqtt.mode_fresh_s() == MODE_FRESH_S  # four of the firmware's 30 s reports
    assert http.mode_fresh_s() == 185.0  # two polls missed, and the third one's timeout
    charger = ChargerState(mode_fresh_s=MODE_FRESH_S)
    assert charger.pause_allowed(0.0)  # mode unknown: the guard may pause
    charger.update("divertmode", b"1", 10.0)
    assert not charger.pause_allowed(10.0 + MODE_FRESH_S - 0.001)
    assert charger.pause_allowed(10.0 + MODE_FRESH_S)
    charger.update("divertmode", b"2", 200.0)
    assert charger.pause_allowed(200.0)
    assert charger.normal_mode_lapses() is None
