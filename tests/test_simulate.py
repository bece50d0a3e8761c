"""`p1evse simulate`: the real pipeline and the divert model over a day, in virtual time."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from p1evse.cli import main
from p1evse.errors import ConfigError
from p1evse.mqtt import Broker, MqttSettings
from p1evse.pipeline import PublishSettings, StaleAction
from p1evse.sim import dayfile
from p1evse.sim.charger import ChargerTopics, SimulatedCharger
from p1evse.sim.cli import FIELDS, ProgressBar, Run, Timing, add_parser, plan
from p1evse.sim.house import House, HouseSettings, SyntheticDay
from p1evse.sim.household import Household
from p1evse.sim.openevse import Car, DivertSettings, OpenEvseModel, ShaperSettings
from p1evse.sim.simulate import Outage, Result, balance_error, simulate
from p1evse.sim.table import table
from tests.brokers import BrokerProcess
from tests.conftest import HEAVY_TIMEOUT_S, running, settings_for
from tests.probe import Probe

KEYS = [
    "pv_kwh",
    "house_kwh",
    "ev_kwh",
    "ev_solar_kwh",
    "ev_grid_kwh",
    "grid_import_while_charging_kwh",
    "export_kwh",
    "charge_starts",
    "current_changes",
    "charging_hours",
]


def run(
    publish: dict[str, object] | None = None, divert: DivertSettings | None = None, **options: Any
) -> Result:
    """The synthetic day with seed 3 at a 10 s step; every run must balance its energy."""
    result = simulate(
        SyntheticDay(seed=3),
        PublishSettings(**(publish or {})),
        divert or DivertSettings(),
        options.pop("step_s", 10.0),
        **options,
    )
    assert balance_error(result) < 0.001
    return result


def test_a_day_at_a_minute_says_once_that_it_goes_stale_between_readings(
    tmp_path: Path,
) -> None:
    """OpenEVSE's day files are a sample a minute, past the default stale_after: one
    note says so, and none of the service's thousands of stale and pause lines follow."""
    csv = tmp_path / "day.csv"
    rows = [f"2018-06-10 {10 + m // 60:02d}:{m % 60:02d}:00, 3000, -100" for m in range(180)]
    csv.write_text("time, solar_w, grid_w\n" + "\n".join(rows) + "\n")
    result = cli("--csv", str(csv), "--compare", "stale_after=30,50,90")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "simulate: the meter's period, 60 s, is not shorter than stale_after, 30 s: p1evse "
        "goes stale between every two readings (--stale-after above 60 avoids it)",
        "simulate: the meter's period, 60 s, is not shorter than stale_after, 50 s: p1evse "
        "goes stale between every two readings (--stale-after above 60 avoids it)",
    ]
    quiet = cli("--csv", str(csv), "--stale-after", "90")
    assert (quiet.returncode, quiet.stderr) == (0, "")
    hourly = tmp_path / "hourly.csv"
    rows = [f"2018-06-10 {6 + h:02d}:00:00, 3000, -100" for h in range(12)]
    hourly.write_text("time, solar_w, grid_w\n" + "\n".join(rows) + "\n")
    result = cli("--csv", str(hourly))
    assert result.stderr.endswith(  # no --stale-after can be given past an hour
        "(no --stale-after avoids it: at most 3600 s; a shorter --step does)\n"
    )


def test_deterministic_and_balanced() -> None:
    first, second = run().summary(), run().summary()
    assert first == second
    assert first["ev_kwh"] > 0  # a sunny day charges the car
    assert first["ev_solar_kwh"] <= first["ev_kwh"]


@pytest.mark.parametrize(
    "publish", [{"interval": 0}, {"interval": 10}, {"reserve_w": 300}, {"on_stale": "import"}]
)
def test_every_run_balances_energy(publish: dict[str, object]) -> None:
    run(publish, outage=Outage(3600, 600))


def test_three_phase_and_grid_voltage_runs_balance_too() -> None:
    three = DivertSettings(three_phase=True, max_current=16)
    run(divert=three, house=HouseSettings(voltage_v=230, car_phases=3, pv_phases=3))
    run(house=HouseSettings(voltage_v=225), vrms=True)


NOON_S = 6 * 3600.0  # six hours after the synthetic day's first sample (06:00)


def car_during(result: Result, start_s: float, end_s: float) -> list[float]:
    return [row.car_w for row in result.trace if start_s <= row.t - 6 * 3600 < end_s]


