"""`p1evse simulate`: the real pipeline and the divert model over a day, in virtual time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from p1evse.config import MqttSettings, PublishSettings
from p1evse.mqtt import Broker
from p1evse.sim.charger import SimulatedCharger
from p1evse.sim.openevse import DivertSettings, OpenEvseModel
from p1evse.sim.simulate import Outage, balance_error, simulate, synthetic_day
from tests.brokers import BrokerProcess
from tests.conftest import running, settings_for
from tests.probe import Probe

KEYS = [
    "pv_kwh",
    "house_kwh",
    "ev_kwh",
    "ev_solar_kwh",
    "grid_import_while_charging_kwh",
    "export_kwh",
    "charge_starts",
    "charging_hours",
]


def run(**publish: object) -> dict[str, object]:
    day = synthetic_day(seed=3)
    result = simulate(day, PublishSettings(**publish), DivertSettings(), step_s=5.0)
    assert balance_error(result) < 0.001
    return result.summary()


def test_deterministic_and_balanced() -> None:
    first, second = run(), run()
    assert first == second
    assert first["ev_kwh"] > 0  # a sunny day charges the car
    assert first["ev_solar_kwh"] <= first["ev_kwh"]


@pytest.mark.parametrize("settings", [{"interval": 0}, {"interval": 10}, {"reserve_w": 300}])
def test_every_run_balances_energy(settings: dict[str, object]) -> None:
    run(**settings)


def test_an_outage_pauses_the_car_with_pause_and_not_with_none() -> None:
    day = synthetic_day(seed=3)
    noon = 6 * 3600.0  # the synthetic day starts at 06:00
    outage = Outage(noon, 1800)
    charged = {}
    for action in ("pause", "none"):
        result = simulate(
            day,
            PublishSettings(on_stale=action, stale_after=30),
            DivertSettings(),
            step_s=5.0,
            outage=outage,
            trace=True,
        )
        during = [car for t, _, _, car, _, _ in result.trace if noon + 60 <= t < noon + 1800]
        charged[action] = during
    assert all(car == 0 for car in charged["pause"])  # stopped within the stale window
    assert all(car > 0 for car in charged["none"])  # the last rate stays in force


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p1evse", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_keys_match_the_table(tmp_path: Path) -> None:
    as_json = cli("--synthetic", "--seed", "2", "--json")
    as_table = cli("--synthetic", "--seed", "2")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert list(summary) == KEYS
    rows = dict(line.split(None, 1) for line in as_table.stdout.splitlines()[1:])
    assert {key: rows[key].strip() for key in KEYS} == {
        key: f"{value:.3f}" if isinstance(value, float) else str(value)
        for key, value in summary.items()
    }


def test_a_csv_day_with_gaps_compare_and_plot(tmp_path: Path) -> None:
    csv = tmp_path / "day.csv"
    lines = ['"Date-time string", "solar:solar", "grid:Grid import export RAW"']
    for minute in range(0, 240):
        solar = 4000.0 if 60 <= minute < 200 else 100.0
        lines.append(
            f"2018-06-10 {10 + minute // 60:02d}:{minute % 60:02d}:00, {solar}, {300 - solar}"
        )
    lines[100] = "2018-06-10 11:39:00, null, null"
    csv.write_text("\n".join(lines) + "\n")
    plot = tmp_path / "day.svg"
    result = cli(
        "--csv", str(csv), "--step", "5", "--compare", "reserve_w=0,300", "--plot", str(plot)
    )
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "reserve_w=0" in header
    assert "reserve_w=300" in header
    assert plot.read_text().startswith("<svg")


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,solar\n2018-06-10 10:00:00, lots\n")
    result = cli("--csv", str(bad))
    assert result.returncode == 2
    assert "line 2: expected time, solar_w[, grid_w]" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("--synthetic", "--compare", "colour=red").returncode == 2


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_the_demos_charger_reacts_to_the_bridge_over_a_real_broker(
    broker: BrokerProcess,
) -> None:
    """The closed loop of `p1evse demo`: the bridge's values drive the simulated
    OpenEVSE, which reports its current back on its base topic."""
    sim_clock = [0.0]
    settings = settings_for(broker, publish={"interval": 0, "stale_after": 3600})
    async with running(settings) as app, Probe(broker.port) as meter:
        charger_link = Broker(
            MqttSettings(port=broker.port, client_id="sim-charger", availability_topic="sim/status")
        )
        charger = SimulatedCharger(
            OpenEvseModel(), charger_link, "p1evse/grid_ie", "openevse", lambda: sim_clock[0]
        )
        charger_link.subscribe("p1evse/grid_ie", charger.on_grid_ie)
        link = asyncio.create_task(charger_link.run())
        try:
            await meter.subscribe("openevse/amp", "p1evse/status")
            await meter.wait_for_payload("p1evse/status", "online")
            while app.charger.amp in (None, 0.0):  # p1evse reads the charger back
                sim_clock[0] += 5
                meter.publish("dsmr/reading/electricity_currently_returned", "4.000")
                await meter.next_payload("openevse/amp")
        finally:
            await charger_link.close()
            link.cancel()
    assert charger.model.pilot() >= 6
