"""The `p1evse simulate` command: options, runs (one, or every combination of
`--compare`), the progress bar, and the report. An option that sets a settings model's
field takes its default, range and help from the field, and is checked by the model."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, get_args

from pydantic import Field, model_validator

from p1evse.errors import ConfigError
from p1evse.options import add_option, validated
from p1evse.pipeline import MAX_STALE_AFTER_S, PublishSettings
from p1evse.settings import Section
from p1evse.sim import plot
from p1evse.sim.dayfile import MAX_DAY_FILE_BYTES, MAX_SAMPLES, DayFileError, read_csv
from p1evse.sim.figure import Figure, compare_figure, day_figure, outage_span
from p1evse.sim.house import Day, HouseSettings, RecordedDay, SyntheticDay
from p1evse.sim.household import Household
from p1evse.sim.openevse import Car, DivertSettings, ShaperSettings
from p1evse.sim.simulate import MAX_STEPS, MeterPath, Outage, Result, simulate, step_refused
from p1evse.sim.table import table


class Timing(Section):
    """When readings reach p1evse: the meter's period, and how late a network makes them."""

    step_s: float = Field(gt=0, description="the meter's period, s")
    jitter_s: float = Field(
        0.0, ge=0, description="each reading arrives 0 to this many s late, seeded by --seed"
    )

    @model_validator(mode="after")
    def _jitter_under_step(self) -> Timing:
        if self.jitter_s >= self.step_s:
            raise ValueError(
                f"jitter_s ({self.jitter_s:g} s) must be under step_s ({self.step_s:g} s)"
            )
        return self


# the options that set a field of a run's settings, which `--compare` can vary too:
# option -> the field's model, and its place in `Run`
FIELDS: dict[str, tuple[type[Section], str]] = {
    "step": (Timing, "timing.step_s"),
    "jitter": (Timing, "timing.jitter_s"),
    "interval": (PublishSettings, "publish.interval"),
    "mode": (PublishSettings, "publish.mode"),
    "step_w": (PublishSettings, "publish.step_w"),
    "band_w": (PublishSettings, "publish.band_w"),
    "reserve_w": (PublishSettings, "publish.reserve_w"),
    "stale_after": (PublishSettings, "publish.stale_after"),
    "on_stale": (PublishSettings, "publish.on_stale"),
    "failsafe_import_w": (PublishSettings, "publish.failsafe_import_w"),
    "voltage": (DivertSettings, "divert.voltage"),
    "min_current": (DivertSettings, "divert.min_current"),
    "max_current": (DivertSettings, "divert.max_current"),
    "pv_ratio": (DivertSettings, "divert.pv_ratio"),
    "attack": (DivertSettings, "divert.attack_s"),
    "decay": (DivertSettings, "divert.decay_s"),
    "min_charge_time": (DivertSettings, "divert.min_charge_time_s"),
    "current_lag": (DivertSettings, "divert.current_lag_s"),
    "shaper_max_pwr": (ShaperSettings, "divert.shaper.max_pwr_w"),
    "grid_voltage": (HouseSettings, "house.voltage_v"),
    "pv_phases": (HouseSettings, "house.pv_phases"),
    "car_max_current": (Car, "car.max_current"),
}