def test_an_outage_pauses_the_car_with_pause_and_not_with_none() -> None:
    outage = Outage(NOON_S, 1800)
    charged = {}
    for action in ("pause", "none"):
        publish = {"on_stale": action, "stale_after": 30}
        result = run(publish, outage=outage, trace=True)
        charged[action] = car_during(result, NOON_S + 60, NOON_S + 1800)
    assert all(car == 0 for car in charged["pause"])  # stopped within the stale window
    assert all(car > 0 for car in charged["none"])  # the last rate stays in force


def test_the_shaper_stops_the_car_when_its_feed_stops_whatever_p1evse_does() -> None:
    """OpenEVSE's own fail-safe: a shaper without live power for 120 s disables."""
    shaped = DivertSettings(shaper=ShaperSettings(max_pwr_w=20_000))
    result = run({"on_stale": "none"}, shaped, outage=Outage(NOON_S, 1800), trace=True)
    assert any(car > 0 for car in car_during(result, NOON_S - 60, NOON_S))
    assert all(car == 0 for car in car_during(result, NOON_S + 130, NOON_S + 1800))


def test_the_shaper_cuts_grid_import_while_the_car_charges() -> None:
    """The shaper caps the site's import (house + car), which surplus charging keeps
    near zero: only a tight cap bites, on the moments an appliance outruns divert."""
    free = run().summary()
    loose = run(divert=DivertSettings(shaper=ShaperSettings(max_pwr_w=5_000))).summary()
    tight = run(divert=DivertSettings(shaper=ShaperSettings(max_pwr_w=500))).summary()
    assert loose == free
    assert tight["grid_import_while_charging_kwh"] < free["grid_import_while_charging_kwh"] / 2
    assert tight["ev_kwh"] < free["ev_kwh"]


def test_telegrams_through_the_p1_decoder_give_the_same_day() -> None:
    direct = run(step_s=30.0).summary()
    assert run(step_s=30.0, meter="telegram").summary() == direct


def test_the_vrms_feed_corrects_a_charger_that_believes_the_wrong_voltage() -> None:
    """The grid is at 207 V, the charger set to 240 V: it takes 7 A of export for 6 A
    and starts late. Fed the meter's voltage, it sees the surplus as it is."""
    low_grid = HouseSettings(voltage_v=207)
    wrong = run(house=low_grid, trace=True)
    fed = run(house=low_grid, vrms=True, trace=True)
    assert fed.ev_kwh != wrong.ev_kwh
    first_charge = [next(row.t for row in r.trace if row.car_w > 0) for r in (wrong, fed)]
    assert first_charge[1] < first_charge[0]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_shows_on_a_terminal_only() -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for out in (terminal, pipe):
        bar = ProgressBar(2, out, after_s=0)
        for run_number in range(2):
            show = bar.at(run_number)
            for fraction in (0.0, 0.5, 0.99):
                show(fraction)
        bar.done()
    assert "[#######.......................]  25%  run 1/2" in terminal.getvalue()
    assert "run 2/2" in terminal.getvalue()
    assert pipe.getvalue() == ""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p1evse", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def table_rows(text: str) -> list[dict[str, str]]:
    """The printed table's rows, each cell under its two header lines joined: columns
    are split where every line has two spaces or more. A line above the table (what
    every run has in common) is left out."""
    table_lines = [line for line in text.splitlines() if not line.endswith("in every run")]
    width = max(map(len, table_lines))
    lines = [line.ljust(width) for line in table_lines]
    blank = [all(line[i] == " " for line in lines) for i in range(width)] + [True, True]
    spans, start = [], None
    for i in range(width + 1):
        if start is None and not blank[i]:
            start = i
        elif start is not None and blank[i] and blank[i + 1]:
            spans.append((start, i))
            start = None
    cells = [[line[a:b].strip() for a, b in spans] for line in lines]
    headers = [f"{top} {bottom}".strip() for top, bottom in zip(*cells[:2], strict=True)]
    return [dict(zip(headers, row, strict=True)) for row in cells[2:]]


