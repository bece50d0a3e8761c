"""Feed benchmark: which value to send OpenEVSE, on 1 s meters in busy houses.

Each day is a household (`sim/household.py`: appliances of 0.6-2.5 kW for 30-300 s
about every 15 minutes, a fridge, 50 W of noise) over a day's PV and load, read each
second and run through p1evse and the model of OpenEVSE's divert. Recorded days are
given as CSV files (OpenEVSE's divert-simulator day files work as they are) and are
upsampled to 1 s; synthetic days come by seed. Every feed runs on the same house.

For each recorded day it prints a table: the fixed intervals (0 relays every reading)
and `mode: steady`, with the car's energy from solar and from the grid, grid import
while charging, export, starts and changes of the charging current. For the synthetic
seeds it prints, per feed, the worst case against relaying on the same seed: the
least solar to the car, the most import while charging, the most current changes.

    uv run python bench/feed.py [DAY.csv ...] [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from p1evse.pipeline import PublishSettings
from p1evse.sim.dayfile import read_csv
from p1evse.sim.house import Day, SyntheticDay
from p1evse.sim.household import Household
from p1evse.sim.openevse import DivertSettings
from p1evse.sim.simulate import simulate
from p1evse.sim.table import table

FEEDS: dict[str, dict[str, Any]] = {
    **{f"interval {s}": {"interval": s} for s in (0, 1, 5, 10, 30, 60)},
    "steady": {"mode": "steady"},
}
RELAY = "interval 0"
SOLAR = "ev_solar_kwh"
IMPORT, CHANGES = "grid_import_while_charging_kwh", "current_changes"


def household(day: str) -> Day:
    """A recorded day (a path) with the household of seed 1, or `seed N`."""
    if day.startswith("seed "):
        seed = int(day.removeprefix("seed "))
        return Household(SyntheticDay(seed=seed), seed)
    return Household(read_csv(Path(day)), 1)


def one(job: tuple[str, str]) -> tuple[str, str, dict[str, Any]]:
    day, feed = job
    result = simulate(household(day), PublishSettings(**FEEDS[feed]), DivertSettings(), 1.0)
    return day, feed, result.summary()


def per_day(day: str, results: Mapping[str, dict[str, Any]]) -> str:
    rows = [({"feed": feed}, summary) for feed, summary in results.items()]
    relay = results[RELAY]
    verdict = "\n".join(
        f"{feed}: solar {s[SOLAR] - relay[SOLAR]:+.3f} kWh, import while charging "
        f"{s[IMPORT] - relay[IMPORT]:+.3f} kWh, {s[CHANGES] / max(relay[CHANGES], 1):.1%} "
        "of relaying's current changes"
        for feed, s in results.items()
        if feed != RELAY
    )
    return f"{Path(day).name if not day.startswith('seed') else day}\n{table(rows)}\n{verdict}"


def worst_cases(seeds: Mapping[str, Mapping[str, dict[str, Any]]]) -> str:
    lines = [
        f"{len(seeds)} synthetic seeds, each against relaying on the same seed: worst case (mean)",
        f"{'feed':12} {'solar kWh':>18} {'import kWh':>18} {'changes':>16}  dominates",
    ]
    for feed in FEEDS:
        if feed == RELAY:
            continue
        solar = [runs[feed][SOLAR] - runs[RELAY][SOLAR] for runs in seeds.values()]
        imports = [runs[feed][IMPORT] - runs[RELAY][IMPORT] for runs in seeds.values()]
        changes = [runs[feed][CHANGES] / max(runs[RELAY][CHANGES], 1) for runs in seeds.values()]
        wins = sum(
            s >= 0 and i <= 0 and c <= 0.1 for s, i, c in zip(solar, imports, changes, strict=True)
        )
        lines.append(
            f"{feed:12} {min(solar):+8.3f} ({sum(solar) / len(solar):+.3f}) "
            f"{max(imports):+8.3f} ({sum(imports) / len(imports):+.3f}) "
            f"{max(changes):7.1%} ({sum(changes) / len(changes):.1%})  "
            f"{wins}/{len(seeds)} seeds"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("days", nargs="*", help="recorded days (CSV)")
    parser.add_argument("--seeds", type=int, default=20, help="synthetic seeds (default 20)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    days = [*args.days, *(f"seed {n}" for n in range(1, args.seeds + 1))]
    jobs = [(day, feed) for day in days for feed in FEEDS]
    results: dict[str, dict[str, dict[str, Any]]] = {day: {} for day in days}
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for day, feed, summary in pool.map(one, jobs):
            results[day][feed] = summary
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    for day in args.days:
        print(per_day(day, results[day]), end="\n\n")
    seeds = {day: runs for day, runs in results.items() if day.startswith("seed ")}
    if seeds:
        for day, runs in seeds.items():
            relay, steady = runs[RELAY], runs["steady"]
            print(
                f"{day:8} relaying: solar {relay[SOLAR]:6.3f} import {relay[IMPORT]:.3f} "
                f"changes {relay[CHANGES]:5}  steady: solar {steady[SOLAR]:6.3f} "
                f"import {steady[IMPORT]:.3f} changes {steady[CHANGES]:4}"
            )
        print()
        print(worst_cases(seeds))


if __name__ == "__main__":
    main()
