"""The `p1evse simulate` command: options, runs (one, or every combination of
`--compare`), the progress bar, and the report."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from p1evse.errors import ConfigError
from p1evse.pipeline import PublishSettings
from p1evse.sim.dayfile import DayFileError, read_csv
from p1evse.sim.house import Day, HouseSettings, RecordedDay, SyntheticDay
from p1evse.sim.openevse import Car, DivertSettings, ShaperSettings
from p1evse.sim.plot import PLOT_SUFFIXES, svg_plot
from p1evse.sim.simulate import MeterPath, Outage, Result, simulate, table

# the settings `--compare` can vary: option -> where it goes (publish, divert, house, run)
PUBLISH_OPTIONS = ("interval", "reserve_w", "stale_after", "on_stale", "failsafe_import_w")
DIVERT_OPTIONS = (
    "voltage",
    "min_current",
    "max_current",
    "pv_ratio",
    "attack",
    "decay",
    "min_charge_time",
)
OTHER_OPTIONS = ("step", "jitter", "grid_voltage", "shaper_max_pwr", "car_max_current")
TEXT_OPTIONS = ("on_stale",)


def add_parser(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="a day of house, PV, car and OpenEVSE's divert, offline",
        description="Run a day of house, PV and car through p1evse's pipeline and a model "
        "of OpenEVSE's divert, in virtual time, and report the energy.",
    )
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--csv",
        type=Path,
        help="a day: time, solar_w[, grid_w][, voltage_v] by header name",
    )
    source.add_argument("--synthetic", action="store_true", help="a generated sunny day")
    simulate.add_argument("--seed", type=int, default=1, help="of the synthetic day")
    simulate.add_argument("--step", type=float, help="meter period, s (default: the data's; 1)")
    simulate.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="each reading arrives 0 to S s late (network; seeded by --seed); under --step",
    )
    simulate.add_argument(
        "--meter",
        choices=["direct", "telegram"],
        default="direct",
        help="readings to the pipeline directly, or as P1 telegrams through the p1 decoder",
    )
    pipeline = simulate.add_argument_group("p1evse (publish.*)")
    pipeline.add_argument("--interval", type=float, default=5.0)
    pipeline.add_argument("--reserve-w", type=int, default=0)
    pipeline.add_argument("--stale-after", type=float, default=30.0)
    pipeline.add_argument("--on-stale", choices=["pause", "import", "none"], default="pause")
    pipeline.add_argument("--failsafe-import-w", type=int, default=10_000)
    pipeline.add_argument("--outage", help="START+DURATION, s from the day's first sample")
    pipeline.add_argument(
        "--vrms", action="store_true", help="feed the meter's voltage too (openevse.voltage)"
    )
    charger = simulate.add_argument_group("OpenEVSE (firmware defaults)")
    charger.add_argument("--voltage", type=float, default=240.0, help="its configured voltage")
    charger.add_argument("--min-current", type=float, default=6.0)
    charger.add_argument("--max-current", type=float, default=32.0)
    charger.add_argument("--pv-ratio", type=float, default=1.1)
    charger.add_argument("--attack", type=float, default=20.0, help="s")
    charger.add_argument("--decay", type=float, default=600.0, help="s")
    charger.add_argument("--min-charge-time", type=float, default=600.0, help="s")
    charger.add_argument("--three-phase", action="store_true")
    charger.add_argument(
        "--shaper-max-pwr", type=float, help="turn the current shaper on with this cap, W"
    )
    house = simulate.add_argument_group("house and car")
    house.add_argument(
        "--grid-voltage",
        type=float,
        help="the grid's (default: the day's voltage_v, else --voltage)",
    )
    house.add_argument("--pv-phases", type=int, choices=[1, 3], default=1)
    house.add_argument("--car-max-current", type=float, default=32.0, help="A per phase")
    output = simulate.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument(
        "--plot", type=Path, help="write the (first) run's day as FILE.svg or FILE.html"
    )
    output.add_argument(
        "--compare", nargs="+", metavar="KEY=V1,V2", help="run every combination, side by side"
    )
    simulate.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            [f"--plot {str(args.plot)!r}: writes SVG; name the file .svg (or .html for a page)"]
        )
    try:
        day: Day = read_csv(args.csv) if args.csv else SyntheticDay(seed=args.seed)
    except DayFileError as exc:
        raise ConfigError([f"simulate: {exc}"]) from None
    base = {key: getattr(args, key) for key in (*PUBLISH_OPTIONS, *DIVERT_OPTIONS, *OTHER_OPTIONS)}
    if base["step"] is None:  # the data's own period
        base["step"] = day.period_s() if isinstance(day, RecordedDay) else 1.0
    combinations = _combinations(args.compare or [])
    runs = [_Run.of({**base, **overrides}, args) for overrides in combinations]
    labels = [
        " ".join(f"{k}={_show(v)}" for k, v in overrides.items()) or "result"
        for overrides in combinations
    ]
    bar = ProgressBar(len(runs), sys.stderr)
    results: dict[str, Result] = {}
    for number, (label, one) in enumerate(zip(labels, runs, strict=True)):
        results[label] = one.go(day, args.plot is not None and number == 0, bar.at(number))
    bar.done()
    summaries = {label: result.summary() for label, result in results.items()}
    if args.json:
        only = len(summaries) == 1
        print(json.dumps(next(iter(summaries.values())) if only else summaries, indent=2))
    else:
        print(table(summaries))
    if args.plot is not None:
        origin = day.origin
        clock_s = origin.hour * 3600 + origin.minute * 60 + origin.second
        svg_plot(next(iter(results.values())), args.plot, _title(args, labels[0]), clock_s)
    return 0


@dataclass(frozen=True, slots=True)
class _Run:
    """One run's settings, checked before any run starts."""

    publish: PublishSettings
    divert: DivertSettings
    house: HouseSettings
    step_s: float
    outage: Outage | None
    vrms: bool
    meter: MeterPath
    car: Car
    jitter_s: float
    seed: int

    @classmethod
    def of(cls, options: dict[str, Any], args: argparse.Namespace) -> _Run:
        try:
            publish = PublishSettings(**{key: options[key] for key in PUBLISH_OPTIONS})
        except ValidationError as exc:
            raise ConfigError(
                [
                    f"simulate: --{'-'.join(str(part) for part in error['loc']).replace('_', '-')}"
                    f" {error['input']!r}: {str(error['msg']).removeprefix('Value error, ')}"
                    for error in exc.errors()
                ]
            ) from None
        numbers = {key: float(options[key]) for key in DIVERT_OPTIONS}
        step = float(options["step"])
        positive = ("voltage", "min_current", "max_current", "pv_ratio")
        problems = [
            f"--{key.replace('_', '-')} {value:g}: expected {'> 0' if key in positive else '>= 0'}"
            for key, value in numbers.items()
            if value < 0 or (value == 0 and key in positive)
        ]
        if step <= 0:
            problems.append(f"--step {step:g}: expected > 0 seconds")
        jitter = float(options["jitter"])
        if not 0 <= jitter < step:
            problems.append(f"--jitter {jitter:g}: expected at least 0 and under --step {step:g}")
        if numbers["min_current"] > numbers["max_current"]:
            problems.append("--min-current is above --max-current")
        for key, low in (("grid_voltage", 0.0), ("car_max_current", 0.0), ("shaper_max_pwr", -1)):
            value = options[key]
            if value is not None and float(value) <= low:
                expected = "at least 0 W" if key == "shaper_max_pwr" else "> 0"
                problems.append(f"--{key.replace('_', '-')} {value:g}: expected {expected}")
        if problems:
            raise ConfigError([f"simulate: {problem}" for problem in problems])
        shaper_w = options["shaper_max_pwr"]
        divert = DivertSettings(
            voltage=numbers["voltage"],
            min_current=numbers["min_current"],
            max_current=numbers["max_current"],
            pv_ratio=numbers["pv_ratio"],
            attack_s=numbers["attack"],
            decay_s=numbers["decay"],
            min_charge_time_s=numbers["min_charge_time"],
            three_phase=args.three_phase,
            shaper=ShaperSettings(max_pwr_w=float(shaper_w)) if shaper_w is not None else None,
        )
        grid = options["grid_voltage"]
        house = HouseSettings(
            voltage_v=float(grid) if grid is not None else divert.voltage,
            recorded_voltage=grid is None,
            pv_phases=args.pv_phases,
            car_phases=3 if args.three_phase else 1,
        )
        return cls(
            publish,
            divert,
            house,
            step,
            _outage(args.outage),
            args.vrms,
            "telegram" if args.meter == "telegram" else "direct",
            Car(max_current=float(options["car_max_current"])),
            jitter,
            args.seed,
        )

    def go(self, day: Day, trace: bool, progress: Callable[[float], None]) -> Result:
        return simulate(
            day,
            self.publish,
            self.divert,
            self.step_s,
            house=self.house,
            outage=self.outage,
            vrms=self.vrms,
            meter=self.meter,
            car=self.car,
            jitter_s=self.jitter_s,
            seed=self.seed,
            trace=trace,
            progress=progress,
        )