def test_a_change_of_current_is_a_step_whose_pilot_or_charging_differs() -> None:
    """Counted against the step before: the pilot's amps, and charging on or off."""
    house = House(SyntheticDay(seed=1))
    result = Result()
    steps = [(0.0, 0.0), (0.0, 0.0), (6.0, 6.0), (6.0, 6.0), (7.0, 7.0), (7.0, 0.0), (0.0, 0.0)]
    for n, (pilot, drawn) in enumerate(steps):  # (pilot A, what the car draws A)
        result.add(house.read(43_200.0 + n, drawn), 1 / 3600, pilot)
    assert result.current_changes == 4  # starts, 6 -> 7 A, the car stops, the pilot ends
    assert result.summary()["ev_grid_kwh"] == pytest.approx(
        result.summary()["ev_kwh"] - result.summary()["ev_solar_kwh"], abs=0.001
    )


def test_json_keys_match_the_table() -> None:
    as_json = cli("--synthetic", "--seed", "2", "--step", "20", "--json")
    as_table = cli("--synthetic", "--seed", "2", "--step", "20")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    assert list(summary) == KEYS
    [row] = table_rows(as_table.stdout)
    assert list(row) == [
        "PV kWh", "house kWh", "EV kWh", "EV solar kWh", "EV grid kWh",
        "import while charging kWh", "export kWh", "starts", "current changes", "charging h",
    ]  # fmt: skip
    assert list(row.values()) == [
        f"{value:.2f}" if isinstance(value, float) else str(value) for value in summary.values()
    ]


def test_the_compare_table_has_a_row_per_run_and_fits_100_columns() -> None:
    compare = (
        "--synthetic",
        "--step",
        "20",
        "--compare",
        "interval=1,10",
        "min_charge_time=0,600",
    )
    result = cli(*compare)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    rows = table_rows(result.stdout)
    assert [(row["interval"], row["min_charge time"]) for row in rows] == [
        (interval, time) for interval in ("1", "10") for time in ("0", "600")
    ]
    assert re.fullmatch(r"PV [\d.]+ kWh, house [\d.]+ kWh: the same day in every run", lines[0])
    assert "PV kWh" not in rows[0]
    as_json = json.loads(cli(*compare, "--json").stdout)
    assert list(as_json) == [f"interval={i} min_charge_time={t}" for i in (1, 10) for t in (0, 600)]
    assert [f"{run['ev_kwh']:.2f}" for run in as_json.values()] == [row["EV kWh"] for row in rows]


def test_a_table_too_wide_for_its_settings_numbers_the_runs() -> None:
    summary = {key: 12.345 for key in KEYS} | {"charge_starts": 3}
    keys = ["failsafe_import_w", "min_charge_time", "car_max_current", "shaper_max_pwr"]
    runs = [({key: f"{n}00000" for key in keys}, summary) for n in range(3)]
    lines = table(runs).splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[0] == "PV 12.35 kWh, house 12.35 kWh: the same day in every run"
    assert lines[5].startswith("#3")
    assert lines[-1].startswith("#3: failsafe_import_w=200000 min_charge_time=")


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
    plot = tmp_path / "day.html"
    result = cli(
        "--csv", str(csv), "--step", "5", "--compare", "reserve_w=0,300", "--plot", str(plot)
    )
    assert result.returncode == 0, result.stderr
    assert [row["reserve_w"] for row in table_rows(result.stdout)] == ["0", "300"]
    page = plot.read_text()
    assert "<title>day.csv, 10 Jun 2018</title>" in page
    assert '"label":"reserve_w=0: ' in page  # each run's car, labelled by its setting
    assert '"label":"reserve_w=300: ' in page


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,solar\n2018-06-10 10:00:00, lots\n")
    result = cli("--csv", str(bad))
    assert result.returncode == 2
    assert "line 2: solar 'lots': expected a number of watts" in result.stderr
    assert "Traceback" not in result.stderr
    for args, message in (
        (("--compare", "colour=red"), "unknown setting 'colour'"),
        (("--compare", "interval=soon"), "--interval 'soon': Input should be a valid number"),
        (("--compare", "on_stale=maybe"), "--on-stale 'maybe': Input should be 'pause', 'import'"),
        (("--interval", "-1"), "--interval '-1': Input should be greater than or equal to 0"),
        (("--jitter", "2", "--step", "1"), "--jitter (2 s) must be under --step (1 s)"),
        (("--min-current", "40"), "--min-current (40 A) is above --max-current (32 A)"),
        (("--pv-phases", "2"), "--pv-phases '2': Input should be 1 or 3"),
        (("--shaper-max-pwr", "-1"), "--shaper-max-pwr '-1': Input should be greater than or"),
        (("--outage", "noon"), "expected START+DURATION in seconds"),
        (("--plot", "day.pdf"), "expected a file name ending in .png, .svg, .html"),
    ):
        result = cli("--synthetic", *args)
        assert result.returncode == 2, args
        assert message in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("--grid-voltage", "--grid-voltage '1e9': Input should be less than or equal to 300"),
        ("--voltage", "--voltage '1e9': Input should be less than or equal to 300"),
    ],
)
def test_a_voltage_no_grid_has_is_refused(
    capsys: pytest.CaptureFixture[str], option: str, problem: str
) -> None:
    """It ran and gave 36,950,000 kWh."""
    assert main(["simulate", "--synthetic", option, "1e9"]) == 2
    assert capsys.readouterr().err == f"p1evse: config error: {problem}\n"


