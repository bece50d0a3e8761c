"""The `p1evse simulate` command: options, runs (one, or every combination of
`--compare`), and the report."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from p1evse.config import PublishSettings
from p1evse.errors import ConfigError
from p1evse.sim.openevse import DivertSettings
from p1evse.sim.simulate import (
    Outage,
    Result,
    Sample,
    read_csv,
    sample_period,
    simulate,
    svg_plot,
    synthetic_day,
    table,
)

# option name -> (settings it belongs to, field)
PUBLISH_OPTIONS = {
    "interval": "interval",
    "reserve_w": "reserve_w",
    "stale_after": "stale_after",
    "on_stale": "on_stale",
    "failsafe_import_w": "failsafe_import_w",
}
DIVERT_OPTIONS = {
    "voltage": "voltage",
    "min_current": "min_current",
    "max_current": "max_current",
    "pv_ratio": "pv_ratio",
    "attack": "attack_s",
    "decay": "decay_s",
    "min_charge_time": "min_charge_time_s",
}


def add_parser(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate", help="a day of house, PV, car and OpenEVSE's divert, offline"
    )
    source = simulate.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="a day: time, solar_w[, grid_w]")
    source.add_argument("--synthetic", action="store_true", help="a generated sunny day")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--step", type=float, help="meter period, s (default: the data's)")
    simulate.add_argument("--interval", type=float, default=5.0)
    simulate.add_argument("--reserve-w", type=int, default=0)
    simulate.add_argument("--stale-after", type=float, default=30.0)
    simulate.add_argument("--on-stale", choices=["pause", "import", "none"], default="pause")
    simulate.add_argument("--failsafe-import-w", type=int, default=10_000)
    simulate.add_argument("--outage", help="START+DURATION in seconds of the day's data")
    simulate.add_argument("--voltage", type=float, default=240.0)
    simulate.add_argument("--min-current", type=float, default=6.0)
    simulate.add_argument("--max-current", type=float, default=32.0)
    simulate.add_argument("--pv-ratio", type=float, default=1.1)
    simulate.add_argument("--attack", type=float, default=20.0)
    simulate.add_argument("--decay", type=float, default=600.0)
    simulate.add_argument("--min-charge-time", type=float, default=600.0)
    simulate.add_argument("--json", action="store_true", help="print one JSON object")
    simulate.add_argument("--plot", type=Path, help="write the day as an SVG")
    simulate.add_argument(
        "--compare", nargs="+", metavar="KEY=V1,V2", help="run every combination, side by side"
    )
    simulate.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    try:
        samples = read_csv(args.csv) if args.csv else synthetic_day(args.seed)
    except (OSError, ValueError) as exc:
        raise ConfigError([f"simulate: {exc}"]) from None
    base = {key: getattr(args, key) for key in (*PUBLISH_OPTIONS, *DIVERT_OPTIONS)}
    base["step"] = args.step if args.step is not None else sample_period(samples)
    outage = _outage(args.outage)
    combinations = _combinations(args.compare or [])
    started = time.monotonic()
    results: dict[str, Result] = {}
    for number, overrides in enumerate(combinations, 1):
        options = {**base, **overrides}
        label = " ".join(f"{k}={_show(v)}" for k, v in overrides.items()) or "result"
        results[label] = _run_one(samples, options, outage, trace=args.plot is not None)
        if time.monotonic() - started > 1 and len(combinations) > 1:
            print(f"\r{number}/{len(combinations)} runs", end="", file=sys.stderr, flush=True)
    if time.monotonic() - started > 1 and len(combinations) > 1:
        print(file=sys.stderr)
    summaries = {label: result.summary() for label, result in results.items()}
    if args.json:
        only = len(summaries) == 1
        print(json.dumps(next(iter(summaries.values())) if only else summaries, indent=2))
    else:
        print(table(summaries))
    if args.plot is not None:
        svg_plot(next(iter(results.values())), args.plot)
    return 0


def _run_one(
    samples: list[Sample], options: dict[str, Any], outage: Outage | None, trace: bool
) -> Result:
    try:
        publish = PublishSettings(**{field: options[key] for key, field in PUBLISH_OPTIONS.items()})
    except ValueError as exc:
        raise ConfigError([f"simulate: {exc}"]) from None
    charger: dict[str, Any] = {field: float(options[key]) for key, field in DIVERT_OPTIONS.items()}
    divert = DivertSettings(**charger)
    return simulate(samples, publish, divert, float(options["step"]), outage, trace)


def _outage(text: str | None) -> Outage | None:
    if text is None:
        return None
    start, _, duration = text.partition("+")
    try:
        return Outage(float(start), float(duration))
    except ValueError:
        raise ConfigError([f"--outage {text!r}: expected START+DURATION in seconds"]) from None


def _combinations(specs: list[str]) -> list[dict[str, Any]]:
    axes = []
    for spec in specs:
        key, _, values = spec.partition("=")
        key = key.strip().replace("-", "_")
        if key not in PUBLISH_OPTIONS and key not in DIVERT_OPTIONS and key != "step":
            known = ", ".join([*PUBLISH_OPTIONS, *DIVERT_OPTIONS, "step"])
            raise ConfigError([f"--compare {spec!r}: unknown setting {key!r}; one of {known}"])
        if not values:
            raise ConfigError([f"--compare {spec!r}: expected {key}=VALUE,VALUE"])
        axes.append([(key, _value(key, v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def _value(key: str, text: str) -> Any:
    if key == "on_stale":
        return text
    try:
        return float(text)
    except ValueError:
        raise ConfigError([f"--compare {key}={text!r}: expected a number"]) from None


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
