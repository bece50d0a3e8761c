"""The values that flow through p1evse."""

from __future__ import annotations

from p1evse.model import Reading


def test_net_power_is_import_minus_export() -> None:
    assert Reading(0.0, 1200.0, 0.0).net_w == 1200.0
    assert Reading(0.0, 0.0, 800.0).net_w == -800.0


def test_the_mean_voltage_of_the_phases_the_meter_reports() -> None:
    assert Reading(0.0, 0.0, 0.0).mean_voltage_v is None
    assert Reading(0.0, 0.0, 0.0, phase_voltage_v=(None, None, None)).mean_voltage_v is None
    assert Reading(0.0, 0.0, 0.0, phase_voltage_v=(229.0, None, 233.0)).mean_voltage_v == 231.0