def test_every_problem_of_a_run_at_once_one_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--interval", "-1", "--max-current", "5", "--car-max-current", "0", "--step", "0"]
    assert main(["simulate", "--synthetic", *argv]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "p1evse: config error: --step '0': Input should be greater than 0",
        "p1evse: config error: --interval '-1': Input should be greater than or equal to 0",
        "p1evse: config error: --min-current (6 A) is above --max-current (5 A)",
        "p1evse: config error: --car-max-current '0': Input should be greater than 0",
    ]


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ("inf", "--step 'inf': Input should be a finite number"),
        ("nan", "--step 'nan': Input should be a finite number"),
        ("-1", "--step '-1': Input should be greater than 0"),
        ("0", "--step '0': Input should be greater than 0"),
    ],
)
def test_a_step_that_is_no_period_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], step: str, problem: str
) -> None:
    assert main(["simulate", "--synthetic", "--step", step]) == 2
    assert capsys.readouterr().err == f"p1evse: config error: {problem}\n"


@pytest.mark.timeout(10)
def test_a_run_of_more_steps_than_the_limit_is_refused_before_any_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The synthetic day is 54,000 s: at most 1,000,000 steps is a step over 0.054 s."""
    assert main(["simulate", "--synthetic", "--step", "1e-9"]) == 2
    assert capsys.readouterr().err == (
        "p1evse: config error: --step 1e-09: 54,000,000,000,001 steps for this day's "
        "54,000 s; a run is at most 1,000,000 steps: a step over 0.054 s\n"
    )
    assert main(["simulate", "--synthetic", "--compare", "step=1,0.05", "--json"]) == 2
    assert capsys.readouterr().err == (
        "p1evse: config error: --step 0.05: 1,080,001 steps for this day's 54,000 s; a run "
        "is at most 1,000,000 steps: a step over 0.054 s\n"
    )
    with pytest.raises(ValueError, match="at most 1,000,000 steps"):
        simulate(SyntheticDay(), PublishSettings(), DivertSettings(), 0.05)


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        ("1e-300", "5.4e+304 steps for this day's 54,000 s; a run is at most 1,000,000 steps"),
        (
            "1e9",
            "1 step for this day's 54,000 s; a run is at least 2 steps: a step of at most 54000 s",
        ),
    ],
)
def test_a_step_too_short_or_too_long_for_the_day_is_refused_readably(
    capsys: pytest.CaptureFixture[str], step: str, problem: str
) -> None:
    assert main(["simulate", "--synthetic", "--step", step]) == 2
    err = capsys.readouterr().err
    assert problem in err
    assert len(err) < 200


def test_an_outage_after_the_day_ends_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--synthetic", "--outage", "54000+600"]) == 2
    assert capsys.readouterr().err == (
        "p1evse: config error: --outage 54000+600: starts after the day ends (it is 54,000 s "
        "long; START counts from its first sample)\n"
    )


def test_a_negative_seed_is_refused_not_taken_as_its_positive_twin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["simulate", "--synthetic", "--seed", "-1"])
    assert exited.value.code == 2
    assert (
        "argument --seed: expected a whole number, 0 or more, got '-1'" in capsys.readouterr().err
    )


def test_the_limits_of_a_run_are_stated_in_help_and_readme() -> None:
    help = " ".join(simulate_parser().format_help().split())
    assert re.search(r"--step STEP\s.*at most 1,000,000 steps", help)
    assert re.search(r"--csv FILE\s.*at most 1,000,000 samples and 32 MiB", help)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("## Try settings on a day")
    section = " ".join(readme[start : readme.index("\n## ", start)].split())
    assert "more than 1,000,000 samples" in section
    assert "A run is at most 1,000,000 steps" in section


def test_a_figure_that_rounds_to_zero_is_printed_without_a_sign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A house that exports 1 W for a minute: -0.0000167 kWh is 0, not -0.00."""
    path = tmp_path / "day.csv"
    path.write_text("time,solar_w,grid_w\n1528614000,0,-1\n1528614060,0,-1\n")
    for output in ([], ["--json"]):
        assert main(["simulate", "--csv", str(path), "--stale-after", "90", *output]) == 0
        assert "-0" not in capsys.readouterr().out
    assert "-0" not in table([({}, {**Result().summary(), "house_kwh": -0.004})])