def add_parser(commands: Any, help: str) -> None:
    simulate = commands.add_parser(
        "simulate",
        help=help,
        description="Run a day of house, PV and car through p1evse's pipeline and a model "
        "of OpenEVSE's divert, in virtual time, and report the energy.",
    )
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="a recorded day: time, solar_w[, grid_w][, voltage_v] by header name, at most "
        f"{MAX_SAMPLES:,} samples and {MAX_DAY_FILE_BYTES // 2**20} MiB "
        "(default none: this or --synthetic)",
    )
    source.add_argument(
        "--synthetic", action="store_true", help="a generated sunny day (default off)"
    )
    simulate.add_argument(
        "--seed",
        type=_seed,
        default=1,
        help="of the synthetic day's clouds and appliances, of --household and of --jitter: "
        "0 or more (default 1)",
    )
    simulate.add_argument(
        "--household",
        action="store_true",
        help="lay a household's second-by-second life over the day: appliances of "
        "0.6-2.5 kW for 30-300 s about every 15 min, a fridge, 50 W of noise "
        "(default off)",
    )
    _option(
        simulate,
        "step",
        help=f"the meter's period, s; a run is at most {MAX_STEPS:,} steps, the day's length "
        "over this",
        unset="the day file's own, else 1",
    )
    _option(simulate, "jitter")
    simulate.add_argument(
        "--meter",
        choices=get_args(MeterPath),
        default="direct",
        help="readings to the pipeline directly, or as P1 telegrams through the p1 decoder "
        "(default direct)",
    )
    pipeline = simulate.add_argument_group("p1evse (publish.*)")
    for key in (
        "interval",
        "mode",
        "step_w",
        "band_w",
        "reserve_w",
        "stale_after",
        "on_stale",
        "failsafe_import_w",
    ):
        _option(pipeline, key)
    pipeline.add_argument(
        "--outage",
        metavar="START+DURATION",
        help="the meter falls silent for DURATION s from START s after the day's first "
        "sample (default none)",
    )
    pipeline.add_argument(
        "--vrms",
        action="store_true",
        help="feed the meter's voltage too (openevse.voltage) (default off)",
    )
    charger = simulate.add_argument_group("OpenEVSE (firmware defaults)")
    for key in ("voltage", "min_current", "max_current", "pv_ratio", "attack", "decay"):
        _option(charger, key)
    _option(charger, "min_charge_time")
    _option(charger, "current_lag")
    charger.add_argument(
        "--three-phase", action="store_true", help="a three-phase charger (default off: one phase)"
    )
    charger.add_argument(
        "--as-divert-sim",
        action="store_true",
        help="divert's loop sees a charge start one update late, as OpenEVSE's own simulator "
        "(divert_sim) runs it (default off: at once, as on a charger)",
    )
    _option(charger, "shaper_max_pwr", help="the current shaper on, with this cap, W", unset="off")
    house = simulate.add_argument_group("house and car")
    _option(
        house, "grid_voltage", help="the grid's, V", unset="the day's voltage_v, else --voltage"
    )
    _option(house, "pv_phases")
    _option(house, "car_max_current")
    output = simulate.add_argument_group("output")
    output.add_argument(
        "--json", action="store_true", help="print one JSON object (default off: a table)"
    )
    output.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="draw the day as FILE.png or FILE.svg (with the extra `plot`: matplotlib) or "
        "FILE.html (a page to zoom and read), with --compare every run's car on one "
        "figure (default none)",
    )
    output.add_argument(
        "--compare",
        nargs="+",
        metavar="KEY=V1,V2",
        help=f"run every combination of these settings, side by side; KEY is one of "
        f"{', '.join(FIELDS)} (default off: one run)",
    )
    simulate.set_defaults(command=run)


def _option(
    group: argparse._ActionsContainer,
    key: str,
    help: str | None = None,
    unset: str | None = None,
) -> None:
    model, path = FIELDS[key]
    add_option(group, _flag(key), model, path.rpartition(".")[2], help=help, unset=unset)


def _seed(text: str) -> int:
    """A seed of 0 or more: Python's random takes -n for n, so a negative seed would
    quietly repeat the day of its positive twin."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return seed


def _flag(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def run(args: argparse.Namespace) -> int:
    draw = plot.writer(args.plot) if args.plot is not None else None
    try:
        curve: Day = read_csv(args.csv) if args.csv else SyntheticDay(seed=args.seed)
    except DayFileError as exc:
        raise ConfigError([f"simulate: {exc}"]) from None
    day = Household(curve, args.seed) if args.household else curve
    combinations = _combinations(args.compare or [])
    runs = plan(args, curve.period_s() if isinstance(curve, RecordedDay) else 1.0, combinations)
    steps = sorted({one.timing.step_s for one in runs.values()})
    too_long = [
        f"--step {step:g}: {problem}"
        for step in steps
        if (problem := step_refused(day, step)) is not None
    ]
    if too_long:
        raise ConfigError(too_long)
    outage = next(iter(runs.values())).outage
    if outage is not None and outage.start_s >= day.last_s - day.first_s:
        raise ConfigError(
            [
                f"--outage {args.outage}: starts after the day ends (it is "
                f"{day.last_s - day.first_s:,.0f} s long; START counts from its first sample)"
            ]
        )
    notes = {note for one in runs.values() if (note := stale_between_readings(one)) is not None}
    for note in sorted(notes):
        print(f"simulate: {note}", file=sys.stderr)
    bar = ProgressBar(len(runs), sys.stderr)
    results: dict[str, Result] = {}
    for number, (label, one) in enumerate(runs.items()):
        trace = draw is not None and (number == 0 or args.compare is not None)
        results[label] = one.go(day, trace, bar.at(number))
    bar.done()
    summaries = {label: result.summary() for label, result in results.items()}
    if args.json:
        only = len(summaries) == 1
        print(json.dumps(next(iter(summaries.values())) if only else summaries, indent=2))
    else:
        print(table(list(zip(combinations, summaries.values(), strict=True))))
    if draw is not None:
        plot.write(_figure(args, day, results, outage), args.plot, draw)
    return 0


def _figure(
    args: argparse.Namespace, day: Day, results: dict[str, Result], outage: Outage | None
) -> Figure:
    """The first run's day, or with --compare, every run's car on one figure."""
    name = f"{args.csv.name}, {day.origin:%-d %b %Y}" if args.csv else "synthetic day"
    if args.household:
        name += f", household seed {args.seed}"
    elif not args.csv:
        name += f", seed {args.seed}"
    shaded = outage_span(day.first_s + outage.start_s, outage.duration_s) if outage else None
    if len(results) > 1:
        return compare_figure(results, name, day.origin, shaded)
    [(label, result)] = results.items()
    title = f"{name}: {label}" if args.compare else name
    return day_figure(result, title, day.origin, shaded)


def plan(
    args: argparse.Namespace, step_s: float, combinations: list[dict[str, str]] | None = None
) -> dict[str, Run]:
    """The runs the options ask for, by label: one, or every combination of `--compare`
    (as `_combinations` reads it, unless given), all checked before any starts. `step_s`:
    the day's own meter period."""
    given = {key: getattr(args, key) for key in FIELDS}
    if given["step"] is None:
        given["step"] = step_s
    if combinations is None:
        combinations = _combinations(args.compare or [])
    runs: dict[str, Run] = {}
    for overrides in combinations:
        label = " ".join(f"{key}={value}" for key, value in overrides.items()) or "result"
        try:
            runs[label] = Run.of(given | overrides, args)
        except ConfigError as exc:
            if not overrides:
                raise
            raise ConfigError([f"the run {label}: {problem}" for problem in exc.problems]) from None
    return runs


