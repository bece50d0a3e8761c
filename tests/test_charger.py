"""What the charger reports back: its state codes by name, its values parsed once."""

from __future__ import annotations

from p1evse.sinks.charger import EVSE_STATE_TEXT, EvseState, describe_state


def test_every_evse_state_has_its_text_and_other_codes_their_number() -> None:
    assert set(EVSE_STATE_TEXT) == set(EvseState)
    assert describe_state(EvseState.CHARGING) == "charging"
    assert describe_state(254) == "sleeping"
    assert describe_state(1) == "no car connected"
    assert describe_state(12) == "state 12"