@pytest.mark.parametrize("outage", ["0+nan", "nan+600", "inf+600", "0+inf", "-1+600", "0+0"])
def test_an_outage_is_two_finite_numbers_of_seconds(
    capsys: pytest.CaptureFixture[str], outage: str
) -> None:
    assert main(["simulate", "--synthetic", f"--outage={outage}"]) == 2
    assert capsys.readouterr().err == (
        f"p1evse: config error: --outage {outage!r}: expected START+DURATION in seconds, "
        "e.g. 3600+600\n"
    )


def simulate_parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser().add_subparsers()
    add_parser(commands, "a day, offline")
    return commands.choices["simulate"]


def simulate_args(*argv: str) -> argparse.Namespace:
    return simulate_parser().parse_args(["--synthetic", *argv])


def test_options_not_given_are_the_settings_models_defaults() -> None:
    [(label, run)] = plan(simulate_args(), 2.5).items()
    assert label == "result"
    assert run.timing == Timing(step_s=2.5)
    assert (run.publish, run.car) == (PublishSettings(), Car())
    assert run.divert == DivertSettings()
    # the grid at the charger's voltage, the day's own where it has one
    assert run.house == HouseSettings(voltage_v=DivertSettings().voltage)


# a value for each option that sets a field, and the field's value from it
FIELD_VALUES: dict[str, tuple[str, object]] = {
    "step": ("2", 2.0),
    "jitter": ("0.5", 0.5),
    "interval": ("7", 7.0),
    "mode": ("steady", "steady"),
    "step_w": ("600", 600.0),
    "band_w": ("50", 50.0),
    "reserve_w": ("100", 100),
    "stale_after": ("40", 40.0),
    "on_stale": ("none", StaleAction.NONE),
    "failsafe_import_w": ("5000", 5000),
    "voltage": ("230", 230.0),
    "min_current": ("8", 8.0),
    "max_current": ("16", 16.0),
    "pv_ratio": ("0.5", 0.5),
    "attack": ("10", 10.0),
    "decay": ("300", 300.0),
    "min_charge_time": ("60", 60.0),
    "current_lag": ("2.5", 2.5),
    "shaper_max_pwr": ("4000", 4000.0),
    "grid_voltage": ("220", 220.0),
    "pv_phases": ("3", 3),
    "car_max_current": ("20", 20.0),
}


def field_at(run: Run, path: str) -> object:
    value: object = run
    for name in path.split("."):
        value = getattr(value, name)
    return value


@pytest.mark.parametrize("key", list(FIELDS))
def test_each_option_and_compare_key_sets_its_settings_field(key: str) -> None:
    text, expected = FIELD_VALUES[key]
    path = FIELDS[key][1]
    [given] = plan(simulate_args(f"--{key.replace('_', '-')}", text), 1.0).values()
    assert field_at(given, path) == expected
    compared = plan(simulate_args("--compare", f"{key}={text}"), 1.0)
    assert list(compared) == [f"{key}={text}"]
    assert field_at(compared[f"{key}={text}"], path) == expected


def test_the_readme_names_every_simulate_option_and_no_other() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("## Try settings on a day")
    section = readme[start : readme.index("\n## ", start)]
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", section))
    actions = simulate_parser()._actions
    options = {name for action in actions for name in action.option_strings}
    assert named == options - {"-h", "--help"}


