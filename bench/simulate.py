"""Simulation benchmark: how long `p1evse simulate` takes for a day.

For a day (a CSV of OpenEVSE's divert simulator given with --csv, else the synthetic
day), at a 1 s meter step, each of:
- the readings straight to the pipeline (the default),
- each reading as a DSMR 5 telegram through the p1 source's framing and decoder
  (`--meter telegram`),
- the default with a trace kept (what `--plot` needs).
It prints the simulated steps, the wall time (best of 3) and the steps per second.
The issue's target is a real day in under 5 s.

    uv run python bench/simulate.py
    uv run python bench/simulate.py --csv day.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from p1evse.pipeline import PublishSettings
from p1evse.sim.dayfile import read_csv
from p1evse.sim.house import Day, SyntheticDay
from p1evse.sim.openevse import DivertSettings
from p1evse.sim.simulate import simulate

STEP_S = 1.0


def best_of(rounds: int, day: Day, **options: object) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        simulate(day, PublishSettings(), DivertSettings(), STEP_S, **options)  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, help="a day file (default: the synthetic day)")
    args = parser.parse_args()
    day: Day = read_csv(args.csv) if args.csv else SyntheticDay()
    name = args.csv.name if args.csv else "synthetic day, seed 1"
    steps = int((day.last_s - day.first_s) / STEP_S) + 1
    print(f"{name}: {steps} steps of {STEP_S:g} s")
    print(f"{'path':<28}{'wall s':>10}{'steps/s':>12}")
    for label, options in (
        ("direct (default)", {}),
        ("P1 telegrams (--meter)", {"meter": "telegram"}),
        ("direct, trace (--plot)", {"trace": True}),
    ):
        seconds = best_of(3, day, **options)
        print(f"{label:<28}{seconds:>10.2f}{steps / seconds:>12,.0f}")


if __name__ == "__main__":
    main()