class ProgressBar:
    """A bar on a terminal for work that has taken more than a second; silent before,
    and when the output is a file or a pipe."""

    def __init__(self, runs: int, out: TextIO, after_s: float = 1.0) -> None:
        self._runs = runs
        self._out = out
        self._started = time.monotonic()
        self._after_s = after_s
        self._shown = False
        self._enabled = out.isatty()
        self._last = ""

    def at(self, run: int) -> Callable[[float], None]:
        def show(fraction: float) -> None:
            if not self._enabled:
                return
            if not self._shown and time.monotonic() - self._started < self._after_s:
                return
            self._shown = True
            done = (run + fraction) / self._runs
            filled = int(done * 30)
            runs = f"  run {run + 1}/{self._runs}" if self._runs > 1 else ""
            line = f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:4.0%}{runs}"
            if line != self._last:
                self._out.write(line)
                self._out.flush()
                self._last = line

        return show

    def done(self) -> None:
        if self._shown:
            self._out.write(f"\r{' ' * 60}\r")
            self._out.flush()


def _title(args: argparse.Namespace, label: str) -> str:
    day = args.csv.name if args.csv else f"synthetic day, seed {args.seed}"
    return f"{day}  {label if label != 'result' else ''}".strip()


def _outage(text: str | None) -> Outage | None:
    if text is None:
        return None
    start, _, duration = text.partition("+")
    try:
        outage = Outage(float(start), float(duration))
    except ValueError:
        outage = None
    if outage is None or outage.start_s < 0 or outage.duration_s <= 0:
        raise ConfigError([f"--outage {text!r}: expected START+DURATION in seconds, e.g. 3600+600"])
    return outage


def _combinations(specs: list[str]) -> list[dict[str, Any]]:
    axes = []
    known = (*PUBLISH_OPTIONS, *DIVERT_OPTIONS, *OTHER_OPTIONS)
    for spec in specs:
        key, _, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key not in known:
            raise ConfigError(
                [f"--compare {spec!r}: unknown setting {key!r}; one of {', '.join(known)}"]
            )
        if not values:
            raise ConfigError([f"--compare {spec!r}: expected {key}=VALUE,VALUE"])
        axes.append([(key, _value(key, v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def _value(key: str, text: str) -> Any:
    if key in TEXT_OPTIONS:
        return text.strip()
    try:
        return float(text)
    except ValueError:
        raise ConfigError([f"--compare {key}={text!r}: expected a number"]) from None


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