@pytest.mark.parametrize("broker", ["amqtt"], indirect=True)
async def test_the_demos_charger_reacts_to_the_bridge_over_a_real_broker(
    broker: BrokerProcess,
) -> None:
    """The closed loop of `p1evse demo`: the bridge's values (and the meter's voltage)
    drive the simulated OpenEVSE, which reports its current back on its base topic."""
    sim_clock = [0.0]
    settings = settings_for(
        broker,
        publish={"interval": 0, "stale_after": 3600},
        source={"phase_voltage_topics": ["dsmr/reading/phase_voltage_l1"]},
        openevse={"voltage": True},
    )
    async with running(settings) as app, Probe(broker.port) as meter:
        charger_link = Broker(
            MqttSettings(port=broker.port, client_id="sim-charger", availability_topic="sim/status")
        )
        charger = SimulatedCharger(
            OpenEvseModel(),
            charger_link,
            ChargerTopics("p1evse/grid_ie", "openevse", vrms="p1evse/vrms"),
            lambda: sim_clock[0],
        )
        link = asyncio.create_task(charger_link.run())
        try:
            await meter.subscribe("openevse/amp", "p1evse/status")
            await meter.wait_for_payload("p1evse/status", "online")
            while app.site.charger.amps in (None, 0.0):  # p1evse reads the charger back
                sim_clock[0] += 5
                meter.publish("dsmr/reading/phase_voltage_l1", "219.5")
                meter.publish("dsmr/reading/electricity_currently_returned", "4.000")
                await meter.next_payload("openevse/amp")
        finally:
            await charger_link.close()
            link.cancel()
    assert charger.model.pilot() >= 6
    assert charger.model.voltage(sim_clock[0]) == 219.5  # the fed vrms, not its 240 V


@pytest.mark.timeout(HEAVY_TIMEOUT_S)
def test_the_steady_feed_takes_the_same_sun_with_a_tenth_of_relayings_current_changes() -> None:
    """`publish.mode: steady` on a 1 s meter in a busy house: as much solar as relaying
    every reading (within 1 %), no more import while charging, a tenth of the changes."""
    day = Household(SyntheticDay(seed=2, first_s=9 * 3600, last_s=16 * 3600), 2)
    relayed = simulate(day, PublishSettings(interval=0), DivertSettings(), 1.0)
    steady = simulate(day, PublishSettings(mode="steady"), DivertSettings(), 1.0)
    assert steady.ev_solar_kwh >= 0.99 * relayed.ev_solar_kwh
    assert steady.grid_import_while_charging_kwh <= 1.02 * relayed.grid_import_while_charging_kwh
    assert steady.current_changes <= 0.1 * relayed.current_changes
    assert balance_error(steady) < 0.001


def test_a_household_is_laid_over_the_day_seeded() -> None:
    def day(*options: str) -> dict[str, Any]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["simulate", "--synthetic", "--step", "10", "--json", *options]) == 0
        result: dict[str, Any] = json.loads(out.getvalue())
        return result

    plain, busy = day(), day("--household")
    assert busy["house_kwh"] > plain["house_kwh"] + 2  # about 60 appliances, a fridge
    assert busy["pv_kwh"] == plain["pv_kwh"]
    assert day("--household") == busy
    assert day("--household", "--seed", "2") != busy