class Run(Section):
    """One run's settings, checked together before any run starts."""

    timing: Timing
    publish: PublishSettings = PublishSettings()
    divert: DivertSettings = DivertSettings()
    house: HouseSettings = HouseSettings()
    car: Car = Car()
    outage: Outage | None = None
    vrms: bool
    meter: MeterPath
    seed: int

    @classmethod
    def of(cls, values: dict[str, Any], args: argparse.Namespace) -> Run:
        """From the options' values (None: not given) and the run's flags."""
        grid = values["grid_voltage"]
        fixed = {
            "divert.three_phase": args.three_phase,
            "divert.state_seen_next_update": args.as_divert_sim,
            "house.recorded_voltage": grid is None,
            "house.car_phases": 3 if args.three_phase else 1,
            "outage": _outage(args.outage),
            "vrms": args.vrms,
            "meter": args.meter,
            "seed": args.seed,
        }
        given = {FIELDS[key][1]: value for key, value in values.items()}
        run = validated(cls, given | fixed, {path: _flag(key) for key, (_, path) in FIELDS.items()})
        if grid is not None:
            return run
        # the grid at the charger's voltage, which the charger's model has checked
        house = run.house.model_copy(update={"voltage_v": run.divert.voltage})
        return run.model_copy(update={"house": house})

    def go(self, day: Day, trace: bool, progress: Callable[[float], None]) -> Result:
        return simulate(
            day,
            self.publish,
            self.divert,
            self.timing.step_s,
            house=self.house,
            outage=self.outage,
            vrms=self.vrms,
            meter=self.meter,
            car=self.car,
            jitter_s=self.timing.jitter_s,
            seed=self.seed,
            trace=trace,
            progress=progress,
        )


def stale_between_readings(run: Run) -> str | None:
    """A note when the meter's period is not shorter than `stale_after`: p1evse then
    goes stale between every two readings, as it would with such a meter."""
    step, stale_after = run.timing.step_s, run.publish.stale_after
    if step < stale_after:
        return None
    remedy = (
        f"--stale-after above {step:g} avoids it"
        if step < MAX_STALE_AFTER_S
        else f"no --stale-after avoids it: at most {MAX_STALE_AFTER_S:g} s; a shorter --step does"
    )
    return (
        f"the meter's period, {step:g} s, is not shorter than stale_after, {stale_after:g} s: "
        f"p1evse goes stale between every two readings ({remedy})"
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


def _outage(text: str | None) -> Outage | None:
    if text is None:
        return None
    start, _, duration = text.partition("+")
    try:
        outage = Outage(float(start), float(duration))
    except ValueError:
        outage = None
    if (
        outage is None
        or not (math.isfinite(outage.start_s) and math.isfinite(outage.duration_s))
        or outage.start_s < 0
        or outage.duration_s <= 0
    ):
        raise ConfigError([f"--outage {text!r}: expected START+DURATION in seconds, e.g. 3600+600"])
    return outage


def _combinations(specs: list[str]) -> list[dict[str, str]]:
    axes: list[list[tuple[str, str]]] = []
    for spec in specs:
        key, _, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key not in FIELDS:
            raise ConfigError(
                [f"--compare {spec!r}: unknown setting {key!r}; one of {', '.join(FIELDS)}"]
            )
        if not values:
            raise ConfigError([f"--compare {spec!r}: expected {key}=VALUE,VALUE"])
        if key in (axis[0][0] for axis in axes):
            raise ConfigError(
                [f"--compare {spec!r}: {key} is compared twice; give its values once"]
            )
        given = [value.strip() for value in values.split(",")]
        folded = [value.casefold() for value in given]  # choices are read in any case
        repeated = sorted({value for value in given if folded.count(value.casefold()) > 1})
        if repeated:
            raise ConfigError([f"--compare {spec!r}: {', '.join(repeated)} given twice"])
        axes.append([(key, value) for value in given])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]