@pytest.mark.parametrize(
    ("compare", "problem"),
    [
        (["mode=steady,steady"], "--compare 'mode=steady,steady': steady given twice"),
        (["mode=Steady,STEADY"], "--compare 'mode=Steady,STEADY': STEADY, Steady given twice"),
        (
            ["mode=steady", "mode=interval"],
            "--compare 'mode=interval': mode is compared twice; give its values once",
        ),
    ],
)
def test_a_setting_or_value_compared_twice_is_refused(compare: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        plan(simulate_args("--compare", *compare), 1.0)
    assert raised.value.problems == [problem]


def test_a_compared_run_that_cannot_work_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        plan(simulate_args("--compare", "interval=0,5", "mode=interval,steady"), 1.0)
    assert raised.value.problems == [
        "the run interval=0 mode=steady: --mode steady needs an --interval above 0: it "
        "holds each --interval's mean"
    ]


@pytest.mark.timeout(HEAVY_TIMEOUT_S)
def test_a_jittery_relayed_feed_keeps_the_car_on_grid_power_longer() -> None:
    """OpenEVSE's filter counts whole seconds between feeds: a relayed 1 Hz meter heard
    0-0.3 s late is often 0 s apart and slows its stop; 5 s means do not suffer."""
    day = SyntheticDay(seed=5, first_s=10 * 3600, last_s=14 * 3600)
    imported = {}
    for interval in (0, 5):
        result = simulate(
            day, PublishSettings(interval=interval), DivertSettings(), 1.0, jitter_s=0.3
        )
        assert balance_error(result) < 0.001
        imported[interval] = result.grid_import_while_charging_kwh
    assert imported[0] > 1.5 * imported[5]
    again = simulate(day, PublishSettings(interval=0), DivertSettings(), 1.0, jitter_s=0.3)
    assert again.grid_import_while_charging_kwh == imported[0]  # seeded
    with pytest.raises(ValueError, match="under the step"):
        simulate(day, PublishSettings(), DivertSettings(), 1.0, jitter_s=1.0)


# -- day files: columns by header name, every other file refused in one line ----------------

EXPECTED_COLUMNS = "expected time, solar_w[, grid_w][, voltage_v] by header name"


def day_file(tmp_path: Path, header: str, row: Callable[[datetime, float], str]) -> Path:
    """Four hours around noon, a minute apart: a cloudy hour, then 4 kW of sun."""
    lines = [header]
    for minute in range(240):
        local = datetime(2018, 6, 10, 10, 0) + timedelta(minutes=minute)
        lines.append(row(local, 4000.0 if minute >= 60 else 150.0))
    path = tmp_path / "day.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(path: Path, *args: str) -> dict[str, Any]:
    result = cli("--csv", str(path), "--json", *args)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def amsterdam(local: datetime) -> datetime:
    return local.replace(tzinfo=ZoneInfo("Europe/Amsterdam"))


def test_columns_are_found_by_their_names_in_any_order_and_time_form(tmp_path: Path) -> None:
    """The same day written as the README shows it, as OpenEVSE's divert simulator
    writes it (naive, ISO with an offset, epoch seconds), and with the columns shuffled."""
    house_w = 300.0
    forms: dict[str, tuple[str, Callable[[datetime, float], str]]] = {
        "readme": ("time, solar_w, grid_w", lambda t, pv: f"{t}, {pv}, {house_w - pv}"),
        "grid_ie": (
            '"Date-time string", "solar:solar", "grid:Grid import export RAW"',
            lambda t, pv: f"{t}, {pv}, {house_w - pv}",
        ),
        "iso offset": (
            '"Date-time string","solar:solar ()","grid:Grid import export RAW"',
            lambda t, pv: f"{amsterdam(t).astimezone(UTC).isoformat()},{pv},{house_w - pv}",
        ),
        "epoch": (
            '"Unix timestamp", "Node SN2120051742:solar", "grid_w"',
            lambda t, pv: f"{amsterdam(t).timestamp():.0f}, {pv}, {house_w - pv}",
        ),
        "shuffled": ("grid_w,solar_w,time", lambda t, pv: f"{house_w - pv},{pv},{t}"),
    }
    days = {name: summary(day_file(tmp_path, *form)) for name, form in forms.items()}
    assert days["readme"]["ev_kwh"] > 0
    assert days["readme"]["house_kwh"] == pytest.approx(house_w * 4 / 1000, abs=0.01)
    assert all(day == days["readme"] for day in days.values()), days


def test_a_voltage_column_is_the_grids_voltage_never_grid_power(tmp_path: Path) -> None:
    """OpenEVSE's solar-vrms.csv: time, solar, AC RMS voltage. Its voltage was once read
    as 249 W of grid import, so the car never charged; it is the grid's voltage."""
    vrms = day_file(
        tmp_path,
        '"Date-time string", "solar:solar", "voltage:AC RMS Voltage"',
        lambda t, pv: f"{t}, {pv}, 249.2",
    )
    with_voltage = summary(vrms)
    assert with_voltage["house_kwh"] == 0  # the house uses nothing but what PV covers
    assert with_voltage["ev_kwh"] > 0
    plain = vrms.with_name("plain.csv")
    plain.write_text("\n".join(line.rpartition(",")[0] for line in vrms.read_text().splitlines()))
    assert with_voltage == summary(plain, "--grid-voltage", "249.2")
    assert with_voltage != summary(plain)  # the charger's 240 V, a different day
    # an explicit --grid-voltage wins over the file's
    assert summary(vrms, "--grid-voltage", "230") == summary(plain, "--grid-voltage", "230")


def test_a_missing_file_is_one_clear_line() -> None:
    result = cli("--csv", "/nope.csv")
    assert result.returncode == 2
    assert result.stderr == "p1evse: config error: simulate: /nope.csv: no such file\n"


def refusal(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """The one line `simulate --csv` prints for a file it refuses (exit 2)."""
    assert main(["simulate", "--csv", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0].removeprefix("p1evse: config error: simulate: ")


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("time,solar,watts", "unknown column 'watts'"),
        ("time, solar:solar, solar_w", "two solar columns: 'solar:solar', 'solar_w'"),
        ("time, solar:grid", "column 'solar:grid' reads as solar and as grid"),
        ("time, grid_w", "no solar column"),
        ("solar_w, grid_w", "no time column"),
        ("time, solar (kW)", "column 'solar (kW)' is in kW, expected W"),
        ("time,solar,", "unknown column ''"),
        ("2018-06-10 10:00:00, 100, 20", "no header: the first line is data"),
    ],
)
def test_columns_it_does_not_understand_are_refused_naming_found_and_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str, problem: str
) -> None:
    path = tmp_path / "day.csv"
    path.write_text(f"{header}\n2018-06-10 10:00:00, 100, 20\n2018-06-10 10:01:00, 100, 20\n")
    found = ", ".join(repr(cell.strip()) for cell in header.split(","))
    assert refusal(path, capsys) == f"{path}: {problem}; found {found}; {EXPECTED_COLUMNS}"


def test_a_huge_header_is_shown_cut_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "day.csv"
    path.write_text("time,solar," + ",".join("x" * 200 for _ in range(100)) + "\n")
    line = refusal(path, capsys)
    assert len(line) < 300 + len(str(path))
    assert "and 97 more;" in line


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b" \n\n", "empty"),
        (b"time,solar\n2018-06-10 10:00:00, 10\xff0\n", "not UTF-8 text (byte 0xff at offset 34)"),
        (b"time,solar\n", "needs at least two samples, found 0"),
        (b"time,solar\n2018-06-10 10:00:00, null\n", "needs at least two samples, found 1"),
        (b"time,solar\n1528614000, null\n1528614060,\n", "no solar value on any line"),
        (b"time,solar\n2018-06-10 10:00:00, inf\n", "line 2: solar 'inf': expected a number"),
        (b"time,solar\n2018-06-10 10:00:00, 1e7\n", "line 2: solar '1e7': expected a number"),
        (b"time,solar,vrms\n2018-06-10 10:00:00, 100, 0\n", "line 2: voltage '0': expected"),
        (b"time,solar\n1e300, 100\n", "line 2: time '1e300': expected"),
        (b"time,solar\nnoon, 100\n", "line 2: time 'noon': expected"),
        (b"time,solar\n2018-06-10 10:00:00, 100, 7\n", "line 2: 3 values for 2 columns"),
        (
            b"time,solar\n2018-06-10 10:01:00, 100\n2018-06-10 10:00:00, 100\n",
            "line 3: time '2018-06-10 10:00:00' is not after the line before",
        ),
        (b'time,solar\n"2018-06-10 10:00:00, 100\n', "line 2: not CSV"),
    ],
)
def test_a_file_it_cannot_read_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, problem: str
) -> None:
    path = tmp_path / "day.csv"
    path.write_bytes(content)
    assert refusal(path, capsys).startswith(f"{path}: {problem}")


def test_a_directory_or_an_oversized_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert refusal(tmp_path, capsys) == f"{tmp_path}: a directory, not a file"
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as file:
        file.truncate(dayfile.MAX_DAY_FILE_BYTES + 1)  # sparse: no disk is written
    assert refusal(huge, capsys) == f"{huge}: larger than 32 MiB"
    long = tmp_path / "long.csv"
    long.write_text("time,solar\n" + "".join(f"{t},0\n" for t in range(5)))
    monkeypatch.setattr(dayfile, "MAX_SAMPLES", 3)
    assert refusal(long, capsys) == f"{long}: line 5: more than 3 samples"


def test_every_option_in_help_says_what_it_does_and_its_default() -> None:
    """`simulate --help` as printed: each option's entry (its line and the lines
    indented under it) holds a description and the default, or "off" for a flag."""
    result = subprocess.run(
        [sys.executable, "-m", "p1evse", "simulate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    entries: dict[str, str] = {}
    option = None
    for line in result.stdout.splitlines():
        if found := re.match(r"  (--[a-z-]+|-h, --help)( \S+)*?(\s{2,}(.*))?$", line):
            option = found[1]
            entries[option] = found[4] or ""
        elif option and line.startswith(" " * 10):
            entries[option] += " " + line.strip()
        else:
            option = None
    options = {name for action in simulate_parser()._actions for name in action.option_strings} - {
        "-h",
        "--help",
    }
    assert set(entries) - {"-h, --help"} == options
    for name in options:
        text = entries[name]
        assert re.search(r"\w+ \w+", text.split("(")[0]), f"{name}: no description: {text!r}"
        assert re.search(r"\bdefault\b", text), f"{name}: no default: {text!r}"
